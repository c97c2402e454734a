#!/usr/bin/env bash
# Differential TLS check: the same TLS setups, made with the openssl CLI and served by
# `openssl s_server` on loopback, probed by Debian's blackbox_exporter (probe_success) and by
# the exporter (the agent's status in /api/v1/agents). Fails when a verdict differs between the
# two, or from the one the case is built to give, and prints the table either way.
# Usage: tests/realworld/tls_differential.sh path/to/agent-health-exporter
set -euo pipefail
bin=$(realpath "${1:?usage: $0 path/to/agent-health-exporter}")
blackbox=${BLACKBOX:-/usr/bin/prometheus-blackbox-exporter}
command -v openssl >/dev/null || { echo "FAIL: openssl is not installed"; exit 1; }
[ -x "$blackbox" ] || { echo "FAIL: $blackbox is not installed (prometheus-blackbox-exporter)"; exit 1; }

helpers=$(cd "$(dirname "$0")" && pwd)/helpers.py
source "$(dirname "$0")/workdir.sh"
cd "$work"

# Below the kernel's ephemeral range, so that no other process takes it meanwhile.
free_port() {
  python3 "$helpers" free-ports 1
}

# --- a small CA (openssl ca, for exact validity dates) ---------------------------------------
mkdir -p ca/new
: > ca/index.txt
echo 1000 > ca/serial
cat > ca.cnf <<CNF
[ ca ]
default_ca = test
[ test ]
dir = $work/ca
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
default_md = sha256
policy = anything
unique_subject = no
[ anything ]
commonName = supplied
CNF

quiet() { "$@" >/dev/null 2>&1 || { echo "FAIL: $*"; "$@"; exit 1; }; }

# root NAME: a self-signed CA, as `openssl req -x509` makes it (CA:TRUE).
root() {
  quiet openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.pem" -days 30 \
    -subj "/CN=$1"
}

# sign NAME ISSUER KEYTYPE START END EXTENSIONS: a certificate for NAME's key, signed by ISSUER.
sign() {
  local name=$1 issuer=$2 keytype=$3 start=$4 end=$5 ext=$6
  case "$keytype" in
    rsa) quiet openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key" ;;
    ec) quiet openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key" ;;
  esac
  quiet openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=$name"
  printf '%b\n' "$ext" > "$name.ext"
  quiet openssl ca -batch -notext -config ca.cnf -cert "$issuer.pem" -keyfile "$issuer.key" \
    -in "$name.csr" -out "$name.pem" -startdate "$start" -enddate "$end" -extfile "$name.ext"
}

day() { date -u -d "$1" +%Y%m%d%H%M%SZ; }
past=$(day '-1 day'); later=$(day '+30 days')
leaf_ext='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth'
localhost_ext="$leaf_ext\nsubjectAltName=DNS:localhost"

root root
root other-root
root client-root
sign int root rsa "$past" "$later" 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign'
sign via-int int rsa "$past" "$later" "$localhost_ext"
sign rsa-leaf root rsa "$past" "$later" "$localhost_ext"
sign ec-leaf root ec "$past" "$later" "$localhost_ext"
sign expired root ec "$(day '-30 days')" "$(day '-1 day')" "$localhost_ext"
sign not-yet-valid root ec "$(day '+1 day')" "$(day '+30 days')" "$localhost_ext"
sign wrong-name root ec "$past" "$later" "$leaf_ext\nsubjectAltName=DNS:other.test"
sign ip-san root ec "$past" "$later" "$leaf_ext\nsubjectAltName=IP:127.0.0.1"
sign unknown-ca other-root ec "$past" "$later" "$localhost_ext"
sign client client-root ec "$past" "$later" "$leaf_ext"
# The common way to make a self-signed certificate: CA:TRUE, used as its own ca_file.
quiet openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -keyout self.key -out self.pem -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1'

