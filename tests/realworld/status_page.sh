#!/usr/bin/env bash
# Real-world check of the status page: Debian's chromium, headless, loads `/` from the release
# binary, shows every configured agent, follows an agent's change of status within 2 s of the
# event, shows a heartbeat agent's deadline and follows it as reports move it, and sends no
# request off 127.0.0.1. The agent that changes is a tiny HTTP server whose
# answer this script switches (POST /mode/down, /mode/up). Then a second exporter probes 10,000
# agents, 10 % of them failing, and the page's time to first render and to show a status change under
# that load are printed (bounded only by a generous 10 s).
# Usage: tests/realworld/status_page.sh path/to/agent-health-exporter
set -euo pipefail
bin=$(realpath "${1:?usage: $0 path/to/agent-health-exporter}")
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable"; exit 1; }
root=$(cd "$(dirname "$0")/../.." && pwd)
browser="$root/tests/browser"
source "$(dirname "$0")/workdir.sh"

for tool in node npm python3 curl; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "FAIL: no chromium at $CHROMIUM"; exit 1; }

# The controllable agent: GET /health answers 200 {"status":"ok"} while up, 500 while down.
cat > "$work/agent.py" <<'EOF'
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

up = True

class Agent(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self.answer(200 if up else 500, {"status": "ok" if up else "down"})
        else:
            self.answer(404, {"error": "not found"})

    def do_POST(self):
        global up
        if self.path in ("/mode/up", "/mode/down"):
            up = self.path == "/mode/up"
            self.answer(200, {"up": up})
        else:
            self.answer(404, {"error": "not found"})

server = ThreadingHTTPServer(("127.0.0.1", 0), Agent)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
EOF
python3 "$work/agent.py" "$work/agent.port" &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$work/agent.port" ] && break; sleep 0.1; done
agent_port=$(cat "$work/agent.port")

# Three free ports: the two exporters', and one where nothing listens for the TCP agents.
# Below the kernel's ephemeral range, so that no other process takes them meanwhile.
read -r port dead_port fleet_port < <(python3 "$root/tests/realworld/helpers.py" free-ports 3)

cat > "$work/config.yaml" <<EOF
agents:
  - name: switchable
    type: worker
    url: http://127.0.0.1:$agent_port/health
    interval: 1s
    timeout: 500ms
    labels: {team: browser-test}
    expect:
      json: {"/status": "ok"}
  - name: exporter-self
    type: exporter
    url: http://127.0.0.1:$port/-/healthy
    interval: 1s
    timeout: 500ms
    labels: {team: observability}
  - name: nothing-listens
    type: database
    url: tcp://127.0.0.1:$dead_port
    interval: 1s
    timeout: 500ms
  # Names that sort differently by text and by number (w10 < w2 < w9 as text), one of them failing.
  - {name: w10, type: worker, url: "http://127.0.0.1:$port/-/healthy", interval: 1s, timeout: 500ms}
  - {name: w2, type: worker, url: "http://127.0.0.1:$port/-/healthy", interval: 1s, timeout: 500ms}
  - {name: w1, type: worker, url: "http://127.0.0.1:$port/-/healthy", interval: 1s, timeout: 500ms}
  - {name: w9, type: worker, url: "tcp://127.0.0.1:$dead_port", interval: 1s, timeout: 500ms}
  # Reports in instead of being probed: its row shows the deadline (period + grace = 12 min).
  - {name: nightly, type: batch, heartbeat: {period: 10m, token_file: nightly.token}}
EOF
heartbeat_token=status-page-heartbeat-token
echo "$heartbeat_token" > "$work/nightly.token"
"$bin" --config.file="$work/config.yaml" --web.listen-address="127.0.0.1:$port" 2> "$work/log" &
pids+=($!)
ready=""
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && { ready=yes; break; }
  sleep 0.1
done
[ -n "$ready" ] || { echo "FAIL: the exporter is not ready"; cat "$work/log"; exit 1; }
# Its first report, so that every agent has a status when the page is compared with the API.
curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $heartbeat_token" \
  "http://127.0.0.1:$port/api/v1/agents/nightly/heartbeat"

if [ ! -d "$browser/node_modules/playwright-core" ]; then
  # Pinned in package.json; no lockfile is kept (see tests/browser/package.json) and no browser is
  # downloaded: playwright-core drives the system's chromium.
  (cd "$browser" && timeout 300 npm install --no-package-lock --no-audit --no-fund --loglevel=error)
fi

# Every wait is bounded inside the test; `timeout` bounds the whole of it as well.
status=0
timeout 180 node "$browser/status_page.mjs" base="http://127.0.0.1:$port" control="http://127.0.0.1:$agent_port" \
  agent=switchable expect=switchable,exporter-self,nothing-listens,w10,w2,w1,w9,nightly \
  heartbeat=nightly heartbeat_token="$heartbeat_token" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- exporter log"; tail -n 40 "$work/log"
  exit "$status"
fi

# The fleet: w0 is the switchable agent (it sorts first in its status); w1..w9999 are TCP checks of
# three types, every tenth at the closed port (unhealthy), the others at the first exporter's port,
# every 30 s (the default interval), so about 330 probe events a second stream to the page.
python3 - "$agent_port" "$port" "$dead_port" > "$work/fleet.yaml" <<'EOF'
import sys
agent_port, live_port, dead_port = sys.argv[1:]
print("defaults: {interval: 30s, timeout: 2s}")
print("agents:")
print(f"  - {{name: w0, type: worker, url: 'http://127.0.0.1:{agent_port}/health', interval: 1s, timeout: 500ms}}")
for i in range(1, 10000):
    kind = ("worker", "gateway", "database")[i % 3]
    port = dead_port if i % 10 == 0 else live_port
    print(f"  - {{name: w{i}, type: {kind}, url: 'tcp://127.0.0.1:{port}'}}")
EOF
"$bin" --config.file="$work/fleet.yaml" --web.listen-address="127.0.0.1:$fleet_port" 2> "$work/fleet.log" &
pids+=($!)
ready=""
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$fleet_port/-/ready" >/dev/null 2>&1 && { ready=yes; break; }
  sleep 0.1
done
[ -n "$ready" ] || { echo "FAIL: the fleet exporter is not ready"; tail -n 40 "$work/fleet.log"; exit 1; }
timeout 180 node "$browser/status_page.mjs" mode=load base="http://127.0.0.1:$fleet_port" \
  control="http://127.0.0.1:$agent_port" agent=w0 || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- fleet exporter log"; tail -n 40 "$work/fleet.log"
fi
exit "$status"
