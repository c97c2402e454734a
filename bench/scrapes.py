"""Scrape load for bench/bench.py: scrapes streamed and thrown away as they arrive (so that the
benchmark's own memory never holds a 400 MB exposition), back-to-back scrape loops in several
formats at once, clients that send `GET /metrics` and never read, and the peak RSS of a phase.

Everything here talks plain HTTP/1.1 over loopback sockets with `Connection: close`, as a
scraper that reads the body to its end and then hangs up.
"""

import re
import socket
import threading
import time

PROTOBUF = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
OPENMETRICS = "application/openmetrics-text;version=1.0.0"
# The Accept header each format is asked with; gzip is text with Accept-Encoding.
FORMATS = {
    "text": {},
    "openmetrics": {"Accept": OPENMETRICS},
    "protobuf": {"Accept": PROTOBUF},
    "text+gzip": {"Accept-Encoding": "gzip"},
}


def loadavg():
    """The 1-minute load average, as /proc/loadavg gives it."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def memory_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def request(port, headers):
    lines = ["GET /metrics HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Dechunker:
    """Turns a chunked body, fed in arbitrary pieces, back into its payload pieces."""

    def __init__(self):
        self.buf = b""
        self.left = 0  # payload bytes of the current chunk still to come
        self.skip = 0  # the CRLF after a chunk's payload
        self.done = False

    def feed(self, data):
        out = []
        self.buf += data
        while self.buf and not self.done:
            if self.skip:
                n = min(self.skip, len(self.buf))
                self.buf, self.skip = self.buf[n:], self.skip - n
            elif self.left:
                n = min(self.left, len(self.buf))
                out.append(self.buf[:n])
                self.buf, self.left = self.buf[n:], self.left - n
                if not self.left:
                    self.skip = 2
            else:
                end = self.buf.find(b"\r\n")
                if end < 0:
                    break
                size = int(self.buf[:end].split(b";")[0], 16)
                self.buf = self.buf[end + 2:]
                if size == 0:
                    self.done = True
                else:
                    self.left = size
        return out


def scrape(port, headers=None, on_payload=None, timeout=300):
    """One scrape, read to its end and thrown away piece by piece: (status, payload bytes on
    the wire, seconds, complete). `on_payload` sees the payload (dechunked) when given."""
    headers = headers or {}
    t0 = time.monotonic()
    status, size, complete = None, 0, False
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request(port, headers))
            head = b""
            while b"\r\n\r\n" not in head:
                n = s.recv_into(view)
                if not n:
                    return None, 0, time.monotonic() - t0, False
                head += bytes(view[:n])
            head, _, first = head.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            lower = head.lower()
            chunked = b"transfer-encoding: chunked" in lower
            m = re.search(rb"content-length: (\d+)", lower)
            length = int(m.group(1)) if m else None
            dechunk = Dechunker() if chunked else None
            tail = b""

            def take(data):
                nonlocal size, tail
                size += len(data)
                tail = (tail + data)[-5:]
                if on_payload is not None:
                    for piece in (dechunk.feed(data) if dechunk else [data]):
                        on_payload(piece)

            if first:
                take(first)
            while True:
                n = s.recv_into(view)
                if not n:
                    break
                if on_payload is None:
                    # Thrown away unread: only its size and its last bytes (the end of a
                    # chunked body) are kept.
                    size += n
                    tail = (tail + bytes(view[max(0, n - 5):n]))[-5:]
                else:
                    take(bytes(view[:n]))
            if chunked:
                complete = tail == b"0\r\n\r\n"
            elif length is not None:
                complete = size == length
            else:
                complete = True
    except OSError:
        return status, size, time.monotonic() - t0, False
    return status, size, time.monotonic() - t0, complete


# Lines are found by their literal start with bytes.find, which is far faster than a regex
# search over a 400 MB scrape, and only then matched (pieces are handed over with the newline
# before them).
DELAY = (b"\nagent_exporter_probe_start_delay_seconds_bucket{",
         re.compile(rb'\nagent_exporter_probe_start_delay_seconds_bucket\{le="([^"]+)"\} (\S+)'))
PROBES = (b"\nagent_probes_total{", re.compile(rb'\nagent_probes_total\{[^}\n]*result="(\w+)"\} (\S+)'))


def matches(text, pattern):
    prefix, regex = pattern
    at = text.find(prefix)
    while at >= 0:
        m = regex.match(text, at)
        if m:
            yield m
        at = text.find(prefix, at + 1)


def figures(port, agent):
    """A text scrape, read as it streams: the start delay histogram's buckets, probes by
    result, the series of `agent`, the size and the time."""
    delay, probes = {}, {"success": 0.0, "failure": 0.0}
    series = 0
    carry = [b""]
    needle = f'agent="{agent}"'.encode()

    def lines(text):
        nonlocal series
        for m in matches(text, DELAY):
            delay[float(m.group(1))] = float(m.group(2))
        for m in matches(text, PROBES):
            probes[m.group(1).decode()] = probes.get(m.group(1).decode(), 0.0) + float(m.group(2))
        series += text.count(needle)

    def on_payload(piece):
        text = carry[0] + piece
        cut = text.rfind(b"\n") + 1
        carry[0] = text[cut:]
        lines(b"\n" + text[:cut])

    status, size, seconds, complete = scrape(port, {}, on_payload)
    if carry[0]:
        lines(b"\n" + carry[0])
    if status != 200 or not complete:
        raise SystemExit(f"/metrics answered {status} (complete: {complete})")
    return {"delay": delay, "probes": probes, "series_per_agent": series, "bytes": size,
            "seconds": seconds, "load": loadavg()}


class PeakRss:
    """The peak RSS of a phase: the kernel's high-water mark, reset at the start (clear_refs 5)
    and read at the end; where it cannot be reset, the largest of samples 50 ms apart."""

    def __init__(self, pid):
        self.pid = pid
        self.sampled = 0
        self.reset = False
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            pass
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while not self.stop.is_set():
            self.sampled = max(self.sampled, memory_kib(self.pid)["VmRSS"])
            self.stop.wait(0.05)

    def end(self):
        """(peak KiB, RSS KiB now, load) at the end of the phase."""
        self.stop.set()
        self.thread.join()
        now = memory_kib(self.pid)
        peak = max(self.sampled, now["VmRSS"])
        if self.reset:
            peak = max(peak, now["VmHWM"])
        return peak, now["VmRSS"], loadavg()


def once_each(port, formats):
    """One scrape in each format at once: each format's (status, bytes, seconds, complete)."""
    out = {}

    def run(name):
        out[name] = scrape(port, FORMATS[name])

    threads = [threading.Thread(target=run, args=(f,)) for f in formats]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def back_to_back(port, formats, seconds, readers_per_format=1):
    """Scrapes in every format of `formats` back to back for `seconds`, one loop per reader:
    per format, scrapes answered 200 and complete, refused (503), other outcomes, and the
    slowest scrape."""
    stop_at = time.monotonic() + seconds
    stats = {f: {"ok": 0, "refused": 0, "other": 0, "max_seconds": 0.0, "bytes": 0} for f in formats}
    lock = threading.Lock()

    def loop(name):
        while time.monotonic() < stop_at:
            status, size, took, complete = scrape(port, FORMATS[name])
            with lock:
                s = stats[name]
                if status == 200 and complete:
                    s["ok"] += 1
                    s["bytes"] = size
                elif status == 503:
                    s["refused"] += 1
                    time.sleep(0.05)
                else:
                    s["other"] += 1
                    time.sleep(0.05)
                s["max_seconds"] = max(s["max_seconds"], took)

    threads = [threading.Thread(target=loop, args=(f,)) for f in formats for _ in range(readers_per_format)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats


def stalled_readers(port, count, formats):
    """`count` connections that send `GET /metrics` (formats in turn) with a 4 KiB receive
    buffer and never read; the open sockets, to be closed by the caller."""
    out = []
    for i in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(request(port, FORMATS[formats[i % len(formats)]]))
        out.append(s)
    return out
