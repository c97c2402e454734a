#!/usr/bin/env bash
# Real-world check of the exposition: the release binary on the shipped example config, scraped
# as Prometheus would, linted by Debian's promtool; the self-probing agent must be healthy.
# Usage: tests/realworld/exposition.sh path/to/agent-health-exporter
set -euo pipefail
bin=${1:?usage: $0 path/to/agent-health-exporter}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The example probes the exporter on its default port; point it at the port used here.
sed "s/127.0.0.1:10056/127.0.0.1:$port/g; s/interval: 15s/interval: 1s/; s/timeout: 5s /timeout: 500ms /" \
  "$root/config.example.yaml" > "$work/config.yaml"
"$bin" --config.file="$work/config.yaml" --web.listen-address="127.0.0.1:$port" 2> "$work/log" &
pid=$!

healthy=""
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/metrics" -o "$work/metrics.txt" 2>/dev/null &&
     grep -q '^agent_health_status{agent="exporter-self".*status="healthy"} 1' "$work/metrics.txt"; then
    healthy=yes; break
  fi
  sleep 0.1
done
if [ -z "$healthy" ]; then
  echo "FAIL: the self-probing agent is not healthy"; cat "$work/log"; exit 1
fi
echo "ok: self-probing agent healthy"

promtool check metrics < "$work/metrics.txt"
echo "ok: promtool check metrics reports nothing on the text exposition"

curl -fsS -H 'Accept-Encoding: gzip' -D "$work/h" -o "$work/m.gz" "http://127.0.0.1:$port/metrics"
grep -qi '^content-encoding: gzip' "$work/h"
gunzip -c "$work/m.gz" | promtool check metrics
echo "ok: gzip exposition decodes and lints"

kill -TERM "$pid"
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then echo "FAIL: still running 5 s after SIGTERM"; exit 1; fi
wait "$pid" && echo "ok: SIGTERM exits 0" || { echo "FAIL: non-zero exit after SIGTERM"; exit 1; }
pid=""
