#!/usr/bin/env python3
"""Checks on what `kubectl kustomize` renders from deploy/kubernetes, for
tests/realworld/kubernetes.sh. Needs PyYAML (kubernetes-validate's venv has it).

    kustomize_checks.py check RENDER [--operator] [--sets N] [--replicas N]  the promises of the manifests
    kustomize_checks.py split RENDER OUTDIR                   one file per core object
    kustomize_checks.py rules RENDER OUT                      the PrometheusRule's groups
    kustomize_checks.py config RENDER OUTDIR                  config + Secret files; prints the shard count
    kustomize_checks.py self-test BASE_RENDER HA_RENDER       each check fails on a broken render

Exit 1 with the reason on the first broken promise.
"""

import base64
import copy
import itertools
import pathlib
import sys

import yaml

OPERATOR_API = "monitoring.coreos.com/"
CONFIG_DIR = "/etc/agent-health-exporter"


class Broken(Exception):
    pass


def load(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def name(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def exporter_container(sts):
    containers = sts["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "exporter")


# --- the checks -------------------------------------------------------------------------


def check_images(docs):
    """Every image pinned to a tag that is not `latest`, pulled only when absent."""
    for sts in of_kind(docs, "StatefulSet"):
        for c in sts["spec"]["template"]["spec"]["containers"]:
            image = c["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if "@" not in image and (not tag or tag == "latest"):
                raise Broken(f"{name(sts)}: image {image!r} has no pinned tag (set one with kustomize images:)")
            if c.get("imagePullPolicy") != "IfNotPresent":
                raise Broken(f"{name(sts)}: imagePullPolicy {c.get('imagePullPolicy')!r}, want IfNotPresent")


def shard_count_arg(sts):
    """The value --shard.count gets in the running container, $(VAR) expanded from env."""
    c = exporter_container(sts)
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    for arg in c.get("args", []):
        if arg.startswith("--shard.count="):
            value = arg.split("=", 1)[1]
            for var, text in env.items():
                if text is not None:
                    value = value.replace(f"$({var})", str(text))
            return value
    raise Broken(f"{name(sts)}: no --shard.count= argument")


def check_shard_count(docs):
    """--shard.count is the StatefulSet's replicas, and the same for every set."""
    counts = set()
    for sts in of_kind(docs, "StatefulSet"):
        value = shard_count_arg(sts)
        replicas = sts["spec"].get("replicas", 1)
        if value != str(replicas):
            raise Broken(f"{name(sts)}: --shard.count is {value!r} but replicas is {replicas}")
        if "--shard.index=auto" not in exporter_container(sts)["args"]:
            raise Broken(f"{name(sts)}: no --shard.index=auto")
        counts.add(replicas)
    if len(counts) > 1:
        raise Broken(f"the replica sets disagree on the shard count: {sorted(counts)}")


def check_auto_reload(docs):
    for sts in of_kind(docs, "StatefulSet"):
        args = exporter_container(sts)["args"]
        if "--config.auto-reload-interval=30s" not in args:
            raise Broken(f"{name(sts)}: no --config.auto-reload-interval=30s, a ConfigMap change would never apply")


def check_heartbeat_peers(docs):
    """Every exporter forwards heartbeats to every replica set of the render, each template
    naming that set's pods through its governing Service, and to nothing else."""
    sets = of_kind(docs, "StatefulSet")
    port = 10056
    want = sorted(
        f"http://{sts['metadata']['name']}-{{shard}}.{sts['spec']['serviceName']}:{port}"
        for sts in sets
    )
    for sts in sets:
        args = exporter_container(sts)["args"]
        got = sorted(a.split("=", 1)[1] for a in args if a.startswith("--heartbeat.peers="))
        if got != want:
            raise Broken(f"{name(sts)}: --heartbeat.peers {got}, want one per replica set {want}")


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


# The one Service that spans every replica set: the heartbeat entry point of the HA pair.
HEARTBEATS_SERVICE = "agent-health-exporter-heartbeats"


def check_selectors(docs, sets):
    """`sets` StatefulSets; each selector (StatefulSet, its Service) picks the pods of exactly
    one of them, except the heartbeat Service and the one PodDisruptionBudget, which pick all."""
    stss = of_kind(docs, "StatefulSet")
    if len(stss) != sets:
        raise Broken(f"{len(stss)} StatefulSets, want {sets}")
    pods = {name(s): s["spec"]["template"]["metadata"]["labels"] for s in stss}
    selectors = []
    spanning = []
    for sts in stss:
        selectors.append((name(sts), sts["spec"]["selector"]["matchLabels"]))
        if not matches(sts["spec"]["selector"]["matchLabels"], pods[name(sts)]):
            raise Broken(f"{name(sts)}: its selector does not match its own pods")
    for svc in of_kind(docs, "Service"):
        if svc["metadata"]["name"] == HEARTBEATS_SERVICE:
            spanning.append((name(svc), svc["spec"]["selector"]))
            if svc["spec"].get("clusterIP") == "None":
                raise Broken(f"{name(svc)}: headless; one ClusterIP address is the point")
        else:
            selectors.append((name(svc), svc["spec"]["selector"]))
    pdbs = of_kind(docs, "PodDisruptionBudget")
    if len(pdbs) != 1:
        raise Broken(f"{len(pdbs)} PodDisruptionBudgets, want one over every replica set")
    if pdbs[0]["spec"].get("maxUnavailable") != 1:
        raise Broken(f"{name(pdbs[0])}: maxUnavailable {pdbs[0]['spec'].get('maxUnavailable')}, want 1")
    spanning.append((name(pdbs[0]), pdbs[0]["spec"]["selector"]["matchLabels"]))
    for owner, selector in selectors:
        picked = [p for p, labels in pods.items() if matches(selector, labels)]
        if len(picked) != 1:
            raise Broken(f"{owner}: selector {selector} picks the pods of {picked or 'no set'}, want exactly one set")
    for owner, selector in spanning:
        picked = [p for p, labels in pods.items() if matches(selector, labels)]
        if len(picked) != sets:
            raise Broken(f"{owner}: selector {selector} picks the pods of {picked or 'no set'}, want every set")
    if sets > 1 and HEARTBEATS_SERVICE not in {s["metadata"]["name"] for s in of_kind(docs, "Service")}:
        raise Broken(f"no Service {HEARTBEATS_SERVICE}: the HA pair has no single heartbeat entry point")
    for monitor in of_kind(docs, "ServiceMonitor"):
        for svc in of_kind(docs, "Service"):
            if svc["metadata"]["name"] == HEARTBEATS_SERVICE and matches(
                monitor["spec"]["selector"]["matchLabels"], svc["metadata"].get("labels", {})
            ):
                raise Broken(f"{name(monitor)} selects {name(svc)}: every pod would be scraped twice")
    services = {s["metadata"]["name"] for s in of_kind(docs, "Service")}
    for sts in stss:
        if sts["spec"]["serviceName"] not in services:
            raise Broken(f"{name(sts)}: serviceName {sts['spec']['serviceName']} is not a rendered Service")
    if sets > 1:
        for a, b in itertools.combinations(stss, 2):
            if a["spec"]["template"]["metadata"]["labels"].get("replica") == b["spec"]["template"]["metadata"]["labels"].get("replica"):
                raise Broken(f"{name(a)} and {name(b)} have the same replica label")
        for sts in stss:
            check_twin_anti_affinity(sts)


def check_twin_anti_affinity(sts):
    terms = (
        sts["spec"]["template"]["spec"]
        .get("affinity", {})
        .get("podAntiAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", [])
    )
    for term in terms:
        if (
            term.get("topologyKey") == "kubernetes.io/hostname"
            and "apps.kubernetes.io/pod-index" in term.get("matchLabelKeys", [])
            and "replica" not in term.get("labelSelector", {}).get("matchLabels", {})
        ):
            return
    raise Broken(f"{name(sts)}: no required anti-affinity on kubernetes.io/hostname per shard (matchLabelKeys pod-index)")


def check_references(docs):
    """The ConfigMap and Secret the pods mount are in the render (none left to a comment)."""
    have = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for sts in of_kind(docs, "StatefulSet"):
        for volume in sts["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in volume:
                want = ("Secret", volume["secret"]["secretName"])
            elif "configMap" in volume:
                want = ("ConfigMap", volume["configMap"]["name"])
            else:
                continue
            if want not in have:
                raise Broken(f"{name(sts)}: volume {volume['name']} needs {want[0]}/{want[1]}, not in the render")


def check_network_policy(docs):
    policies = of_kind(docs, "NetworkPolicy")
    if len(policies) != 1:
        raise Broken(f"{len(policies)} NetworkPolicies, want 1")
    peers = [p for rule in policies[0]["spec"]["ingress"] for p in rule.get("from", [])]
    heartbeats = [
        p for p in peers
        if p.get("namespaceSelector", {}).get("matchLabels", {}).get("agent-health-exporter/heartbeats") == "true"
        and "podSelector" not in p
    ]
    if not heartbeats:
        raise Broken("NetworkPolicy: no namespaceSelector agent-health-exporter/heartbeats=true (agents' heartbeats)")
    exporters = [
        p for p in peers
        if "namespaceSelector" not in p
        and p.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "agent-health-exporter"}
    ]
    if not exporters:
        raise Broken("NetworkPolicy: the exporters cannot reach each other (forwarded heartbeats)")
    scrapes = [
        p for p in peers
        if p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
    ]
    if not scrapes:
        raise Broken("NetworkPolicy: no ingress from the monitoring namespace (scrapes)")


def check_operator(docs, wanted):
    operator = [d for d in docs if d["apiVersion"].startswith(OPERATOR_API)]
    if not wanted:
        if operator:
            raise Broken(f"the render needs the operator's CRDs: {[name(d) for d in operator]}")
        return
    kinds = sorted(d["kind"] for d in operator)
    if kinds != ["PrometheusRule", "ServiceMonitor"]:
        raise Broken(f"operator objects {kinds}, want one PrometheusRule and one ServiceMonitor")
    for d in operator:
        if d["metadata"].get("labels", {}).get("release") != "kube-prometheus-stack":
            raise Broken(f"{name(d)}: no label release: kube-prometheus-stack")


def check(docs, operator, sets):
    check_images(docs)
    check_shard_count(docs)
    check_auto_reload(docs)
    check_heartbeat_peers(docs)
    check_selectors(docs, sets)
    check_references(docs)
    check_network_policy(docs)
    check_operator(docs, operator)


# --- extraction -------------------------------------------------------------------------


def split(docs, outdir):
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(d for d in docs if not d["apiVersion"].startswith(OPERATOR_API)):
        path = outdir / f"{i:02d}-{doc['kind']}-{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        print(path)


def rules(docs, out):
    rule = [d for d in docs if d["kind"] == "PrometheusRule"]
    if len(rule) != 1:
        raise Broken(f"{len(rule)} PrometheusRules, want 1")
    pathlib.Path(out).write_text(yaml.safe_dump({"groups": rule[0]["spec"]["groups"]}, sort_keys=False), encoding="utf-8")


def config(docs, outdir):
    """The ConfigMap's config and the Secret's files, the Secret's mount path rewritten to
    OUTDIR/secrets; prints the shard count."""
    outdir = pathlib.Path(outdir)
    (outdir / "secrets").mkdir(parents=True, exist_ok=True)
    sts = of_kind(docs, "StatefulSet")[0]
    mounts = {m["name"]: m["mountPath"] for m in exporter_container(sts)["volumeMounts"]}
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    config_file = next(a.split("=", 1)[1] for a in exporter_container(sts)["args"] if a.startswith("--config.file="))
    text = None
    secret_mount = None
    for volume_name, mount in mounts.items():
        volume = volumes[volume_name]
        if "configMap" in volume:
            data = by_name[("ConfigMap", volume["configMap"]["name"])]["data"]
            key = config_file[len(mount) + 1:]
            text = data[key]
        elif "secret" in volume:
            secret = by_name[("Secret", volume["secret"]["secretName"])]
            for key, value in secret.get("data", {}).items():
                (outdir / "secrets" / key).write_bytes(base64.b64decode(value))
            secret_mount = mount
    if text is None:
        raise Broken(f"{config_file} is not a key of a mounted ConfigMap")
    if secret_mount:
        text = text.replace(secret_mount + "/", str(outdir / "secrets") + "/")
    (outdir / "config.yaml").write_text(text, encoding="utf-8")
    print(sts["spec"].get("replicas", 1))


# --- self-test: every check fails on the render it guards, broken -------------------------


def self_test(base, ha):
    def sts_of(docs, i=0):
        return of_kind(docs, "StatefulSet")[i]

    def latest(docs):
        exporter_container(sts_of(docs))["image"] = "agent-health-exporter:latest"

    def untagged(docs):
        exporter_container(sts_of(docs))["image"] = "agent-health-exporter"

    def pull_always(docs):
        exporter_container(sts_of(docs))["imagePullPolicy"] = "Always"

    def replicas_apart(docs):
        sts_of(docs)["spec"]["replicas"] = 5

    def no_reload(docs):
        args = exporter_container(sts_of(docs))["args"]
        args.remove("--config.auto-reload-interval=30s")

    def one_peer_set(docs):
        args = exporter_container(sts_of(docs))["args"]
        args.remove(next(a for a in args if a.startswith("--heartbeat.peers=")))

    def overlapping(docs):
        sts_of(docs, 1)["spec"]["selector"]["matchLabels"].pop("replica")

    def service_overlapping(docs):
        of_kind(docs, "Service")[0]["spec"]["selector"].pop("replica")

    def no_anti_affinity(docs):
        sts_of(docs)["spec"]["template"]["spec"].pop("affinity")

    def secret_missing(docs):
        docs.remove(of_kind(docs, "Secret")[0])

    def no_heartbeat_namespaces(docs):
        rules = of_kind(docs, "NetworkPolicy")[0]["spec"]["ingress"]
        for rule in rules:
            rule["from"] = [p for p in rule["from"] if "agent-health-exporter/heartbeats" not in str(p)]

    def budget_per_set(docs):
        pdb = of_kind(docs, "PodDisruptionBudget")[0]
        for replica in ("a", "b"):
            one = copy.deepcopy(pdb)
            one["metadata"]["name"] += f"-{replica}"
            one["spec"]["selector"]["matchLabels"]["replica"] = replica
            docs.append(one)
        docs.remove(pdb)

    def no_heartbeats_service(docs):
        docs.remove(next(s for s in of_kind(docs, "Service") if s["metadata"]["name"] == HEARTBEATS_SERVICE))

    def crd_in_base(docs):
        docs.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"}})

    cases = [
        ("base", latest), ("base", untagged), ("base", pull_always), ("base", replicas_apart),
        ("base", no_reload), ("ha", one_peer_set), ("base", secret_missing), ("base", no_heartbeat_namespaces),
        ("base", crd_in_base), ("ha", replicas_apart), ("ha", overlapping),
        ("ha", service_overlapping), ("ha", no_anti_affinity), ("ha", budget_per_set),
        ("ha", no_heartbeats_service),
    ]
    renders = {"base": (base, 1), "ha": (ha, 2)}
    for render, mutate in cases:
        docs, sets = renders[render]
        check(docs, False, sets)  # intact: passes
        broken = copy.deepcopy(docs)
        mutate(broken)
        try:
            check(broken, False, sets)
        except Broken as e:
            print(f"  {render} with {mutate.__name__}: fails as it should: {e}")
            continue
        raise Broken(f"{render} with {mutate.__name__}: the checks did not notice")


def main(argv):
    try:
        if argv[0] == "check":
            docs = load(argv[1])
            operator = "--operator" in argv
            sets = int(argv[argv.index("--sets") + 1]) if "--sets" in argv else 1
            check(docs, operator, sets)
            if "--replicas" in argv:
                want = int(argv[argv.index("--replicas") + 1])
                got = [s["spec"]["replicas"] for s in of_kind(docs, "StatefulSet")]
                if got != [want] * sets:
                    raise Broken(f"replicas {got}, want {want} in each of {sets} sets")
        elif argv[0] == "split":
            split(load(argv[1]), argv[2])
        elif argv[0] == "rules":
            rules(load(argv[1]), argv[2])
        elif argv[0] == "config":
            config(load(argv[1]), argv[2])
        elif argv[0] == "self-test":
            self_test(load(argv[1]), load(argv[2]))
        else:
            sys.exit(__doc__)
    except Broken as e:
        sys.exit(f"FAIL: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
