"""Local event-source poller: what the Lambda DynamoDB Streams event source does in AWS, for the
local stack.

Reads the table's change stream on the emulator shard by shard from the oldest record, invokes
the usage counter (count-usage) through cargo-lambda's invoke endpoint with a DynamoDB Streams
event of up to BATCH_SIZE records, and moves on only when the invocation succeeded: a failed
batch is sent again, the same records, as the event source retries it. Like the event source's
filter (template.yaml, CountUsageFunction), only records of executions changing into a final
status are sent.

Usage: python stream_poller.py TABLE_NAME INVOKE_URL   (AWS_ENDPOINT_URL etc. from the environment)
"""

import json
import sys
import time
import urllib.request

import boto3

BATCH_SIZE = 1000
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def ends_an_execution(record):
    change = record.get("dynamodb", {})
    new, old = change.get("NewImage", {}), change.get("OldImage", {})
    return (
        record.get("eventName") == "MODIFY"
        and new.get("entity", {}).get("S") == "execution"
        and new.get("status", {}).get("S") in FINAL
        and old.get("status", {}).get("S") not in FINAL
    )


def to_event(stream_arn, records):
    def plain(record):
        change = dict(record["dynamodb"])
        change.setdefault("SizeBytes", len(json.dumps(change, default=str)))
        # boto3 parses the creation time; the event carries epoch seconds.
        created = change.get("ApproximateCreationDateTime")
        if hasattr(created, "timestamp"):
            change["ApproximateCreationDateTime"] = created.timestamp()
        return {
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "eventVersion": record.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": record.get("awsRegion", "us-east-1"),
            "dynamodb": change,
            "eventSourceARN": stream_arn,
        }

    return {"Records": [plain(r) for r in records]}


def invoke(invoke_url, event):
    request = urllib.request.Request(
        invoke_url, data=json.dumps(event, default=str).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        result = json.loads(response.read() or b"{}")
    if isinstance(result, dict) and result.get("errorType"):
        raise RuntimeError(f"{result.get('errorType')}: {result.get('errorMessage')}")
    return result


def main():
    table, invoke_url = sys.argv[1], sys.argv[2]
    dynamodb, streams = boto3.client("dynamodb"), boto3.client("dynamodbstreams")
    stream_arn = None
    while stream_arn is None:
        try:
            stream_arn = dynamodb.describe_table(TableName=table)["Table"].get("LatestStreamArn")
        except dynamodb.exceptions.ResourceNotFoundException:
            pass
        if stream_arn is None:
            time.sleep(1)
    print(f"[streams] {stream_arn} -> {invoke_url}", flush=True)
    # The last sequence number handed over, per shard: each round reads after it with a fresh
    # iterator (the event source's checkpoint), so a stale iterator never stalls the reading.
    done = {}
    while True:
        idle = True
        for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
            shard_id = shard["ShardId"]
            after = done.get(shard_id)
            position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after} if after else {
                "ShardIteratorType": "TRIM_HORIZON"}
            iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard_id, **position)["ShardIterator"]
            read = streams.get_records(ShardIterator=iterator, Limit=BATCH_SIZE).get("Records", [])
            if not read:
                continue
            idle = False
            records = [r for r in read if ends_an_execution(r)]
            if records:
                try:
                    result = invoke(invoke_url, to_event(stream_arn, records))
                except Exception as error:  # retried: the same records, as the event source does
                    print(f"[streams] batch of {len(records)} failed, retrying: {error}", flush=True)
                    time.sleep(1)
                    continue
                print(f"[streams] batch of {len(records)}: {result}", flush=True)
            done[shard_id] = read[-1]["dynamodb"]["SequenceNumber"]
        if idle:
            time.sleep(0.5)

if __name__ == "__main__":
    main()
