"""Local event-source poller: what the Lambda SQS event source does in AWS, for the local stack.

Receives batches from the execution queue on the emulator, invokes the worker through
cargo-lambda's invoke endpoint with an SQS event, deletes the messages that succeeded and leaves
the reported batch item failures for redelivery (after the visibility timeout).

Usage: python sqs_poller.py QUEUE_URL INVOKE_URL   (AWS_ENDPOINT_URL etc. from the environment)
"""

import json
import os
import sys
import time
import urllib.request

import boto3

# Locally a failed message comes back quickly (scripts/test shortens it further).
VISIBILITY_SECONDS = int(os.environ.get("NODEAI_POLLER_VISIBILITY_SECONDS", "30"))
# How long one invoke may take before its messages are left for redelivery: a worker killed
# mid-invoke never answers (cargo-lambda keeps the request waiting for it).
INVOKE_TIMEOUT_SECONDS = int(os.environ.get("NODEAI_POLLER_INVOKE_TIMEOUT_SECONDS", "900"))


def to_event(queue_arn, messages):
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {k: str(v) for k, v in m.get("Attributes", {}).items()},
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def main():
    queue_url, invoke_url = sys.argv[1], sys.argv[2]
    sqs = boto3.client("sqs")
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    print(f"[poller] {queue_url} -> {invoke_url}", flush=True)
    while True:
        received = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=5,
            WaitTimeSeconds=1,
            VisibilityTimeout=VISIBILITY_SECONDS,
            AttributeNames=["All"],
        )
        messages = received.get("Messages", [])
        if not messages:
            continue
        request = urllib.request.Request(
            invoke_url,
            data=json.dumps(to_event(queue_arn, messages)).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=INVOKE_TIMEOUT_SECONDS) as response:
                result = json.loads(response.read() or b"{}")
        except Exception as error:  # the worker crashed or is rebuilding: everything comes back later
            print(f"[poller] invoke failed, {len(messages)} message(s) left for redelivery: {error}", flush=True)
            time.sleep(1)
            continue
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        print(f"[poller] batch of {len(messages)}: {len(messages) - len(failed)} done, {len(failed)} left", flush=True)


if __name__ == "__main__":
    main()
