#!/usr/bin/env bash
# Real-world tier: several exporters on one fleet, with the real programs (the built
# exporter, the demo fleet, Debian's prometheus and prometheus-alertmanager, the
# webhook receiver of deploy/), all on 127.0.0.1 with free ports.
#
#   tests/realworld/several_exporters.sh EXPORTER_BIN DEMO_FLEET_BIN
#
# Run 1, shards and HA pairs: six exporter processes, 3 shards x 2 replicas, on a demo
# fleet of 60 agents; Prometheus adds the `replica` label (the scrape config of the
# docs/several-exporters.md), loads the shipped rules and sends to an
# Alertmanager with the shipped routing (deploy/alertmanager.yml, group waits
# shortened). It proves, printing each check:
#   - every agent is probed by exactly two processes, one per replica, both of the
#     shard that Prometheus' own hashmod relabel action gives its name (read from
#     /api/v1/targets of a job whose targets are the agent names);
#   - the fleet dashboard counts 60 agents, not 120, and every panel returns data
#     with the replica variable (but the certificate and gRPC status panels: the
#     demo fleet serves plain http; tests/realworld/alerting.sh covers them);
#   - one replica unable to reach one agent (its config, reloaded with SIGHUP, points
#     that agent at a refusing port) delivers AgentDownPartial naming that replica,
#     never AgentDown, and the reloaded shards keep their assignment;
#   - one agent down for everyone delivers exactly one AgentDown notification;
#   - killing one replica delivers AgentExporterDown for it and nothing about agents;
#   - killing the other replica of that shard delivers AgentExporterDown for both.
# Run 2, three locations (one exporter each, whole fleet, `location` label): an agent
# that one location cannot reach gives AgentDownPartial only; an agent that two of
# three cannot reach gives exactly one AgentDown (the quorum min(2, 3)).
#
# The unreachable targets are swapped in by a reload once Prometheus scrapes every
# exporter: until a target's first scrape Prometheus does not know that exporter
# reports the agent, so in the first interval after Prometheus starts one exporter
# alone would count as the whole quorum (see AgentDown in the rules).
#
# Intervals are short (2s probes, scrapes and evaluations, 1s/2s Alertmanager group
# waits); the `for: 1m` of AgentDownPartial and AgentExporterDown are kept as shipped,
# so the whole run takes about seven minutes, most of it waiting on those. Bounded by
# REALWORLD_MAX_SECONDS (default 900). REALWORLD_KEEP=1 keeps the work directory.

set -euo pipefail

EXPORTER_BIN=${1:-${EXPORTER_BIN:-}}
DEMO_FLEET_BIN=${2:-${DEMO_FLEET_BIN:-}}
MAX_SECONDS=${REALWORLD_MAX_SECONDS:-900}
FLEET_SIZE=60
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HELPERS="$REPO/tests/realworld/helpers.py"
MINE="$REPO/tests/realworld/several_exporters.py"

