#!/usr/bin/env python3
"""Relabeling checked against Prometheus itself. Debian's Prometheus gets static targets
and relabel rules covering every action we support (hashmod included); its
/api/v1/targets says which targets it kept, with their final labels, and which it
dropped. Our relabeling (examples/relabel_results.rs) runs the same rules over the very
label sets Prometheus discovered, and must agree target by target.

Usage: relabel_oracle.py path/to/relabel_results [path/to/prometheus]
Standard library only, loopback only.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import helpers  # the port picker shared by the real-world scripts

RULES = [
    # Templated replacement with numbered groups.
    {"source_labels": ["__address__"], "regex": r"([^.:]+)[^:]*:(\d+)",
     "target_label": "agent", "replacement": "$1-$2"},
    # A target label made from a capture; skipped when the result is no label name.
    {"source_labels": ["team"], "regex": "(.+)", "target_label": "team_${1}",
     "replacement": "yes"},
    {"source_labels": ["env"], "regex": "test|dev", "action": "drop"},
    # A custom separator, and an anchored match that accepts an empty env.
    {"source_labels": ["__address__", "env"], "separator": "|",
     "regex": r".*\|(prod|staging|)", "action": "keep"},
    {"action": "labelmap", "regex": "meta_(.+)", "replacement": "m_$1"},
    {"action": "labeldrop", "regex": "meta_.*"},
    {"source_labels": ["agent"], "modulus": 7, "target_label": "shard", "action": "hashmod"},
    {"source_labels": ["Zone"], "target_label": "zone_lower", "action": "lowercase"},
    {"source_labels": ["agent"], "target_label": "agent_upper", "action": "uppercase"},
    # An empty result removes the label.
    {"source_labels": ["remove_me"], "regex": "x*", "target_label": "remove_me",
     "replacement": ""},
    {"source_labels": ["shard"], "regex": "[0-5]", "action": "keep"},
    # Go's expansion: $$, ${1}, and $1x naming a group "1x".
    {"source_labels": ["id"], "regex": r"(\d+)", "target_label": "weird",
     "replacement": "$${1}-${1}x-$1x"},
    # RE2's \d is ASCII only.
    {"source_labels": ["code"], "regex": r"\d+", "target_label": "numeric",
     "replacement": "yes"},
    {"action": "labelkeep",
     "regex": "(__.*|agent.*|shard|m_.*|team.*|zone.*|env|instance|job|id|weird|numeric|Zone|code)"},
    # Default action (replace), regex (.*) and replacement ($1).
    {"source_labels": ["env", "Zone"], "target_label": "env_zone"},
]


def targets():
    groups = []
    envs = ["prod", "staging", "", "test", "dev", "PROD"]
    zones = ["EU-West", "us-EAST", "", "ap"]
    teams = ["core", "with-dash", "", "Ops"]
    codes = ["123", "12\u0663", "", "x9"]
    for i in range(60):
        host = ["web", "db.internal", "cache-7.prod.example", "10.0.0.%d" % i][i % 4]
        labels = {"id": str(i)}
        for key, values in (("env", envs), ("Zone", zones), ("team", teams), ("code", codes)):
            value = values[(i * 7 + len(key)) % len(values)]
            if value:
                labels[key] = value
        if i % 3 == 0:
            labels["meta_rack"] = "r%d" % (i % 5)
        if i % 5 == 0:
            labels["remove_me"] = "xxx" if i % 2 else "keep-me"
        groups.append({"targets": ["%s:%d" % (host, 8000 + i)], "labels": labels})
    return groups


def free_port():
    return helpers.pick_free_ports(1)[0]


def prometheus_targets(prometheus, work, expected):
    port = free_port()
    config = {
        "global": {"scrape_interval": "1h", "scrape_timeout": "1s"},
        "scrape_configs": [{
            "job_name": "oracle",
            "static_configs": targets(),
            "relabel_configs": RULES,
        }],
    }
    # JSON is YAML: Prometheus reads it as its config file.
    path = os.path.join(work, "prometheus.yml")
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(work, "prometheus.log"), "w")
    proc = subprocess.Popen(
        [prometheus, "--config.file=" + path, "--storage.tsdb.path=" + os.path.join(work, "data"),
         "--web.listen-address=127.0.0.1:%d" % port], stdout=log, stderr=log)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if proc.poll() is not None:
                sys.exit("FAIL: prometheus exited; see its log:\n" + open(log.name).read())
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/targets" % port, timeout=5) as r:
                    data = json.load(r)["data"]
                if len(data["activeTargets"]) + len(data["droppedTargets"]) == expected:
                    return data
            except OSError:
                pass
            time.sleep(0.3)
        sys.exit("FAIL: prometheus did not list all %d targets in time" % expected)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def ours(binary, label_sets):
    answer = subprocess.run([binary], input=json.dumps({"rules": RULES, "targets": label_sets}),
                            capture_output=True, text=True, check=True)
    return json.loads(answer.stdout)


def final_labels(labels):
    """What Prometheus shows of a kept target: no `__` labels, `instance` defaulted."""
    shown = {k: v for k, v in labels.items() if not k.startswith("__")}
    shown.setdefault("instance", labels.get("__address__", ""))
    return shown


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    prometheus = sys.argv[2] if len(sys.argv) > 2 else shutil.which("prometheus")
    if not prometheus:
        sys.exit("FAIL: prometheus not found (apt-get install prometheus)")
    expected = len(targets())
    with tempfile.TemporaryDirectory() as work:
        data = prometheus_targets(prometheus, work, expected)
    kept_by_id = {t["labels"].get("id"): t["labels"] for t in data["activeTargets"]}
    if None in kept_by_id or len(kept_by_id) != len(data["activeTargets"]):
        sys.exit("FAIL: every kept target must keep a distinct id label")
    cases = []
    for group in targets():
        start = dict(group["labels"])
        start.update({"__address__": group["targets"][0], "job": "oracle", "__scheme__": "http",
                      "__metrics_path__": "/metrics", "__scrape_interval__": "1h",
                      "__scrape_timeout__": "1s"})
        labels = kept_by_id.get(group["labels"]["id"])
        cases.append((start, labels is not None, labels))
    results = ours(binary, [c[0] for c in cases])
    mismatches = 0
    for (discovered, kept, labels), mine in zip(cases, results):
        if kept != mine["kept"] or (kept and final_labels(mine["labels"]) != labels):
            mismatches += 1
            print("MISMATCH for", json.dumps(discovered, sort_keys=True))
            print("  prometheus:", kept, json.dumps(labels, sort_keys=True))
            print("  ours:      ", mine["kept"],
                  json.dumps(mine["labels"] and final_labels(mine["labels"]), sort_keys=True))
    kept = len(data["activeTargets"])
    print("relabel oracle: %d targets, %d kept and %d dropped by Prometheus, %d mismatches"
          % (len(cases), kept, len(cases) - kept, mismatches))
    if mismatches or kept == 0 or kept == len(cases):
        sys.exit("FAIL: our relabeling differs from Prometheus' (or the case set lost its bite)")
    print("ok: relabeling identical to Prometheus target by target")


if __name__ == "__main__":
    main()
