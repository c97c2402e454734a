#!/usr/bin/env python3
"""The Sloth spec (deploy/slo/sloth.yaml) and the Pyrra objects (deploy/slo/pyrra/*.yaml)
against the tools' published formats, and against alerts/slos.yaml.

    python3 tests/realworld/slo_specs.py

Neither Sloth nor Pyrra is packaged where this project gets its tools, so the files are
not rendered by the real programs. Instead they are validated with `jsonschema` against
compact schemas written here from the tools' own definitions: Sloth's prometheus/v1 Go
types (pkg/prometheus/api/v1) and the checks of its validate plugin (names, objective in
(0, 100], `{{.window}}` in both event queries, which differ; alert name required), and
the openAPI schema of Pyrra's ServiceLevelObjective CRD (pyrra.dev/v1alpha1: target,
window and indicator required; ratio, latency, latencyNative, bool_gauge; alerting
severities). They are our reading of those definitions, not copies, and cover what the
generator writes. With promtool on the PATH, every query is also parsed by Prometheus'
own parser: Sloth's with each of its windows filled in, Pyrra's metric selectors as they
are.

Then the objectives are compared: per SLO the same objective, period window, latency
threshold and grouping as slos.yaml, and the alert windows and factors of our rules
(alerts/agent-slo.rules.yml) those that Sloth and Pyrra use for a 30d period.
Needs PyYAML and jsonschema (Debian: python3-yaml python3-jsonschema).
"""

import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "alerts"))
import slo  # noqa: E402

NAME = {"type": "string", "pattern": r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"}
LABELS = {
    "type": "object",
    "propertyNames": {"pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$", "not": {"const": "__name__"}},
    "additionalProperties": {"type": "string", "minLength": 1},
}
WINDOWED = {"type": "string", "pattern": r"\{\{ *\.window *\}\}"}
SLOTH_ALERT = {
    "type": "object",
    "properties": {"disable": {"type": "boolean"}, "labels": LABELS, "annotations": LABELS},
    "additionalProperties": False,
}
SLOTH_SCHEMA = {
    "type": "object",
    "required": ["version", "service", "slos"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": "prometheus/v1"},
        "service": NAME,
        "labels": LABELS,
        "slos": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "objective", "sli", "alerting"],
                "additionalProperties": False,
                "properties": {
                    "name": NAME,
                    "description": {"type": "string"},
                    "objective": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                    "labels": LABELS,
                    "sli": {
                        "type": "object",
                        "minProperties": 1,
                        "maxProperties": 1,
                        "additionalProperties": False,
                        "properties": {
                            "events": {
                                "type": "object",
                                "required": ["error_query", "total_query"],
                                "additionalProperties": False,
                                "properties": {"error_query": WINDOWED, "total_query": WINDOWED},
                            },
                            "raw": {
                                "type": "object",
                                "required": ["error_ratio_query"],
                                "properties": {"error_ratio_query": WINDOWED},
                            },
                            "plugin": {"type": "object", "required": ["id"]},
                        },
                    },
                    "alerting": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "labels": LABELS,
                            "annotations": LABELS,
                            "page_alert": SLOTH_ALERT,
                            "ticket_alert": SLOTH_ALERT,
                        },
                    },
                },
            },
        },
    },
}

METRIC = {
    "type": "object",
    "required": ["metric"],
    "additionalProperties": False,
    "properties": {"metric": {"type": "string", "minLength": 1}},
}
GROUPING = {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}}
PYRRA_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "pyrra.dev/v1alpha1"},
        "kind": {"const": "ServiceLevelObjective"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                # A Kubernetes object name (RFC 1123 subdomain, kept to a label here).
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["indicator", "target", "window"],
            "additionalProperties": False,
            "properties": {
                # A string holding a float (the CRD cannot declare floats).
                "target": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                "window": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h|d|w|y)$"},
                "description": {"type": "string"},
                "indicator": {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "additionalProperties": False,
                    "properties": {
                        "ratio": {
                            "type": "object",
                            "required": ["errors", "total"],
                            "additionalProperties": False,
                            "properties": {"errors": METRIC, "total": METRIC, "grouping": GROUPING},
                        },
                        "latency": {
                            "type": "object",
                            "required": ["success", "total"],
                            "additionalProperties": False,
                            "properties": {"success": METRIC, "total": METRIC, "grouping": GROUPING},
                        },
                        "latencyNative": {
                            "type": "object",
                            "required": ["latency", "total"],
                            "additionalProperties": False,
                            "properties": {
                                "latency": {"type": "string", "pattern": r"^[0-9]+(ms|s|m)$"},
                                "total": METRIC,
                                "grouping": GROUPING,
                            },
                        },
                        "bool_gauge": {
                            "type": "object",
                            "required": ["metric"],
                            "properties": {"metric": {"type": "string"}, "grouping": GROUPING},
                        },
                    },
                },
                "alerting": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "disabled": {"type": "boolean"},
                        "burnrates": {"type": "boolean"},
                        "absent": {"type": "boolean"},
                        "name": {"type": "string"},
                        "absentName": {"type": "string"},
                        "severities": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                k: {"type": "string"}
                                for k in ("fastBurn", "mediumBurn", "slowBurn", "longTermBurn", "absent")
                            },
                        },
                    },
                },
            },
        },
    },
}

