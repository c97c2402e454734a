#!/usr/bin/env bash
# The canary benchmark: does a canary at its cadence delay a health probe, and what does one
# cost? One exporter, 1,000 probed agents and 100 MCP agents (the official SDK's server from
# tests/peers/), a window without and one with a canary on each MCP agent, on loopback only,
# bounded in time. See BENCHMARKS.md, "Canaries".
#
#   bench/canaries.sh                 # 1,000 agents every 10 s, 100 canaries every 10 s, 30 s windows
#   bench/canaries.sh --smoke         # the same fleet and canaries, 10 s windows: under a minute
#
# Every other flag goes to bench/canaries.py (--help lists them). Needs the peers' venv
# (tests/peers/setup-venv.sh, found through AHE_PEERS_PYTHON or at target/peers-venv); builds
# the release binary and the bench_target example; fails only when the tooling itself breaks:
# figures on a slow machine are reported, never judged.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for arg in "$@"; do
  if [[ $arg == --smoke ]]; then
    args+=(--duration 10s --warmup 5s)
  else
    args+=("$arg")
  fi
done

source bench/prepare.sh
bench_prepare python3=python3
exec python3 bench/canaries.py "${args[@]}"