# --- the cases: name|cert|key|chain|ca_file|host|client cert|mtls|expected -----------------------
cases=(
  "self_signed_ca_true|self|self||self|localhost|||1"
  "chain_served|via-int|via-int|int|root|localhost|||1"
  "missing_intermediate|via-int|via-int||root|localhost|||0"
  "rsa_leaf|rsa-leaf|rsa-leaf||root|localhost|||1"
  "ecdsa_leaf|ec-leaf|ec-leaf||root|localhost|||1"
  "expired|expired|expired||root|localhost|||0"
  "not_yet_valid|not-yet-valid|not-yet-valid||root|localhost|||0"
  "wrong_name|wrong-name|wrong-name||root|localhost|||0"
  "ip_san|ip-san|ip-san||root|127.0.0.1|||1"
  "ip_san_by_name|ip-san|ip-san||root|localhost|||0"
  "unknown_ca|unknown-ca|unknown-ca||root|localhost|||0"
  "mtls_with_client_cert|ec-leaf|ec-leaf||root|localhost|client|yes|1"
  "mtls_without_client_cert|ec-leaf|ec-leaf||root|localhost||yes|0"
  "self_signed_not_in_ca_file|self|self||root|localhost|||0"
)

bb_config="modules:"
agents="agents:"
declare -A target expected
for c in "${cases[@]}"; do
  IFS='|' read -r name cert key chain ca host client mtls want <<<"$c"
  port=$(free_port)
  args=(s_server -quiet -www -accept "127.0.0.1:$port" -cert "$cert.pem" -key "$key.key")
  [ -n "$chain" ] && args+=(-cert_chain "$chain.pem")
  [ -n "$mtls" ] && args+=(-Verify 1 -verify_return_error -CAfile client-root.pem)
  openssl "${args[@]}" > "s_server.$name.log" 2>&1 &
  pids+=($!)
  target[$name]="https://$host:$port/"
  expected[$name]=$want
  tls="ca_file: $work/$ca.pem"
  [ -n "$client" ] && tls="$tls, cert_file: $work/$client.pem, key_file: $work/$client.key"
  bb_config+="
  $name:
    prober: http
    timeout: 3s
    http:
      preferred_ip_protocol: ip4
      tls_config: {$tls}"
  agents+="
  - name: $name
    type: tls
    url: ${target[$name]}
    interval: 2s
    timeout: 1500ms
    http:
      tls: {$tls}"
done
printf '%s\n' "$bb_config" > blackbox.yml
printf '%s\n' "$agents" > exporter.yml

bb_port=$(free_port)
"$blackbox" --config.file=blackbox.yml --web.listen-address="127.0.0.1:$bb_port" > blackbox.log 2>&1 &
pids+=($!)
ex_port=$(free_port)
"$bin" --config.file=exporter.yml --web.listen-address="127.0.0.1:$ex_port" > exporter.log 2>&1 &
pids+=($!)

wait_http() {
  for _ in $(seq 1 100); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "FAIL: $1 never answered"; cat blackbox.log exporter.log; exit 1
}
wait_http "http://127.0.0.1:$bb_port/-/healthy"
wait_http "http://127.0.0.1:$ex_port/-/ready"

# Every agent probed at least once: its status is no longer unknown.
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$ex_port/api/v1/agents" > agents.json
  python3 - agents.json <<'PY' && break
import json, sys
agents = json.load(open(sys.argv[1]))["agents"]
sys.exit(0 if all(a["status"] != "unknown" for a in agents) else 1)
PY
  sleep 0.2
done

failed=0
printf '%-28s %-8s %-10s %-9s %s\n' case expected blackbox exporter "exporter's reason: error"
for c in "${cases[@]}"; do
  IFS='|' read -r name _ <<<"$c"
  url=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "${target[$name]}")
  bb=$(curl -fsS "http://127.0.0.1:$bb_port/probe?module=$name&target=$url" |
       awk '$1 == "probe_success" {print $2}')
  read -r ours detail < <(python3 - agents.json "$name" <<'PY'
import json, sys
agents = {a["name"]: a for a in json.load(open(sys.argv[1]))["agents"]}
a = agents[sys.argv[2]]
last = a.get("last_probe") or {}
ok = "1" if a["status"] in ("healthy", "degraded") else "0"
detail = f'{last["reason"]}: {last.get("error") or ""}' if last.get("reason") else "-"
print(ok, detail[:110])
PY
)
  mark=""
  if [ "$bb" != "$ours" ] || [ "$ours" != "${expected[$name]}" ]; then mark="  <-- differs"; failed=1; fi
  printf '%-28s %-8s %-10s %-9s %s%s\n' "$name" "${expected[$name]}" "${bb:-none}" "$ours" "$detail" "$mark"
done

if [ "$failed" -ne 0 ]; then
  echo "FAIL: verdicts differ (1 = success); blackbox_exporter's log:"; tail -n 20 blackbox.log
  exit 1
fi
echo "ok: ${#cases[@]} TLS setups, same verdict from blackbox_exporter and agent-health-exporter"
