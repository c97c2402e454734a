#!/usr/bin/env python3
"""The fleet benchmark behind bench/run.sh (run that: it builds and installs what this needs).

Loopback only, bounded in time, every process it starts is stopped before it returns. Phases,
one after the other so that they never compete for the cores:

1. bench_target (examples/) serves the fleet on several 127.0.0.x addresses and ports.
2. agent-health-exporter with 0 agents: start-to-ready time and idle RSS.
3. agent-health-exporter with N agents at interval I: start-to-ready; after a warm-up (one
   interval + 2 s, at least 40 s) RSS before any scrape; then one text scrape and RSS after it;
   a window of T seconds: probes/s (counted by the target, so the exporter is not scraped inside
   the window), CPU per probe from /proc/PID/stat, missed slots from the exporter's log, the
   probe start delay from the scrapes around the window. Then /metrics under load, each phase
   with its own peak RSS (the kernel's high-water mark reset at its start): one scrape in each
   format at once; back-to-back scrapes in text, OpenMetrics and protobuf at once, with the
   start delay p99 across them; 200 clients that send GET /metrics and never read, beside
   back-to-back scrapes; then /metrics time and size in every format (bench/scrapes.py).
4. prometheus-blackbox-exporter driven through /probe at the same rate as Prometheus would drive
   it: CPU per probe.
5. wrk with a fresh connection per request: client CPU per request, the floor.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ left in the tree by a run
import scrapes  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
PROTOBUF = scrapes.PROTOBUF
OPENMETRICS = scrapes.OPENMETRICS


def print_table(header, rows):
    """Prints rows as a Markdown table, columns padded to their widest cell."""
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def duration(text):
    """30s, 500ms, 1m, or plain seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text}")
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]


def cpu_seconds(pid):
    """utime + stime of the whole process (dead threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu_seconds(pid, name):
    """utime + stime of the live threads of `pid` called `name`."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except FileNotFoundError:
            continue
        if head.split("(", 1)[1] == name:
            fields = rest.split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


# One reading of /proc/PID/status for every bench script: scrapes.py's.
memory_kib = scrapes.memory_kib


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(host, port, path, timeout=5.0):
    """(status, body) of one GET over a fresh connection; (None, b'') when it cannot connect."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
    except OSError:
        return None, b""
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, b""
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return status, body


def dechunk(body):
    out, pos = [], 0
    while pos < len(body):
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            break
        out.append(body[end + 2:end + 2 + size])
        pos = end + 4 + size
    return b"".join(out)


def wait_ready(proc, port, path, deadline_s):
    """Polls every millisecond until `path` answers 200; seconds since `proc` started."""
    started = proc.started
    while time.monotonic() - started < deadline_s:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode} before it was ready")
        status, _ = http_get("127.0.0.1", port, path, timeout=1.0)
        if status == 200:
            return time.monotonic() - started
        time.sleep(0.001)
    raise SystemExit(f"{proc.args[0]} not ready within {deadline_s} s")


def spawn(args, **kwargs):
    started = time.monotonic()
    proc = subprocess.Popen(args, **kwargs)
    proc.started = started
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def target_count(target_addr):
    status, body = http_get(*target_addr, "/count")
    if status != 200:
        raise SystemExit("bench_target does not answer /count")
    return int(body)


# --- exposition parsing ------------------------------------------------------------------------

class Beyond(float):
    """A quantile past the largest finite bucket: only its lower bound is known."""


def quantile(q, before, after):
    """histogram_quantile over the classic buckets' increase: linear interpolation inside the
    bucket that holds the rank, as Prometheus does. None without observations."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cum in zip(bounds, counts):
        if cum >= rank:
            if bound == float("inf"):
                return Beyond(lower)  # beyond the largest finite bucket: a lower bound
            if cum == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (cum - below)
        lower, below = bound, cum
    return lower


