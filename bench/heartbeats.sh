#!/usr/bin/env bash
# The heartbeat benchmark: wrk sends heartbeats over keep-alive connections to an exporter that
# also probes a fleet, on loopback only, bounded in time. See BENCHMARKS.md, "Heartbeats".
#
#   bench/heartbeats.sh                 # 20,000 heartbeat agents, 10,000 probed every 30 s, 30 s windows
#   bench/heartbeats.sh --smoke         # 20,000 + 1,000 agents, 3 s windows: well under a minute
#
# Every other flag goes to bench/heartbeats.py (--help lists them). Installs wrk and python3 from
# Debian when missing, builds the release binary and the bench_target example, and fails only
# when the tooling itself breaks: figures on a slow machine are reported, never judged.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for arg in "$@"; do
  if [[ $arg == --smoke ]]; then
    args+=(--probed-agents 1000 --interval 5s --duration 3s --warmup 1s --rate 5000)
  else
    args+=("$arg")
  fi
done

source bench/prepare.sh
bench_prepare wrk=wrk python3=python3
exec python3 bench/heartbeats.py "${args[@]}"
