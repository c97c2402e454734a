"""CPU per probe of the protocol probes, on loopback, with the reference peers of the tests.

gRPC health Check: agent-health-exporter against blackbox_exporter's `grpc` prober, both asking
the same grpcio health server. CPU time (utime + stime from /proc/PID/stat) of the prober process
only, divided by the probes it ran: wall time on a shared machine says little. Our exporter probes
a fleet of identical agents on its own schedule; blackbox_exporter is driven through /probe one
request at a time (its HTTP handling is part of its cost per probe, as our scheduling is of
ours). MCP and A2A: our CPU per probe against the official MCP SDK and a2a-sdk servers; MCP in
both eras against the same SDK 2.x server (tests/peers/mcp2_server.py, in the venv that
AHE_PEERS_PYTHON_MCP2 names or target/peers-venv-mcp2), once admitting both eras (the probe
speaks 2026-07-28: server/discover, tools/list) and once the handshake era only (initialize,
notifications/initialized, ping, tools/list, DELETE, the era remembered after the first probe).

Also cross-checks verdicts: for each gRPC scenario both probers must agree on success.

  target/peers-venv/bin/python bench/protocols.py --exporter target/release/agent-health-exporter
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "tests", "peers")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, method="GET"):
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_ready(url):
    for _ in range(300):
        try:
            if get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{url} never became ready")


MCP2_PYTHON = os.environ.get("AHE_PEERS_PYTHON_MCP2",
                             os.path.join(ROOT, "target/peers-venv-mcp2/bin/python"))


class Peer:
    def __init__(self, script, *args, python=sys.executable):
        self.proc = subprocess.Popen([python, "-u", os.path.join(PEERS, script), *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.port = int(self.proc.stdout.readline().split()[1])

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ours_cpu_per_probe(exporter, agents_yaml, seconds, warmup):
    """Runs the exporter on `agents_yaml`, answers (CPU per probe, probes, failures)."""
    with tempfile.TemporaryDirectory() as d:
        config = os.path.join(d, "config.yaml")
        with open(config, "w") as f:
            f.write(agents_yaml)
        port = free_port()
        proc = subprocess.Popen([exporter, f"--config.file={config}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base + "/-/ready")
            time.sleep(warmup)
            text0 = get(base + "/metrics")[1]
            cpu0 = cpu_seconds(proc.pid)
            time.sleep(seconds)
            cpu1 = cpu_seconds(proc.pid)
            text1 = get(base + "/metrics")[1]
            # The two scrapes cost CPU too; they are counted against us.
            probes = metric_sum(text1, "agent_probes_total") - metric_sum(text0, "agent_probes_total")
            failures = (metric_sum(text1, "agent_probe_failures_total")
                        - metric_sum(text0, "agent_probe_failures_total"))
            return (cpu1 - cpu0) / max(probes, 1), int(probes), int(failures)
        finally:
            proc.kill()
            proc.wait()


def fleet(count, url, extra, interval):
    lines = [f"defaults: {{interval: {interval}, timeout: 800ms}}", "agents:"]
    for i in range(count):
        lines.append(f"  - {{name: a{i}, type: bench, url: '{url}'{extra}}}")
    return "\n".join(lines) + "\n"


def blackbox(modules):
    d = tempfile.mkdtemp()
    config = os.path.join(d, "blackbox.yml")
    with open(config, "w") as f:
        json.dump({"modules": modules}, f)  # JSON is YAML
    port = free_port()
    proc = subprocess.Popen(["prometheus-blackbox-exporter", f"--config.file={config}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/-/healthy")
    return proc, f"http://127.0.0.1:{port}"


def grpc_module(service=""):
    return {"prober": "grpc", "timeout": "2s",
            "grpc": {"service": service, "preferred_ip_protocol": "ip4",
                     "tls": False}}


def blackbox_success(base, module, target):
    text = get(f"{base}/probe?module={module}&target={target}")[1]
    return metric_sum(text, "probe_success") == 1.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--exporter", default=os.path.join(ROOT, "target/release/agent-health-exporter"))
    parser.add_argument("--probes", type=int, default=2000, help="blackbox_exporter probes")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()

    server = Peer("grpc_health_server.py", "--serving", "billing.Ledger")
    target = f"127.0.0.1:{server.port}"
    bb, base = blackbox({"grpc": grpc_module(), "grpc_ledger": grpc_module("billing.Ledger"),
                         "grpc_unknown": grpc_module("no.Such")})
    try:
        for _ in range(50):
            get(f"{base}/probe?module=grpc&target={target}")
        cpu0 = cpu_seconds(bb.pid)
        ok = 0
        for _ in range(args.probes):
            ok += blackbox_success(base, "grpc", target)
        bb_cpu = (cpu_seconds(bb.pid) - cpu0) / args.probes
        print(f"blackbox_exporter grpc: {bb_cpu * 1e6:.0f} us CPU per probe "
              f"({args.probes} probes, {ok} successful)")
        interval = f"{max(1, args.agents // 100)}s"
        ours, probes, failures = ours_cpu_per_probe(
            args.exporter, fleet(args.agents, f"grpc://{target}", "", interval), args.seconds, 3)
        print(f"agent-health-exporter grpc: {ours * 1e6:.0f} us CPU per probe "
              f"({probes} probes, {failures} failed) = {ours / bb_cpu:.2f} of blackbox_exporter's")

        # Verdicts: both probers must agree on every scenario.
        print("verdicts (ours / blackbox_exporter):")
        scenarios = [("serving", "grpc", "", None),
                     ("service serving", "grpc_ledger", "billing.Ledger", None),
                     ("unknown service", "grpc_unknown", "no.Such", None),
                     ("service NOT_SERVING", "grpc_ledger", "billing.Ledger",
                      "set billing.Ledger NOT_SERVING"),
                     ("server NOT_SERVING", "grpc", "", "set - NOT_SERVING"),
                     ("server stopped", "grpc", "", "stop")]
        agree = True
        for name, module, service, change in scenarios:
            if change:
                server.command(change)
            yaml = fleet(1, f"grpc://{target}", f", grpc: {{service: '{service}'}}", "30s")
            with tempfile.TemporaryDirectory() as d:
                config = os.path.join(d, "c.yaml")
                with open(config, "w") as f:
                    f.write(yaml)
                port = free_port()
                # The on-demand probe endpoint is off unless asked for.
                proc = subprocess.Popen([args.exporter, f"--config.file={config}",
                                         f"--web.listen-address=127.0.0.1:{port}",
                                         "--web.enable-probe-api"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_ready(f"http://127.0.0.1:{port}/-/ready")
                    answer = json.loads(get(f"http://127.0.0.1:{port}/api/v1/agents/a0/probe",
                                            "POST")[1])
                finally:
                    proc.kill()
                    proc.wait()
            ours_ok = answer.get("status") in ("healthy", "degraded")
            theirs = blackbox_success(base, module, target)
            agree &= ours_ok == theirs
            print(f"  {name:22} {ours_ok!s:5} / {theirs!s:5}  {answer['probe'].get('reason') or ''}")
        print("verdicts agree" if agree else "VERDICTS DIFFER")

        mcp_url = "http://127.0.0.1:{port}/mcp"
        tools = ", protocol: mcp, mcp: {expect_tools: [add]}"
        peers = [
            ("mcp (SSE answers)", ("mcp_server.py",), sys.executable, mcp_url, tools),
            ("a2a", ("a2a_server.py",), sys.executable, "http://127.0.0.1:{port}/",
             ", protocol: a2a"),
        ]
        if os.path.exists(MCP2_PYTHON):
            peers += [
                ("mcp 2026-07-28 (SDK 2.x)", ("mcp2_server.py", "--era", "dual"),
                 MCP2_PYTHON, mcp_url, tools),
                ("mcp handshake era (SDK 2.x)", ("mcp2_server.py", "--era", "legacy"),
                 MCP2_PYTHON, mcp_url, tools),
            ]
        else:
            print(f"no MCP SDK 2.x at {MCP2_PYTHON}: the MCP eras are not measured")
        for label, script, python, url, extra in peers:
            peer = Peer(*script, python=python)
            try:
                count = max(1, args.agents // 5)
                ours, probes, failures = ours_cpu_per_probe(
                    args.exporter, fleet(count, url.format(port=peer.port), extra, "2s"),
                    max(args.seconds / 2, 4), 3)
                print(f"agent-health-exporter {label}: {ours * 1e6:.0f} us CPU per probe "
                      f"({probes} probes, {failures} failed)")
            finally:
                peer.stop()
        sys.exit(0 if agree else 1)
    finally:
        bb.kill()
        server.stop()


if __name__ == "__main__":
    main()
