"""Local schedule: what EventBridge Scheduler does for NodeAI in AWS, for the local stack.

Two parts, both against the emulator:
- the sweeper's rate schedule: invokes a function through cargo-lambda's invoke endpoint every
  INTERVAL seconds with the payload the template's schedule sends, and prints each answer;
- wake-ups of parked executions: with --waits GROUP, every second it reads the one-time
  schedules (`at(YYYY-MM-DDTHH:MM:SS)`, UTC) the worker created in that schedule group, and for
  each one that is due sends its target's input to its target queue (an SQS ARN), then deletes
  it, as EventBridge Scheduler does with ActionAfterCompletion DELETE.

Usage:
  python scheduler.py INTERVAL_SECONDS INVOKE_URL [--waits GROUP]
  python scheduler.py create-group GROUP      (creates the schedule group, as the template does)
"""

import datetime
import json
import sys
import threading
import time
import urllib.request

PAYLOAD = {"source": "nodeai.scheduler", "detail-type": "Sweep stranded executions", "detail": {}}


def clients():
    import boto3  # the emulator's environment has it (moto depends on it)

    return boto3.client("scheduler"), boto3.client("sqs")


def create_group(group):
    scheduler, _ = clients()
    try:
        scheduler.create_schedule_group(Name=group)
    except scheduler.exceptions.ConflictException:
        pass


def due(expression, now):
    """Whether an `at(...)` expression's time has come (other expressions never fire here)."""
    if not (expression.startswith("at(") and expression.endswith(")")):
        return False
    at = datetime.datetime.fromisoformat(expression[3:-1]).replace(tzinfo=datetime.timezone.utc)
    return at <= now


def fire_due_wake_ups(group):
    scheduler, sqs = clients()
    queue_urls = {}
    while True:
        try:
            now = datetime.datetime.now(datetime.timezone.utc)
            for summary in scheduler.list_schedules(GroupName=group).get("Schedules", []):
                schedule = scheduler.get_schedule(GroupName=group, Name=summary["Name"])
                if not due(schedule["ScheduleExpression"], now):
                    continue
                target = schedule["Target"]
                queue_name = target["Arn"].split(":")[-1]
                if queue_name not in queue_urls:
                    queue_urls[queue_name] = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
                sqs.send_message(QueueUrl=queue_urls[queue_name], MessageBody=target["Input"])
                scheduler.delete_schedule(GroupName=group, Name=summary["Name"])
                print(f"[scheduler] fired {summary['Name']}", flush=True)
        except Exception as error:  # the emulator restarting: try again next second
            print(f"[scheduler] wake-ups: {error}", flush=True)
        time.sleep(1)


def main():
    if sys.argv[1] == "create-group":
        create_group(sys.argv[2])
        return
    interval, invoke_url = float(sys.argv[1]), sys.argv[2]
    if "--waits" in sys.argv:
        group = sys.argv[sys.argv.index("--waits") + 1]
        create_group(group)
        threading.Thread(target=fire_due_wake_ups, args=(group,), daemon=True).start()
        print(f"[scheduler] firing wake-ups of group {group}", flush=True)
    print(f"[scheduler] every {interval:g} s -> {invoke_url}", flush=True)
    while True:
        time.sleep(interval)
        request = urllib.request.Request(
            invoke_url, data=json.dumps(PAYLOAD).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                print(f"[scheduler] {response.read().decode(errors='replace')}", flush=True)
        except Exception as error:  # the function is rebuilding or failed: the next tick tries again
            print(f"[scheduler] invoke failed: {error}", flush=True)


if __name__ == "__main__":
    main()
