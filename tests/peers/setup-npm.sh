#!/usr/bin/env bash
# Installs the Node.js reference peers of the protocol matrix (pinned in npm/package.json) into
# AHE_PEERS_NPM (target/peers-npm) and prints that directory. The peers' scripts (npm/*.mjs)
# are run from there, so that Node finds the packages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${AHE_PEERS_NPM:-$here/../../target/peers-npm}"
mkdir -p "$dir"
cp "$here/npm/package.json" "$here"/npm/*.mjs "$dir/"
(cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
echo "$(cd "$dir" && pwd)"
