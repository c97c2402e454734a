#!/usr/bin/env python3
"""The heartbeat benchmark behind bench/heartbeats.sh (run that: it builds and installs what this
needs).

One exporter holds H heartbeat agents and P probed agents (served by examples/bench_target.rs on
loopback). Three windows of the same length, one after the other:

1. quiet: probing only, for the probe start delay without heartbeats (the baseline);
2. paced: `wrk` sends heartbeats over many keep-alive connections, each waiting between an answer
   and its next request so that together they aim at --rate (Debian's wrk has no rate option:
   its Lua `delay()` does the pacing), each request for the next heartbeat agent in turn, with
   its bearer token: the latency at a given rate;
3. flat out: the same with fewer connections and no wait: the most the exporter takes.

Reported: heartbeats/s and latency p50/p99 as wrk measured them, non-2xx answers (a 429 would
mean the per-agent rate limit was hit: there are enough agents that it is not), the heartbeats
the exporter counted (`agent_probes_total` of the heartbeat agents), the exporter's CPU per
heartbeat (utime + stime of the server's threads, without the `probes` thread), and the probe
start delay p50/p99 of each window from `agent_exporter_probe_start_delay_seconds`. Bounded in
time; every process it starts is stopped before it returns; figures are reported, never judged.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from bench import (cpu_seconds, duration, free_port, log, print_table, quantile, spawn,
                   start_target, stop, thread_cpu_seconds, wait_ready, scrape_text, delay_buckets)

TOKEN = "bench-heartbeat-token-0123456789"
HB_TYPE = "heartbeat"


def write_config(path, token_file, heartbeats, probed, interval, period, listens):
    with open(path, "w") as f:
        f.write(f"defaults:\n  interval: {int(interval * 1000)}ms\nagents:\n")
        for i in range(probed):
            host, port = listens[i % len(listens)]
            f.write(f"  - {{name: agent-{i:06d}, type: bench, url: 'http://{host}:{port}/health'}}\n")
        for i in range(heartbeats):
            f.write(f"  - {{name: hb-{i:06d}, type: {HB_TYPE}, heartbeat: "
                    f"{{period: {int(period)}s, token_file: '{token_file}'}}}}\n")


def write_wrk_script(path, heartbeats, pace_ms=None):
    """Each wrk thread builds every agent's request once, then walks the agents in turn from its
    own starting point, so that the threads spread their reports over the whole fleet. With
    `pace_ms`, each connection waits that long on average between an answer and its next
    request (wrk's `delay()` takes whole milliseconds: the fraction is dithered)."""
    pace = "" if pace_ms is None else f"""
local pace_ms = {pace_ms}
function delay()
  return math.floor(pace_ms + math.random())
end
"""
    with open(path, "w") as f:
        f.write(f"""local agents = {heartbeats}
local token = "{TOKEN}"
local started = 0
function setup(thread)
  thread:set("index", started)
  started = started + 1
end
function init(args)
  requests = {{}}
  local headers = {{["Authorization"] = "Bearer " .. token}}
  for i = 0, agents - 1 do
    requests[i] = wrk.format("POST", string.format("/api/v1/agents/hb-%06d/heartbeat", i), headers)
  end
  next_agent = (index * 7919) % agents
end
function request()
  local r = requests[next_agent]
  next_agent = (next_agent + 1) % agents
  return r
end
{pace}""")


def seconds_of(text):
    """wrk's 1.23ms, 456.00us, 1.02s, 1.00m."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]


def parse_wrk(out):
    res = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if m:
        res["requests"] = int(m.group(1))
        res["seconds"] = seconds_of(m.group(2) + m.group(3))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["per_second"] = float(m.group(1)) if m else None
    for q in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)$", out, re.M)
        res[f"p{q}"] = seconds_of(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = m.group(1) if m else "none"
    return res


def heartbeats_counted(text):
    total = 0.0
    pattern = rf'^agent_probes_total\{{[^}}]*agent_type="{HB_TYPE}"[^}}]*result="success"\}} (\S+)$'
    for m in re.finditer(pattern, text, re.M):
        total += float(m.group(1))
    return total


def server_cpu(pid):
    """The exporter's CPU without its probing thread: what the HTTP server and the heartbeats
    cost, dead threads included."""
    return cpu_seconds(pid) - thread_cpu_seconds(pid, "probes")


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def measure(proc, port, seconds, wrk=None):
    """One window: `wrk` (a command) runs for it, or nothing does. Figures of the exporter from
    /proc and from two scrapes around the window."""
    res = {"loadavg": load_average()}
    before = scrape_text(port)
    s0, c0, t0 = server_cpu(proc.pid), cpu_seconds(proc.pid), time.monotonic()
    if wrk:
        w = subprocess.Popen([*wrk, f"-d{int(seconds)}s", "--latency"], stdout=subprocess.PIPE, text=True)
        out = w.stdout.read()
        _, _, usage = os.wait4(w.pid, 0)
        res["wrk"] = parse_wrk(out)
        res["wrk"]["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        res["wrk_output"] = out
    else:
        time.sleep(seconds)
    s1, c1, t1 = server_cpu(proc.pid), cpu_seconds(proc.pid), time.monotonic()
    after = scrape_text(port)
    res["server_cpu_seconds"] = s1 - s0
    res["cpu_percent"] = (c1 - c0) / (t1 - t0) * 100
    res["counted"] = heartbeats_counted(after) - heartbeats_counted(before)
    b0, b1 = delay_buckets(before), delay_buckets(after)
    res["delay"] = (quantile(0.5, b0, b1), quantile(0.99, b0, b1))
    res["probes"] = b1.get(float("inf"), 0) - b0.get(float("inf"), 0)
    return res


def run(args, listens, workdir):
    token_file = os.path.join(workdir, "hb.token")
    with open(token_file, "w") as f:
        f.write(TOKEN + "\n")
    config = os.path.join(workdir, "fleet.yaml")
    write_config(config, token_file, args.heartbeat_agents, args.probed_agents, args.interval,
                 args.period, listens)
    flat = os.path.join(workdir, "flat.lua")
    write_wrk_script(flat, args.heartbeat_agents)
    paced = os.path.join(workdir, "paced.lua")
    # A connection sends one request per answer time plus wait: about half a millisecond of the
    # period goes to the answer on loopback.
    pace_ms = max(0.0, args.paced_connections * 1000 / args.rate - 0.5) if args.rate else None
    write_wrk_script(paced, args.heartbeat_agents, pace_ms)
    port = free_port()
    log_path = os.path.join(workdir, "exporter.log")
    with open(log_path, "w") as log_file:
        proc = spawn([args.exporter_bin, f"--config.file={config}",
                      f"--web.listen-address=127.0.0.1:{port}"], stderr=log_file)
    url = f"http://127.0.0.1:{port}/"
    flat_wrk = ["wrk", f"-t{args.threads}", f"-c{args.connections}", "-s", flat, url]
    paced_wrk = ["wrk", f"-t{args.threads}", f"-c{args.paced_connections}", "-s", paced, url]
    windows = {}
    try:
        ready = wait_ready(proc, port, "/-/ready", 120)
        log(f"exporter ready after {ready:.2f} s; wrk warm-up (every agent reports)")
        # Every heartbeat agent turns healthy (one transition and log line each) before the windows.
        subprocess.run([*flat_wrk[:-1], f"-d{max(1, int(args.warmup))}s", url], check=True,
                       capture_output=True, text=True)
        log(f"quiet window: probing only, {args.duration:.0f} s")
        windows["quiet"] = measure(proc, port, args.duration)
        if args.rate:
            log(f"paced window: wrk -c{args.paced_connections} at about {args.rate:.0f}/s, {args.duration:.0f} s")
            windows["paced"] = measure(proc, port, args.duration, paced_wrk)
        log(f"flat-out window: wrk -c{args.connections}, {args.duration:.0f} s")
        windows["flat out"] = measure(proc, port, args.duration, flat_wrk)
    finally:
        stop(proc)
    with open(log_path) as f:
        missed = sum(int(m.group(1)) for m in re.finditer(r"missed_slots=(\d+)", f.read()))
    return windows, missed, ready


def report(args, windows, missed):
    ms = lambda s: "n/a" if s is None else f"{s * 1000:.2f} ms"
    names = list(windows)
    header = ["measure", *(
        "probing only" if n == "quiet" else
        f"wrk -c{args.paced_connections}, paced to ~{args.rate:,.0f}/s" if n == "paced" else
        f"wrk -c{args.connections}, flat out" for n in names)]

    def row(label, fn):
        cells = []
        for n in names:
            w = windows[n]
            cells.append(fn(w, w.get("wrk")) if w.get("wrk") or n == "quiet" else "")
        return [label, *cells]

    def per_heartbeat(w, k):
        return f"{w['server_cpu_seconds'] / k['requests'] * 1e6:.1f}" if k and k.get("requests") else "–"

    rows = [
        row("heartbeats/s (wrk)", lambda w, k: f"{k['per_second']:,.0f}" if k else "–"),
        row("latency p50 / p90 / p99 (wrk)",
            lambda w, k: f"{ms(k['p50'])} / {ms(k['p90'])} / {ms(k['p99'])}" if k else "–"),
        row("non-2xx / socket errors", lambda w, k: f"{k['non_2xx']} / {k['socket_errors']}" if k else "–"),
        row("heartbeats counted / sent", lambda w, k: f"{w['counted']:.0f} / {k['requests']}" if k else f"{w['counted']:.0f}"),
        row("reports per agent and second",
            lambda w, k: f"{k['per_second'] / args.heartbeat_agents:.1f}" if k else "–"),
        row("exporter CPU µs per heartbeat (no probing)", per_heartbeat),
        row("exporter CPU, % of one core", lambda w, k: f"{w['cpu_percent']:.1f}"),
        row("wrk CPU µs per request",
            lambda w, k: f"{k['cpu_seconds'] / k['requests'] * 1e6:.1f}" if k and k.get("requests") else "–"),
        row("probe start delay p50 / p99", lambda w, k: f"{ms(w['delay'][0])} / {ms(w['delay'][1])}"),
        row("probes started in the window", lambda w, k: f"{w['probes']:.0f}"),
        row("load average at the start", lambda w, k: w["loadavg"]),
    ]
    print(f"{args.heartbeat_agents:,} heartbeat agents, {args.probed_agents:,} probed agents every "
          f"{args.interval:g} s, {args.threads} wrk threads, windows of {args.duration:g} s; "
          f"missed probe slots over the run: {missed}\n")
    print_table(header, rows)
    print("\nDelay quantiles: linear interpolation inside the classic buckets of "
          "agent_exporter_probe_start_delay_seconds, over the increase across each window. "
          "wrk measures latency from sending a request to its answer, so a paced run does not "
          "count the wait before a request that a stalled server would cause (no correction for "
          "coordinated omission).")
    loaded = [w for w in windows.values() if w.get("wrk")]
    refused = sum(w["wrk"]["non_2xx"] for w in loaded)
    if refused:
        print(f"\n{refused} answers were not 2xx: 429 means an agent went over its rate limit "
              "(10 a second), so the figures measure that limit; raise --heartbeat-agents.")
    if any(not w["wrk"].get("requests") or w["counted"] == 0 for w in loaded):
        raise SystemExit("no heartbeat was taken: the benchmark itself is broken")
    if any(w["probes"] == 0 for w in windows.values()):
        raise SystemExit("no probe started in a window: the benchmark itself is broken")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heartbeat-agents", type=int, default=20000,
                   help="enough that the per-agent rate limit (10/s) is not what is measured")
    p.add_argument("--probed-agents", type=int, default=10000)
    p.add_argument("--interval", type=duration, default=30.0, help="probe interval, e.g. 30s")
    p.add_argument("--period", type=duration, default=600.0,
                   help="heartbeat period: long, so that no agent misses during the run")
    p.add_argument("--duration", type=duration, default=30.0, help="each window")
    p.add_argument("--warmup", type=duration, default=3.0, help="wrk before the windows")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=32, help="wrk keep-alive connections, flat out")
    p.add_argument("--rate", type=float, default=25000,
                   help="heartbeats/s aimed at in the paced window (0: no paced window)")
    p.add_argument("--paced-connections", type=int, default=100, help="wrk connections, paced")
    p.add_argument("--addresses", type=int, default=8, help="127.0.0.x addresses of the fleet")
    p.add_argument("--ports", type=int, default=4, help="ports per address")
    p.add_argument("--show-wrk", action="store_true", help="print wrk's own output too")
    p.add_argument("--exporter-bin", default="target/release/agent-health-exporter")
    p.add_argument("--target-bin", default="target/release/examples/bench_target")
    args = p.parse_args()
    workdir = tempfile.mkdtemp(prefix="ahe-bench-hb-")
    target, listens = start_target(args, workdir)
    try:
        log(f"{args.probed_agents} probed agents on {len(listens)} listeners, "
            f"{args.heartbeat_agents} heartbeat agents")
        windows, missed, _ = run(args, listens, workdir)
    finally:
        stop(target)
    if args.show_wrk:
        for w in windows.values():
            print(w.get("wrk_output", ""))
    report(args, windows, missed)
    print(f"\nlogs and configs: {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
