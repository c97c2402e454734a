#!/usr/bin/env bash
# Real-world tier: heartbeats through one proxy in front of 3 shards x 2 replicas, with the
# real programs (the built exporter, Debian's nginx, prometheus and prometheus-alertmanager,
# the webhook receiver of deploy/), all on loopback.
#
#   tests/realworld/heartbeat_forwarding.sh EXPORTER_BIN
#
# Shard s of replica set r listens on 127.0.s.1 (all of 127.0.0.0/8 is loopback on Linux) at
# the set's port, so that one `--heartbeat.peers` template per replica set names every
# exporter, as a StatefulSet's DNS names do. nginx spreads requests round-robin over the six;
# a client reports three heartbeat agents (one per shard) every second through nginx only,
# with a random number of other requests between rounds so that a report may land anywhere.
# It proves, printing each check:
#   - for 3 periods, every replica owning an agent has it healthy with no `missed` (nor any
#     failure) in its API history;
#   - every report the proxy took is counted on both owners, exactly once, and none was
#     refused;
#   - once the reports stop, exactly one AgentDown per agent reaches Alertmanager, through
#     the shipped rules.
# HEARTBEAT_FORWARDING=off starts the exporters without `--heartbeat.peers`: the run must
# then fail (a report reaches an owner only when the proxy happens to pick it). About 40 s.
# REALWORLD_KEEP=1 keeps the work directory.

set -euo pipefail

EXPORTER_BIN=${1:-${EXPORTER_BIN:-}}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HELPERS="$REPO/tests/realworld/helpers.py"
MINE="$REPO/tests/realworld/heartbeat_forwarding.py"
SEVERAL="$REPO/tests/realworld/several_exporters.py"
PERIOD=4
GRACE=3

step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }
pass() { printf 'PASS: %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    for log in "$work"/*.log; do
        [[ -f $log ]] || continue
        echo "--- $log (last 10 lines)" >&2
        tail -n 10 "$log" >&2
    done
    exit 1
}

[[ -n $EXPORTER_BIN && -x $EXPORTER_BIN ]] || fail "usage: $0 EXPORTER_BIN (an executable)"
for tool in nginx prometheus promtool prometheus-alertmanager amtool python3 curl; do
    command -v "$tool" >/dev/null ||
        fail "$tool not found: apt-get install -y nginx prometheus prometheus-alertmanager python3 curl"
done

# shellcheck source=tests/realworld/workdir.sh
source "$REPO/tests/realworld/workdir.sh"
if [[ ${REALWORLD_KEEP:-0} == 1 ]]; then
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; echo "work directory kept: $work"' EXIT
fi

# start NAME COMMAND...: runs COMMAND in the background, logging to $work/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
}

wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || fail "$what: not within ${seconds}s"
        sleep 1
    done
}

helper() { python3 "$HELPERS" "$@"; }
mine() { python3 "$MINE" "$@"; }
several() { python3 "$SEVERAL" "$@"; }
now() { date +%s.%N; }

step "Alertmanager with the shipped routing, and the webhook receiver"
read -r prom_port am_port proxy_port <<<"$(helper free-ports 3)"
AM="127.0.0.1:$am_port"
ALERTS="$work/alerts.jsonl"
# Port 0: another script may bind ports meanwhile; the receiver says which it got.
start webhook python3 -u "$REPO/deploy/webhook-receiver.py" --listen 127.0.0.1:0 \
    --address-file "$work/webhook.addr" --out "$ALERTS"
wait_for 15 "webhook receiver listening" test -s "$work/webhook.addr"
sed -e "s|http://webhook:9099/|http://$(<"$work/webhook.addr")/|" \
    -e 's|group_wait: .*|group_wait: 1s|' -e 's|group_interval: .*|group_interval: 2s|' \
    "$REPO/deploy/alertmanager.yml" >"$work/alertmanager.yml"
amtool check-config "$work/alertmanager.yml" >/dev/null || fail "amtool rejects the adapted alertmanager.yml"
start alertmanager prometheus-alertmanager --config.file="$work/alertmanager.yml" \
    --storage.path="$work/alertmanager-data" --web.listen-address="$AM" --cluster.listen-address=
wait_for 30 "alertmanager ready" helper wait-http "http://$AM/-/ready" 1

