"""Heartbeats from a Python worker with the standard library only.

Call `run(task)` from the worker's periodic task (a Celery beat task, a Prefect flow): it
reports the start, then a success, or a failure with the exception's text, and re-raises.
`beat()` alone is a plain heartbeat for a loop that has no runs.

    HEARTBEAT_URL=http://exporter:10056/api/v1/agents/indexer-worker-7/heartbeat
    HEARTBEAT_TOKEN_FILE=/run/secrets/indexer-hb
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

URL = os.environ.get("HEARTBEAT_URL", "")
TOKEN_FILE = os.environ.get("HEARTBEAT_TOKEN_FILE", "")


def report(action="", duration=None, message=None, timeout=5.0):
    """POSTs one report; returns the exporter's answer, or None when it was not delivered
    (a monitoring hiccup must never fail the work itself)."""
    body = {}
    if duration is not None:
        body["duration_seconds"] = duration
    if message is not None:
        body["message"] = message[:200]
    with open(TOKEN_FILE, encoding="utf-8") as f:
        token = f.read().strip()
    request = urllib.request.Request(
        URL + action,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.load(answer)
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"heartbeat {action or '/'} not delivered: {e}", file=sys.stderr)
        return None


def beat():
    return report("")


def run(task):
    """Runs `task()` as one reported run, timed here."""
    report("/start")
    started = time.monotonic()
    try:
        result = task()
    except Exception as e:
        report("/fail", duration=time.monotonic() - started, message=f"{type(e).__name__}: {e}")
        raise
    report("", duration=time.monotonic() - started)
    return result


if __name__ == "__main__":
    # `worker.py ok` runs a task that succeeds, `worker.py fail` one that raises.
    def task():
        time.sleep(0.2)
        if sys.argv[1:] == ["fail"]:
            raise RuntimeError("queue unreachable")
        return "done"

    try:
        print(run(task))
    except RuntimeError:
        sys.exit(1)