def scrape_timings(port, samples, pid):
    """Median curl time_total, size and the exporter's mean CPU per scrape for each format. The
    CPU is taken over all samples together (the clock ticks in 10 ms), without the `probes`
    thread's (probing goes on meanwhile, for longer when the machine is shared); it moves much
    less than the wall time."""
    variants = {
        "text": [],
        "openmetrics": ["-H", f"Accept: {OPENMETRICS}"],
        "protobuf": ["-H", f"Accept: {PROTOBUF}"],
        "text+gzip": ["-H", "Accept-Encoding: gzip"],
    }
    out = {}
    for name, headers in variants.items():
        times, size = [], 0
        cpu0 = cpu_seconds(pid) - thread_cpu_seconds(pid, "probes")
        for _ in range(samples):
            res = subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}",
                 *headers, f"http://127.0.0.1:{port}/metrics"],
                capture_output=True, text=True, timeout=300, check=True)
            code, t, size = res.stdout.split()
            if code != "200":
                raise SystemExit(f"/metrics ({name}) answered {code}")
            times.append(float(t))
            size = int(size)
        cpu = (cpu_seconds(pid) - thread_cpu_seconds(pid, "probes") - cpu0) / samples
        out[name] = {"seconds": statistics.median(times), "bytes": size, "cpu_seconds": cpu}
    return out


# --- the phases --------------------------------------------------------------------------------

def scrape_text(port):
    """One text scrape, whole (for the small fleets of the other bench scripts)."""
    status, body = http_get("127.0.0.1", port, "/metrics", timeout=120)
    if status != 200:
        raise SystemExit(f"/metrics answered {status}")
    return body.decode()


def delay_buckets(text):
    """The cumulative buckets of the exporter's probe start delay histogram in a text scrape."""
    out = {}
    for m in re.finditer(r'^agent_exporter_probe_start_delay_seconds_bucket\{le="([^"]+)"\} (\S+)$',
                         text, re.M):
        out[float(m.group(1))] = float(m.group(2))
    return out


def start_target(args, workdir):
    target = spawn([args.target_bin, "--addresses", str(args.addresses), "--ports", str(args.ports),
                    "--lifetime", "1800"], stdout=subprocess.PIPE, text=True)
    listens = []
    for line in target.stdout:
        line = line.strip()
        if line == "ready":
            break
        if line.startswith("listen "):
            host, port = line.split()[1].rsplit(":", 1)
            listens.append((host, int(port)))
    if not listens:
        raise SystemExit("bench_target did not start")
    return target, listens


def write_config(path, agents, interval, listens):
    with open(path, "w") as f:
        f.write(f"defaults:\n  interval: {int(interval * 1000)}ms\nagents:")
        if agents == 0:
            f.write(" []\n")
            return
        f.write("\n")
        for i in range(agents):
            host, port = listens[i % len(listens)]
            f.write(f"  - {{name: agent-{i:06d}, type: bench, url: 'http://{host}:{port}/health'}}\n")


def run_exporter(args, listens, agents, workdir, measure):
    config = os.path.join(workdir, f"fleet-{agents}.yaml")
    write_config(config, agents, args.interval, listens)
    port = free_port()
    log_path = os.path.join(workdir, f"exporter-{agents}.log")
    with open(log_path, "w") as log_file:
        proc = spawn([args.exporter_bin, f"--config.file={config}",
                      f"--web.listen-address=127.0.0.1:{port}"], stderr=log_file)
    res = {"agents": agents}
    try:
        res["ready_seconds"] = wait_ready(proc, port, "/-/ready", 300)
        res["ready_load"] = scrapes.loadavg()
        if not measure:
            time.sleep(1.0)
            res["rss_kib"] = memory_kib(proc.pid)["VmRSS"]
            return res
        log(f"exporter ready after {res['ready_seconds'] * 1000:.1f} ms; warming up {args.warmup:.0f} s")
        time.sleep(args.warmup)
        # Steady probing, before any scrape.
        res["rss_kib"], res["rss_load"] = memory_kib(proc.pid)["VmRSS"], scrapes.loadavg()
        agent = "agent-000000"
        first = scrapes.figures(port, agent)
        time.sleep(0.5)
        res["first_scrape"] = first
        res["rss_after_text_kib"], res["rss_after_text_load"] = memory_kib(proc.pid)["VmRSS"], scrapes.loadavg()
        c0, n0, t0 = cpu_seconds(proc.pid), target_count(listens[0]), time.monotonic()
        log(f"measuring {args.duration:.0f} s")
        if args.perf_record:
            subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "499", "-g", "-o", args.perf_record,
                            "-p", str(proc.pid), "--", "sleep", str(args.duration)],
                           check=False, capture_output=True)
        else:
            time.sleep(args.duration)
        c1, n1, t1 = cpu_seconds(proc.pid), target_count(listens[0]), time.monotonic()
        res["window_load"] = scrapes.loadavg()
        res["rss_end_kib"] = memory_kib(proc.pid)["VmRSS"]
        after = scrapes.figures(port, agent)
        probes = n1 - n0
        res.update(window_seconds=t1 - t0, probes=probes, cpu_seconds=c1 - c0,
                   probes_per_second=probes / (t1 - t0),
                   expected_per_second=agents / args.interval)
        b0, b1 = first["delay"], after["delay"]
        res["delay_p50"] = quantile(0.5, b0, b1)
        res["delay_p99"] = quantile(0.99, b0, b1)
        r0, r1 = first["probes"], after["probes"]
        res["failed_probes"] = r1["failure"] - r0["failure"]
        scrape_phases(args, proc.pid, port, agent, after, res)
        log("timing /metrics")
        res["scrape"] = scrape_timings(port, args.scrape_samples, proc.pid)
        res["scrape_load"] = scrapes.loadavg()
        # The high-water mark is reset by each scrape phase: the run's peak is the largest.
        res["hwm_kib"] = max([memory_kib(proc.pid)["VmHWM"]] + [v for k, v in res.items() if k.endswith("_peak_kib")])
    finally:
        stop(proc)
    with open(log_path) as f:
        missed = [int(m.group(1)) for m in re.finditer(r"missed_slots=(\d+)", f.read())]
    res["missed_slots"] = sum(missed)
    res["missed_warnings"] = len(missed)
    return res


