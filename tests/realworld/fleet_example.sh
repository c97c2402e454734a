#!/usr/bin/env bash
# The fleet example of docs/discovery.md as shipped: examples/fleet/config.yaml with its
# orchestrator (examples/fleet/orchestrator_sd.py, the HTTP SD endpoint on 127.0.0.1:8000) and
# a real DNS server (Debian's dnsmasq on 127.0.0.1:5353) serving the workers' SRV records.
# Proves that the built binary runs it with agents of three types from all four places
# (written in the file, file_sd, http_sd, dns_sd), each with its origin in the JSON API, that
# the orchestrator's unprobed agent is dropped by relabeling and counted, and that a worker
# whose SRV record goes away leaves the fleet while the others keep their state.
# Usage: tests/realworld/fleet_example.sh path/to/agent-health-exporter
set -euo pipefail
bin=$(realpath "${1:?usage: $0 path/to/agent-health-exporter}")
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$(dirname "$0")/workdir.sh"

dnsmasq=$(command -v dnsmasq || ls /usr/sbin/dnsmasq 2>/dev/null || true)
if [ -z "$dnsmasq" ]; then
  echo "FAIL: dnsmasq is not installed (apt-get install dnsmasq)"
  exit 1
fi
# The example names fixed ports; say so plainly when something else holds them.
for port in 8000 5353; do
  if python3 -c "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1',$port))" 2>/dev/null; then :; else
    echo "FAIL: port $port is taken; the fleet example uses it (examples/fleet/config.yaml)"
    exit 1
  fi
done

python3 "$root/examples/fleet/orchestrator_sd.py" > "$work/orchestrator.log" 2>&1 &
pids+=($!)
start_dns() { # start_dns WORKER...: one SRV record per worker name
  local args=(--keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts
    --bind-interfaces --listen-address=127.0.0.1 --port=5353 --pid-file= --user=root)
  local port=8201
  for w in "$@"; do
    args+=("--srv-host=_health._tcp.workers.fleet.test,$w.workers.fleet.test,$port")
    port=$((port + 1))
  done
  "$dnsmasq" "${args[@]}" > "$work/dnsmasq.log" 2>&1 &
  dns_pid=$!
  pids+=("$dns_pid")
}
start_dns w1 w2

listen=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --config.file="$root/examples/fleet/config.yaml" --web.listen-address="127.0.0.1:$listen" \
  2> "$work/exporter.log" &
pids+=($!)
base="http://127.0.0.1:$listen"
for _ in $(seq 1 100); do curl -fsS "$base/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done

# fleet: "name type origin" per agent, sorted.
fleet() {
  curl -fsS "$base/api/v1/agents" | python3 -c '
import json, sys
answer = json.load(sys.stdin)
agents = answer["agents"] if isinstance(answer, dict) else answer
for a in sorted(agents, key=lambda a: a["name"]):
    print(a["name"], a["type"], a.get("origin", "static"))'
}
# wait_for WHAT PYTHON-CONDITION-ON-LINES: polls the fleet for up to 60 s.
wait_for() {
  for _ in $(seq 1 120); do
    if fleet | python3 -c "import sys; lines = sys.stdin.read().split(chr(10)); sys.exit(0 if ($2) else 1)"; then
      echo "ok: $1"
      return
    fi
    sleep 0.5
  done
  echo "FAIL: $1; the fleet is:"
  fleet
  echo "--- exporter log"
  cat "$work/exporter.log"
  exit 1
}

wait_for "static planners, file_sd retrievers, http_sd and dns_sd workers are all probed" '
  any(l.startswith("planner-1 planner static") for l in lines)
  and any(l.startswith("planner-2 planner static") for l in lines)
  and any(l.startswith("retriever-") and " retriever file_sd/0 " in l for l in lines)
  and any(l.startswith("worker-a1 worker http_sd/0 ") for l in lines)
  and any(l.startswith("worker-a2 worker http_sd/0 ") for l in lines)
  and any(l.startswith("w1 worker dns_sd/0 ") for l in lines)
  and any(l.startswith("w2 worker dns_sd/0 ") for l in lines)'
fleet | sed 's/^/  /'

# grep reads the whole listing (no -q): an early exit would break the pipe under pipefail.
if fleet | grep '^batch-7 ' >/dev/null; then
  echo "FAIL: batch-7 (probe: false) should be dropped by the keep rule"
  exit 1
fi
metrics=$(curl -fsS "$base/metrics")
grep -F 'agent_exporter_discovery_dropped_targets_total{source="http_sd/0",reason="relabel"} 1' <<<"$metrics" >/dev/null || {
  echo "FAIL: the dropped unprobed agent is not counted:"
  echo "$metrics" | grep discovery_
  exit 1
}
echo "ok: the orchestrator's unprobed agent is dropped by relabeling and counted"
for source in file_sd/0 http_sd/0 dns_sd/0; do
  grep -F "agent_exporter_discovery_last_refresh_success_timestamp_seconds{source=\"$source\"}" <<<"$metrics" >/dev/null || {
    echo "FAIL: no successful refresh recorded for $source"
    exit 1
  }
done
echo "ok: every source recorded a successful refresh"

# The DNS server now serves w1 only. dns_sd refreshes every 30 s: w2 must leave by then.
kill "$dns_pid"
wait "$dns_pid" 2>/dev/null || true
start_dns w1
for _ in $(seq 1 90); do
  now=$(fleet)
  grep '^w2 ' <<<"$now" >/dev/null || break
  sleep 0.5
done
now=$(fleet)
if grep '^w2 ' <<<"$now" >/dev/null; then
  echo "FAIL: w2 is still in the fleet 45 s after its SRV record went away"
  exit 1
fi
grep '^w1 worker dns_sd/0' <<<"$now" >/dev/null || { echo "FAIL: w1 left with w2"; exit 1; }
grep '^worker-a1 worker http_sd/0' <<<"$now" >/dev/null || { echo "FAIL: http_sd agents left"; exit 1; }
echo "ok: a worker whose SRV record went away left the fleet; the others stayed"
