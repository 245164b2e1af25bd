"""Local schedule: what EventBridge Scheduler does for the sweeper in AWS, for the local stack.

Invokes a function through cargo-lambda's invoke endpoint every INTERVAL seconds with the
payload the template's schedule sends, and prints what each invocation answered.

Usage: python scheduler.py INTERVAL_SECONDS INVOKE_URL
"""

import json
import sys
import time
import urllib.request

PAYLOAD = {"source": "nodeai.scheduler", "detail-type": "Sweep stranded executions", "detail": {}}


def main():
    interval, invoke_url = float(sys.argv[1]), sys.argv[2]
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
