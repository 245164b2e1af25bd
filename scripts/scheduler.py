"""Local schedule: what EventBridge Scheduler does for NodeAI in AWS, for the local stack.

Two parts, both against the emulator:
- the sweeper's rate schedule: invokes a function through cargo-lambda's invoke endpoint every
  INTERVAL seconds with the payload the template's schedule sends, and prints each answer;
- wake-ups of parked executions: with --waits GROUP, every second it reads the one-time
  schedules (`at(YYYY-MM-DDTHH:MM:SS)`, UTC) the worker created in that schedule group, and for
  each one that is due sends its target's input to its target queue (an SQS ARN), then deletes
  it, as EventBridge Scheduler does with ActionAfterCompletion DELETE;
- schedule triggers: with --triggers GROUP, every second it reads the group's enabled
  recurring schedules (`cron(m h dom mon dow year)` in their time zone, `rate(n unit)`) and
  sends each fire time's input to the target queue, `<aws.scheduler.scheduled-time>` replaced
  by the fire time, as Scheduler does. A rate fires when first seen (Scheduler starts a rate
  with no start date at once), then every interval; a cron fires at each matching minute after
  it was first seen. Disabled schedules build no backlog.

Usage:
  python scheduler.py INTERVAL_SECONDS INVOKE_URL [--waits GROUP] [--triggers GROUP]
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


DAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}


def field_matches(field, value, names, low):
    """Whether `value` matches one cron field (`*`, `?`, n, a-b, lists, steps, names). The `L`,
    `W` and `#` forms never match here: the local scheduler does not fire them."""
    bare = field
    for name in list(names) + ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]:
        bare = bare.replace(name, "")
    if any(c in bare for c in "LW#"):
        return False
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step = part.split("/")
            step = int(step)
        if part in ("*", "?"):
            start, end = low, 10_000
        elif "-" in part:
            a, b = part.split("-")
            start, end = int(names.get(a, a)), int(names.get(b, b))
        else:
            start = end = int(names.get(part, part))
            if step > 1:
                end = 10_000
        if start <= value <= end and (value - start) % step == 0:
            return True
    return False


def cron_matches(expression, local):
    """Scheduler's `cron(m h dom mon dow year)` at a local minute (dow here is 0-6 from Sunday,
    named: NodeAI writes names)."""
    m, h, dom, mon, dow, _year = expression[5:-1].split()
    return (
        field_matches(m, local.minute, {}, 0)
        and field_matches(h, local.hour, {}, 0)
        and field_matches(dom, local.day, {}, 1)
        and field_matches(mon, local.month, MONTHS, 1)
        and field_matches(dow, (local.weekday() + 1) % 7, DAYS, 0)
    )


def rate_seconds(expression):
    n, unit = expression[5:-1].split()
    return int(n) * {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]


def fire_due_triggers(group):
    import zoneinfo

    scheduler, sqs = clients()
    queue_urls, last_seen, rate_next = {}, {}, {}

    def names():
        token = None
        while True:
            page = scheduler.list_schedules(GroupName=group, **({"NextToken": token} if token else {}))
            yield from (s["Name"] for s in page.get("Schedules", []))
            token = page.get("NextToken")
            if not token:
                return

    def fire(name, now):
        schedule = scheduler.get_schedule(GroupName=group, Name=name)
        expression = schedule["ScheduleExpression"]
        since = last_seen.get(name)
        last_seen[name] = now
        start, end = schedule.get("StartDate"), schedule.get("EndDate")
        if schedule.get("State", "ENABLED") != "ENABLED":
            rate_next.pop(name, None)
            return
        due = []
        if expression.startswith("rate("):
            at = rate_next.get(name, max(now, start) if start else now)
            while at <= now:
                due.append(at)
                at += datetime.timedelta(seconds=rate_seconds(expression))
            rate_next[name] = at
        elif expression.startswith("cron(") and since is not None:
            zone = zoneinfo.ZoneInfo(schedule.get("ScheduleExpressionTimezone") or "UTC")
            minute = since.replace(second=0) + datetime.timedelta(minutes=1)
            while minute <= now:
                local = minute.astimezone(zone)
                # A wall-clock minute that comes twice (autumn) fires once, at its first, as
                # in Scheduler: the second (fold 1) never does.
                if local.fold == 0 and cron_matches(expression, local):
                    due.append(minute)
                minute += datetime.timedelta(minutes=1)
        due = [at for at in due if (not start or at >= start) and (not end or at <= end)]
        target = schedule["Target"]
        queue_name = target["Arn"].split(":")[-1]
        for at in due:
            if queue_name not in queue_urls:
                queue_urls[queue_name] = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
            fire_time = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            body = target["Input"].replace("<aws.scheduler.scheduled-time>", fire_time)
            sqs.send_message(QueueUrl=queue_urls[queue_name], MessageBody=body)
            print(f"[scheduler] fired {name} for {fire_time}", flush=True)

    while True:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        try:
            listed = list(names())
        except Exception as error:  # the emulator restarting: try again next second
            print(f"[scheduler] triggers: {error}", flush=True)
            listed = []
        for name in listed:
            try:
                fire(name, now)
            except Exception as error:  # one schedule's fault never stops the others
                print(f"[scheduler] trigger {name}: {error}", flush=True)
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
    if "--triggers" in sys.argv:
        group = sys.argv[sys.argv.index("--triggers") + 1]
        create_group(group)
        threading.Thread(target=fire_due_triggers, args=(group,), daemon=True).start()
        print(f"[scheduler] firing schedule triggers of group {group}", flush=True)
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
