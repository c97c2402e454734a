#!/usr/bin/env bash
# The protocol interoperability matrix (protocol_matrix.py): installs the Node.js peers
# (tests/peers/setup-npm.sh), expects the Python ones (tests/peers/setup-venv.sh, whose venvs
# AHE_PEERS_PYTHON, AHE_PEERS_PYTHON_MCP2, AHE_PEERS_PYTHON_A2A03 name), and runs every cell
# through PROBE_ONCE_BIN (examples/probe_once). Fails on any disagreement.
# Usage: protocol_matrix.sh PROBE_ONCE_BIN
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
bin="$1"
npm_dir="$(bash "$root/tests/peers/setup-npm.sh")"
python3 "$here/protocol_matrix.py" "$bin" \
  "${AHE_PEERS_PYTHON:-$root/target/peers-venv/bin/python}" \
  "${AHE_PEERS_PYTHON_MCP2:-$root/target/peers-venv-mcp2/bin/python}" \
  "${AHE_PEERS_PYTHON_A2A03:-$root/target/peers-venv-a2a03/bin/python}" \
  "$npm_dir"