def scrape_phases(args, pid, port, agent, before, res):
    """Memory and probe start delay while /metrics is under load, one phase after another:
    one scrape in each format at once; back-to-back scrapes in every format; stalled readers
    with one reader scraping back to back beside them. Each phase's peak RSS is its own
    (`scrapes.PeakRss`); the start delay is read from text scrapes around the phases."""
    three = ["text", "openmetrics", "protobuf"]
    log("one scrape in each format at once")
    peak = scrapes.PeakRss(pid)
    res["once_each"] = scrapes.once_each(port, three)
    time.sleep(0.5)
    res["once_each_peak_kib"], res["once_each_rss_kib"], res["once_each_load"] = peak.end()
    log(f"back-to-back scrapes in {', '.join(three)} for {args.scrape_seconds:.0f} s")
    peak = scrapes.PeakRss(pid)
    res["b2b"] = scrapes.back_to_back(port, three, args.scrape_seconds)
    res["b2b_peak_kib"], res["b2b_rss_kib"], res["b2b_load"] = peak.end()
    after = scrapes.figures(port, agent)
    res["b2b_delay_p50"] = quantile(0.5, before["delay"], after["delay"])
    res["b2b_delay_p99"] = quantile(0.99, before["delay"], after["delay"])
    res["b2b_delay_probes"] = after["delay"].get(float("inf"), 0) - before["delay"].get(float("inf"), 0)
    if args.stalled:
        log(f"{args.stalled} stalled readers beside back-to-back scrapes in 3 formats, {args.stalled_seconds:.0f} s")
        before = after
        peak = scrapes.PeakRss(pid)
        stalled = scrapes.stalled_readers(port, args.stalled, three)
        try:
            res["stalled_reader"] = scrapes.back_to_back(port, three, args.stalled_seconds)
            res["stalled_peak_kib"], res["stalled_rss_kib"], res["stalled_load"] = peak.end()
            after = scrapes.figures(port, agent)
        finally:
            for s in stalled:
                s.close()
        res["stalled_delay_p99"] = quantile(0.99, before["delay"], after["delay"])
        time.sleep(1.0)
        res["stalled_closed_rss_kib"] = memory_kib(pid)["VmRSS"]


async def drive_blackbox(port, paths, rate, seconds, connections):
    """Asks blackbox_exporter for probes at `rate`/s, spread over the fleet, over keep-alive
    connections as Prometheus does. Open loop: a slow answer does not lower the rate."""
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    start = loop.time() + 0.05
    stats = {"sent": 0, "success": 0, "failed": 0, "late": 0}

    async def worker(w):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(w, total, connections):
            if loop.time() > start + seconds:
                break  # a saturated prober: what it did not answer in time is not asked
            wait = start + i / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.1:
                stats["late"] += 1
            writer.write(f"GET {paths[i % len(paths)]} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            stats["sent"] += 1
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            m = re.search(rb"content-length: (\d+)", lower)
            if m:
                body = await reader.readexactly(int(m.group(1)))
            else:
                body = b""
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    chunk = await reader.readexactly(size + 2)
                    if size == 0:
                        break
                    body += chunk[:-2]
            stats["success" if b"\nprobe_success 1" in body else "failed"] += 1
        writer.close()

    await asyncio.gather(*(worker(w) for w in range(connections)))
    return stats


def loadgen_main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int)
    p.add_argument("--rate", type=float)
    p.add_argument("--seconds", type=float)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--targets", nargs="+")
    a = p.parse_args(argv)
    paths = [f"/probe?module=http_2xx&target=http://{t}/health" for t in a.targets]
    stats = asyncio.run(drive_blackbox(a.port, paths, a.rate, a.seconds, a.connections))
    print(json.dumps(stats))


