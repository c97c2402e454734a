#!/usr/bin/env python3
"""Helpers of tests/realworld/heartbeat_forwarding.sh: the exporters' and Prometheus'
configs, the heartbeat client that reports through the proxy, and the checks on every
owning replica's API. Standard library only, loopback only.

Each check prints what it saw and exits non-zero when it fails, so the shell script can
retry it until its deadline.
"""

import hashlib
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request

SHARDS = 3
REPLICAS = ["a", "b"]


def hashmod(name, modulus):
    """Prometheus' hashmod, only to pick one agent per shard and find its owners."""
    return int.from_bytes(hashlib.md5(name.encode()).digest()[8:], "big") % modulus


def agents():
    """One heartbeat agent per shard: the first `cron-N` names that fall in it."""
    chosen = {}
    n = 0
    while len(chosen) < SHARDS:
        name = f"cron-{n}"
        chosen.setdefault(hashmod(name, SHARDS), name)
        n += 1
    return [chosen[s] for s in range(SHARDS)]


def token(name):
    return f"token-of-{name}"


def configs(out_dir, period, grace):
    """The exporters' config (the same for all six) and the token files; prints the agent
    names as a shell assignment."""
    names = agents()
    lines = ["# Written by tests/realworld/heartbeat_forwarding.py.\n", "agents:\n"]
    for name in names:
        path = os.path.join(out_dir, f"{name}.token")
        with open(path, "w", encoding="utf-8") as f:
            f.write(token(name) + "\n")
        lines.append(
            f"  - name: {name}\n    type: cron\n"
            f"    heartbeat: {{period: {period}, grace: {grace}, token_file: {path}}}\n"
        )
    with open(os.path.join(out_dir, "exporter.yaml"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    print(f"AGENTS='{' '.join(names)}'")
    return 0


def prometheus_config(out, exporters_json, alertmanager, rules_glob):
    """The scrape config of docs/several-exporters.md: one target group per
    replica set with its `replica` label, 1s intervals."""
    exporters = json.loads(exporters_json)  # {"a": ["127.0.0.1:P", ...], "b": [...]}
    lines = [
        "global:\n",
        "  scrape_interval: 1s\n",
        "  evaluation_interval: 1s\n",
        "rule_files:\n",
        f"  - {rules_glob}\n",
        "alerting:\n",
        "  alertmanagers:\n",
        f"    - static_configs: [{{targets: ['{alertmanager}']}}]\n",
        "scrape_configs:\n",
        "  - job_name: agent-health-exporter\n",
        "    scrape_timeout: 1s\n",
        "    static_configs:\n",
    ]
    for replica, targets in exporters.items():
        lines.append(f"      - targets: {json.dumps(targets)}\n")
        lines.append(f"        labels: {{replica: {replica}}}\n")
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return 0


def post(url, bearer):
    request = urllib.request.Request(
        url, data=b"", method="POST", headers={"Authorization": f"Bearer {bearer}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def client(proxy, every, out, stop_file):
    """Reports every agent every `every` seconds through the proxy until `stop_file`
    exists, with other requests between rounds; keeps {agent: {"sent": n, "answers": {status: n}}} in `out`."""
    names = agents()
    tally = {name: {"sent": 0, "answers": {}} for name in names}
    every = float(every)
    next_round = time.monotonic()
    while not os.path.exists(stop_file):
        for name in names:
            status = post(f"{proxy}/api/v1/agents/{name}/heartbeat", token(name))
            tally[name]["sent"] += 1
            answers = tally[name]["answers"]
            answers[str(status)] = answers.get(str(status), 0) + 1
        # Other traffic through the proxy between rounds, a random amount, so that the
        # round-robin does not send an agent's reports to the same exporters every time.
        for _ in range(random.randrange(SHARDS * len(REPLICAS))):
            try:
                with urllib.request.urlopen(f"{proxy}/-/healthy", timeout=5):
                    pass
            except OSError:
                pass
        with open(out + ".tmp", "w", encoding="utf-8") as f:
            json.dump(tally, f)
        os.replace(out + ".tmp", out)
        next_round += every
        time.sleep(max(0.0, next_round - time.monotonic()))
    return 0


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def successes(exporter, name):
    """The exporter's agent_probes_total{result="success"} for `name`."""
    with urllib.request.urlopen(f"http://{exporter}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("agent_probes_total{") and f'agent="{name}"' in line \
                    and 'result="success"' in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def check_owners(shards_json, tally_file):
    """Every owning replica of every agent: healthy, no `missed` (nor any failure) in its
    API history, and every report the client sent counted (a report answered 2xx by the
    proxy is recorded on both owners)."""
    shards = json.loads(shards_json)  # {"0": ["127.0.0.1:P", "127.0.0.1:Q"], ...}
    with open(tally_file, encoding="utf-8") as f:
        tally = json.load(f)
    ok = True
    for name in agents():
        for exporter in shards[str(hashmod(name, SHARDS))]:
            answer = get_json(f"http://{exporter}/api/v1/agents/{name}")
            history = answer.get("history", [])
            missed = [h for h in history if h.get("reason") == "missed"]
            failed = [h for h in history if h.get("reason")]
            count = successes(exporter, name)
            print(
                f"  {name} at {exporter}: {answer['status']}, {int(count)} reports counted "
                f"of {tally[name]['sent']} sent, {len(missed)} missed, {len(failed)} failed"
            )
            if answer["status"] != "healthy" or missed or failed:
                ok = False
    return 0 if ok else 1


def check_counts(shards_json, tally_file):
    """Once the client stopped: each owner counted exactly the reports the proxy took."""
    shards = json.loads(shards_json)
    with open(tally_file, encoding="utf-8") as f:
        tally = json.load(f)
    ok = True
    for name in agents():
        answers = tally[name]["answers"]
        taken = sum(n for status, n in answers.items() if status.startswith("2"))
        refused = {s: n for s, n in answers.items() if not s.startswith("2")}
        for exporter in shards[str(hashmod(name, SHARDS))]:
            count = successes(exporter, name)
            print(f"  {name} at {exporter}: {int(count)} counted, {taken} taken by the proxy, refused {refused}")
            if count != taken or refused:
                ok = False
    return 0 if ok else 1


def main():
    command, args = sys.argv[1], sys.argv[2:]
    commands = {
        "configs": lambda: configs(*args),
        "prometheus-config": lambda: prometheus_config(*args),
        "client": lambda: client(*args),
        "check-owners": lambda: check_owners(*args),
        "check-counts": lambda: check_counts(*args),
    }
    if command not in commands:
        sys.exit(f"unknown command {command}")
    return commands[command]()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RuntimeError, KeyError) as error:
        print(f"  {error}")
        sys.exit(1)
