#!/usr/bin/env bash
# The heartbeat clients of docs/heartbeats.md against the built binary: the cron one-liner with curl, the
# shell wrapper (examples/heartbeat/wrap.sh) and the Python worker (examples/heartbeat/
# worker.py, standard library only). Each report must move the agent as docs/heartbeats.md says.
# Usage: tests/realworld/heartbeat_clients.sh path/to/agent-health-exporter
set -euo pipefail
bin=${1:?usage: $0 path/to/agent-health-exporter}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'worker-token\n' > "$work/worker.token"
cat > "$work/config.yaml" <<YAML
agents:
  - name: indexer-worker-7
    type: worker
    heartbeat: {period: 1m, token_file: worker.token}
YAML
"$bin" --config.file="$work/config.yaml" --web.listen-address="127.0.0.1:$port" 2> "$work/log" &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -fsS "$base/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done

# field KEY: one field of the agent's API answer (status, or the last probe's reason).
field() {
  curl -fsS "$base/api/v1/agents/indexer-worker-7" | python3 -c "
import json, sys
a = json.load(sys.stdin)
print(a['status'] if '$1' == 'status' else (a['last_probe'] or {}).get('$1'))"
}
expect() { # expect WHAT WANT GOT
  if [ "$2" != "$3" ]; then echo "FAIL: $1: want $2, got $3"; cat "$work/log"; exit 1; fi
  echo "ok: $1"
}
expect "unknown before the first heartbeat" unknown "$(field status)"

# The docs' cron one-liner, token read from its file.
curl -fsS -m 10 --retry 3 -o /dev/null -H "Authorization: Bearer $(cat "$work/worker.token")" \
  "$base/api/v1/agents/indexer-worker-7/heartbeat"
expect "cron one-liner: healthy" healthy "$(field status)"

export HEARTBEAT_URL="$base/api/v1/agents/indexer-worker-7/heartbeat"
export HEARTBEAT_TOKEN_FILE="$work/worker.token"
set +e
sh "$root/examples/heartbeat/wrap.sh" sh -c 'exit 3'
code=$?
set -e
expect "wrap.sh passes the exit code on" 3 "$code"
expect "wrap.sh on a failing command: unhealthy" unhealthy "$(field status)"
expect "wrap.sh on a failing command: reason reported" reported "$(field reason)"
sh "$root/examples/heartbeat/wrap.sh" sleep 0.3
expect "wrap.sh on a succeeding command: healthy" healthy "$(field status)"
duration=$(curl -fsS "$base/api/v1/agents/indexer-worker-7" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["last_probe"]["duration_seconds"] >= 0.3)')
expect "wrap.sh: the run's duration is measured from start to finish" True "$duration"

if python3 "$root/examples/heartbeat/worker.py" fail; then
  echo "FAIL: worker.py fail exited 0"; exit 1
fi
expect "worker.py on a failing task: unhealthy" unhealthy "$(field status)"
expect "worker.py on a failing task: reason reported" reported "$(field reason)"
python3 "$root/examples/heartbeat/worker.py" ok >/dev/null
expect "worker.py on a succeeding task: healthy" healthy "$(field status)"

# A wrong token changes nothing, and is told apart from nothing else.
wrong=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' "$HEARTBEAT_URL")
expect "a wrong token: 401" 401 "$wrong"
expect "a wrong token leaves the agent healthy" healthy "$(field status)"
