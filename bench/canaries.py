#!/usr/bin/env python3
"""The canary benchmark behind bench/canaries.sh (run that: it builds and installs what this
needs).

One exporter probes P agents over HTTP (examples/bench_target.rs on loopback) and C MCP agents
(tests/peers/mcp_canary_server.py, the official SDK, in the peers' venv). Two windows of the same
length, one after the other, in the same process:

1. without canaries: the fleet as it is, the C MCP agents probed like the others;
2. with canaries: the config reloaded (SIGHUP) with a canary on each MCP agent (`tools/call`
   echo every --canary-interval), the same agents and probes otherwise.

Reported per window: the probe start delay p50/p99 (agent_exporter_probe_start_delay_seconds:
how late each health probe started against its slot), probes started, missed slots, canaries
run and failed, canary duration p50/p99, and the exporter's CPU. The CPU per canary is the
difference of the two windows' exporter CPU divided by the canaries of the second: what a canary
adds, its HTTP exchange, JSON and bookkeeping included. Bounded in time; every process it starts
is stopped before it returns; figures are reported, never judged.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from bench import (cpu_seconds, delay_buckets, duration, free_port, log, print_table, quantile,
                   scrape_text, spawn, start_target, stop, wait_ready)

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "..", "tests", "peers")


def write_config(path, args, listens, mcp_ports, canaries):
    with open(path, "w") as f:
        f.write(f"defaults:\n  interval: {int(args.interval * 1000)}ms\nagents:\n")
        for i in range(args.probed_agents):
            host, port = listens[i % len(listens)]
            f.write(f"  - {{name: agent-{i:06d}, type: bench, url: 'http://{host}:{port}/health'}}\n")
        for i in range(args.canary_agents):
            f.write(f"  - name: tools-{i:04d}\n    type: tools\n"
                    f"    url: http://127.0.0.1:{mcp_ports[i % len(mcp_ports)]}/mcp\n    protocol: mcp\n"
                    f"    interval: {int(args.mcp_interval * 1000)}ms\n")
            if canaries:
                f.write(f"    canary:\n      interval: {int(args.canary_interval * 1000)}ms\n"
                        f"      timeout: {int(args.canary_timeout * 1000)}ms\n"
                        "      mcp: {tool: echo, arguments: {text: canary}, expect: {contains: canary}}\n")


def family_buckets(text, family):
    """Cumulative counts by `le`, summed over every series of a classic histogram."""
    out = {}
    for m in re.finditer(rf'^{family}_bucket\{{(?:[^}}]*,)?le="([^"]+)"[^}}]*\}} (\S+)$', text, re.M):
        le = float(m.group(1))
        out[le] = out.get(le, 0.0) + float(m.group(2))
    return out


def counter_sum(text, family, labels=""):
    """The sum of the series of `family` whose labels contain `labels` (e.g. 'result="failure"')."""
    total = 0.0
    for m in re.finditer(rf'^{family}\{{([^}}]*)\}} (\S+)$', text, re.M):
        if labels in m.group(1):
            total += float(m.group(2))
    return total


def missed_slots(text):
    return counter_sum(text, "agent_exporter_probe_slots_missed_total") + sum(
        float(v) for v in re.findall(r"^agent_exporter_probe_slots_missed_total (\S+)$", text, re.M))


def run_seconds(pid):
    """CPU time of the live threads of `pid` in nanoseconds from the scheduler
    (/proc/PID/task/*/schedstat), finer than the 10 ms ticks of /proc/PID/stat: a window of a
    few seconds costs the exporter only tens of milliseconds. Falls back to the ticks."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except OSError:
        return cpu_seconds(pid)


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def measure(proc, port, seconds):
    res = {"loadavg": load_average()}
    before = scrape_text(port)
    c0, t0 = run_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = run_seconds(proc.pid), time.monotonic()
    after = scrape_text(port)
    res["cpu_seconds"] = c1 - c0
    res["cpu_percent"] = (c1 - c0) / (t1 - t0) * 100
    b0, b1 = delay_buckets(before), delay_buckets(after)
    res["delay"] = (quantile(0.5, b0, b1), quantile(0.99, b0, b1))
    res["probes"] = b1.get(float("inf"), 0) - b0.get(float("inf"), 0)
    res["missed"] = missed_slots(after) - missed_slots(before)
    res["canaries"] = (counter_sum(after, "agent_canary_runs_total")
                       - counter_sum(before, "agent_canary_runs_total"))
    res["canary_failures"] = (counter_sum(after, "agent_canary_runs_total", 'result="failure"')
                              - counter_sum(before, "agent_canary_runs_total", 'result="failure"'))
    res["reasons"] = {}
    for reason in sorted(set(re.findall(r'^agent_canary_failures_total\{[^}]*reason="(\w+)"', after, re.M))):
        n = (counter_sum(after, "agent_canary_failures_total", f'reason="{reason}"')
             - counter_sum(before, "agent_canary_failures_total", f'reason="{reason}"'))
        if n:
            res["reasons"][reason] = n
    d0 = family_buckets(before, "agent_canary_duration_seconds")
    d1 = family_buckets(after, "agent_canary_duration_seconds")
    res["canary_duration"] = (quantile(0.5, d0, d1), quantile(0.99, d0, d1))
    return res


def start_mcp_peer(python):
    peer = spawn([python, "-u", os.path.join(PEERS, "mcp_canary_server.py"), "--json", "--stateless"],
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = peer.stdout.readline()
    if not line.startswith("ready "):
        stop(peer)
        raise SystemExit(f"the MCP peer did not start ({python}): {line!r}; run tests/peers/setup-venv.sh")
    return peer, int(line.split()[1])


def wait_canaries(port, seconds):
    """Waits until every canary agent has run at least once after the reload; how many did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if counter_sum(scrape_text(port), "agent_canary_runs_total") > 0:
            return True
        time.sleep(0.5)
    return False


def run(args, listens, mcp_ports, workdir):
    config = os.path.join(workdir, "fleet.yaml")
    write_config(config, args, listens, mcp_ports, canaries=False)
    port = free_port()
    log_path = os.path.join(workdir, "exporter.log")
    with open(log_path, "w") as log_file:
        proc = spawn([args.exporter_bin, f"--config.file={config}",
                      f"--web.listen-address=127.0.0.1:{port}"], stderr=log_file)
    windows = {}
    try:
        ready = wait_ready(proc, port, "/-/ready", 120)
        log(f"exporter ready after {ready:.2f} s; warm-up {args.warmup:g} s")
        time.sleep(args.warmup)
        log(f"window without canaries: {args.duration:g} s")
        windows["without"] = measure(proc, port, args.duration)
        write_config(config, args, listens, mcp_ports, canaries=True)
        proc.send_signal(signal.SIGHUP)
        if not wait_canaries(port, 30):
            raise SystemExit(f"no canary ran within 30 s of the reload; see {log_path}")
        log(f"canaries on: warm-up {args.warmup:g} s")
        time.sleep(args.warmup)
        log(f"window with {args.canary_agents} canaries every {args.canary_interval:g} s: {args.duration:g} s")
        windows["with"] = measure(proc, port, args.duration)
    finally:
        stop(proc)
    return windows, ready


def report(args, windows):
    ms = lambda s: "n/a" if s is None else f"{s * 1000:.2f} ms"
    without, with_ = windows["without"], windows["with"]
    header = ["measure", "without canaries", f"with {args.canary_agents} canaries"]
    rows = [
        ["probe start delay p50 / p99", *(f"{ms(w['delay'][0])} / {ms(w['delay'][1])}" for w in (without, with_))],
        ["health probes started", *(f"{w['probes']:.0f}" for w in (without, with_))],
        ["missed probe slots", *(f"{w['missed']:.0f}" for w in (without, with_))],
        ["canaries run / failed", *(f"{w['canaries']:.0f} / {w['canary_failures']:.0f}" for w in (without, with_))],
        ["failures by reason", "–", ", ".join(f"{r} {n:.0f}" for r, n in with_["reasons"].items()) or "none"],
        ["canary duration p50 / p99", "–", f"{ms(with_['canary_duration'][0])} / {ms(with_['canary_duration'][1])}"],
        ["exporter CPU, % of one core", *(f"{w['cpu_percent']:.1f}" for w in (without, with_))],
        ["load average at the start", without["loadavg"], with_["loadavg"]],
    ]
    print(f"{args.probed_agents:,} HTTP agents every {args.interval:g} s, {args.canary_agents} MCP "
          f"agents on {args.mcp_peers} MCP server processes probed every {args.mcp_interval:g} s, "
          f"canaries every {args.canary_interval:g} s "
          f"(timeout {args.canary_timeout:g} s), windows of {args.duration:g} s\n")
    print_table(header, rows)
    if with_["canaries"] > 0:
        per = (with_["cpu_seconds"] - without["cpu_seconds"]) / with_["canaries"]
        print(f"\nexporter CPU per canary: {per * 1e6:.0f} µs "
              f"(({with_['cpu_seconds']:.3f} s - {without['cpu_seconds']:.3f} s) / {with_['canaries']:.0f} canaries)")
    print("\nDelay quantiles: linear interpolation inside the classic buckets over the increase "
          "across each window. The CPU per canary is a difference of two windows: on a busy "
          "machine it moves with the load average; run longer windows for a steadier figure.")
    if with_["canaries"] == 0:
        raise SystemExit("no canary ran in the second window: the benchmark itself is broken")
    if without["probes"] == 0 or with_["probes"] == 0:
        raise SystemExit("no probe started in a window: the benchmark itself is broken")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probed-agents", type=int, default=1000)
    p.add_argument("--interval", type=duration, default=10.0, help="probe interval of the HTTP agents")
    p.add_argument("--canary-agents", type=int, default=100)
    p.add_argument("--mcp-interval", type=duration, default=30.0, help="probe interval of the MCP agents")
    p.add_argument("--canary-interval", type=duration, default=10.0,
                   help="30 times as often as the default 5m: enough canaries per window for a CPU figure")
    p.add_argument("--canary-timeout", type=duration, default=5.0)
    p.add_argument("--mcp-peers", type=int, default=2,
                   help="MCP server processes (Python) that the canary agents share")
    p.add_argument("--duration", type=duration, default=30.0, help="each window")
    p.add_argument("--warmup", type=duration, default=10.0, help="before each window")
    p.add_argument("--addresses", type=int, default=4, help="127.0.0.x addresses of the fleet")
    p.add_argument("--ports", type=int, default=4, help="ports per address")
    p.add_argument("--peers-python", default=os.environ.get("AHE_PEERS_PYTHON") or
                   os.path.join(HERE, "..", "target", "peers-venv", "bin", "python"),
                   help="python of tests/peers/setup-venv.sh's venv (default: AHE_PEERS_PYTHON)")
    p.add_argument("--exporter-bin", default="target/release/agent-health-exporter")
    p.add_argument("--target-bin", default="target/release/examples/bench_target")
    args = p.parse_args()
    if args.canary_timeout >= args.canary_interval:
        p.error("--canary-timeout must be below --canary-interval")
    workdir = tempfile.mkdtemp(prefix="ahe-bench-canary-")
    target, listens = start_target(args, workdir)
    peers = []
    try:
        for _ in range(args.mcp_peers):
            peers.append(start_mcp_peer(args.peers_python))
        mcp_ports = [port for _, port in peers]
        log(f"{args.probed_agents} HTTP agents on {len(listens)} listeners, "
            f"{args.canary_agents} MCP agents on 127.0.0.1:{','.join(map(str, mcp_ports))}")
        windows, _ = run(args, listens, mcp_ports, workdir)
    finally:
        for peer, _ in peers:
            peer.stdin.close()
            stop(peer)
        stop(target)
    report(args, windows)
    print(f"\nlogs and configs: {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
