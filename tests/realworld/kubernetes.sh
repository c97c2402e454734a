#!/usr/bin/env bash
# deploy/kubernetes/ as a user applies it, rendered offline with `kubectl kustomize`:
#   - the base, the base with the prometheus-operator component, the ha overlay, the
#     ha overlay with the component, and the base and the ha overlay with their shard
#     count changed in an overlay of the user's (the documented recipe);
#   - kubernetes-validate --strict (PyPI, bundled OpenAPI schemas: unknown fields fail)
#     on every core object of every render; the operator's objects have no schema there;
#   - tests/realworld/kustomize_checks.py on every render: a pinned image tag, never
#     `latest`; --shard.count equal to the StatefulSet's replicas; auto-reload on; the
#     ha overlay's selectors picking one replica set each, with per-shard anti-affinity;
#     the Secret and ConfigMap the pods mount rendered; the NetworkPolicy admitting
#     heartbeats from labelled namespaces and from peer exporters; no CRD needed
#     without the component, exactly one ServiceMonitor and PrometheusRule with it.
#     Its self-test breaks each of those promises in a copy of a render and requires
#     the check to fail;
#   - alerts/generate.py --check, then promtool check rules on the rendered
#     PrometheusRule;
#   - --config.check on the ConfigMap's config, with the Secret's files, for every shard.
# A broken kubernetes-validate, promtool or --config.check input is also fed once and
# must fail (an unknown field, a rule that does not parse, a config that does not load).
#
#   tests/realworld/kubernetes.sh EXPORTER_BIN
# Needs kubectl (with its built-in kustomize); installs kubernetes-validate into a
# virtual environment in the work directory.
set -euo pipefail
EXPORTER_BIN=$(realpath "${1:?usage: $0 EXPORTER_BIN}")
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S="$REPO/deploy/kubernetes"
# shellcheck source=tests/realworld/workdir.sh
source "$REPO/tests/realworld/workdir.sh"

