#!/usr/bin/env bash
# The fleet benchmark: agent-health-exporter against blackbox_exporter and the wrk floor, on
# loopback only, bounded in time. See BENCHMARKS.md for what it reports and how to read it.
#
#   bench/run.sh --agents 10000 --interval 30s --duration 60s
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
           --scrape-samples 3)
  else
    args+=("$arg")
  fi
done

need=()
command -v wrk >/dev/null || need+=(wrk)
[[ -x /usr/bin/prometheus-blackbox-exporter ]] || need+=(prometheus-blackbox-exporter)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Two builds: an example pulls in the dev-dependencies' features, and the exporter measured must
# be the binary that `cargo build --release` ships.
cargo build --release --locked --quiet
cargo build --release --locked --quiet --example bench_target
# Many probes in flight mean many sockets at once.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 bench/bench.py "${args[@]}"
