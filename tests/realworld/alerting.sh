#!/usr/bin/env bash
# Real-world tier: the shipped alerts/, dashboards/ and deploy/ files against the
# real programs (Debian's prometheus, promtool, prometheus-alertmanager, amtool),
# the built exporter and the demo fleet, all on 127.0.0.1 with free ports.
#
#   tests/realworld/alerting.sh EXPORTER_BIN DEMO_FLEET_BIN
#   EXPORTER_BIN=... DEMO_FLEET_BIN=... tests/realworld/alerting.sh
#
# It proves, printing each check:
#   - promtool check config / check rules / test rules and amtool check-config
#     pass on the files as shipped;
#   - Prometheus (native histograms on) scrapes the exporter over protobuf and
#     histogram_quantile works on the native histogram;
#   - every recording rule produces series, and every expression of every
#     dashboard panel (and every dashboard variable) returns data;
#   - taking an agent down delivers AgentDown to a webhook, with the seconds from
#     failure to delivery, and bringing it back delivers the resolution;
#   - one agent of each protocol (a gRPC health server, an MCP server, an A2A agent:
#     the real reference peers of tests/peers/) is healthy, and the dashboards'
#     protocol tables and gRPC status panels show each with its protocol and status
#     (and NOT_FOUND for a second grpc agent that asks about an unknown service);
#   - canaries (an MCP tool call, an A2A message, chat completions through LiteLLM's
#     proxy, streamed) give their verdicts, one of a degenerate model fails with
#     content_mismatch and makes AgentCanaryFailing active for that agent alone, and
#     the dashboards' Canaries rows return data (duration, time to first token,
#     failures by reason, tokens);
#   - the service levels (alerts/agent-slo.rules.yml): tests/realworld/slo_specs.py
#     checks the Sloth spec and the Pyrra objects; every SLO recording rule produces
#     series; one agent type of the demo fleet (gateway) degrades, and the burn shows
#     in Prometheus (slo:current_burn_rate:ratio above 14.4) and the page
#     (AgentTypeErrorBudgetBurn, severity page) reaches Alertmanager within the time
#     its windows and `for` allow, printed in seconds;
#   - a heartbeat agent that stops reporting delivers AgentDown to the webhook, with
#     the seconds from its last heartbeat to delivery, and no other alert about it
#     for long enough that AgentProbesStale would have reached the webhook; in
#     Prometheus AgentProbesStale is not even pending, and any other alert about it
#     is one that Alertmanager inhibits under AgentDown.
#
# The configs are those of deploy/, adapted only in addresses and intervals (5s
# probes, scrapes and evaluations instead of 30s/15s/15s, shorter Alertmanager
# group waits) so that the run takes about a minute; the adapted files and their
# diff to deploy/ are printed. One https agent is added to the exporter config,
# since the demo fleet serves plain http only, and so are a grpc, an mcp, an a2a and
# a heartbeat agent. The peers run in the virtual environment of tests/peers/: its
# python is taken from AHE_PEERS_PYTHON (as .ci/run exports it), else
# tests/peers/setup-venv.sh creates it (pinned PyPI packages).
#
# REALWORLD_CADENCE=production keeps the production intervals of deploy/ (30s
# probes with a 5s timeout, 15s scrapes and evaluations, Alertmanager's own group
# waits) to measure AgentDown against its 60s budget; it takes a few minutes.
# REALWORLD_HISTOGRAMS=classic runs Prometheus without native histograms, to prove
# the classic side of every `native or classic` query of the dashboards.
# REALWORLD_ROUNDS=N repeats the down/up cycle N times (default 1). The failure
# is injected right after a successful probe of the agent: the next probe is then
# a whole interval away, the worst case of the probe phase.
#
# Every process started is killed on exit. Each wait has a deadline and the whole
# run is bounded by REALWORLD_MAX_SECONDS (default 600, 1200 at production
# cadence). Set REALWORLD_KEEP=1 to keep the work directory (configs, logs,
# received alerts).

set -euo pipefail

EXPORTER_BIN=${1:-${EXPORTER_BIN:-}}
DEMO_FLEET_BIN=${2:-${DEMO_FLEET_BIN:-}}
CADENCE=${REALWORLD_CADENCE:-fast}
ROUNDS=${REALWORLD_ROUNDS:-1}
HISTOGRAMS=${REALWORLD_HISTOGRAMS:-native}
case $HISTOGRAMS in
native) PROM_FEATURES=(--enable-feature=native-histograms) ;;
classic) PROM_FEATURES=() ;;
*)
    echo "REALWORLD_HISTOGRAMS must be native or classic, not $HISTOGRAMS" >&2
    exit 1
    ;;
