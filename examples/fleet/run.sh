#!/usr/bin/env bash
# Runs the fleet example on this machine, with everything it names: the orchestrator's HTTP SD
# endpoint (orchestrator_sd.py on 127.0.0.1:8000), a DNS server answering the workers' SRV
# records (Debian's dnsmasq on 127.0.0.1:5353: `apt-get install dnsmasq`), and the exporter on
# config.yaml. Then open http://localhost:10056/ (or the address given). Ctrl-C stops all three.
# Usage: examples/fleet/run.sh [path/to/agent-health-exporter [--web.listen-address=...]]
#        (without a binary: cargo run --release)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dnsmasq=$(command -v dnsmasq || ls /usr/sbin/dnsmasq 2>/dev/null || true)
[ -n "$dnsmasq" ] || { echo "examples/fleet/run.sh: dnsmasq is not installed (apt-get install dnsmasq); it serves the workers' SRV records" >&2; exit 1; }
command -v python3 >/dev/null || { echo "examples/fleet/run.sh: python3 is not installed (the HTTP SD endpoint)" >&2; exit 1; }

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
trap 'exit 130' INT TERM

python3 "$here/orchestrator_sd.py" &
pids+=($!)
# Two workers under the name the dns_sd source asks for; their first label becomes the agent name.
"$dnsmasq" --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
  --bind-interfaces --listen-address=127.0.0.1 --port=5353 --pid-file= --user="$(id -un)" \
  --srv-host=_health._tcp.workers.fleet.test,w1.workers.fleet.test,8201 \
  --srv-host=_health._tcp.workers.fleet.test,w2.workers.fleet.test,8202 &
pids+=($!)

if [ $# -ge 1 ]; then
  bin=$1
  shift
  "$bin" --config.file="$here/config.yaml" "$@" &
else
  (cd "$here/../.." && cargo run --release -- --config.file="$here/config.yaml") &
fi
pids+=($!)
wait "${pids[-1]}"
