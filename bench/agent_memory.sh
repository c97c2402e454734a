#!/usr/bin/env bash
# RSS per agent of the release binary: agents that refuse connections, 30 s interval, RSS read
# 40 s after start with no scrape, against an exporter with no agents started the same way.
# Prints one table row per fleet size with the load average beside it; judges nothing.
#
#   bench/agent_memory.sh 3000 100000          # fleet sizes (default: 3000)
#   AHE_BIN=path/to/agent-health-exporter bench/agent_memory.sh 3000
#
# The per-structure account (size_of, heap per stage) is `examples/agent_memory.rs`.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${AHE_BIN:-target/release/agent-health-exporter}
if [[ -z ${AHE_BIN:-} ]]; then
  cargo build --release --quiet --bin agent-health-exporter
fi
settle=${AHE_SETTLE:-40}
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(3000)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A port nobody listens on: bound by the kernel for a moment, then released.
refused=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

write_config() { # agents file
  python3 - "$1" "$2" "$refused" <<'EOF'
import sys
n, path, port = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(path, "w") as f:
    f.write("defaults:\n  interval: 30s\nagents:")
    if n == 0:
        f.write(" []\n")
    for i in range(n):
        if i == 0:
            f.write("\n")
        f.write(f"  - {{name: agent-{i:06d}, type: bench, url: 'http://127.0.0.1:{port}/health'}}\n")
EOF
}

# Starts the exporter with `agents` agents and prints its RSS in KiB after `settle` seconds.
rss_after() { # agents
  local config=$work/fleet-$1.yaml
  write_config "$1" "$config"
  "$bin" --config.file="$config" --web.listen-address=127.0.0.1:0 --log.level=error \
    2>"$work/log-$1" &
  local pid=$!
  sleep "$settle"
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "the exporter with $1 agents exited; its log:" >&2
    cat "$work/log-$1" >&2
    exit 1
  fi
  local rss hwm
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  echo "$rss $hwm"
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

# Command substitution in an assignment, not `< <(...)`: under `set -e` a failed measurement
# (the `exit 1` in rss_after's subshell) then stops the script instead of printing a bad row.
measured=$(rss_after 0)
read -r idle idle_hwm <<<"$measured"
echo "| agents | RSS after ${settle} s (idle process) | peak RSS | RSS per agent above idle | load average (1, 5, 15 min) |"
echo "|---|---|---|---|---|"
for n in "${sizes[@]}"; do
  before=$(load)
  measured=$(rss_after "$n")
  read -r rss hwm <<<"$measured"
  awk -v n="$n" -v rss="$rss" -v hwm="$hwm" -v idle="$idle" -v l0="$before" -v l1="$(load)" 'BEGIN {
    printf "| %d | %.1f MiB (%.1f) | %.1f MiB | %.2f KiB | %s → %s |\n",
      n, rss / 1024, idle / 1024, hwm / 1024, (rss - idle) / n, l0, l1
  }'
done
echo "(idle process peak: $((idle_hwm / 1024)) MiB)"