step "Addresses: shard s of replica set r on 127.0.s.1 at r's port"
# One port per replica set, free on the three addresses.
ports=()
while ((${#ports[@]} < 2)); do
    port=$(helper free-ports 1)
    python3 - "$port" <<'PY' && ports+=("$port")
import socket, sys
for shard in range(3):
    s = socket.socket()
    s.bind((f"127.0.{shard}.1", int(sys.argv[1])))
    s.close()
PY
done
declare -A EXPORTER=()
upstreams=""
for r in 0 1; do
    replica=$([[ $r == 0 ]] && echo a || echo b)
    for shard in 0 1 2; do
        EXPORTER[$shard$replica]="127.0.$shard.1:${ports[$r]}"
        upstreams+="    server ${EXPORTER[$shard$replica]};"$'\n'
    done
done

step "nginx: one round-robin proxy in front of the six"
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 256; }
http {
  access_log $work/nginx-access.log;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream exporters {
$upstreams  }
  server {
    listen 127.0.0.1:$proxy_port;
    location / { proxy_pass http://exporters; }
  }
}
NGINX
nginx -t -e "$work/nginx-startup.log" -p "$work/nginx" -c "$work/nginx.conf" 2>/dev/null ||
    fail "nginx rejects its config: $(nginx -t -e stderr -p "$work/nginx" -c "$work/nginx.conf" 2>&1)"
start nginx nginx -e "$work/nginx-startup.log" -p "$work/nginx" -c "$work/nginx.conf"
PROXY="http://127.0.0.1:$proxy_port"
pass "nginx on $PROXY"

step "Six exporters, 3 shards x 2 replica sets"
eval "$(mine configs "$work" "${PERIOD}s" "${GRACE}s")"
peers=()
if [[ ${HEARTBEAT_FORWARDING:-on} != off ]]; then
    for port in "${ports[@]}"; do peers+=("--heartbeat.peers=http://127.0.{shard}.1:$port"); done
fi
for r in 0 1; do
    replica=$([[ $r == 0 ]] && echo a || echo b)
    for shard in 0 1 2; do
        address=${EXPORTER[$shard$replica]}
        start "exporter-$shard$replica" "$EXPORTER_BIN" --config.file="$work/exporter.yaml" \
            --shard.count=3 --shard.index="$shard" --web.listen-address="$address" "${peers[@]}"
    done
done
for key in "${!EXPORTER[@]}"; do
    wait_for 30 "exporter $key ready" helper wait-http "http://${EXPORTER[$key]}/-/ready" 1
done
wait_for 15 "nginx proxying to the exporters" helper wait-http "$PROXY/-/ready" 1
pass "six exporters ready behind $PROXY, ${#peers[@]} peer template(s): ${peers[*]:-(forwarding off)}"
shards_json=$(printf '{"0": ["%s", "%s"], "1": ["%s", "%s"], "2": ["%s", "%s"]}' \
    "${EXPORTER[0a]}" "${EXPORTER[0b]}" "${EXPORTER[1a]}" "${EXPORTER[1b]}" "${EXPORTER[2a]}" "${EXPORTER[2b]}")

# At once: each agent's first deadline is period + grace from the exporters' start.
step "Reports through the proxy only: $AGENTS, every second (period ${PERIOD}s, grace ${GRACE}s)"
started=$(now)
start client python3 -u "$MINE" client "$PROXY" 1 "$work/tally.json" "$work/stop"

step "Prometheus with the shipped rules, scraping the six with their replica label"
mine prometheus-config "$work/prometheus.yml" \
    "$(printf '{"a": ["%s", "%s", "%s"], "b": ["%s", "%s", "%s"]}' "${EXPORTER[0a]}" "${EXPORTER[1a]}" \
        "${EXPORTER[2a]}" "${EXPORTER[0b]}" "${EXPORTER[1b]}" "${EXPORTER[2b]}")" \
    "$AM" "$REPO/alerts/*.rules.yml"
promtool check config "$work/prometheus.yml" >/dev/null || fail "promtool rejects prometheus.yml"
start prometheus prometheus --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/prometheus-data" --web.listen-address="127.0.0.1:$prom_port"
PROM="http://127.0.0.1:$prom_port"
wait_for 30 "prometheus ready" helper wait-http "$PROM/-/ready" 1
up_six() {
    [[ $(helper query "$PROM" 'count(up{job="agent-health-exporter"} == 1)' 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[0]["value"][1] if r else 0)' 2>/dev/null) == 6 ]]
}
wait_for 30 "Prometheus scrapes the six" up_six
pass "Prometheus scrapes the six exporters"

step "3 periods of reports through the proxy only"
wait_for 15 "every owning replica has its agent healthy" mine check-owners "$shards_json" "$work/tally.json"
for n in $(seq 1 $((3 * PERIOD))); do
    sleep 1
    mine check-owners "$shards_json" "$work/tally.json" >"$work/owners.txt" ||
        fail "second $n of 3 periods: an owning replica missed reports: $(cat "$work/owners.txt")"
done
cat "$work/owners.txt"
pass "3 periods: every owning replica healthy, no missed report in its API history"
for agent in $AGENTS; do
    [[ $(several count "$ALERTS" "$started" firing "agent=$agent") == 0 ]] ||
        fail "an alert fired for $agent while it reported"
done
pass "no alert while the agents report"

step "The reports stop: exactly one AgentDown per agent"
touch "$work/stop"
sleep 2
mine check-counts "$shards_json" "$work/tally.json" ||
    fail "an owning replica did not count exactly the reports the proxy took"
pass "every report the proxy took counted once on each of its two owners; none refused"
stopped=$(now)
for agent in $AGENTS; do
    wait_for 30 "AgentDown for $agent" several find "$ALERTS" "$stopped" firing alertname=AgentDown "agent=$agent"
done
sleep 8 # four Alertmanager group intervals: time for a duplicate to arrive
for agent in $AGENTS; do
    n=$(several count "$ALERTS" "$stopped" firing alertname=AgentDown "agent=$agent")
    [[ $n == 1 ]] || fail "$n AgentDown notifications for $agent, not exactly one"
    grep -q "2 exporter(s)" <<<"$(several find "$ALERTS" "$stopped" firing alertname=AgentDown "agent=$agent")" ||
        fail "AgentDown for $agent does not say both replicas see it down"
done
pass "exactly one AgentDown per agent, seen down by both owning replicas"
echo "(whole run: ${SECONDS}s)"
