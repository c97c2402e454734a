#!/usr/bin/env python3
"""Helpers of tests/realworld/alerting.sh: free ports, config adaptation, and the
checks against the live Prometheus. Standard library only, loopback only.

Each subcommand prints what it checked and exits non-zero when the check fails,
so the shell script can retry it until its deadline.
"""

import json
import random
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# What Grafana would put in place of its variables. `.*` selects every value,
# as the dashboards' "All" does; 1m spans several 5s scrapes.
GRAFANA_SUBSTITUTIONS = [
    (r"\$__rate_interval\b|\$\{__rate_interval\}", "1m"),
    (r"\$__interval\b|\$\{__interval\}", "15s"),
    (r"\$__range_s\b|\$\{__range_s\}", "300"),
    (r"\$__range\b|\$\{__range\}", "5m"),
    (r"\$\{?(job|instance|replica|location|agent_type|agent)(:[a-z]+)?\}?", ".*"),
]

# Dashboard variables over target labels that only a scrape config with several
# exporters sets (docs/several-exporters.md): without them the variable
# is empty and its `.*` matches every series, so no values is not a failure unless
# the caller requires the label (`check-dashboards --require replica ...`).
OPTIONAL_VARIABLES = {"replica", "location"}


def grafana_expr(expr):
    for pattern, value in GRAFANA_SUBSTITUTIONS:
        expr = re.sub(pattern, value, expr)
    if "$" in expr:
        raise ValueError(f"unsubstituted variable left in: {expr}")
    return expr