esac
case $CADENCE in
fast)
    MAX_SECONDS=${REALWORLD_MAX_SECONDS:-600}
    ALERT_DEADLINE=60 # 5s probe + 5s scrape + 5s evaluation + 2s group_wait, with margin
    # Failure to Alertmanager at worst: probe interval + scrape + evaluation intervals,
    # plus 1s for the scrape and the evaluation themselves.
    ALERT_BUDGET=16
    # AgentProbesStale about a silent heartbeat agent (5s period) would need at most
    # 3 periods of silence, its `for: 1m`, an evaluation (5s) and the tickets route's
    # group_wait (2s) to reach the webhook: 90s after the last heartbeat cover it.
    QUIET_WINDOW=90
    ;;
production)
    MAX_SECONDS=${REALWORLD_MAX_SECONDS:-1200}
    ALERT_DEADLINE=180 # 60s to Alertmanager + 10s group_wait, 1m group_interval for resolutions
    ALERT_BUDGET=61    # the issue's 60s (30s + 15s + 15s), plus 1s as above
    QUIET_WINDOW=180   # as above with 15s evaluations and the tickets route's 1m group_wait
    ;;
*)
    echo "REALWORLD_CADENCE must be fast or production, not $CADENCE" >&2
    exit 1
    ;;
esac
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HELPERS="$REPO/tests/realworld/helpers.py"

