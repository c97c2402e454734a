#!/usr/bin/env bash
# Creates the virtual environments of the protocol tests' reference peers and prints the path
# of the first one's python:
# - AHE_PEERS_VENV (target/peers-venv): gRPC health, MCP 1.x, A2A servers (requirements.txt);
#   the tests find it through AHE_PEERS_PYTHON;
# - AHE_PEERS_VENV_MCP2 (target/peers-venv-mcp2): the MCP SDK 2.x (requirements-mcp2.txt),
#   which cannot share a venv with 1.x; the tests find it through AHE_PEERS_PYTHON_MCP2 or at
#   its default path;
# - AHE_PEERS_VENV_A2A03 (target/peers-venv-a2a03): a2a-sdk 0.3.x (requirements-a2a03.txt),
#   found through AHE_PEERS_PYTHON_A2A03 or at its default path.
# Without them the tests skip with a message.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${AHE_PEERS_VENV:-$here/../../target/peers-venv}"
venv_mcp2="${AHE_PEERS_VENV_MCP2:-$here/../../target/peers-venv-mcp2}"
venv_a2a03="${AHE_PEERS_VENV_A2A03:-$here/../../target/peers-venv-a2a03}"
install() {
  if [ ! -x "$1/bin/python" ]; then
    python3 -m venv "$1" >&2
  fi
  "$1/bin/python" -m pip install --quiet --disable-pip-version-check -r "$2" >&2
}
install "$venv" "$here/requirements.txt"
install "$venv_mcp2" "$here/requirements-mcp2.txt"
install "$venv_a2a03" "$here/requirements-a2a03.txt"
echo "$venv/bin/python"
