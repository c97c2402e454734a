#!/usr/bin/env python3
"""Helpers of tests/realworld/several_exporters.sh: exporter and Prometheus configs for
the shard/HA and location topologies, and the checks against the live Prometheus and the
webhook receiver's alert log. Standard library only, loopback only.

Each check prints what it saw and exits non-zero when it fails, so the shell script can
retry it until its deadline.
"""

import hashlib
import json
import sys
import urllib.parse
import urllib.request

SHARDS = 3
REPLICAS = ["a", "b"]
LOCATIONS = ["eu", "us", "ap"]
SHADOW = "shadow"  # a demo fleet agent that refuses connections: an unreachable target


def hashmod(name, modulus):
    """Only to pick test agents in a given shard; the proof compares with Prometheus."""
    return int.from_bytes(hashlib.md5(name.encode()).digest()[8:], "big") % modulus


def api(base, path, params=None):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{path}: {body}")
    return body["data"]


def query(base, expr):
    return api(base, "/api/v1/query", {"query": expr})["result"]


def fleet_agents(fleet_file):
    with open(fleet_file, encoding="utf-8") as f:
        agents = json.load(f)["agents"]
    return {name: addr for name, addr in sorted(agents.items())}


def write_config(path, agents, overrides):
    """One config for an exporter: every agent of the fleet but the shadow, with the
    targets in `overrides` pointing at the shadow (this exporter cannot reach them)."""
    lines = [
        "# Written by tests/realworld/several_exporters.py.\n",
        "defaults: {interval: 2s, timeout: 1s}\n",
        "agents:\n",
    ]
    for name, addr in agents.items():
        if name == SHADOW:
            continue
        target = agents[SHADOW] if name in overrides else addr
        lines.append(f"  - name: {name}\n    type: worker\n    url: http://{target}/health\n")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)


def configs(fleet_file, out_dir, mode):
    """Writes the exporters' configs and prints the agents chosen for the scenarios as
    shell assignments. Each exporter starts on the plain config (`exporter-NAME.yaml`);
    `exporter-NAME.override.yaml` is the one the script swaps in and reloads once
    Prometheus scrapes every exporter."""
    agents = fleet_agents(fleet_file)
    names = [n for n in agents if n != SHADOW]
    if mode == "shards":
        # X: replica b cannot reach it (shard 0); Y: taken down for everyone (shard 2).
        x = next(n for n in names if hashmod(n, SHARDS) == 0)
        y = next(n for n in names if hashmod(n, SHARDS) == 2)
        for replica in REPLICAS:
            write_config(f"{out_dir}/exporter-{replica}.yaml", agents, set())
        write_config(f"{out_dir}/exporter-b.override.yaml", agents, {x})
        print(f"PARTIAL_AGENT={x} DOWN_AGENT={y}")
    elif mode == "locations":
        # ONE: only eu cannot reach it (1 of 3: no quorum); TWO: eu and us cannot (2 of 3).
        one, two = names[0], names[1]
        for location in LOCATIONS:
            write_config(f"{out_dir}/exporter-{location}.yaml", agents, set())
        write_config(f"{out_dir}/exporter-eu.override.yaml", agents, {one, two})
        write_config(f"{out_dir}/exporter-us.override.yaml", agents, {two})
        print(f"ONE_OF_THREE={one} TWO_OF_THREE={two}")
    else:
        sys.exit(f"unknown mode {mode}")
    return 0


def prometheus_config(out, mode, exporters_json, fleet_file, alertmanager, rules_glob):
    """The scrape config of docs/several-exporters.md (with this
    run's addresses and 2s intervals), plus for the shard run a job whose targets are the
    agent names and whose hashmod relabel rule computes their shard: Prometheus' own
    assignment, read back from /api/v1/targets."""
    exporters = json.loads(exporters_json)  # {"a": ["127.0.0.1:P0", ...], ...}
    label = "replica" if mode == "shards" else "location"
    lines = [
        "global:\n",
        "  scrape_interval: 2s\n",
        "  evaluation_interval: 2s\n",
        "rule_files:\n",
        f"  - {rules_glob}\n",
        "alerting:\n",
        "  alertmanagers:\n",
        f"    - static_configs: [{{targets: ['{alertmanager}']}}]\n",
        "scrape_configs:\n",
        "  - job_name: agent-health-exporter\n",
        "    scrape_timeout: 2s\n",
        "    static_configs:\n",
    ]
    for value, targets in exporters.items():
        lines.append(f"      - targets: {json.dumps(targets)}\n")
        lines.append(f"        labels: {{{label}: {value}}}\n")
    if mode == "shards":
        lines += [
            "  # Not scraped for real (1h interval, port 9 answers nothing): only its\n",
            "  # relabeled target labels are read.\n",
            "  - job_name: shard-check\n",
            "    scrape_interval: 1h\n",
            "    scrape_timeout: 1s\n",
            "    static_configs:\n",
        ]
        for name in fleet_agents(fleet_file):
            if name != SHADOW:
                lines.append(f"      - {{targets: ['127.0.0.1:9'], labels: {{agent: {name}}}}}\n")
        lines += [
            "    relabel_configs:\n",
            "      - source_labels: [agent]\n",
            f"        modulus: {SHARDS}\n",
            "        target_label: shard\n",
            "        action: hashmod\n",
        ]
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return 0