def run_blackbox(args, listens, workdir):
    config = os.path.join(workdir, "blackbox.yml")
    with open(config, "w") as f:
        f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n"
                "    http:\n      preferred_ip_protocol: ip4\n")
    port = free_port()
    rate = args.compare_rate or args.agents / args.interval
    warm = 2.0
    with open(os.path.join(workdir, "blackbox.log"), "w") as log_file:
        proc = spawn([BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
                     stdout=log_file, stderr=log_file)
    res = {"rate": rate}
    try:
        wait_ready(proc, port, "/-/healthy", 30)
        res["idle_rss_kib"] = memory_kib(proc.pid)["VmRSS"]
        gen = subprocess.Popen(
            [sys.executable, __file__, "loadgen", "--port", str(port), "--rate", str(rate),
             "--seconds", str(warm + args.compare_duration + 1),
             "--targets", *[f"{h}:{p}" for h, p in listens]],
            stdout=subprocess.PIPE, text=True)
        time.sleep(warm)
        c0, n0, t0 = cpu_seconds(proc.pid), target_count(listens[0]), time.monotonic()
        time.sleep(args.compare_duration)
        c1, n1, t1 = cpu_seconds(proc.pid), target_count(listens[0]), time.monotonic()
        res["rss_kib"], res["load"] = memory_kib(proc.pid)["VmRSS"], scrapes.loadavg()
        out, _ = gen.communicate(timeout=60)
        res["loadgen"] = json.loads(out)
        res.update(probes=n1 - n0, cpu_seconds=c1 - c0, probes_per_second=(n1 - n0) / (t1 - t0))
    finally:
        stop(proc)
    return res


def run_wrk(args, listens, workdir):
    script = os.path.join(workdir, "spread.lua")
    # Each wrk thread connects to another address of the fleet.
    addrs = ", ".join(f'{{"{h}", "{p}"}}' for h, p in listens)
    with open(script, "w") as f:
        f.write(f"local targets = {{{addrs}}}\nlocal n = 0\n"
                "function setup(thread)\n  n = n + 1\n"
                "  local t = targets[(n - 1) % #targets + 1]\n"
                "  thread.addr = wrk.lookup(t[1], t[2])[1]\nend\n")
    host, port = listens[0]
    seconds = max(2, int(args.compare_duration / 2))
    n0 = target_count(listens[0])
    proc = subprocess.Popen(["wrk", "-t2", "-c8", f"-d{seconds}s", "-H", "Connection: close",
                             "-s", script, f"http://{host}:{port}/health"],
                            stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, _, usage = os.wait4(proc.pid, 0)
    n1 = target_count(listens[0])
    m = re.search(r"(\d+) requests in ([\d.]+)s", out)
    requests = int(m.group(1)) if m else n1 - n0
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": requests, "served": n1 - n0, "seconds": float(m.group(2)) if m else seconds,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "socket_errors": errors.group(1) if errors else "none",
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "load": scrapes.loadavg()}


# --- the report --------------------------------------------------------------------------------

def us(cpu, n):
    return cpu / n * 1e6 if n else float("nan")


def report(args, idle, ex, bb, wrk, binary_bytes):
    ex_us = us(ex["cpu_seconds"], ex["probes"])
    bb_us = us(bb["cpu_seconds"], bb["probes"]) if bb else None
    wrk_us = us(wrk["cpu_seconds"], wrk["requests"]) if wrk else None
    per_agent = (ex["rss_kib"] - idle["rss_kib"]) / ex["agents"] if ex["agents"] else 0
    ms = lambda s: "n/a" if s is None else (f"> {s * 1000:.0f} ms" if isinstance(s, Beyond) else f"{s * 1000:.2f} ms")
    mib = lambda kib: f"{kib / 1024:.1f} MiB"
    load = lambda value: f"{value:.2f}"
    loads = f"{load(ex['window_load'])}" + (f" / {load(bb['load'])}" if bb else "") + (f" / {load(wrk['load'])}" if wrk else "")
    rows = [
        ("agents, interval, window", f"{ex['agents']}, {args.interval:g} s, {ex['window_seconds']:.1f} s", "", "", ""),
        ("probes/s (expected N/I)", f"{ex['probes_per_second']:.1f} ({ex['expected_per_second']:.1f})",
         f"{bb['probes_per_second']:.1f} (asked {bb['rate']:.1f})" if bb else "skipped",
         f"{wrk['requests'] / wrk['seconds']:.0f} (flat out)" if wrk else "skipped", load(ex["window_load"])),
        ("CPU µs per probe", f"{ex_us:.1f}", f"{bb_us:.1f}" if bb else "", f"{wrk_us:.1f}" if wrk else "", loads),
        ("exporter CPU / this", "1", f"{ex_us / bb_us:.3f} (1/{bb_us / ex_us:.1f})" if bb else "",
         f"{ex_us / wrk_us:.2f}" if wrk else "", loads),
        ("CPU % of one core", f"{ex['cpu_seconds'] / ex['window_seconds'] * 100:.1f}",
         f"{bb['cpu_seconds'] / args.compare_duration * 100:.1f}" if bb else "", "", loads),
        ("RSS MiB (idle process)", f"{ex['rss_kib'] / 1024:.1f} ({idle['rss_kib'] / 1024:.1f})",
         f"{bb['rss_kib'] / 1024:.1f} ({bb['idle_rss_kib'] / 1024:.1f})" if bb else "", "", load(ex["rss_load"])),
        ("missed slots (warnings) / failed", f"{ex['missed_slots']} ({ex['missed_warnings']}) / {ex['failed_probes']:.0f}",
         f"failed {bb['loadgen']['failed']}, late {bb['loadgen']['late']}" if bb else "",
         f"errors: {wrk['socket_errors']}, non-2xx {wrk['non_2xx']}" if wrk else "", ""),
        ("probe start delay p50 / p99, not scraped", f"{ms(ex['delay_p50'])} / {ms(ex['delay_p99'])}", "", "",
         load(ex["window_load"])),
        ("start to ready (0 / N agents)", f"{idle['ready_seconds'] * 1000:.1f} / {ex['ready_seconds'] * 1000:.1f} ms",
         "", "", f"{load(idle['ready_load'])} / {load(ex['ready_load'])}"),
    ]
    text_bytes = ex["scrape"]["text"]["bytes"]
    for name, s in ex["scrape"].items():
        extra = f", {s['bytes'] / text_bytes * 100:.1f} % of text" if name == "text+gzip" else ""
        rows.append((f"/metrics {name}", f"{s['seconds'] * 1000:.0f} ms (CPU {s['cpu_seconds'] * 1000:.0f} ms), "
                     f"{s['bytes'] / 1e6:.2f} MB{extra}", "", "", load(ex["scrape_load"])))
    rows.append(("release binary", f"{binary_bytes / 1e6:.2f} MB", "", "", ""))
    header = ("measure", "agent-health-exporter", "blackbox_exporter", "wrk -H 'Connection: close'",
              "load (1 min)")
    print_table(header, rows)

    first = ex["first_scrape"]
    outcome = lambda stats: "; ".join(
        f"{name} {st['ok']} ok" + (f", {st['refused']} refused" if st["refused"] else "")
        + (f", {st['other']} failed" if st["other"] else "") + f", slowest {st['max_seconds']:.1f} s"
        for name, st in stats.items())
    rows = [
        ("RSS idle: N agents, no scrape yet", f"{mib(ex['rss_kib'])} ({args.warmup:g} s after ready)",
         load(ex["rss_load"])),
        ("RSS per agent above the idle process", f"{per_agent:.2f} KiB", load(ex["rss_load"])),
        ("series per agent (text lines)", f"{first['series_per_agent']}", ""),
        ("RSS after one text scrape", f"{mib(ex['rss_after_text_kib'])} ({first['bytes'] / 1e6:.0f} MB of text)",
         load(ex["rss_after_text_load"])),
        ("RSS / peak, one scrape in each format at once", f"{mib(ex['once_each_rss_kib'])} / {mib(ex['once_each_peak_kib'])}",
         load(ex["once_each_load"])),
        (f"RSS / peak, back to back in text, OpenMetrics, protobuf for {args.scrape_seconds:g} s",
         f"{mib(ex['b2b_rss_kib'])} / {mib(ex['b2b_peak_kib'])}", load(ex["b2b_load"])),
        ("… scrapes", outcome(ex["b2b"]), load(ex["b2b_load"])),
        ("probe start delay p50 / p99 while scraped back to back",
         f"{ms(ex['b2b_delay_p50'])} / {ms(ex['b2b_delay_p99'])} ({ex['b2b_delay_probes']:.0f} probes)",
         load(ex["b2b_load"])),
    ]
    if args.stalled:
        rows += [
            (f"RSS / peak, {args.stalled} stalled readers + back to back in 3 formats, {args.stalled_seconds:g} s",
             f"{mib(ex['stalled_rss_kib'])} / {mib(ex['stalled_peak_kib'])}", load(ex["stalled_load"])),
            ("… scrapes beside the stalled readers", outcome(ex["stalled_reader"]), load(ex["stalled_load"])),
            ("… probe start delay p99", ms(ex["stalled_delay_p99"]), load(ex["stalled_load"])),
            ("… RSS 1 s after the stalled readers hung up", mib(ex["stalled_closed_rss_kib"]), ""),
        ]
    rows.append(("peak RSS of all the scrape phases and the timings below", mib(ex["hwm_kib"]), load(ex["scrape_load"])))
    print()
    print_table(("memory and scrapes at N agents", "figure", "load (1 min)"), rows)
    print("\nDelay quantiles: linear interpolation inside the classic buckets of "
          "agent_exporter_probe_start_delay_seconds, over their increase across the phase. "
          "Load: the machine's 1-minute load average when the figure was taken.")
    if ex["probes"] == 0:
        raise SystemExit("no probe reached the target: the benchmark itself is broken")
    if bb and bb["probes"] == 0:
        raise SystemExit("blackbox_exporter made no probe: the benchmark itself is broken")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "loadgen":
        return loadgen_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--interval", type=duration, default=30.0, help="probe interval, e.g. 30s")
    p.add_argument("--duration", type=duration, default=60.0, help="measured window, after warm-up")
    p.add_argument("--warmup", type=duration,
                   help="before the idle RSS and the window [default: one interval + 2 s, at least 40 s]")
    p.add_argument("--scrape-seconds", type=duration, default=30.0,
                   help="back-to-back scrapes in text, OpenMetrics and protobuf at once")
    p.add_argument("--stalled", type=int, default=200,
                   help="clients that send GET /metrics and never read (0: skip the phase)")
    p.add_argument("--stalled-seconds", type=duration, default=20.0,
                   help="how long the stalled clients stay, beside back-to-back scrapes")
    p.add_argument("--compare-duration", type=duration, default=20.0,
                   help="window for blackbox_exporter and wrk (wrk runs half of it)")
    p.add_argument("--compare-rate", type=float, help="blackbox probes/s [default: agents / interval]")
    p.add_argument("--no-compare", action="store_true", help="skip blackbox_exporter and wrk")
    p.add_argument("--addresses", type=int, default=8, help="127.0.0.x addresses of the fleet")
    p.add_argument("--ports", type=int, default=4, help="ports per address")
    p.add_argument("--scrape-samples", type=int, help="per format [default: 5, 3 from 50,000 agents]")
    p.add_argument("--perf-record", metavar="FILE", help="record a perf profile of the window")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--exporter-bin", default="target/release/agent-health-exporter")
    p.add_argument("--target-bin", default="target/release/examples/bench_target")
    args = p.parse_args()
    if args.scrape_samples is None:
        args.scrape_samples = 5 if args.agents < 50_000 else 3
    if args.warmup is None:
        args.warmup = max(args.interval + 2.0, 40.0)
    workdir = tempfile.mkdtemp(prefix="ahe-bench-")
    target, listens = start_target(args, workdir)
    try:
        log(f"fleet on {len(listens)} listeners; idle exporter")
        idle = run_exporter(args, listens, 0, workdir, measure=False)
        log(f"exporter with {args.agents} agents every {args.interval:g} s")
        ex = run_exporter(args, listens, args.agents, workdir, measure=True)
        bb = wrk = None
        if not args.no_compare:
            log("blackbox_exporter")
            try:
                bb = run_blackbox(args, listens, workdir)
            except (subprocess.SubprocessError, OSError, ValueError) as e:
                log(f"blackbox_exporter comparison failed, reported without it: {e}")
            log("wrk")
            wrk = run_wrk(args, listens, workdir)
    finally:
        stop(target)
    report(args, idle, ex, bb, wrk, os.path.getsize(args.exporter_bin))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"idle": idle, "exporter": ex, "blackbox": bb, "wrk": wrk,
                       "interval": args.interval}, f, indent=1)
    print(f"\nlogs and configs: {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
