#!/usr/bin/env python3
"""Scrapes in bounded memory, and probes that scrapes do not delay (BENCHMARKS.md, "Scrapes in
bounded memory").

One exporter with N agents that refuse connections (http://127.0.0.1:1), loopback only, every
process it starts stopped before it returns. After a warm-up in which every agent is probed:

1. idle: RSS before any scrape;
2. back to back: one client per format (text, OpenMetrics, protobuf) scraping without pause for
   --seconds, reading every answer whole; RSS and its peak in the phase (VmHWM reset at the
   start through /proc/PID/clear_refs, or samples 50 ms apart where that is refused), and the
   probe start delay (agent_exporter_probe_start_delay_seconds) p50/p99 over the window;
3. stalled: --stalled clients send GET /metrics (the three formats in turn) and never read,
   while one client scrapes text back to back for --seconds: RSS and its peak in the phase,
   answers 200/503/failed, the pieces the exporter holds (agent_exporter_scrape_buffered_bytes)
   and the answers it cut off.

    cargo build --release
    python3 bench/scrape_memory.py --agents 10000
    python3 bench/scrape_memory.py --agents 100000 --exporter-bin /path/to/older/binary

Figures on a slow or busy machine are reported, never judged; the load average is printed
beside them.
"""

import argparse
import os
import re
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ left in the tree by a run
import scrapes  # noqa: E402
from bench import (OPENMETRICS, PROTOBUF, Beyond, dechunk, free_port, log, memory_kib,  # noqa: E402
                   print_table, quantile, spawn, stop, wait_ready)

FORMATS = {"text": "text/plain;version=0.0.4", "openmetrics": OPENMETRICS, "protobuf": PROTOBUF}


def write_config(path, agents, interval):
    with open(path, "w") as f:
        f.write(f"defaults: {{interval: {interval}s, timeout: 1s}}\nagents:\n")
        for i in range(agents):
            f.write(f"  - {{name: agent-{i:06d}, type: bench, url: 'http://127.0.0.1:1/health'}}\n")


def scrape(port, accept, timeout=300.0):
    """(status, body bytes) of one scrape read whole and thrown away as it comes; status None
    when the connection failed or the answer was cut off (a chunked answer that does not end
    with its empty last chunk)."""
    request = (f"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n"
               "Connection: close\r\n\r\n").encode()
    buf = bytearray(1 << 20)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request)
            n = s.recv_into(buf)
            status = int(bytes(buf[:n]).split(b" ", 2)[1])
            total, tail = n, bytes(buf[max(0, n - 5):n])
            while True:
                n = s.recv_into(buf)
                if n == 0:
                    break
                total += n
                tail = (tail + bytes(buf[max(0, n - 5):n]))[-5:]
            if status == 200 and tail != b"0\r\n\r\n":
                return None, total
            return status, total
    except (OSError, ValueError, IndexError):
        return None, 0


def scrape_whole(port, accept="text/plain"):
    """One scrape kept whole, for the exporter's own figures; retried while refused (503)."""
    request = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
            s.sendall(request.encode())
            chunks = []
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        data = b"".join(chunks)
        head, _, body = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 200"):
            if b"transfer-encoding: chunked" in head.lower():
                body = dechunk(body)
            return body.decode(errors="replace")
        time.sleep(0.5)
    raise SystemExit("/metrics refused 20 times in a row")


def own_metric(text, name):
    m = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)", text, re.M)
    return float(m.group(1)) if m else None


def delay_buckets(text):
    """The start delay histogram's cumulative buckets in a text scrape, by upper bound."""
    return {float(m.group(1)): float(m.group(2))
            for m in scrapes.matches(("\n" + text).encode(), scrapes.DELAY)}


def ms(seconds):
    """A delay quantile in ms; past the largest finite bucket only its lower bound is known."""
    if seconds is None:
        return "n/a"
    if isinstance(seconds, Beyond):
        return f"> {seconds * 1000:.0f} ms"
    return f"{seconds * 1000:.1f}"


def back_to_back(port, accept, seconds, tally):
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        status, size = scrape(port, accept)
        tally.append((status, size))