def check_assignment(prom, fleet_file, shards_json):
    """Every agent is probed by exactly one exporter per replica, both of the shard that
    Prometheus' hashmod gives its name."""
    names = {n for n in fleet_agents(fleet_file) if n != SHADOW}
    shard_of_instance = {i: s for s, pair in json.loads(shards_json).items() for i in pair}
    targets = api(prom, "/api/v1/targets", {"state": "active"})["activeTargets"]
    prometheus_shard = {
        t["labels"]["agent"]: int(t["labels"]["shard"])
        for t in targets
        if t["labels"].get("job") == "shard-check"
    }
    probed = {}
    for r in query(prom, 'agent_last_probe_timestamp_seconds{job="agent-health-exporter"} > 0'):
        m = r["metric"]
        probed.setdefault(m["agent"], []).append((m["replica"], int(shard_of_instance[m["instance"]])))
    failures = []
    for name in sorted(names):
        seen = sorted(probed.get(name, []))
        want = prometheus_shard.get(name)
        if want is None:
            failures.append(f"{name}: no shard-check target")
        elif seen != [("a", want), ("b", want)]:
            failures.append(f"{name}: probed by {seen}, Prometheus' hashmod says shard {want} on a and b")
    counts = [sum(1 for s in prometheus_shard.values() if s == i) for i in range(SHARDS)]
    print(f"  {len(names)} agents; Prometheus' hashmod puts {counts} in shards 0..{SHARDS - 1}; "
          f"{len(probed)} agents probed")
    for failure in failures[:10]:
        print(f"  {failure}")
    return 1 if failures or len(prometheus_shard) != len(names) else 0


def panel_value(prom, dashboard, title):
    """The single value of a dashboard panel's first query, with Grafana's variables set
    to "All" as tests/realworld/helpers.py does."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    from helpers import grafana_expr  # noqa: E402 (a sibling file, not a package)

    with open(dashboard, encoding="utf-8") as f:
        board = json.load(f)
    panels = [p for top in board["panels"] for p in [top, *top.get("panels", [])]]
    panel = next(p for p in panels if p["title"] == title)
    result = query(prom, grafana_expr(panel["targets"][0]["expr"]))
    print(result[0]["value"][1] if len(result) == 1 else f"{len(result)} series")
    return 0


def load_alerts(alerts_file):
    try:
        with open(alerts_file, encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def matching(alerts_file, since, status, matchers):
    want = dict(m.split("=", 1) for m in matchers)
    return [
        a for a in load_alerts(alerts_file)
        if a["received"] >= since and a["status"] == status
        and all(a["labels"].get(k) == v for k, v in want.items())
    ]


def find(alerts_file, since, status, *matchers):
    """Succeeds once an alert with these labels was received since `since`."""
    found = matching(alerts_file, since, status, matchers)
    if found:
        a = found[0]
        print(f"  {a['receiver_path']} {status} {a['labels']} {a['annotations'].get('description', '')}")
    return 0 if found else 1


def count(alerts_file, since, status, *matchers):
    """Distinct alerts (labels and start) received: Alertmanager sends a group again, with
    every alert in it, when another alert joins the group, and that is no second alert."""
    distinct = {
        (tuple(sorted(a["labels"].items())), a.get("startsAt"))
        for a in matching(alerts_file, since, status, matchers)
    }
    print(len(distinct))
    return 0


def none_about_agents(alerts_file, since, *except_agents):
    """No agent alert (one with an `agent` label) received since `since`, but for the
    agents named."""
    bad = [
        a for a in load_alerts(alerts_file)
        if a["received"] >= since and a["status"] == "firing"
        and "agent" in a["labels"] and a["labels"]["agent"] not in except_agents
    ]
    for a in bad[:10]:
        print(f"  unexpected: {a['labels'].get('alertname')} {a['labels'].get('agent')}")
    return 1 if bad else 0


def main():
    command, args = sys.argv[1], sys.argv[2:]
    commands = {
        "configs": lambda: configs(*args),
        "prometheus-config": lambda: prometheus_config(*args),
        "check-assignment": lambda: check_assignment(*args),
        "find": lambda: find(args[0], float(args[1]), *args[2:]),
        "count": lambda: count(args[0], float(args[1]), *args[2:]),
        "panel-value": lambda: panel_value(*args),
        "none-about-agents": lambda: none_about_agents(args[0], float(args[1]), *args[2:]),
    }
    if command not in commands:
        sys.exit(f"unknown command {command}")
    return commands[command]()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RuntimeError) as error:
        print(f"  {error}")
        sys.exit(1)