step() { printf '\n== %s\n' "$*"; }
pass() { printf 'PASS: %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

usage="usage: $0 EXPORTER_BIN DEMO_FLEET_BIN (or set EXPORTER_BIN and DEMO_FLEET_BIN)"
[[ -n $EXPORTER_BIN && -n $DEMO_FLEET_BIN ]] || fail "$usage"
[[ -x $EXPORTER_BIN ]] || fail "exporter binary $EXPORTER_BIN is not executable"
[[ -x $DEMO_FLEET_BIN ]] || fail "demo fleet binary $DEMO_FLEET_BIN is not executable"
for tool in prometheus promtool prometheus-alertmanager amtool python3 curl openssl; do
    command -v "$tool" >/dev/null ||
        fail "$tool not found: apt-get install -y prometheus prometheus-alertmanager python3 curl openssl"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/agent-health-realworld.XXXXXX")
declare -A PIDS=()

cleanup() {
    local rc=$?
    local name
    for name in "${!PIDS[@]}"; do
        kill "${PIDS[$name]}" 2>/dev/null || true
    done
    for name in "${!PIDS[@]}"; do
        wait "${PIDS[$name]}" 2>/dev/null || true
    done
    if ((rc != 0)); then
        echo
        echo "Logs of the failed run (last 20 lines each):"
        for log in "$WORK"/*.log; do
            [[ -f $log ]] || continue
            echo "--- $log"
            tail -n 20 "$log"
        done
    fi
    if [[ ${REALWORLD_KEEP:-0} == 1 ]]; then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME COMMAND...: runs COMMAND in the background, logging to $WORK/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS[$name]=$!
}

# alive NAME: fails the run if the process NAME has exited.
alive() {
    kill -0 "${PIDS[$1]}" 2>/dev/null || fail "$1 exited early; see $WORK/$1.log"
}

# wait_for SECONDS WHAT COMMAND...: retries COMMAND every second until it succeeds,
# failing the run after SECONDS or when the global budget is spent.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        for name in "${!PIDS[@]}"; do alive "$name"; done
        ((SECONDS < deadline)) || fail "$what: not within ${seconds}s"
        ((SECONDS < MAX_SECONDS)) || fail "$what: the run exceeded REALWORLD_MAX_SECONDS=${MAX_SECONDS}s"
        sleep 1
    done
}

helper() { python3 "$HELPERS" "$@"; }

step "Static checks of the shipped files"
promtool check config "$REPO/deploy/prometheus.yml" || fail "promtool check config deploy/prometheus.yml"
pass "promtool check config deploy/prometheus.yml"
promtool check rules "$REPO"/alerts/*.rules.yml || fail "promtool check rules"
pass "promtool check rules alerts/*.rules.yml"
promtool test rules "$REPO"/alerts/tests/*.yml || fail "promtool test rules"
pass "promtool test rules alerts/tests/*.yml"
amtool check-config "$REPO/deploy/alertmanager.yml" || fail "amtool check-config deploy/alertmanager.yml"
pass "amtool check-config deploy/alertmanager.yml"
for board in "$REPO"/dashboards/*.json; do
    python3 -m json.tool "$board" >/dev/null || fail "$board is not valid JSON"
done
pass "dashboards/*.json parse"
python3 "$REPO/tests/realworld/slo_specs.py" >"$WORK/slo_specs.log" 2>&1 || {
    cat "$WORK/slo_specs.log"
    fail "tests/realworld/slo_specs.py: the Sloth spec or the Pyrra objects are wrong"
}
pass "deploy/slo: Sloth spec and Pyrra objects valid and matching alerts/slos.yaml ($(grep -c '^PASS' "$WORK/slo_specs.log") checks)"

PEERS_PYTHON=${AHE_PEERS_PYTHON:-}
if [[ -z $PEERS_PYTHON ]]; then
    step "Virtual environment of the reference peers (tests/peers/setup-venv.sh)"
    PEERS_PYTHON=$(bash "$REPO/tests/peers/setup-venv.sh") || fail "tests/peers/setup-venv.sh failed"
fi
"$PEERS_PYTHON" -c 'import grpc_health, mcp, a2a' ||
    fail "$PEERS_PYTHON lacks the peers' packages: bash tests/peers/setup-venv.sh"
LITELLM_PYTHON=${AHE_LITELLM_PYTHON:-}
if [[ -z $LITELLM_PYTHON ]]; then
    step "Virtual environment of LiteLLM's proxy (tests/peers/setup-litellm.sh)"
    LITELLM_PYTHON=$(bash "$REPO/tests/peers/setup-litellm.sh") || fail "tests/peers/setup-litellm.sh failed"
fi

read -r PROM_PORT AM_PORT EXPORTER_PORT TLS_PORT GRPC_PORT <<<"$(helper free-ports 5)"
PROM="http://127.0.0.1:$PROM_PORT"
AM="http://127.0.0.1:$AM_PORT"
EXPORTER="http://127.0.0.1:$EXPORTER_PORT"

step "Webhook receiver"
ALERTS_FILE="$WORK/alerts.jsonl"
# Port 0: the receiver binds what the kernel gives and says which, so no other
# process can take its port between picking and binding.
start webhook python3 -u "$REPO/deploy/webhook-receiver.py" --listen 127.0.0.1:0 \
    --address-file "$WORK/webhook.addr" --out "$ALERTS_FILE"
wait_for 15 "webhook receiver listening" test -s "$WORK/webhook.addr"
WEBHOOK_ADDR=$(<"$WORK/webhook.addr")

step "Demo fleet"
start demo-fleet "$DEMO_FLEET_BIN" --ports-file "$WORK/fleet.json"
wait_for 15 "demo fleet address map" test -s "$WORK/fleet.json"
cat "$WORK/demo-fleet.log"
CONTROL="http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["control"])' "$WORK/fleet.json")"

step "https agent on 127.0.0.1:$TLS_PORT (certificate valid for 10 more days)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=realworld-test-ca -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -keyout "$WORK/agent.key" -out "$WORK/agent.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$WORK/agent.ext"
openssl x509 -req -in "$WORK/agent.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -days 10 -extfile "$WORK/agent.ext" -out "$WORK/agent.pem" 2>/dev/null
cat >"$WORK/tls_agent.py" <<'EOF'
import http.server, ssl, sys

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status":"ok"}'
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
EOF
start tls-agent python3 "$WORK/tls_agent.py" "$TLS_PORT" "$WORK/agent.pem" "$WORK/agent.key"

step "Reference peers: gRPC health server, MCP server, A2A agents, LiteLLM's proxy (tests/peers/)"
# They serve until their stdin closes: a fifo that this script holds open (the
# cleanup kills them anyway).
mkfifo "$WORK/peers.stdin"
exec 7<>"$WORK/peers.stdin"
start_peer() {
    local name=$1
    shift
    "$PEERS_PYTHON" "$@" <"$WORK/peers.stdin" >"$WORK/$name.log" 2>&1 7>&- &
    PIDS[$name]=$!
}
peer_port() { sed -n 's/^ready \([0-9]*\)$/\1/p' "$WORK/$1.log"; }
start_peer grpc-peer "$REPO/tests/peers/grpc_health_server.py" --port "$GRPC_PORT"
start_peer mcp-peer "$REPO/tests/peers/mcp_server.py"
# For the canaries: an a2a-sdk agent that answers, and LiteLLM's proxy (OpenAI-compatible),
# which takes up to a minute to import on a busy machine.
start_peer a2a-canary-peer "$REPO/tests/peers/a2a_canary_server.py"
"$LITELLM_PYTHON" "$REPO/tests/peers/litellm_server.py" <"$WORK/peers.stdin" >"$WORK/litellm-peer.log" 2>&1 7>&- &
PIDS[litellm-peer]=$!
start_peer a2a-peer "$REPO/tests/peers/a2a_server.py"
for peer in grpc-peer mcp-peer a2a-peer a2a-canary-peer litellm-peer; do
    wait_for 150 "$peer ready" grep -q '^ready ' "$WORK/$peer.log"
    echo "  $peer listening on 127.0.0.1:$(peer_port "$peer")"
done
MCP_PORT=$(peer_port mcp-peer)
A2A_PORT=$(peer_port a2a-peer)
A2A_CANARY_PORT=$(peer_port a2a-canary-peer)
LITELLM_PORT=$(peer_port litellm-peer)

step "Exporter on $EXPORTER (deploy/demo-fleet.yaml adapted)"
helper adapt-exporter-config "$REPO/deploy/demo-fleet.yaml" "$WORK/fleet.json" \
    "https://127.0.0.1:$TLS_PORT/health" "$WORK/ca.pem" "$WORK/exporter.yaml" "$CADENCE"
HB_AGENT=celery-worker
HB_PERIOD=5
od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$WORK/heartbeat.token"
HB_TOKEN=$(cat "$WORK/heartbeat.token")
# LiteLLM's master key (tests/peers/litellm/config.yaml), as the canaries' bearer token.
printf 'sk-canary-peer' >"$WORK/litellm.key"
CANARY_INTERVAL=5s
CANARY_TIMEOUT=4s
if [[ $CADENCE == production ]]; then
    CANARY_INTERVAL=1m
    CANARY_TIMEOUT=30s
fi
cat >>"$WORK/exporter.yaml" <<EOF
  # Added by tests/realworld/alerting.sh: one agent of each protocol, served by the
  # reference peers of tests/peers/, and a heartbeat agent fed by curl.
  - name: ledger
    type: service
    url: grpc://127.0.0.1:$GRPC_PORT
    labels: {team: core}
  # The same server asked about a service it does not know: NOT_FOUND (5), so the
  # gRPC panels show a failing code too.
  - name: ledger-billing
    type: service
    url: grpc://127.0.0.1:$GRPC_PORT
    grpc: {service: billing.Ledger}
    labels: {team: core}
  - name: toolbox
    type: tool-server
    url: http://127.0.0.1:$MCP_PORT/mcp
    protocol: mcp
    mcp: {expect_tools: [add, echo]}
    labels: {team: core}
    canary:
      interval: $CANARY_INTERVAL
      timeout: $CANARY_TIMEOUT
      mcp: {tool: echo, arguments: {text: canary}, expect: {contains: canary}}
  - name: travel
    type: agent
    url: http://127.0.0.1:$A2A_PORT/
    protocol: a2a
    a2a: {expect_skills: [book-flight]}
    labels: {team: core}
  # Canaries: an A2A agent that answers, a chat model streamed through LiteLLM's
  # proxy (time to first token, tokens), and one whose model answers "////" (a
  # degenerate answer: content_mismatch, so the failure panels and
  # AgentCanaryFailing have something to show).
  - name: concierge
    type: agent
    url: http://127.0.0.1:$A2A_CANARY_PORT/
    protocol: a2a
    labels: {team: core}
    canary:
      interval: $CANARY_INTERVAL
      timeout: $CANARY_TIMEOUT
      a2a: {text: "What is 2+2? Answer with the digit only.", expect: {contains: "4"}}
  - name: chat
    type: llm
    url: http://127.0.0.1:$LITELLM_PORT/health/liveliness
    http: {bearer_token_file: $WORK/litellm.key}
    labels: {team: core}
    canary:
      interval: $CANARY_INTERVAL
      timeout: $CANARY_TIMEOUT
      openai: {model: small, prompt: "Say pong.", max_tokens: 8, stream: true, expect: {regex: "(?i)pong"}}
  - name: chat-broken
    type: llm
    url: http://127.0.0.1:$LITELLM_PORT/health/liveliness
    http: {bearer_token_file: $WORK/litellm.key}
    labels: {team: core}
    canary:
      interval: $CANARY_INTERVAL
      timeout: $CANARY_TIMEOUT
      openai: {model: slashes, prompt: "Say pong.", max_tokens: 8}
  - name: $HB_AGENT
    type: worker
    heartbeat: {period: ${HB_PERIOD}s, grace: 1s, token_file: $WORK/heartbeat.token}
    labels: {team: search}
EOF
diff -u "$REPO/deploy/demo-fleet.yaml" "$WORK/exporter.yaml" || true
"$EXPORTER_BIN" --version
"$EXPORTER_BIN" --config.check --config.file "$WORK/exporter.yaml" || fail "exporter rejects the adapted config"
start exporter "$EXPORTER_BIN" --config.file "$WORK/exporter.yaml" \
    --web.listen-address "127.0.0.1:$EXPORTER_PORT" --log.level info
wait_for 30 "exporter ready" helper wait-http "$EXPORTER/-/ready" 1
pass "exporter ready"
# The heartbeat agent reports every second until the file heartbeats.stop appears.
# It stops between two requests, so the exporter's last success is its last heartbeat.
start heartbeats bash -c 'until [[ -e $1.stop ]]; do
        curl -fsS --max-time 5 -X POST -H "Authorization: Bearer $2" "$3/api/v1/agents/$4/heartbeat" >/dev/null
        sleep 1
    done' heartbeats "$WORK/heartbeats" "$HB_TOKEN" "$EXPORTER" "$HB_AGENT"
content_type=$(curl -fsS -o /dev/null -w '%{content_type}' \
    -H 'Accept: application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited' \
    "$EXPORTER/metrics")
echo "  /metrics asked for protobuf answers: $content_type"
[[ $content_type == application/vnd.google.protobuf* ]] || fail "the exporter does not answer protobuf"
pass "the exporter answers protobuf"

step "Alertmanager on $AM (deploy/alertmanager.yml adapted)"
am_intervals=(-e 's|group_wait: .*|group_wait: 2s|' -e 's|group_interval: .*|group_interval: 5s|')
[[ $CADENCE == production ]] && am_intervals=()
sed -e "s|http://webhook:9099/|http://$WEBHOOK_ADDR/|" "${am_intervals[@]}" \
    "$REPO/deploy/alertmanager.yml" >"$WORK/alertmanager.yml"
diff -u "$REPO/deploy/alertmanager.yml" "$WORK/alertmanager.yml" || true
amtool check-config "$WORK/alertmanager.yml" >/dev/null || fail "amtool rejects the adapted alertmanager.yml"
# An empty cluster address turns clustering off: nothing listens beyond the web port.
start alertmanager prometheus-alertmanager --config.file="$WORK/alertmanager.yml" \
    --storage.path="$WORK/alertmanager-data" --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address=
wait_for 30 "alertmanager ready" helper wait-http "$AM/-/ready" 1
pass "alertmanager ready"

step "Prometheus on $PROM (deploy/prometheus.yml adapted, $HISTOGRAMS histograms)"
prom_intervals=(-e 's|scrape_interval: 15s|scrape_interval: 5s|'
    -e 's|evaluation_interval: 15s|evaluation_interval: 5s|'
    -e 's|scrape_timeout: 10s|scrape_timeout: 4s|')
[[ $CADENCE == production ]] && prom_intervals=()
sed -e "s|exporter:10056|127.0.0.1:$EXPORTER_PORT|" \
    -e "s|alertmanager:9093|127.0.0.1:$AM_PORT|" \
    -e "s|localhost:9090|127.0.0.1:$PROM_PORT|" \
    -e "s|- \.\./alerts/|- $REPO/alerts/|" \
    "${prom_intervals[@]}" \
    "$REPO/deploy/prometheus.yml" >"$WORK/prometheus.yml"
diff -u "$REPO/deploy/prometheus.yml" "$WORK/prometheus.yml" || true
promtool check config "$WORK/prometheus.yml" >/dev/null || fail "promtool rejects the adapted prometheus.yml"
start prometheus prometheus --config.file="$WORK/prometheus.yml" \
    --storage.tsdb.path="$WORK/prometheus-data" --web.listen-address="127.0.0.1:$PROM_PORT" \
    "${PROM_FEATURES[@]}"
wait_for 30 "prometheus ready" helper wait-http "$PROM/-/ready" 1
prom_started=$(date +%s)
pass "prometheus ready"

step "Prometheus scrapes the exporter"
wait_for 60 "exporter target up" helper check-target "$PROM" agent-health-exporter
pass "target agent-health-exporter is up"
if [[ $HISTOGRAMS == native ]]; then
    wait_for 120 "native histogram samples and histogram_quantile over them" helper check-native "$PROM"
    pass "scraped over protobuf: native histograms stored, histogram_quantile works on them"
else
    wait_for 120 "classic histogram series and histogram_quantile over them" helper check-classic "$PROM"
    pass "classic histograms only: _bucket series stored, histogram_quantile works on them"
fi

step "Protocol agents healthy; the heartbeat agent $HB_AGENT stops reporting"
wait_for 60 "ledger (grpc), toolbox (mcp), travel (a2a) and $HB_AGENT (heartbeat) healthy in Prometheus" \
    helper query "$PROM" "count(agent_health_status{agent=~\"ledger|toolbox|travel|$HB_AGENT\",status=\"healthy\"} == 1) == 4" >/dev/null
pass "ledger (grpc), toolbox (mcp), travel (a2a) and $HB_AGENT (heartbeat) are healthy"
touch "$WORK/heartbeats.stop"
# The loop ends within a second and a request (curl --max-time 5).
wait "${PIDS[heartbeats]}" || true
unset 'PIDS[heartbeats]'
hb_last=$(helper last-success "$EXPORTER" "$HB_AGENT") || fail "no heartbeat of $HB_AGENT recorded"
hb_stopped=$(date +%s.%N)
echo "  last heartbeat of $HB_AGENT at $hb_last; silent from now on (checked at the end of the run)"

step "AgentDown: take planner down and back up through the demo fleet's control API ($CADENCE cadence, $ROUNDS round(s))"
# planner must be healthy first, or there is nothing to take down.
wait_for 90 "planner healthy in Prometheus" helper query "$PROM" \
    'agent_health_status{agent="planner",status="healthy"} == 1' >/dev/null
down_results=()
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round:"
    # Inject the failure right after a successful probe: the worst case.
    helper wait-fresh-probe "$EXPORTER" planner 120 || fail "no probe of planner"
    failed_at=$(date +%s.%N)
    curl -fsS -X POST "$CONTROL/control/planner/refuse" >/dev/null
    echo "  planner refuses connections from now on"
    am_seconds=$(helper wait-am-alert "$AM" AgentDown planner "$failed_at" "$ALERT_DEADLINE") ||
        fail "AgentDown for planner did not reach Alertmanager within ${ALERT_DEADLINE}s"
    echo "  AgentDown reached Alertmanager after ${am_seconds}s"
    awk -v t="$am_seconds" -v b="$ALERT_BUDGET" 'BEGIN { exit !(t <= b) }' ||
        fail "AgentDown took ${am_seconds}s to reach Alertmanager, over the ${ALERT_BUDGET}s budget"
    wait_for "$ALERT_DEADLINE" "AgentDown for planner delivered to the webhook" >/dev/null \
        helper find-alert "$ALERTS_FILE" AgentDown planner firing "$failed_at"
    delivered=$(helper find-alert "$ALERTS_FILE" AgentDown planner firing "$failed_at")
    echo "  webhook got: $delivered"
    down_seconds=$(awk -v a="$failed_at" -v b="${delivered%% *}" 'BEGIN { printf "%.1f", b - a }')
    pass "AgentDown reached Alertmanager ${am_seconds}s and the webhook ${down_seconds}s after the failure"

    recovered_at=$(date +%s.%N)
    curl -fsS -X POST "$CONTROL/control/planner/healthy" >/dev/null
    echo "  planner healthy again from now on"
    wait_for "$ALERT_DEADLINE" "AgentDown resolution for planner delivered to the webhook" >/dev/null \
        helper find-alert "$ALERTS_FILE" AgentDown planner resolved "$recovered_at"
    resolved=$(helper find-alert "$ALERTS_FILE" AgentDown planner resolved "$recovered_at")
    echo "  webhook got: $resolved"
    up_seconds=$(awk -v a="$recovered_at" -v b="${resolved%% *}" 'BEGIN { printf "%.1f", b - a }')
    pass "resolution delivered to the webhook ${up_seconds}s after the agent came back"
    down_results+=("round $round: failure -> Alertmanager ${am_seconds}s, -> webhook ${down_seconds}s; recovery -> resolved at webhook ${up_seconds}s")
done

step "Every recording rule produces series"
wait_for 60 "every recording rule produces series" \
    helper check-recording-rules "$PROM" "$REPO/alerts/agent-health.rules.yml"
wait_for 60 "every service level recording rule produces series" \
    helper check-recording-rules "$PROM" "$REPO/alerts/agent-slo.rules.yml"
pass "every recording rule produces series (agent-health and agent-slo)"

step "Every dashboard variable and panel expression returns data"
# Rates over 1m and the quantile/topk panels need about a minute of samples, and
# the firing-alerts panel needs an alert (archiver is down in the demo fleet).
wait_for 120 "every dashboard query returns data" \
    helper check-dashboards "$PROM" "$REPO"/dashboards/*.json
pass "every dashboard query returns data"

step "Canaries: verdicts in the exporter, AgentCanaryFailing in Prometheus"
wait_for 60 "canary verdicts: toolbox, concierge and chat succeed, chat-broken is content_mismatch" \
    helper canary-verdicts "$EXPORTER" toolbox=success concierge=success chat=success \
    chat-broken=content_mismatch
wait_for 60 "AgentCanaryFailing pending or firing for chat-broken" helper query "$PROM" \
    'ALERTS{alertname="AgentCanaryFailing",agent="chat-broken"}' >/dev/null
helper query "$PROM" 'ALERTS{alertname="AgentCanaryFailing",agent=~"toolbox|concierge|chat"}' >/dev/null &&
    fail "AgentCanaryFailing about an agent whose canaries succeed"
pass "canaries: toolbox (mcp), concierge (a2a), chat (openai, streamed) succeed; chat-broken fails with content_mismatch and AgentCanaryFailing is active for it alone"

step "Dashboards show each agent's protocol and the gRPC status"
helper panel-rows "$PROM" "$REPO/dashboards/agent-fleet-overview.json" "Agents and protocols" protocol \
    ledger=grpc ledger-billing=grpc toolbox=mcp travel=a2a "$HB_AGENT=heartbeat" "planner=http or tcp" \
    "gateway=http or tcp" ||
    fail "the fleet overview's protocol table is wrong"
helper panel-rows "$PROM" "$REPO/dashboards/agent-fleet-overview.json" "Agents and protocols" server_name \
    toolbox=peer-tools "travel=Peer Travel Agent" ledger= ||
    fail "the fleet overview's protocol table lacks what the peers said of themselves"
helper panel-rows "$PROM" "$REPO/dashboards/agent-detail.json" "Protocol and server" protocol \
    ledger=grpc toolbox=mcp travel=a2a "$HB_AGENT=heartbeat" "planner=http or tcp" ||
    fail "the agent detail's protocol table is wrong"
for board in agent-fleet-overview agent-detail; do
    helper panel-rows "$PROM" "$REPO/dashboards/$board.json" "gRPC status code" value ledger=0 ledger-billing=5 ||
        fail "$board: the gRPC status panel does not show OK for ledger and NOT_FOUND for ledger-billing"
done
pass "protocol tables: grpc, mcp, a2a, heartbeat, http or tcp; gRPC status panels: ledger OK, ledger-billing NOT_FOUND"

step "The silent heartbeat agent $HB_AGENT: AgentDown, and only AgentDown"
wait_for "$ALERT_DEADLINE" "AgentDown for $HB_AGENT delivered to the webhook" >/dev/null \
    helper find-alert "$ALERTS_FILE" AgentDown "$HB_AGENT" firing "$hb_stopped"
delivered=$(helper find-alert "$ALERTS_FILE" AgentDown "$HB_AGENT" firing "$hb_stopped")
echo "  webhook got: $delivered"
hb_seconds=$(awk -v a="$hb_last" -v b="${delivered%% *}" 'BEGIN { printf "%.1f", b - a }')
pass "AgentDown for $HB_AGENT reached the webhook ${hb_seconds}s after its last heartbeat (period ${HB_PERIOD}s + grace 1s)"
quiet_until=$(awk -v a="$hb_last" -v w="$QUIET_WINDOW" 'BEGIN { printf "%d", a + w + 1 }')
if (($(date +%s) < quiet_until)); then
    echo "  watching for other alerts about $HB_AGENT until ${QUIET_WINDOW}s after its last heartbeat"
    sleep $((quiet_until - $(date +%s)))
fi
received=$(helper alerts-for "$ALERTS_FILE" "$HB_AGENT")
echo "  the webhook received about $HB_AGENT: $(paste -sd, - <<<"$received")"
[[ $received == "AgentDown firing" ]] || fail "the webhook received more than AgentDown firing about $HB_AGENT"
# Prometheus' side, pending alerts included: AgentProbesStale must not even start,
# and anything else must be an alert that Alertmanager inhibits under AgentDown (a
# silent agent's error ratio rises: AgentHighErrorRate is pending for its 10m).
window=$(awk -v a="$hb_last" -v now="$(date +%s)" 'BEGIN { printf "%d", now - a + 10 }')
echo "  Prometheus' alerts about $HB_AGENT since before its last heartbeat:"
helper only-agent-down "$PROM" "$WORK/alertmanager.yml" "$HB_AGENT" "$window" ||
    fail "Prometheus had an alert about $HB_AGENT that Alertmanager would deliver besides AgentDown"
pass "only AgentDown about $HB_AGENT: nothing else delivered, AgentProbesStale not even pending, ${QUIET_WINDOW}s after its last heartbeat"

step "Service levels: the gateway type degrades; the burn shows in Prometheus, the page reaches Alertmanager"
# gateway and vault are the gateway type. Before: no page about the type.
GATEWAY_PAGE='agent_type="gateway",severity="page"'
wait_for 60 "an availability SLI for the gateway type" helper query "$PROM" \
    'slo:sli_error:ratio_rate5m{agent_type="gateway",sloth_slo="availability"}' >/dev/null
helper query "$PROM" "ALERTS{alertname=\"AgentTypeErrorBudgetBurn\",$GATEWAY_PAGE}" >/dev/null &&
    fail "AgentTypeErrorBudgetBurn about the gateway type before it degraded"
# Budget: the page needs over 14.4 x 0.5 % = 7.2 % of the events of the last hour (of
# what Prometheus holds of it, H seconds) bad, and of the last 5 minutes. With one of
# the type's two agents refusing, half of its probes fail: 0.5 t / (H + t) > 0.072
# after t = 0.17 H. Then its `for: 2m`, and a probe, a scrape and two evaluations (one
# for the recording rules, one for the alert) at the fast cadence.
history=$(($(date +%s) - prom_started))
SLO_BUDGET=$(awk -v h="$history" 'BEGIN { printf "%d", 0.17 * h + 120 + 20 + 10 }')
[[ $CADENCE == production ]] && SLO_BUDGET=$((SLO_BUDGET + 60))
degraded_at=$(date +%s.%N)
curl -fsS -X POST "$CONTROL/control/gateway/refuse" >/dev/null
echo "  gateway refuses connections from now on; Prometheus holds ${history}s of history; budget ${SLO_BUDGET}s"
wait_for "$SLO_BUDGET" "the gateway type's 5m burn rate above 14.4 in Prometheus" helper query "$PROM" \
    'slo:current_burn_rate:ratio{agent_type="gateway",sloth_slo="availability"} > 14.4' >/dev/null
burn=$(helper query "$PROM" 'slo:current_burn_rate:ratio{agent_type="gateway",sloth_slo="availability"}' |
    python3 -c 'import json,sys; print(round(float(json.load(sys.stdin)[0]["value"][1]), 1))')
burn_seconds=$(awk -v a="$degraded_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
pass "the burn shows in Prometheus ${burn_seconds}s after the degradation: slo:current_burn_rate:ratio = $burn"
slo_seconds=$(helper wait-am-alert "$AM" AgentTypeErrorBudgetBurn "$GATEWAY_PAGE" "$degraded_at" "$SLO_BUDGET") ||
    fail "AgentTypeErrorBudgetBurn (page) for the gateway type did not reach Alertmanager within ${SLO_BUDGET}s"
pass "AgentTypeErrorBudgetBurn (page) for the gateway type reached Alertmanager ${slo_seconds}s after the degradation (budget ${SLO_BUDGET}s)"
curl -fsS -X POST "$CONTROL/control/gateway/healthy" >/dev/null

step "Summary"
pass "static checks: promtool check config, check rules, test rules; amtool check-config"
if [[ $HISTOGRAMS == native ]]; then
    pass "protobuf scrape with native histograms, histogram_quantile on them"
else
    pass "classic histograms only, histogram_quantile on them"
fi
pass "every recording rule produces series"
pass "dashboards: every variable and panel query returns data ($HISTOGRAMS histograms)"
for result in "${down_results[@]}"; do
    pass "AgentDown ($CADENCE cadence) $result"
done
pass "dashboards: protocol tables and gRPC status panels with a grpc, an mcp, an a2a and a heartbeat agent"
pass "canaries: mcp, a2a and streamed openai succeed, a degenerate model fails with content_mismatch, AgentCanaryFailing active for it alone; the Canaries rows return data"
pass "silent heartbeat agent: AgentDown at the webhook ${hb_seconds}s after its last heartbeat, nothing else about it"
pass "service levels: the gateway type's burn in Prometheus after ${burn_seconds}s, its page at Alertmanager after ${slo_seconds}s"
echo "(whole run: ${SECONDS}s)"