def mib(kib):
    return f"{kib / 1024:.0f}"


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def run(args):
    workdir = tempfile.mkdtemp(prefix="scrape-memory-")
    config = os.path.join(workdir, "fleet.yaml")
    write_config(config, args.agents, args.interval)
    port = free_port()
    with open(os.path.join(workdir, "exporter.log"), "w") as log_file:
        proc = spawn([args.exporter_bin, f"--config.file={config}",
                      f"--web.listen-address=127.0.0.1:{port}"], stderr=log_file)
    rows = []
    try:
        wait_ready(proc, port, "/-/ready", 300)
        warmup = args.warmup if args.warmup is not None else args.interval + 5
        log(f"{args.agents} agents ready; warming up {warmup} s")
        time.sleep(warmup)
        idle = memory_kib(proc.pid)["VmRSS"]
        rows.append(["idle, before any scrape", mib(idle), "", "", "", loadavg()])

        log(f"back to back in every format for {args.seconds} s")
        before = delay_buckets(scrape_whole(port))
        # The kernel's high-water mark, reset for this phase (or sampled where it cannot be).
        peak_rss = scrapes.PeakRss(proc.pid)
        tallies = {name: [] for name in FORMATS}
        clients = [threading.Thread(target=back_to_back, args=(port, accept, args.seconds, tallies[name]))
                   for name, accept in FORMATS.items()]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        peak, now_kib, load = peak_rss.end()
        after_text = scrape_whole(port)
        after = delay_buckets(after_text)
        p50, p99 = quantile(0.5, before, after), quantile(0.99, before, after)
        answered = ", ".join(f"{name} {sum(1 for s, _ in t if s == 200)}/{len(t)}"
                             for name, t in tallies.items())
        rows.append(["back to back, 3 formats", mib(now_kib), mib(peak), f"{ms(p50)} / {ms(p99)}",
                     f"200 of scrapes: {answered}", load])

        log(f"{args.stalled} stalled readers, one client scraping text for {args.seconds} s")
        stalled = []
        accepts = list(FORMATS.values())
        for i in range(args.stalled):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accepts[i % 3]}\r\n\r\n".encode())
            stalled.append(s)
            time.sleep(0.01)
        time.sleep(2)
        before = delay_buckets(scrape_whole(port))
        # The kernel's high-water mark, reset for this phase (or sampled where it cannot be).
        peak_rss = scrapes.PeakRss(proc.pid)
        tally = []
        back_to_back(port, FORMATS["text"], args.seconds, tally)
        peak, now_kib, load = peak_rss.end()
        text = scrape_whole(port)
        after = delay_buckets(text)
        p50, p99 = quantile(0.5, before, after), quantile(0.99, before, after)
        held = own_metric(text, "agent_exporter_scrape_buffered_bytes")
        cut = own_metric(text, "agent_exporter_scrapes_cut_off_total")
        refused = own_metric(text, "agent_exporter_scrapes_refused_total")
        ok = sum(1 for s, _ in tally if s == 200)
        busy = sum(1 for s, _ in tally if s == 503)
        held_text = f"; pieces held {held / 1e6:.1f} MB" if held is not None else ""
        cut_text = f", cut off {cut:.0f}" if cut is not None else ""
        rows.append([f"{args.stalled} stalled readers + text back to back", mib(now_kib), mib(peak),
                     f"{ms(p50)} / {ms(p99)}",
                     f"200: {ok}, 503: {busy}, failed: {len(tally) - ok - busy}; refused total "
                     f"{refused}{cut_text}{held_text}", load])
        for s in stalled:
            s.close()
    finally:
        stop(proc)
    print(f"\n{args.agents} agents, {args.exporter_bin}\n")
    print_table(["phase", "RSS MiB", "peak MiB in the phase", "start delay p50 / p99 ms",
                 "scrapes", "load (1 min)"], rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=10000)
    p.add_argument("--interval", type=int, default=30, help="probe interval in seconds")
    p.add_argument("--warmup", type=float, help="seconds before measuring [default: interval + 5]")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each scraping phase")
    p.add_argument("--stalled", type=int, default=200)
    p.add_argument("--exporter-bin", default="target/release/agent-health-exporter")
    run(p.parse_args())


if __name__ == "__main__":
    main()
