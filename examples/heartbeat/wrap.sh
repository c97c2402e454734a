#!/bin/sh
# Runs a command as one heartbeat run: reports start, then success, or failure with the
# command's exit code; exits with that code. The token stays out of the process list.
#   HEARTBEAT_URL=http://exporter:10056/api/v1/agents/indexer-worker-7/heartbeat \
#   HEARTBEAT_TOKEN_FILE=/run/secrets/indexer-hb  wrap.sh  reindex --all
set -u
url=${HEARTBEAT_URL:?set HEARTBEAT_URL to http://EXPORTER/api/v1/agents/NAME/heartbeat}
token_file=${HEARTBEAT_TOKEN_FILE:?set HEARTBEAT_TOKEN_FILE to the file holding the token}

# report PATH_SUFFIX [JSON]: a failed report is said on stderr and never fails the job.
report() {
  printf 'header = "Authorization: Bearer %s"\n' "$(cat "$token_file")" |
    curl --config - -fsS -m 10 --retry 2 -o /dev/null -X POST \
      -H 'Content-Type: application/json' --data "${2:-}" "$url$1" ||
    echo "wrap.sh: heartbeat report $url$1 not delivered" >&2
}

report /start
"$@"
code=$?
if [ "$code" -eq 0 ]; then
  report ""
else
  report /fail "{\"message\": \"$1 exited with code $code\"}"
fi
exit "$code"