pass() { printf 'PASS: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
# Runs a command that must fail; its output is kept for the log.
must_fail() {
    local what=$1; shift
    if "$@" >"$work/must-fail.log" 2>&1; then
        cat "$work/must-fail.log"
        fail "$what: passed on a broken input"
    fi
    pass "$what: fails on a broken input ($(grep -m1 -iE 'error|invalid|fail|unknown' "$work/must-fail.log" | cut -c1-120))"
}

command -v kubectl >/dev/null || fail "kubectl not found (Debian package kubectl)"
kubectl version --client | head -n 2

python3 "$REPO/alerts/generate.py" --check
pass "alerts/agent-health.rules.yml and the component's PrometheusRule are generated from the template"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
"$work/venv/bin/kubernetes-validate" --version
PY="$work/venv/bin/python"
CHECKS="$REPO/tests/realworld/kustomize_checks.py"

# The user's overlays: the component included once; the shard count changed to 5 with
# `replicas:` and the base's own replacement, copied as the base's comment says.
mkdir -p "$work/base-operator" "$work/ha-operator" "$work/base-5" "$work/ha-5"
# kustomize takes relative paths only.
rel=$(realpath --relative-to="$work/base-5" "$K8S")
cat >"$work/base-operator/kustomization.yaml" <<EOF
resources: [$rel]
components: [$rel/components/prometheus-operator]
EOF
cat >"$work/ha-operator/kustomization.yaml" <<EOF
resources: [$rel/overlays/ha]
components: [$rel/components/prometheus-operator]
EOF
"$PY" - "$K8S/kustomization.yaml" "$work/base-5/kustomization.yaml" "$rel" <<'PY'
import sys, yaml
base = yaml.safe_load(open(sys.argv[1]))
overlay = {"resources": [sys.argv[3]], "replicas": [{"name": "agent-health-exporter", "count": 5}],
           "replacements": base.get("replacements", [])}
open(sys.argv[2], "w").write(yaml.safe_dump(overlay))
PY
cat >"$work/ha-5/kustomization.yaml" <<EOF
resources: [$rel/overlays/ha]
replicas:
  - name: agent-health-exporter-a
    count: 5
EOF
# The ha overlay's replacement runs in the ha kustomization, below this overlay: repeat it.
"$PY" - "$K8S/overlays/ha/kustomization.yaml" "$work/ha-5/kustomization.yaml" <<'PY'
import sys, yaml
ha = yaml.safe_load(open(sys.argv[1]))
overlay = yaml.safe_load(open(sys.argv[2]))
overlay["replacements"] = ha.get("replacements", [])
open(sys.argv[2], "w").write(yaml.safe_dump(overlay))
PY

declare -A source=(
    [base]="$K8S" [base-operator]="$work/base-operator" [base-5]="$work/base-5"
    [ha]="$K8S/overlays/ha" [ha-operator]="$work/ha-operator" [ha-5]="$work/ha-5"
)
declare -A flags=(
    [base]="--sets 1 --replicas 3" [base-operator]="--sets 1 --operator" [base-5]="--sets 1 --replicas 5"
    [ha]="--sets 2 --replicas 3" [ha-operator]="--sets 2 --operator" [ha-5]="--sets 2 --replicas 5"
)
for render in base base-operator base-5 ha ha-operator ha-5; do
    kubectl kustomize "${source[$render]}" >"$work/$render.yaml"
    # shellcheck disable=SC2086
    "$PY" "$CHECKS" check "$work/$render.yaml" ${flags[$render]}
    mapfile -t objects < <("$PY" "$CHECKS" split "$work/$render.yaml" "$work/$render")
    "$work/venv/bin/kubernetes-validate" --strict --quiet "${objects[@]}"
    pass "$render: rendered, ${#objects[@]} core objects valid (--strict), image pinned, --shard.count = replicas, selectors, Secret, NetworkPolicy"
done
pass "an overlay changing replicas to 5 gets --shard.count 5 (base-5, ha-5: both replica sets)"

"$PY" "$CHECKS" self-test "$work/base.yaml" "$work/ha.yaml"
pass "kustomize_checks.py fails on each broken promise"

# kubernetes-validate --strict catches an unknown field (a typo in a manifest).
sts=$(ls "$work/base/"*-StatefulSet-*.yaml)
sed 's/^  serviceName:/  serviceNmae:/' "$sts" >"$work/typo.yaml"
must_fail "kubernetes-validate --strict" "$work/venv/bin/kubernetes-validate" --strict --quiet "$work/typo.yaml"

"$PY" "$CHECKS" rules "$work/base-operator.yaml" "$work/groups.rules.yml"
promtool check rules "$work/groups.rules.yml"
pass "promtool check rules: the rendered PrometheusRule's groups"
# A range function without its range: promtool must refuse the rules.
sed 's/last_over_time(agent_exporter_shard_info\[1d\])/last_over_time(agent_exporter_shard_info)/' "$work/groups.rules.yml" >"$work/broken.rules.yml"
cmp -s "$work/groups.rules.yml" "$work/broken.rules.yml" && fail "the rules to break have changed: update the sed above"
must_fail "promtool check rules" promtool check rules "$work/broken.rules.yml"

for render in base ha; do
    shards=$("$PY" "$CHECKS" config "$work/$render.yaml" "$work/$render-config")
    for ((shard = 0; shard < shards; shard++)); do
        "$EXPORTER_BIN" --config.check --config.file "$work/$render-config/config.yaml" \
            --shard.count "$shards" --shard.index "$shard" >/dev/null
    done
    pass "$render: the ConfigMap's config, with the rendered Secret's files, passes --config.check for each of $shards shards"
done
rm "$work/base-config/secrets/planner-token"
must_fail "--config.check" "$EXPORTER_BIN" --config.check --config.file "$work/base-config/config.yaml"
