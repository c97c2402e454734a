#!/usr/bin/env bash
# Real-world check of the status page: Debian's chromium, headless, loads `/` from the release
# binary, shows every configured agent, follows an agent's change of status within 2 s of the
# event, and sends no request off 127.0.0.1. The agent that changes is a tiny HTTP server whose
# answer this script switches (POST /mode/down, /mode/up).
# Usage: tests/realworld/status_page.sh path/to/agent-health-exporter
set -euo pipefail
bin=$(realpath "${1:?usage: $0 path/to/agent-health-exporter}")
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable"; exit 1; }
root=$(cd "$(dirname "$0")/../.." && pwd)
browser="$root/tests/browser"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

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

# Two free ports: the exporter's, and one where nothing listens for the TCP agent.
read -r port dead_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')

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
EOF
"$bin" --config.file="$work/config.yaml" --web.listen-address="127.0.0.1:$port" 2> "$work/log" &
pids+=($!)
ready=""
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && { ready=yes; break; }
  sleep 0.1
done
[ -n "$ready" ] || { echo "FAIL: the exporter is not ready"; cat "$work/log"; exit 1; }

if [ ! -d "$browser/node_modules/playwright-core" ]; then
  # Pinned in package.json; no lockfile is kept (see tests/browser/package.json) and no browser is
  # downloaded: playwright-core drives the system's chromium.
  (cd "$browser" && timeout 300 npm install --no-package-lock --no-audit --no-fund --loglevel=error)
fi

# Every wait is bounded inside the test; `timeout` bounds the whole of it as well.
status=0
timeout 180 node "$browser/status_page.mjs" base="http://127.0.0.1:$port" control="http://127.0.0.1:$agent_port" \
  agent=switchable expect=switchable,exporter-self,nothing-listens || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- exporter log"; tail -n 40 "$work/log"
fi
exit "$status"
