#!/usr/bin/env bash
# Creates the virtual environment of LiteLLM's proxy (requirements-litellm.txt), the
# OpenAI-compatible server of the canary tests, in AHE_LITELLM_VENV (target/litellm-venv), and
# prints the path of its python; the tests find it through AHE_LITELLM_PYTHON or at that
# default path, and skip with a message without it. About a minute on a fresh machine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${AHE_LITELLM_VENV:-$here/../../target/litellm-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-litellm.txt" >&2
echo "$venv/bin/python"
