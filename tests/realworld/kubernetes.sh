#!/usr/bin/env bash
# deploy/kubernetes/ against the Kubernetes schemas and promtool, offline:
#   - kubernetes-validate (PyPI, bundled OpenAPI schemas, strict: unknown fields fail)
#     on every core manifest; the operator's ServiceMonitor and PrometheusRule have
#     no schema there;
#   - promtool check rules on the PrometheusRule's groups;
#   - alerts/generate.py --check: the rules and the PrometheusRule are what the
#     template and its exporter label list generate;
#   - the config of the ConfigMap passes --config.check, for every shard.
#
#   tests/realworld/kubernetes.sh EXPORTER_BIN
# Installs kubernetes-validate into a virtual environment under $TMPDIR.
set -euo pipefail
EXPORTER_BIN=${1:?usage: $0 EXPORTER_BIN}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S="$REPO/deploy/kubernetes"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/agent-health-k8s.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

pass() { printf 'PASS: %s\n' "$*"; }

python3 "$REPO/alerts/generate.py" --check
pass "alerts/agent-health.rules.yml and deploy/kubernetes/prometheusrule.yaml are generated from the template"

python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
"$WORK/venv/bin/kubernetes-validate" --version
core=(configmap service statefulset poddisruptionbudget networkpolicy)
for name in "${core[@]}"; do
    "$WORK/venv/bin/kubernetes-validate" --strict "$K8S/$name.yaml"
done
pass "kubernetes-validate --strict: ${core[*]}"

# The PrometheusRule's spec, dedented, is a rules file (standard library only: no YAML parser).
python3 - "$K8S/prometheusrule.yaml" "$WORK/groups.rules.yml" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines(keepends=True)
start = lines.index("spec:\n") + 1
with open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in lines[start:]:
        if line.strip() and not line.startswith("  "):
            sys.exit(f"unexpected top-level line after spec: {line!r}")
        out.write(line[2:] if line.strip() else "\n")
PY
promtool check rules "$WORK/groups.rules.yml"
pass "promtool check rules: the PrometheusRule's groups"

# The ConfigMap's config, with a stand-in for the token of the Secret.
python3 - "$K8S/configmap.yaml" "$WORK/config.yaml" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines(keepends=True)
start = next(i for i, l in enumerate(lines) if l.strip() == "agent-health-exporter.yaml: |") + 1
with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.writelines(l[4:] if l.strip() else "\n" for l in lines[start:])
PY
mkdir -p "$WORK/secrets"
echo stand-in-token >"$WORK/secrets/planner-token"
sed -i "s|/etc/agent-health-exporter/secrets/|$WORK/secrets/|" "$WORK/config.yaml"
for shard in 0 1 2; do
    "$EXPORTER_BIN" --config.check --config.file "$WORK/config.yaml" --shard.count 3 --shard.index "$shard"
done
pass "the ConfigMap's config passes --config.check for each of 3 shards"
