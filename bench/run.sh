#!/usr/bin/env bash
# The fleet benchmark: agent-health-exporter against blackbox_exporter and the wrk floor, on
# loopback only, bounded in time. See BENCHMARKS.md for what it reports and how to read it.
#
#   bench/run.sh --agents 10000 --interval 30s --duration 60s
#   bench/run.sh --agents 100000 --duration 30s   # about 6 minutes; peak RSS 4 GiB on ef47e0a
#   bench/run.sh --smoke        # 200 agents, 1 s interval, 10 s window: under a minute
#
# Every other flag goes to bench/bench.py (--help lists them). Installs what it needs from
# Debian when missing (wrk, prometheus-blackbox-exporter, curl, python3), builds the release
# binary and the bench_target example, and fails only when the tooling itself breaks: figures
# on a slow machine are reported, never judged.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for arg in "$@"; do
  if [[ $arg == --smoke ]]; then
    args+=(--agents 200 --interval 1s --duration 10s --warmup 2s --compare-duration 4s
           --scrape-samples 3 --scrape-seconds 3 --stalled 20 --stalled-seconds 3)
  else
    args+=("$arg")
  fi
done

source bench/prepare.sh
bench_prepare wrk=wrk curl=curl python3=python3 \
  /usr/bin/prometheus-blackbox-exporter=prometheus-blackbox-exporter
exec python3 bench/bench.py "${args[@]}"