def ephemeral_range():
    """The ports the kernel hands out to bind(0) and to outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def pick_free_ports(count):
    """`count` distinct ports free on 127.0.0.1, below the kernel's ephemeral range.

    A port picked here is released before its user binds it. Were it an ephemeral
    port, any process binding port 0 or connecting meanwhile (the demo fleet binds
    dozens, scripts run side by side) could take it. Below the range only another
    pick like this one can, and picks are random over thousands of ports.
    """
    low, _ = ephemeral_range()
    first, last = (10000, low - 1) if low > 12000 else (1024, low - 1)
    rng = random.SystemRandom()
    sockets, tries = [], 0
    try:
        while len(sockets) < count:
            tries += 1
            if tries > 10000:
                raise RuntimeError(f"no {count} free ports in {first}-{last}")
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", rng.randint(first, last)))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_ports(count):
    print(" ".join(str(port) for port in pick_free_ports(count)))


def api(base, path, params=None):
    data = urllib.parse.urlencode(params or {}).encode()
    request = urllib.request.Request(base + path, data=data if params else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{path}: {body}")
    return body["data"]


def query(base, expr):
    return api(base, "/api/v1/query", {"query": expr})["result"]


def adapt_exporter_config(source, fleet_file, tls_url, tls_ca, out, cadence="fast"):
    """deploy/demo-fleet.yaml with the demo fleet's real addresses (and, unless cadence is
    `production`, short intervals), plus one https agent (the demo fleet has no TLS) for
    the certificate panels."""
    with open(fleet_file, encoding="utf-8") as f:
        fleet = json.load(f)["agents"]
    lines = []
    agent = None
    for line in open(source, encoding="utf-8"):
        name = re.match(r"\s*- name:\s*(\S+)", line)
        if name:
            agent = name.group(1)
        if "demo-fleet:" in line:
            if agent not in fleet:
                sys.exit(f"{source}: agent {agent} is not served by the demo fleet")
            line = re.sub(r"demo-fleet:\d+", fleet[agent], line)
        if cadence != "production":
            line = re.sub(r"^(\s*)interval: \S+", r"\1interval: 5s", line)
            line = re.sub(r"^(\s*)timeout: \S+", r"\1timeout: 2s", line)
        lines.append(line)
    lines.append(
        "  # Added by tests/realworld/alerting.sh: an https agent with a certificate\n"
        "  # that expires in 10 days.\n"
        "  - name: vault\n"
        "    type: gateway\n"
        f"    url: {tls_url}\n"
        "    labels: {team: core}\n"
        f"    http: {{tls: {{ca_file: {tls_ca}}}}}\n"
    )
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(lines)


def check_target(base, job):
    targets = api(base, "/api/v1/targets")["activeTargets"]
    mine = [t for t in targets if t["labels"].get("job") == job]
    if not mine:
        print(f"  no target of job {job} yet")
        return 1
    for t in mine:
        print(f"  target {t['scrapeUrl']}: health={t['health']} {t.get('lastError', '')}")
    return 0 if all(t["health"] == "up" for t in mine) else 1


def check_native(base):
    """Native samples only arrive over protobuf: their presence proves the format."""
    ok = True
    raw = query(base, "agent_probe_duration_seconds")
    native = [r for r in raw if "histogram" in r]
    print(f"  agent_probe_duration_seconds: {len(raw)} series, {len(native)} with native histogram samples")
    ok &= bool(native)
    classic = query(base, "count(agent_probe_duration_seconds_bucket)")
    print(f"  agent_probe_duration_seconds_bucket series stored: {classic[0]['value'][1] if classic else 0}")
    q = query(base, "histogram_quantile(0.95, rate(agent_probe_duration_seconds[1m]))")
    values = {r["metric"].get("agent"): r["value"][1] for r in q}
    print(f"  histogram_quantile(0.95, rate(agent_probe_duration_seconds[1m])): {values}")
    ok &= any(v not in ("NaN",) for v in values.values())
    return 0 if ok else 1


def check_classic(base):
    """Without native histograms Prometheus keeps only the classic series."""
    raw = query(base, "agent_probe_duration_seconds")
    buckets = query(base, "count(agent_probe_duration_seconds_bucket)")
    count = int(buckets[0]["value"][1]) if buckets else 0
    print(f"  agent_probe_duration_seconds native series: {len(raw)}, _bucket series: {count}")
    q = query(base, "histogram_quantile(0.95, rate(agent_probe_duration_seconds_bucket[1m]))")
    values = {r["metric"].get("agent"): r["value"][1] for r in q}
    print(f"  histogram_quantile(0.95, rate(agent_probe_duration_seconds_bucket[1m])): {values}")
    return 0 if not raw and count and any(v != "NaN" for v in values.values()) else 1


def check_recording_rules(base, rules_file):
    """Every recording rule of the file has produced series (rule files are YAML, but a
    `record:` line is all that is needed here, so no YAML library is required)."""
    names = re.findall(r"^\s*- record:\s*(\S+)", open(rules_file, encoding="utf-8").read(), re.M)
    failures = 0
    for name in names:
        result = query(base, name)
        status = "ok  " if result else "FAIL"
        failures += not result
        print(f"    {status} {name}: {len(result)} series")
    return 1 if failures or not names else 0


def check_dashboards(base, files, required=(), skipped=()):
    failures = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            board = json.load(f)
        print(f"  {path} (uid {board['uid']}):")
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            definition = variable["query"] if isinstance(variable["query"], str) else variable["query"]["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", definition)
            selector, label = grafana_expr(m.group(1)), m.group(2)
            series = api(base, "/api/v1/series", {"match[]": selector})
            values = sorted({s[label] for s in series if label in s})
            optional = variable["name"] in OPTIONAL_VARIABLES and variable["name"] not in required
            status = "ok  " if values else ("none" if optional else "FAIL")
            failures += not values and not optional
            print(f"    {status} variable ${variable['name']}: {len(values)} values {values[:8]}")
        panels = []
        for panel in board["panels"]:
            panels.append(panel)
            panels.extend(panel.get("panels", []))
        for panel in panels:
            if panel.get("title") in skipped:
                print(f"    skip {panel['title']}: not exercised by this run")
                continue
            for t in panel.get("targets", []):
                expr = grafana_expr(t["expr"])
                try:
                    result = query(base, expr)
                except (urllib.error.HTTPError, RuntimeError) as error:
                    detail = error.read().decode() if isinstance(error, urllib.error.HTTPError) else error
                    print(f"    FAIL {panel['title']} [{t['refId']}]: query error {detail}")
                    failures += 1
                    continue
                status = "ok  " if result else "FAIL"
                failures += not result
                print(f"    {status} {panel['title']} [{t['refId']}]: {len(result)} series")
    return 1 if failures else 0


def panel_rows(base, dashboard, title, label, expected):
    """Runs the first query of a dashboard panel (variables at "All") and checks, for each
    `agent=value` of `expected`, that the agent's row has that value in `label` (`value`:
    the sample's value). Prints every row, so that the run shows what Grafana would."""
    with open(dashboard, encoding="utf-8") as f:
        board = json.load(f)
    panels = [p for top in board["panels"] for p in [top, *top.get("panels", [])]]
    panel = next(p for p in panels if p["title"] == title and p.get("targets"))
    rows = {}
    for r in query(base, grafana_expr(panel["targets"][0]["expr"])):
        value = r["value"][1] if label == "value" else r["metric"].get(label, "")
        rows.setdefault(r["metric"].get("agent", ""), []).append(value)
        shown = {k: v for k, v in r["metric"].items() if k not in ("job", "instance")}
        print(f"    {shown} {r['value'][1]}")
    failures = 0
    for pair in expected:
        agent, want = pair.split("=", 1)
        got = rows.get(agent, [])
        ok = got == [want]
        failures += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {title}: {agent} has {label} {got}, expected [{want!r}]")
    return 1 if failures else 0


