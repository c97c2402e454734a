"""The protocol interoperability matrix: every implementation of the peers' venvs and of the npm
install (tests/peers/setup-venv.sh, setup-npm.sh) in four cases, each probed once by
examples/probe_once, each verdict compared with what the implementation says of itself:

  healthy    served as it is; its own client (protocol_oracle.py: the MCP SDK 2.x client for
             MCP, grpcio's health stub for gRPC; the card as served for A2A) says which tools,
             which status, which skills, and for MCP which era it negotiated
  unhealthy  its own way of failing: an MCP tool it lacks, an A2A skill it lacks, NOT_SERVING
             set on its gRPC health service (Check, and Watch)
  hung       the server process stopped (SIGSTOP): connections are accepted, nothing answers
  refused    the server process gone: connection refused

Prints a table (implementation, version, case -> verdict, reason, protocol version) and exits 1
on any disagreement.

Usage: protocol_matrix.py PROBE_ONCE_BIN PEERS_PYTHON MCP2_PYTHON A2A03_PYTHON NPM_DIR
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import helpers  # the port picker shared by the real-world scripts

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent / "peers"
TIMEOUT = "1500ms"


class Peer:
    """A server process; `ready PORT` on its first line, or a PORT given to it."""

    def __init__(self, argv, cwd, env=None, port=None):
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        if port is None:
            line = self.proc.stdout.readline()
            if not line.startswith("ready "):
                raise RuntimeError(f"{argv} did not start: {line!r}")
            port = int(line.split()[1])
        else:
            wait_for_port(port)
        self.port = port

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self):
        self.proc.send_signal(signal.SIGSTOP)

    def kill(self):
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()


def free_port():
    return helpers.pick_free_ports(1)[0]


def wait_for_port(port, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def probe(binary, agent_yaml, watch=False):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write("agents:\n  - " + agent_yaml + "\n")
    try:
        argv = [binary, f.name] + (["--watch"] if watch else [])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        return json.loads(out.stdout.splitlines()[0])
    finally:
        os.unlink(f.name)


def main():
    # Absolute: each peer runs in its own folder.
    binary, peers_py, mcp2_py, a2a03_py, npm = (os.path.abspath(a) for a in sys.argv[1:6])
    node = ["node"]
    everything_port = free_port()
    impls = [
        # name, version, protocol, start
        ("mcp python sdk 2.x, stateless (modern only)", "mcp 2.3.0", "mcp",
         lambda: Peer([mcp2_py, "-u", "mcp2_server.py", "--era", "modern"], PEERS)),
        ("mcp python sdk 2.x, dual", "mcp 2.3.0", "mcp",
         lambda: Peer([mcp2_py, "-u", "mcp2_server.py", "--era", "dual"], PEERS)),
        ("mcp python sdk 2.x, legacy only", "mcp 2.3.0", "mcp",
         lambda: Peer([mcp2_py, "-u", "mcp2_server.py", "--era", "legacy"], PEERS)),
        ("mcp python sdk 1.x, event store", "mcp 1.30.0", "mcp",
         lambda: Peer([peers_py, "-u", "mcp_server.py", "--event-store"], PEERS)),
        ("mcp typescript sdk v2, modern only", "@modelcontextprotocol/server 2.4.0", "mcp",
         lambda: Peer(node + ["mcp_ts.mjs", "--sdk", "v2"], npm)),
        ("mcp typescript sdk v1, event store", "@modelcontextprotocol/sdk 1.32.2", "mcp",
         lambda: Peer(node + ["mcp_ts.mjs", "--sdk", "v1"], npm)),
        ("mcp server-everything", "@modelcontextprotocol/server-everything 2026.8.31", "mcp",
         lambda: Peer(node + ["node_modules/@modelcontextprotocol/server-everything/dist/index.js",
                              "streamableHttp"], npm,
                      env={**os.environ, "PORT": str(everything_port)}, port=everything_port)),
        ("a2a python sdk 1.x", "a2a-sdk 1.3.0", "a2a",
         lambda: Peer([peers_py, "-u", "a2a_server.py"], PEERS)),
        ("a2a python sdk 0.3", "a2a-sdk 0.3.26", "a2a",
         lambda: Peer([a2a03_py, "-u", "a2a03_server.py"], PEERS)),
        ("a2a js sdk", "@a2a-js/sdk 1.3.0", "a2a",
         lambda: Peer(node + ["a2a_js.mjs"], npm)),
        ("grpc python health", "grpcio-health-checking 1.85.1", "grpc",
         lambda: Peer([peers_py, "-u", "grpc_health_server.py"], PEERS)),
        ("grpc-js health", "grpc-health-check 2.1.0", "grpc",
         lambda: Peer(node + ["grpc_health.mjs"], npm)),
    ]
    rows, disagreements = [], 0
    for name, version, protocol, start in impls:
        peer = start()
        try:
            cells = run_cells(binary, peers_py, mcp2_py, protocol, peer)
        finally:
            if peer.proc.poll() is None:
                peer.kill()
        for case, got, want in cells:
            ok = all(got.get(k) == v for k, v in want.items())
            disagreements += not ok
            rows.append((name, version, case, got, want, ok))
    print_table(rows)
    if disagreements:
        print(f"\nFAIL: {disagreements} cell(s) disagree with what the implementation says")
        sys.exit(1)
    print(f"\nall {len(rows)} cells agree")


def run_cells(binary, peers_py, mcp2_py, protocol, peer):
    """[(case, what the probe said, what it must have said)] for one implementation."""
    port = peer.port
    cells = []
    if protocol == "mcp":
        url = f"http://127.0.0.1:{port}/mcp"
        own = json.loads(subprocess.run(
            [mcp2_py, str(HERE / "protocol_oracle.py"), "mcp", url],
            capture_output=True, text=True, timeout=30, check=True).stdout)
        tool = own["tools"][0]
        base = f"{{name: m, type: t, url: '{url}', timeout: {TIMEOUT}, protocol: mcp, mcp: "
        cells.append(("healthy", probe(binary, base + f"{{expect_tools: ['{tool}']}}}}"),
                      {"verdict": "healthy", "protocol_version": own["version"]}))
        missing = "no-such-tool"
        assert missing not in own["tools"]
        cells.append(("unhealthy (tool missing)",
                      probe(binary, base + f"{{expect_tools: ['{tool}', {missing}]}}}}"),
                      {"verdict": "unhealthy", "reason": "body_mismatch",
                       "protocol_version": own["version"]}))
        agent = base + f"{{expect_tools: ['{tool}']}}}}"
    elif protocol == "a2a":
        url = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url + ".well-known/agent-card.json", timeout=5) as r:
            card = json.load(r)
        skills = [s["id"] for s in card["skills"]]
        said = card.get("protocolVersion") or card["supportedInterfaces"][0]["protocolVersion"]
        base = f"{{name: a, type: t, url: '{url}', timeout: {TIMEOUT}, protocol: a2a, a2a: "
        cells.append(("healthy", probe(binary, base + f"{{expect_skills: [{skills[0]}]}}}}"),
                      {"verdict": "healthy", "protocol_version": said}))
        cells.append(("unhealthy (skill missing)",
                      probe(binary, base + "{expect_skills: [no-such-skill]}}"),
                      {"verdict": "unhealthy", "reason": "body_mismatch"}))
        agent = base + f"{{expect_skills: [{skills[0]}]}}}}"
    else:
        target = f"127.0.0.1:{port}"
        agent = f"{{name: g, type: t, url: 'grpc://{target}', timeout: {TIMEOUT}, grpc: {{watch: true}}}}"

        def own():
            return json.loads(subprocess.run(
                [peers_py, str(HERE / "protocol_oracle.py"), "grpc", target, ""],
                capture_output=True, text=True, timeout=30, check=True).stdout)["status"]
        assert own() == "SERVING"
        cells.append(("healthy (Check, Watch)", probe(binary, agent, watch=True),
                      {"verdict": "healthy", "watch": "serving"}))
        peer.command("set - NOT_SERVING")
        assert own() == "NOT_SERVING"
        cells.append(("unhealthy NOT_SERVING (Check, Watch)", probe(binary, agent, watch=True),
                      {"verdict": "unhealthy", "reason": "not_serving", "watch": "not_serving"}))
    peer.stop()
    hung = {"verdict": "unhealthy", "reason": "timeout"}
    refused = {"verdict": "unhealthy", "reason": "connect"}
    watch = protocol == "grpc"
    if watch:
        hung["watch"] = refused["watch"] = "down"
    cells.append(("hung (SIGSTOP)", probe(binary, agent, watch=watch), hung))
    peer.kill()
    cells.append(("refused", probe(binary, agent, watch=watch), refused))
    return cells


def print_table(rows):
    header = ("implementation", "version", "case", "verdict", "reason", "protocol_version",
              "watch", "agrees")
    lines = [header]
    for name, version, case, got, want, ok in rows:
        lines.append((name, version, case, got["verdict"], got["reason"],
                      got["protocol_version"], got["watch"] or "", "yes" if ok else
                      f"NO, expected {want}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths)) + "  " + str(line[-1]))


if __name__ == "__main__":
    main()
