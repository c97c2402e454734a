#!/usr/bin/env bash
# Creates the virtual environment of the protocol tests' reference peers (gRPC health, MCP,
# A2A servers from PyPI, pinned in requirements.txt) and prints the path of its python.
# The tests find it through AHE_PEERS_PYTHON; without it they skip with a message.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${AHE_PEERS_VENV:-$here/../../target/peers-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
echo "$venv/bin/python"