def alerts_for(alerts_file, agent):
    """Every (alertname, status) the webhook received for one agent, one per line."""
    seen = set()
    try:
        with open(alerts_file, encoding="utf-8") as f:
            for line in f:
                a = json.loads(line)
                if a["labels"].get("agent") == agent:
                    seen.add((a["labels"].get("alertname", "?"), a["status"]))
    except FileNotFoundError:
        pass
    for alertname, status in sorted(seen):
        print(f"{alertname} {status}")
    return 0


def inhibited_by_agent_down(alertmanager_yml):
    """The alertname regex of the shipped inhibit rule whose source is AgentDown (read
    from the file as text: no YAML library is needed for one rule)."""
    text = open(alertmanager_yml, encoding="utf-8").read()
    m = re.search(r"source_matchers: \['alertname=\"AgentDown\"'\]\s*target_matchers:\s*"
                  r"- alertname=~\"([^\"]+)\"", text)
    if not m:
        sys.exit(f"{alertmanager_yml}: no inhibit rule with source AgentDown")
    return m.group(1)


def only_agent_down(base, alertmanager_yml, agent, seconds):
    """Every alert Prometheus had about the agent (pending or firing) over the last
    `seconds`: AgentDown must be among them, and any other must be one that Alertmanager
    inhibits under AgentDown; AgentProbesStale, not inhibited, must not be there at all."""
    inhibited = inhibited_by_agent_down(alertmanager_yml)
    result = query(base, f'count by (alertname, alertstate) (count_over_time(ALERTS{{agent="{agent}"}}[{seconds}s]))')
    failures = 0
    names = set()
    for r in result:
        name, state = r["metric"]["alertname"], r["metric"]["alertstate"]
        names.add(name)
        if name == "AgentDown":
            verdict = "ok  "
        elif re.fullmatch(inhibited, name):
            verdict = "ok   (inhibited by AgentDown in Alertmanager)"
        else:
            verdict, failures = "FAIL (not inhibited by AgentDown)", failures + 1
        print(f"    {name} {state} within the last {seconds}s: {verdict}")
    if "AgentDown" not in names:
        print(f"    FAIL no AgentDown about {agent} in Prometheus")
        failures += 1
    return 1 if failures else 0


def find_alert(alerts_file, alertname, agent, status, since):
    """Prints the arrival time of the first matching alert received after `since`."""
    try:
        lines = open(alerts_file, encoding="utf-8").readlines()
    except FileNotFoundError:
        return 1
    for line in lines:
        a = json.loads(line)
        labels = a["labels"]
        if (
            labels.get("alertname") == alertname
            and labels.get("agent") == agent
            and a["status"] == status
            and a["received"] >= since
        ):
            print(f"{a['received']:.3f} {a['receiver_path']} severity={labels.get('severity')} "
                  f"runbook_url={a['annotations'].get('runbook_url')} summary={a['annotations'].get('summary')!r}")
            return 0
    return 1