step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }
pass() { printf 'PASS: %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

[[ -n $EXPORTER_BIN && -n $DEMO_FLEET_BIN ]] || fail "usage: $0 EXPORTER_BIN DEMO_FLEET_BIN"
[[ -x $EXPORTER_BIN ]] || fail "exporter binary $EXPORTER_BIN is not executable"
[[ -x $DEMO_FLEET_BIN ]] || fail "demo fleet binary $DEMO_FLEET_BIN is not executable"
for tool in prometheus promtool prometheus-alertmanager amtool python3 curl; do
    command -v "$tool" >/dev/null ||
        fail "$tool not found: apt-get install -y prometheus prometheus-alertmanager python3 curl"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/agent-health-several.XXXXXX")
declare -A PIDS=()

cleanup() {
    local rc=$?
    stop_all
    if ((rc != 0)); then
        echo
        echo "Logs of the failed run (last 15 lines each):"
        for log in "$WORK"/*/*.log; do
            [[ -f $log ]] || continue
            echo "--- $log"
            tail -n 15 "$log"
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

# start NAME COMMAND...: runs COMMAND in the background, logging to $RUN/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$RUN/$name.log" 2>&1 &
    PIDS[$name]=$!
}

# stop NAME: kills the process NAME (SIGKILL: a crash, not a graceful stop).
stop() {
    kill -KILL "${PIDS[$1]}" 2>/dev/null || true
    wait "${PIDS[$1]}" 2>/dev/null || true
    unset "PIDS[$1]"
}

stop_all() {
    local name
    for name in "${!PIDS[@]}"; do kill "${PIDS[$name]}" 2>/dev/null || true; done
    for name in "${!PIDS[@]}"; do wait "${PIDS[$name]}" 2>/dev/null || true; done
    PIDS=()
}

wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds)) name
    until "$@"; do
        for name in "${!PIDS[@]}"; do
            kill -0 "${PIDS[$name]}" 2>/dev/null || fail "$name exited early; see $RUN/$name.log"
        done
        ((SECONDS < deadline)) || fail "$what: not within ${seconds}s"
        ((SECONDS < MAX_SECONDS)) || fail "$what: the run exceeded REALWORLD_MAX_SECONDS=${MAX_SECONDS}s"
        sleep 1
    done
}

helper() { python3 "$HELPERS" "$@"; }
mine() { python3 "$MINE" "$@"; }
# The dashboards' canary panels: this fleet runs no canaries (tests/realworld/alerting.sh
# covers them).
CANARY_PANELS=()
for panel in "Canary duration p50 / p95 / p99" "Canary time to first token p50 / p95" \
    "Canary failures by reason" "Canary tokens per hour" "Canary runs by result" \
    "Time since last canary success"; do
    CANARY_PANELS+=(--skip-panel "$panel")
done
now() { date +%s.%N; }

# Starts the webhook receiver, the demo fleet (FLEET_SIZE agents and the refusing
# `shadow`) and Alertmanager for run $RUN; sets AM, PROM_PORT, ALERTS, CONTROL.
start_common() {
    local am_port webhook
    read -r PROM_PORT am_port <<<"$(helper free-ports 2)"
    AM="http://127.0.0.1:$am_port"
    ALERTS="$RUN/alerts.jsonl"
    # Port 0: the demo fleet binds dozens of ports while Python starts, so a port
    # picked in advance could be taken before the receiver binds it.
    start webhook python3 -u "$REPO/deploy/webhook-receiver.py" \
        --listen 127.0.0.1:0 --address-file "$RUN/webhook.addr" --out "$ALERTS"
    wait_for 15 "webhook receiver listening" test -s "$RUN/webhook.addr"
    webhook=$(<"$RUN/webhook.addr")
    start demo-fleet "$DEMO_FLEET_BIN" --agents "$FLEET_SIZE" --agent shadow=refuse \
        --ports-file "$RUN/fleet.json"
    wait_for 15 "demo fleet address map" test -s "$RUN/fleet.json"
    CONTROL="http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["control"])' "$RUN/fleet.json")"
    sed -e "s|http://webhook:9099/|http://$webhook/|" \
        -e 's|group_wait: .*|group_wait: 1s|' -e 's|group_interval: .*|group_interval: 2s|' \
        "$REPO/deploy/alertmanager.yml" >"$RUN/alertmanager.yml"
    amtool check-config "$RUN/alertmanager.yml" >/dev/null || fail "amtool rejects the adapted alertmanager.yml"
    start alertmanager prometheus-alertmanager --config.file="$RUN/alertmanager.yml" \
        --storage.path="$RUN/alertmanager-data" --web.listen-address="127.0.0.1:$am_port" \
        --cluster.listen-address=
    wait_for 30 "alertmanager ready" helper wait-http "$AM/-/ready" 1
}

start_prometheus() {
    PROM="http://127.0.0.1:$PROM_PORT"
    promtool check config "$RUN/prometheus.yml" >/dev/null || fail "promtool rejects $RUN/prometheus.yml"
    cat "$RUN/prometheus.yml" | grep -v "labels: {agent:" || true
    start prometheus prometheus --config.file="$RUN/prometheus.yml" \
        --storage.tsdb.path="$RUN/prometheus-data" --web.listen-address="127.0.0.1:$PROM_PORT"
    wait_for 30 "prometheus ready" helper wait-http "$PROM/-/ready" 1
}

# expect_value EXPR VALUE: the single value of EXPR in Prometheus is VALUE.
expect_value() {
    local got
    got=$(helper query "$PROM" "$1" 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[0]["value"][1] if len(r)==1 else len(r))') || return 1
    echo "  $1 = $got (want $2)"
    [[ $got == "$2" ]]
}

step "Static checks"
python3 "$REPO/alerts/generate.py" --check || fail "alerts/agent-health.rules.yml is not what alerts/generate.py writes"
promtool test rules "$REPO"/alerts/tests/*.yml >/dev/null || fail "promtool test rules"
pass "rules generated from the template; promtool test rules (1, 2 and 3 exporters) pass"

# ---------------------------------------------------------------------------------
RUN="$WORK/shards"
mkdir -p "$RUN"
step "Run 1: 3 shards x 2 replicas on $FLEET_SIZE agents"
start_common
eval "$(mine configs "$RUN/fleet.json" "$RUN" shards)"
echo "  replica b will not reach $PARTIAL_AGENT; $DOWN_AGENT will go down for everyone"
declare -A INSTANCE=()
read -r -a ports <<<"$(helper free-ports 6)"
i=0
for shard in 0 1 2; do
    for replica in a b; do
        port=${ports[$i]}
        i=$((i + 1))
        INSTANCE[$shard$replica]="127.0.0.1:$port"
        start "exporter-$shard$replica" "$EXPORTER_BIN" --config.file "$RUN/exporter-$replica.yaml" \
            --shard.count 3 --shard.index "$shard" --web.listen-address "127.0.0.1:$port"
    done
done
"$EXPORTER_BIN" --config.check --config.file "$RUN/exporter-a.yaml" --shard.count 3 --shard.index 0 | tail -n 1
for key in "${!INSTANCE[@]}"; do
    wait_for 30 "exporter $key ready" helper wait-http "http://${INSTANCE[$key]}/-/ready" 1
done
pass "six exporters ready: ${INSTANCE[*]}"
exporters_json=$(printf '{"a": ["%s", "%s", "%s"], "b": ["%s", "%s", "%s"]}' \
    "${INSTANCE[0a]}" "${INSTANCE[1a]}" "${INSTANCE[2a]}" "${INSTANCE[0b]}" "${INSTANCE[1b]}" "${INSTANCE[2b]}")
shards_json=$(printf '{"0": ["%s", "%s"], "1": ["%s", "%s"], "2": ["%s", "%s"]}' \
    "${INSTANCE[0a]}" "${INSTANCE[0b]}" "${INSTANCE[1a]}" "${INSTANCE[1b]}" "${INSTANCE[2a]}" "${INSTANCE[2b]}")
mine prometheus-config "$RUN/prometheus.yml" shards "$exporters_json" "$RUN/fleet.json" \
    "${AM#http://}" "$REPO/alerts/*.rules.yml"
start_prometheus
started=$(now)

wait_for 60 "all six exporters scraped" expect_value 'count(up{job="agent-health-exporter"} == 1)' 6
wait_for 60 "every agent probed by one exporter per replica, in Prometheus' hashmod shard" \
    mine check-assignment "$PROM" "$RUN/fleet.json" "$shards_json"
pass "every agent probed by exactly two processes (replicas a and b), shard = Prometheus' hashmod of its name"
wait_for 30 "shard info" expect_value 'count(agent_exporter_shard_info{count="3"})' 6
wait_for 30 "every agent reported by two exporters" expect_value \
    'count(agent:exporters_reporting:count == 2)' "$FLEET_SIZE"

step "Replica b loses $PARTIAL_AGENT: its config points it at a refusing port, reloaded with SIGHUP"
diff "$RUN/exporter-b.yaml" "$RUN/exporter-b.override.yaml" || true
overridden_at=$(now)
cp "$RUN/exporter-b.override.yaml" "$RUN/exporter-b.yaml"
for shard in 0 1 2; do kill -HUP "${PIDS[exporter-${shard}b]}"; done
wait_for 30 "replica b sees $PARTIAL_AGENT down" expect_value \
    "sum(agent_health_status{agent=\"$PARTIAL_AGENT\",status=\"unhealthy\"})" 1
mine check-assignment "$PROM" "$RUN/fleet.json" "$shards_json" ||
    fail "the shard assignment changed on reload"
pass "after the reload every shard keeps exactly its agents"

step "One replica cannot reach $PARTIAL_AGENT: AgentDownPartial, never AgentDown"
wait_for 150 "AgentDownPartial for $PARTIAL_AGENT" \
    mine find "$ALERTS" "$overridden_at" firing alertname=AgentDownPartial "agent=$PARTIAL_AGENT"
grep -q "replica=b" <<<"$(mine find "$ALERTS" 0 firing alertname=AgentDownPartial "agent=$PARTIAL_AGENT")" ||
    fail "AgentDownPartial does not name replica b"
[[ $(mine count "$ALERTS" 0 firing alertname=AgentDown "agent=$PARTIAL_AGENT") == 0 ]] ||
    fail "AgentDown fired for $PARTIAL_AGENT, seen down by one replica of two"
pass "AgentDownPartial for $PARTIAL_AGENT names replica b; no AgentDown"

step "Dashboards with the replica variable; fleet panels count each agent once"
wait_for 120 "every dashboard query returns data (replica required)" \
    helper check-dashboards "$PROM" --require replica --skip-panel "Certificate expiry" \
        --skip-panel "gRPC status code" \
        "${CANARY_PANELS[@]}" "$REPO"/dashboards/*.json
agents=$(mine panel-value "$PROM" "$REPO/dashboards/agent-fleet-overview.json" Agents)
[[ $agents == "$FLEET_SIZE" ]] || fail "the Agents panel shows $agents, not $FLEET_SIZE, with every agent probed twice"
pass "every dashboard panel returns data; the Agents panel shows $agents with 6 exporters"

step "$DOWN_AGENT goes down for everyone: exactly one AgentDown"
wait_for 30 "$DOWN_AGENT healthy for both replicas" expect_value \
    "count(agent_health_status{agent=\"$DOWN_AGENT\",status=\"healthy\"} == 1)" 2
failed_at=$(now)
curl -fsS -X POST "$CONTROL/control/$DOWN_AGENT/refuse" >/dev/null
wait_for 60 "AgentDown for $DOWN_AGENT" mine find "$ALERTS" "$failed_at" firing alertname=AgentDown "agent=$DOWN_AGENT"
sleep 10 # five Alertmanager group intervals: time for any duplicate to arrive
n=$(mine count "$ALERTS" "$failed_at" firing alertname=AgentDown "agent=$DOWN_AGENT")
[[ $n == 1 ]] || fail "$n AgentDown notifications for $DOWN_AGENT, not exactly one"
grep -q "2 exporter(s)" <<<"$(mine find "$ALERTS" "$failed_at" firing alertname=AgentDown "agent=$DOWN_AGENT")" ||
    fail "AgentDown does not say both replicas see it down"
pass "exactly one AgentDown notification for $DOWN_AGENT, seen down by both replicas"
recovered_at=$(now)
curl -fsS -X POST "$CONTROL/control/$DOWN_AGENT/healthy" >/dev/null
wait_for 60 "AgentDown for $DOWN_AGENT resolved" mine find "$ALERTS" "$recovered_at" resolved alertname=AgentDown "agent=$DOWN_AGENT"
pass "resolved when it came back"

step "Kill replica a of shard 1 (${INSTANCE[1a]}): AgentExporterDown, nothing about agents"
killed_at=$(now)
stop exporter-1a
wait_for 120 "AgentExporterDown for ${INSTANCE[1a]}" \
    mine find "$ALERTS" "$killed_at" firing alertname=AgentExporterDown "instance=${INSTANCE[1a]}" replica=a
grep -q "shard 1 of 3" <<<"$(mine find "$ALERTS" "$killed_at" firing alertname=AgentExporterDown "instance=${INSTANCE[1a]}")" ||
    fail "AgentExporterDown does not name shard 1 of 3"
mine none-about-agents "$ALERTS" "$killed_at" "$PARTIAL_AGENT" || fail "an agent alert fired after one replica died"
pass "AgentExporterDown for ${INSTANCE[1a]} (replica a, shard 1 of 3); no agent alert"

step "Kill replica b of shard 1 (${INSTANCE[1b]}): AgentExporterDown for both"
killed_b_at=$(now)
stop exporter-1b
wait_for 120 "AgentExporterDown for ${INSTANCE[1b]}" \
    mine find "$ALERTS" "$killed_b_at" firing alertname=AgentExporterDown "instance=${INSTANCE[1b]}" replica=b
curl -fsS "$AM/api/v2/alerts?filter=alertname%3D%22AgentExporterDown%22&active=true" |
    python3 -c 'import json,sys; print(sorted(a["labels"]["instance"] for a in json.load(sys.stdin)))' |
    tee "$RUN/exporter-down.txt"
grep -q "${INSTANCE[1a]}" "$RUN/exporter-down.txt" && grep -q "${INSTANCE[1b]}" "$RUN/exporter-down.txt" ||
    fail "AgentExporterDown is not active for both replicas of shard 1"
mine none-about-agents "$ALERTS" "$killed_at" "$PARTIAL_AGENT" || fail "an agent alert fired after shard 1 died"
pass "AgentExporterDown for both replicas of shard 1; its agents went stale without paging"
stop_all

# ---------------------------------------------------------------------------------
RUN="$WORK/locations"
mkdir -p "$RUN"
step "Run 2: three locations (eu, us, ap), one exporter each, whole fleet"
start_common
eval "$(mine configs "$RUN/fleet.json" "$RUN" locations)"
echo "  eu will not reach $ONE_OF_THREE; eu and us will not reach $TWO_OF_THREE"
declare -A LOC=()
read -r -a ports <<<"$(helper free-ports 3)"
i=0
for location in eu us ap; do
    LOC[$location]="127.0.0.1:${ports[$i]}"
    i=$((i + 1))
    start "exporter-$location" "$EXPORTER_BIN" --config.file "$RUN/exporter-$location.yaml" \
        --web.listen-address "${LOC[$location]}"
    wait_for 30 "exporter $location ready" helper wait-http "http://${LOC[$location]}/-/ready" 1
done
mine prometheus-config "$RUN/prometheus.yml" locations \
    "$(printf '{"eu": ["%s"], "us": ["%s"], "ap": ["%s"]}' "${LOC[eu]}" "${LOC[us]}" "${LOC[ap]}")" \
    "$RUN/fleet.json" "${AM#http://}" "$REPO/alerts/*.rules.yml"
start_prometheus
wait_for 60 "all three exporters scraped" expect_value 'count(up{job="agent-health-exporter"} == 1)' 3
wait_for 30 "every agent reported by three exporters" expect_value \
    'count(agent:exporters_reporting:count == 3)' "$FLEET_SIZE"
for location in eu us; do
    cp "$RUN/exporter-$location.override.yaml" "$RUN/exporter-$location.yaml"
    kill -HUP "${PIDS[exporter-$location]}"
done
echo "  eu and us reloaded with their unreachable targets"

wait_for 60 "AgentDown for $TWO_OF_THREE (2 of 3 locations)" \
    mine find "$ALERTS" 0 firing alertname=AgentDown "agent=$TWO_OF_THREE"
wait_for 150 "AgentDownPartial for $ONE_OF_THREE (1 of 3 locations)" \
    mine find "$ALERTS" 0 firing alertname=AgentDownPartial "agent=$ONE_OF_THREE"
grep -q "location=eu" <<<"$(mine find "$ALERTS" 0 firing alertname=AgentDownPartial "agent=$ONE_OF_THREE")" ||
    fail "AgentDownPartial does not name location eu"
sleep 6
[[ $(mine count "$ALERTS" 0 firing alertname=AgentDown "agent=$ONE_OF_THREE") == 0 ]] ||
    fail "AgentDown fired for $ONE_OF_THREE, seen down by one location of three"
n=$(mine count "$ALERTS" 0 firing alertname=AgentDown "agent=$TWO_OF_THREE")
[[ $n == 1 ]] || fail "$n AgentDown notifications for $TWO_OF_THREE, not exactly one"
[[ $(mine count "$ALERTS" 0 firing alertname=AgentDownPartial "agent=$TWO_OF_THREE") == 0 ]] ||
    fail "AgentDownPartial fired for $TWO_OF_THREE, which has a quorum"
wait_for 60 "dashboards with the location variable" \
    helper check-dashboards "$PROM" --require location --skip-panel "Certificate expiry" \
        --skip-panel "gRPC status code" \
        "${CANARY_PANELS[@]}" "$REPO"/dashboards/*.json
pass "quorum: 1 of 3 locations -> AgentDownPartial only; 2 of 3 -> exactly one AgentDown"

step "Summary"
pass "3 shards x 2 replicas: assignment = Prometheus' hashmod, two probing processes per agent"
pass "HA pair: one AgentDown per agent; one replica's trouble -> AgentDownPartial; a dead replica -> AgentExporterDown only"
pass "locations: AgentDown on 2 of 3, AgentDownPartial on 1 of 3"
echo "(whole run: ${SECONDS}s)"