# The burn-rate tiers of the SRE workbook for a 30d period, Sloth's defaults and ours:
# (factor, long window, short window) per severity. Pyrra does not use these: its own
# tiers (factors 14, 7, 2 and 1, windows scaled to the period from 1h/5m, 6h/30m,
# 1d/2h and 4d/6h at 28d) are computed by Pyrra and not compared here.
WORKBOOK = {"page": [(14.4, "1h", "5m"), (6, "6h", "30m")], "ticket": [(3, "1d", "2h"), (1, "3d", "6h")]}
# Sloth's SLI windows for a 30d period (the period one is added from slos.yaml).
SLOTH_WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]

failures = []


def check(ok, what):
    print(("PASS: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def promtool_parses(exprs, what):
    if not shutil.which("promtool"):
        print(f"SKIP: promtool not on the PATH, {what} not parsed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "queries.rules.yml"
        rules = [{"record": f"query:{i}", "expr": e} for i, e in enumerate(exprs)]
        path.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}), encoding="utf-8")
        run = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
        check(run.returncode == 0, f"promtool parses {what} ({len(exprs)} queries){run.stdout[-300:] if run.returncode else ''}")


def main():
    objectives = {s["name"]: s for s in slo.slos()}

    sloth = yaml.safe_load(slo.SLOTH.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(SLOTH_SCHEMA).iter_errors(sloth), key=str)
    for error in errors:
        print(f"  {slo.SLOTH}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
    check(not errors, f"{slo.SLOTH.relative_to(REPO)} is a valid Sloth prometheus/v1 spec")
    check(
        all(s["sli"]["events"]["error_query"] != s["sli"]["events"]["total_query"] for s in sloth["slos"]),
        "Sloth: error and total queries differ (its validate plugin refuses equal ones)",
    )
    queries = []
    for spec in sloth["slos"]:
        for window in SLOTH_WINDOWS:
            for key in ("error_query", "total_query"):
                queries.append(re.sub(r"\{\{ *\.window *\}\}", window, spec["sli"]["events"][key]))
    promtool_parses(queries, "the Sloth spec's queries at each of its windows")
    check({s["name"] for s in sloth["slos"]} == set(objectives), "Sloth: the same SLOs as slos.yaml")
    check(sloth["service"] == next(iter(objectives.values()))["service"], "Sloth: service is slos.yaml's")
    for spec in sloth["slos"]:
        ours = objectives.get(spec["name"])
        if not ours:
            continue
        check(spec["objective"] == ours["objective"], f"Sloth {spec['name']}: objective {spec['objective']}")
        threshold = re.search(r"histogram_fraction\(0, ([0-9.]+),", spec["sli"]["events"]["error_query"])
        if ours["kind"] == "latency":
            check(threshold and float(threshold.group(1)) == ours["threshold"],
                  f"Sloth {spec['name']}: latency threshold {ours['threshold']}s")
        by = re.search(r"sum by \(([^)]*)\)", spec["sli"]["events"]["error_query"]).group(1)
        check(by.split(", ") == ours["grouping"], f"Sloth {spec['name']}: grouped by {by}")
        pages = spec["alerting"]["page_alert"]["labels"]["severity"], spec["alerting"]["ticket_alert"]["labels"]["severity"]
        check(pages == ("page", "ticket"), f"Sloth {spec['name']}: page and ticket severities")
    header = slo.SLOTH.read_text(encoding="utf-8")
    window = next(iter(objectives.values()))["window"]
    check(f"--default-slo-period={window}" in header, f"Sloth: period {window} (its --default-slo-period)")

    pyrra_files = sorted(slo.PYRRA.glob("*.yaml"))
    check({p.stem for p in pyrra_files} == {s["id"] for s in objectives.values()}, "Pyrra: one object per SLO")
    selectors = []
    for path in pyrra_files:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
        errors = sorted(jsonschema.Draft7Validator(PYRRA_SCHEMA).iter_errors(obj), key=str)
        for error in errors:
            print(f"  {path}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
        check(not errors, f"{path.relative_to(REPO)} is a valid Pyrra ServiceLevelObjective")
        ours = next((s for s in objectives.values() if s["id"] == obj["metadata"]["name"]), None)
        if not ours:
            continue
        spec = obj["spec"]
        check(float(spec["target"]) == ours["objective"], f"Pyrra {path.stem}: target {spec['target']}")
        check(spec["window"] == ours["window"], f"Pyrra {path.stem}: window {spec['window']}")
        (kind, indicator), = spec["indicator"].items()
        check(indicator["grouping"] == ours["grouping"], f"Pyrra {path.stem}: grouping {indicator['grouping']}")
        if ours["kind"] == "latency":
            latency = indicator.get("latency") or re.search(r'le="([^"]+)"', indicator["success"]["metric"]).group(1)
            check(slo.seconds(latency if latency[-1].isalpha() else latency + "s", "pyrra") == ours["threshold"],
                  f"Pyrra {path.stem}: latency threshold {latency}")
        severities = spec["alerting"]["severities"]
        check(
            (severities["fastBurn"], severities["mediumBurn"], severities["slowBurn"], severities["longTermBurn"])
            == ("page", "page", "ticket", "ticket"),
            f"Pyrra {path.stem}: fast and medium burns page, slow and long-term ones open tickets",
        )
        selectors += [m["metric"] for m in indicator.values() if isinstance(m, dict) and "metric" in m]
    promtool_parses(selectors, "the Pyrra objects' metric selectors")

    rules = yaml.safe_load(slo.RULES.read_text(encoding="utf-8"))
    alerts = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == slo.ALERT]
    for ours in objectives.values():
        for severity, tiers in WORKBOOK.items():
            rule = next(
                (r for r in alerts if r["labels"]["sloth_id"] == ours["id"] and r["labels"]["severity"] == severity),
                None,
            )
            found = set(re.findall(r"ratio_rate(\w+)\{[^}]*\} > \(([0-9.]+) \*", rule["expr"])) if rule else set()
            expected = {(w, f"{f:g}") for f, long, short in tiers for w in (long, short)}
            check(found == expected, f"rules {ours['id']} {severity}: windows and factors {sorted(expected)}")
    # Mistakes in slos.yaml are refused with the key and the fix, not rendered.
    base = {"defaults": {"availability": {"objective": 99.5}, "latency": {"objective": 95, "threshold": "2s"}}}
    mistakes = [
        ({**base, "types": {"planner": {"availability": {"objective": 100}}}}, "types.planner.availability.objective"),
        ({**base, "types": {"planner": {"latency": {"threshold": "2 s"}}}}, "types.planner.latency.threshold"),
        ({**base, "types": {"planner": {"latency": {"threshold": "1m"}}}}, "at most the largest bucket"),
        ({**base, "types": {"planner": {"avilability": {}}}}, "types.planner: unknown key(s) ['avilability']"),
        ({**base, "windows": "30d"}, "unknown key(s) ['windows']"),
    ]
    for spec, expected in mistakes:
        try:
            slo.slos(spec)
            message = "accepted"
        except slo.SloError as error:
            message = str(error)
        check(expected in message, f"slos.yaml mistake refused: {message}")
    # Type names the exporter accepts (underscores, dots) render, with regex
    # metacharacters escaped in the default objective's exclusion and a name fit for
    # Kubernetes in the ids.
    try:
        named = slo.slos({**base, "types": {"code_reviewer": {}, "v1.2": {}}})
        by_id = {s["id"]: s for s in named}
        exclude = slo.selector(by_id["agents-availability"])
        ok = "agents-code-reviewer-availability" in by_id and exclude == 'agent_type!~"code_reviewer|v1\\\\.2"'
        message = f"ids {sorted(by_id)}, default selector {exclude}"
    except slo.SloError as error:
        ok, message = False, str(error)
    check(ok, f"type names with _ and . accepted and escaped: {message}")
    print(f"\n{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