def agent_sample(exporter, family, agent):
    """The value of one agent's series of `family`, read from the exporter's text exposition."""
    with urllib.request.urlopen(exporter + "/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(family + "{") and f'agent="{agent}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def last_probe(exporter, agent):
    """agent_last_probe_timestamp_seconds of one agent."""
    return agent_sample(exporter, "agent_last_probe_timestamp_seconds", agent)


def last_success(exporter, agent):
    """agent_last_success_timestamp_seconds of one agent (a heartbeat agent: its last heartbeat)."""
    return agent_sample(exporter, "agent_last_success_timestamp_seconds", agent)


def wait_fresh_probe(exporter, agent, seconds):
    """Returns right after the exporter finished a new probe of the agent: a failure
    injected then waits a whole interval for the next probe, the worst case."""
    deadline = time.time() + float(seconds)
    before = last_probe(exporter, agent)
    while time.time() < deadline:
        now = last_probe(exporter, agent)
        if now is not None and now != before:
            return 0
        time.sleep(0.05)
    print(f"  no new probe of {agent} within {seconds}s")
    return 1


def wait_am_alert(am, alertname, agent, since, seconds):
    """Waits until Alertmanager holds the alert; prints the seconds since `since`. `agent`
    is an agent's name, or label matchers such as `agent_type="gateway",severity="page"`
    for an alert about something else than one agent."""
    deadline = time.time() + float(seconds)
    matchers = agent.split(",") if "=" in agent else [f'agent="{agent}"']
    query_string = urllib.parse.urlencode(
        [("filter", f'alertname="{alertname}"')] + [("filter", m) for m in matchers] + [("active", "true")]
    )
    while time.time() < deadline:
        with urllib.request.urlopen(f"{am}/api/v2/alerts?{query_string}", timeout=5) as response:
            alerts = json.load(response)
        if alerts:
            print(f"{time.time() - float(since):.1f}")
            return 0
        time.sleep(0.25)
    print(f"  {alertname} for {agent} did not reach Alertmanager within {seconds}s", file=sys.stderr)
    return 1


def canary_verdicts(exporter, expected):
    """Each `agent=verdict` of `expected` against the agent's last canary run in the
    exporter's API (`canary.last`): `success`, or the failure reason."""
    failures = 0
    for pair in expected:
        agent, verdict = pair.split("=", 1)
        with urllib.request.urlopen(f"{exporter}/api/v1/agents/{agent}", timeout=10) as answer:
            canary = json.load(answer).get("canary") or {}
        last = canary.get("last") or {}
        got = "success" if last.get("result") == "success" else last.get("reason")
        ok = got == verdict
        failures += not ok
        reply = (last.get("reply") or "")[:40]
        print(f"    {'ok  ' if ok else 'FAIL'} {agent}: {got} (expected {verdict}), "
              f"{last.get('duration_seconds')}s, reply {reply!r}")
    return 1 if failures else 0


def wait_http(url, seconds):
    deadline = time.time() + float(seconds)
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return 0
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    return 1


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "free-ports":
        free_ports(int(args[0]))
        return 0
    if command == "adapt-exporter-config":
        adapt_exporter_config(*args)
        return 0
    if command == "check-target":
        return check_target(*args)
    if command == "check-native":
        return check_native(*args)
    if command == "check-classic":
        return check_classic(*args)
    if command == "check-recording-rules":
        return check_recording_rules(*args)
    if command == "check-dashboards":
        required, skipped = [], []
        while len(args) > 2 and args[1] in ("--require", "--skip-panel"):
            (required if args[1] == "--require" else skipped).append(args[2])
            args = args[:1] + args[3:]
        return check_dashboards(args[0], args[1:], required, skipped)
    if command == "panel-rows":
        return panel_rows(args[0], args[1], args[2], args[3], args[4:])
    if command == "only-agent-down":
        return only_agent_down(*args)
    if command == "alerts-for":
        return alerts_for(*args)
    if command == "find-alert":
        return find_alert(args[0], args[1], args[2], args[3], float(args[4]))
    if command == "wait-fresh-probe":
        return wait_fresh_probe(*args)
    if command == "wait-am-alert":
        return wait_am_alert(*args)
    if command == "canary-verdicts":
        return canary_verdicts(args[0], args[1:])
    if command == "wait-http":
        return wait_http(*args)
    if command == "query":
        result = query(args[0], args[1])
        print(json.dumps(result))
        return 0 if result else 1
    if command == "last-success":
        value = last_success(*args)
        print(value if value is not None else "")
        return 0 if value is not None else 1
    sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (urllib.error.URLError, ConnectionError, OSError) as error:
        print(f"  {error}")
        sys.exit(1)
