"""Service level objectives: reads alerts/slos.yaml and renders
  - alerts/agent-slo.rules.yml: Sloth-named recording rules and the
    AgentTypeErrorBudgetBurn alerts (multiwindow, multi-burn-rate, as the SRE workbook
    and Sloth write them);
  - deploy/slo/sloth.yaml: the same objectives as a Sloth prometheus/v1 spec;
  - deploy/slo/pyrra/*.yaml: the same objectives as Pyrra ServiceLevelObjective objects.
Called by alerts/generate.py; `slos()` is also what tests/slo/test_specs.py compares the
rendered files with. Needs PyYAML (Debian: python3-yaml) to read slos.yaml.
"""

import pathlib
import re

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
SLOS = HERE / "slos.yaml"
RULES = HERE / "agent-slo.rules.yml"
SLOTH = REPO / "deploy" / "slo" / "sloth.yaml"
PYRRA = REPO / "deploy" / "slo" / "pyrra"
MONITOR_RS = REPO / "src" / "monitor.rs"

ALERT = "AgentTypeErrorBudgetBurn"
RUNBOOK = "docs/runbooks.md#agenttypeerrorbudgetburn"
KINDS = ("availability", "latency")
# The SLI windows Sloth records; the period window (30d by default) is added from the
# file, averaged over the 5m one as Sloth does, so no rule reads 30 days of raw counters.
SHORT_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# The SRE workbook's multiwindow, multi-burn-rate alerts, as Sloth writes them for a 30d
# period: (severity, [(burn rate factor, long window, short window), ...], for).
# `for` stays short: the short window already makes the alert resolve soon after the
# burn stops, and a page must come fast; 2m rides out one odd evaluation at the start of
# a Prometheus whose long windows hold only minutes of data.
ALERTS = (
    ("page", ((14.4, "1h", "5m"), (6, "6h", "30m")), "2m"),
    ("ticket", ((3, "1d", "2h"), (1, "3d", "6h")), "15m"),
)
# Per agent, deduplicated over the exporters, over the last 5 minutes: bad events and
# all events per second. The SLI windows add these 5m slices up.
AGENT_BAD = "slo_agent:sli_bad:rate5m"
AGENT_EVENTS = "slo_agent:sli_events:rate5m"
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# agent_type values as configured for the exporter: letters, digits, '_', '.', '-'.
# They go into PromQL matchers escaped; ids and SLO names use a Kubernetes-fit slug.
TYPE_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def slug(name):
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "type"
DURATION_RE = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class SloError(Exception):
    """A mistake in slos.yaml, with the place and the fix."""


def seconds(text, where):
    match = DURATION_RE.match(str(text))
    if not match:
        raise SloError(f"{SLOS}: {where}: {text!r} is not a duration like 2s, 500ms or 30d")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def classic_bounds():
    """The classic bucket bounds of agent_probe_duration_seconds, read from the Rust source
    so that the classic side of the latency SLI follows any change of them."""
    text = MONITOR_RS.read_text(encoding="utf-8")
    match = re.search(r"DURATION_BUCKETS: \[f64; \d+\] = \[([^\]]*)\]", text)
    if not match:
        raise SloError(f"{MONITOR_RS}: DURATION_BUCKETS not found; update alerts/slo.py")
    return [float(x) for x in match.group(1).replace("\n", " ").split(",") if x.strip()]


def load():
    try:
        import yaml  # noqa: PLC0415 (only the SLO part needs it)
    except ImportError as error:
        raise SloError("reading alerts/slos.yaml needs PyYAML: apt-get install python3-yaml") from error
    return yaml.safe_load(SLOS.read_text(encoding="utf-8")) or {}


def slos(spec=None):
    """The objectives of slos.yaml, one dict per SLO: service, name (sloth_slo), kind,
    objective (percent), threshold (seconds, latency), window, the agent types it covers
    (`types`, or `exclude` for the default one) and its grouping."""
    spec = load() if spec is None else spec
    unknown = set(spec) - {"service", "window", "defaults", "types"}
    if unknown:
        raise SloError(f"{SLOS}: unknown key(s) {sorted(unknown)}: use service, window, defaults, types")
    service = str(spec.get("service", "agents"))
    window = str(spec.get("window", "30d"))
    seconds(window, "window")
    if not NAME_RE.match(service):
        raise SloError(f"{SLOS}: service {service!r}: use lowercase letters, digits and '-'")
    defaults = spec.get("defaults") or {}
    types = spec.get("types") or {}
    bounds = classic_bounds()
    out = []

    def objective(kind, settings, where):
        merged = dict(defaults.get(kind) or {})
        merged.update(settings.get(kind) or {})
        unknown = set(merged) - {"objective", "threshold", "enabled"}
        if unknown:
            raise SloError(f"{SLOS}: {where}.{kind}: unknown key(s) {sorted(unknown)}")
        if not merged.get("enabled", True):
            return None
        value = merged.get("objective")
        if not isinstance(value, (int, float)) or not 0 < value < 100:
            raise SloError(f"{SLOS}: {where}.{kind}.objective: a percent above 0 and below 100, e.g. 99.5")
        result = {"kind": kind, "objective": float(value)}
        if kind == "latency":
            threshold = seconds(merged.get("threshold", ""), f"{where}.latency.threshold")
            if not 0 < threshold <= bounds[-1]:
                raise SloError(f"{SLOS}: {where}.latency.threshold: at most the largest bucket, {bounds[-1]}s")
            result["threshold"] = threshold
        return result

    for name, settings in sorted(types.items()):
        settings = settings or {}
        if not TYPE_RE.match(str(name)):
            raise SloError(f"{SLOS}: types.{name}: a type name of letters, digits, '_', '.' and '-'")
        if any(slug(str(other)) == slug(str(name)) for other in types if other != name):
            raise SloError(f"{SLOS}: types.{name}: its id {slug(str(name))} collides with another type's: rename one")
        unknown = set(settings) - {"availability", "latency", "per_agent"}
        if unknown:
            raise SloError(f"{SLOS}: types.{name}: unknown key(s) {sorted(unknown)}")
        grouping = ["agent_type", "agent"] if settings.get("per_agent") else ["agent_type"]
        for kind in KINDS:
            slo = objective(kind, settings, f"types.{name}")
            if slo:
                suffix = "-per-agent" if settings.get("per_agent") else ""
                slo.update(name=f"{slug(str(name))}-{kind}{suffix}", types=[str(name)], grouping=grouping)
                out.append(slo)
    for kind in KINDS:
        slo = objective(kind, {}, "defaults")
        if slo:
            slo.update(name=kind, types=None, exclude=sorted(types), grouping=["agent_type"])
            out.append(slo)
    for slo in out:
        slo.update(service=service, window=window, id=f"{service}-{slo['name']}")
    return out


def selector(slo):
    if slo["types"]:
        return 'agent_type="' + slo["types"][0] + '"'
    if slo.get("exclude"):
        escaped = (re.escape(str(t)).replace("\\", "\\\\") for t in slo["exclude"])
        return 'agent_type!~"' + "|".join(escaped) + '"'
    return ""


def matchers(*parts):
    inside = ",".join(p for p in parts if p)
    return "{" + inside + "}" if inside else ""


def le_regex(bound):
    """Prometheus text writes a bound as Go's %g (1, 2.5), OpenMetrics with a decimal
    point (1.0): which one is stored depends on the format Prometheus negotiated."""
    text = f"{int(bound)}" if bound == int(bound) else repr(bound)
    forms = [text, text + ".0"] if bound == int(bound) else [text]
    return "|".join(re.escape(f).replace("\\", "\\\\") for f in forms)


def exporter_labels():
    from generate import EXPORTER_LABELS  # noqa: PLC0415 (one list for both files)

    return ", ".join(EXPORTER_LABELS)


def good_classic(sel, threshold, window):
    """Probes at most `threshold` per second from the classic buckets. Between two bounds
    the count is interpolated linearly, as histogram_quantile and histogram_fraction do."""
    bounds = classic_bounds()
    name = "agent_probe_duration_seconds_bucket"

    def bucket(bound):
        m = matchers(sel, f'le=~"{le_regex(bound)}"')
        return f"sum without (le) (rate({name}{m}[{window}]))"

    if threshold in bounds:
        return bucket(threshold)
    upper = next(b for b in bounds if b > threshold)
    lower = max([b for b in bounds if b < threshold], default=0.0)
    share = (threshold - lower) / (upper - lower)
    if lower == 0.0:
        return f"{share:.6g} * {bucket(upper)}"
    return f"({1 - share:.6g} * {bucket(lower)} + {share:.6g} * {bucket(upper)})"


def agent_rates(slo, window):
    """(bad, total) events per second of each agent, one series per agent whatever the
    number of exporters. Each exporter's rates are taken first; then over the exporters of
    one agent the total is the largest (a probe counted by two replicas is one probe) and
    the bad events the smallest (an event is bad only when every exporter reporting the
    agent saw it bad: for one exporter, an HA pair or two locations that is AgentDown's
    quorum min(2, n); one location's own trouble burns nothing)."""
    sel = selector(slo)
    labels = exporter_labels()
    heartbeat = "on (job, instance, agent) agent_heartbeat_deadline_timestamp_seconds"
    if slo["kind"] == "availability":
        failure = matchers(sel, 'result="failure"')
        failed = f"sum without (result) (rate(agent_probes_total{failure}[{window}]))"
        probes = f"sum without (result) (rate(agent_probes_total{matchers(sel)}[{window}]))"
        period = f"agent_probe_interval_seconds{matchers(sel)}"
        bad = (
            f"min without ({labels}) (\n"
            f"  ({failed}\n    unless {heartbeat})\n"
            f"  or\n"
            f"  (clamp_max({failed} * {period}, 1) / {period}\n    and {heartbeat})\n"
            f")"
        )
        total = (
            f"max without ({labels}) (\n"
            f"  ({probes}\n    unless {heartbeat})\n"
            f"  or\n"
            f"  (1 / {period}\n    and {heartbeat})\n"
            f")"
        )
        return bad, total
    # histogram_fraction is NaN on an empty histogram (an idle agent over the window):
    # then bad = count = 0, or the type's sum, and its SLI, would be NaN.
    native = f"rate(agent_probe_duration_seconds{matchers(sel)}[{window}])"
    threshold = slo["threshold"]
    count = f"rate(agent_probe_duration_seconds_count{matchers(sel)}[{window}])"
    bad = (
        f"min without ({labels}) (\n"
        f"  (\n"
        f"    (histogram_count({native}) * (1 - histogram_fraction(0, {threshold:g}, {native}))\n"
        f"      and histogram_count({native}) > 0)\n"
        f"    or histogram_count({native})\n"
        f"    or\n"
        f"    {count} - {good_classic(sel, threshold, window)}\n"
        f"  )\n"
        f"  unless {heartbeat}\n"
        f")"
    )
    total = (
        f"max without ({labels}) (\n"
        f"  (histogram_count({native}) or {count})\n"
        f"  unless {heartbeat}\n"
        f")"
    )
    return bad, total


def indent(text, spaces):
    return "\n".join((" " * spaces + line) if line else line for line in text.splitlines())


def sli_queries(slo, window):
    """error and total queries per SLO group (sum by its grouping); total > 0, so a type
    with no events has no SLI at all (not 0/0) and cannot page."""
    bad, total = agent_rates(slo, window)
    by = ", ".join(slo["grouping"])
    return f"sum by ({by}) (\n{indent(bad, 2)}\n)", f"sum by ({by}) (\n{indent(total, 2)}\n) > 0"


def sloth_labels(slo):
    return {"sloth_id": slo["id"], "sloth_service": slo["service"], "sloth_slo": slo["name"]}


def label_selector(slo):
    return ", ".join(f'{k}="{v}"' for k, v in sloth_labels(slo).items())


def yaml_labels(labels, spaces):
    return "\n".join(f"{' ' * spaces}{k}: {v}" for k, v in labels.items())


def budget(slo):
    return round(1 - slo["objective"] / 100, 10)


def rules_text(slos_list):
    out = [RULES_HEAD]
    out.append("groups:\n")
    for slo in slos_list:
        out.append(f"  - name: agent-slo.sli.{slo['id']}\n    rules:\n")
        # Deduplicate over 5m slices only, then add the slices up: an exporter whose
        # series stop (a replica down, a restart under a new instance label) leaves
        # the min/max 5 minutes later instead of holding its failure-free part of a
        # long window in the min for that whole window.
        bad, total = agent_rates(slo, "5m")
        sel = label_selector(slo)
        for record, expr in ((AGENT_BAD, bad), (AGENT_EVENTS, total)):
            out.append(f"      - record: {record}\n        expr: |\n{indent(expr, 10)}\n")
            out.append("        labels:\n" + yaml_labels(sloth_labels(slo), 10) + "\n")
        by = ", ".join(slo["grouping"])
        for window in SHORT_WINDOWS:
            if window == "5m":
                error = f"sum by ({by}) ({AGENT_BAD}{{{sel}}})"
                total = f"sum by ({by}) ({AGENT_EVENTS}{{{sel}}}) > 0"
            else:
                error = f"sum by ({by}) (sum_over_time({AGENT_BAD}{{{sel}}}[{window}]))"
                total = f"sum by ({by}) (sum_over_time({AGENT_EVENTS}{{{sel}}}[{window}])) > 0"
            out.append(f"      - record: slo:sli_error:ratio_rate{window}\n        expr: |\n")
            out.append(indent(f"(\n{indent(error, 2)}\n)\n/\n(\n{indent(total, 2)}\n)", 10) + "\n")
            out.append("        labels:\n" + yaml_labels({**sloth_labels(slo), "sloth_window": window}, 10) + "\n")
        period = slo["window"]
        out.append(
            f"      - record: slo:sli_error:ratio_rate{period}\n"
            f"        expr: |\n"
            f"          sum_over_time(slo:sli_error:ratio_rate5m{{{sel}}}[{period}])\n"
            f"          / ignoring (sloth_window)\n"
            f"          count_over_time(slo:sli_error:ratio_rate5m{{{sel}}}[{period}])\n"
            f"        labels:\n" + yaml_labels({**sloth_labels(slo), "sloth_window": period}, 10) + "\n"
        )
    out.append("\n  - name: agent-slo.meta\n    rules:\n")
    for slo in slos_list:
        sel = label_selector(slo)
        labels = yaml_labels(sloth_labels(slo), 10)
        days = seconds(slo["window"], "window") / 86400
        on = "on (sloth_id, sloth_service, sloth_slo) group_left"
        meta = [
            ("slo:objective:ratio", f"vector({slo['objective'] / 100:.10g})"),
            ("slo:error_budget:ratio", f"vector({budget(slo):.10g})"),
            ("slo:time_period:days", f"vector({days:g})"),
            ("slo:current_burn_rate:ratio",
             f"slo:sli_error:ratio_rate5m{{{sel}}}\n/ {on}\nslo:error_budget:ratio{{{sel}}}"),
            ("slo:period_burn_rate:ratio",
             f"slo:sli_error:ratio_rate{slo['window']}{{{sel}}}\n/ {on}\nslo:error_budget:ratio{{{sel}}}"),
            ("slo:period_error_budget_remaining:ratio", f"1 - slo:period_burn_rate:ratio{{{sel}}}"),
        ]
        for record, expr in meta:
            out.append(f"      - record: {record}\n        expr: |\n{indent(expr, 10)}\n")
            out.append(f"        labels:\n{labels}\n")
    out.append("\n  - name: agent-slo.alerts\n    rules:\n")
    for slo in slos_list:
        sel = label_selector(slo)
        b = budget(slo)
        for severity, pairs, hold in ALERTS:
            branches = []
            for factor, long, short in pairs:
                branches.append(
                    "(\n"
                    f"  max without (sloth_window) (slo:sli_error:ratio_rate{short}{{{sel}}} > ({factor:g} * {b:.10g}))\n"
                    "  and\n"
                    f"  max without (sloth_window) (slo:sli_error:ratio_rate{long}{{{sel}}} > ({factor:g} * {b:.10g}))\n"
                    ")"
                )
            expr = "\nor\n".join(branches)
            windows = " or ".join(f"{f:g}x over {lw} and {sw}" for f, lw, sw in pairs)
            what = "agent" if "agent" in slo["grouping"] else "agent_type"
            who = (
                "{{ $labels.agent_type }} agent {{ $labels.agent }}"
                if what == "agent"
                else "{{ $labels.agent_type }} agents"
            )
            goal = slo_goal(slo)
            out.append(
                f"      - alert: {ALERT}\n"
                f"        expr: |\n{indent(expr, 10)}\n"
                f"        for: {hold}\n"
                f"        labels:\n"
                f"          severity: {severity}\n"
                f"          sloth_severity: {severity}\n"
                f"{yaml_labels(sloth_labels(slo), 10)}\n"
                f"        annotations:\n"
                f'          summary: "{who} burn their {slo["name"]} error budget too fast"\n'
                f"          description: >-\n"
                f"            {who} miss their objective of {goal} over {slo['window']}:\n"
                f"            {{{{ $value | humanizePercentage }}}} of their events were bad over the\n"
                f"            short window. This {severity} fires when the budget burns at more than\n"
                f"            {windows} (times the rate that spends it in exactly {slo['window']}).\n"
                f"          runbook_url: {RUNBOOK}\n"
            )
    return "".join(out)


def slo_goal(slo):
    if slo["kind"] == "latency":
        return f"{slo['objective']:g}% of probes within {slo['threshold']:g}s"
    return f"{slo['objective']:g}% of probes (or heartbeat periods) good"


RULES_HEAD = """\
# Service level objectives of agent-health-exporter: recording rules with Sloth's names
# and labels (sloth_id, sloth_service, sloth_slo, sloth_window), and the multiwindow,
# multi-burn-rate alerts AgentTypeErrorBudgetBurn (severity page and ticket).
#
# GENERATED from alerts/slos.yaml by alerts/generate.py (code in alerts/slo.py): edit
# slos.yaml and run
#   python3 alerts/generate.py
# `python3 alerts/generate.py --check` (run by CI) fails when this file is out of date.
#
# SLI: bad events / all events per agent type (or per agent where slos.yaml asks),
# over 5m ... 3d from the counters, over the period averaged from the 5m one as Sloth
# does. Availability: failed probes, or heartbeat failures per period (capped at 1
# on average over each 5m slice, not per period).
# Latency: probes slower than the threshold (`native or classic` histograms, as in
# agent-health.rules.yml; between two classic bounds the count is interpolated).
#
# Several exporters: each agent's 5m rates are reduced over the exporters (the target
# labels of EXPORTER_LABELS in generate.py) into slo_agent:sli_bad:rate5m and
# slo_agent:sli_events:rate5m BEFORE the ratio is taken, and the 30m ... 3d windows
# add up those 5m slices (sum_over_time), so an exporter that stops (replica down,
# restart under a new instance) leaves the reduction after 5 minutes: the largest
# event rate (a probe seen by two replicas is one probe) and the smallest bad rate (an
# event is bad when every exporter reporting the agent saw it bad, which for one
# exporter, an HA pair or two locations is AgentDown's quorum min(2, n); with three or
# more locations it asks all of them, stricter than that quorum).
#
# No events, no SLI: a type without probes has no series (total > 0), so it neither
# pages nor fills the period window with zeros. An exporter that is gone leaves its
# agents without series here; AgentExporterDown (agent-health.rules.yml) pages for it.
#
# Alerts as the SRE workbook and Sloth: page at 14.4x the budget rate over 1h and 5m
# or 6x over 6h and 30m; ticket at 3x over 1d and 2h or 1x over 3d and 6h.

"""


def sloth_text(slos_list):
    service = slos_list[0]["service"] if slos_list else "agents"
    window = slos_list[0]["window"] if slos_list else "30d"
    out = [
        "# GENERATED from alerts/slos.yaml by alerts/generate.py: the objectives of\n",
        "# alerts/agent-slo.rules.yml as a Sloth prometheus/v1 spec. Do not edit; edit slos.yaml.\n",
        f"# The period is Sloth's --default-slo-period (its default is 30d): {window} here.\n",
        "#   sloth generate -i deploy/slo/sloth.yaml --default-slo-period=" + window + "\n",
        "# Sloth's rules and ours share the SLI and meta record names, the sloth_* labels, the\n",
        "# objectives and the burn-rate thresholds, not everything: Sloth adds sloth_slo_info and\n",
        "# no `for:` (ours wait 2m/15m), and its queries deduplicate exporters over each whole\n",
        "# window (ours over 5m slices). Load one set, not both.\n",
        'version: "prometheus/v1"\n',
        f'service: "{service}"\n',
        "labels:\n  app: agent-health-exporter\n",
        "slos:\n",
    ]
    for slo in slos_list:
        error, total = sli_queries(slo, "{{.window}}")
        out.append(
            f'  - name: "{slo["name"]}"\n'
            f"    objective: {slo['objective']:g}\n"
            f'    description: "{slo_goal(slo)}, per {" and ".join(slo["grouping"])}."\n'
            f"    labels:\n      kind: {slo['kind']}\n"
            f"    sli:\n      events:\n"
            f"        error_query: |\n{indent(error, 10)}\n"
            f"        total_query: |\n{indent(total, 10)}\n"
            f"    alerting:\n"
            f"      name: {ALERT}\n"
            f"      annotations:\n"
            f"        runbook_url: {RUNBOOK}\n"
            f"      page_alert:\n        labels:\n          severity: page\n"
            f"      ticket_alert:\n        labels:\n          severity: ticket\n"
        )
    return "".join(out)


def pyrra_objects(slos_list):
    """{file name: text}: one ServiceLevelObjective per SLO."""
    bounds = classic_bounds()
    files = {}
    for slo in slos_list:
        sel = selector(slo)
        grouping = "".join(f"\n        - {g}" for g in slo["grouping"])
        failure = matchers(sel, 'result="failure"')
        if slo["kind"] == "availability":
            indicator = (
                "    ratio:\n"
                f"      errors:\n        metric: agent_probes_total{failure}\n"
                f"      total:\n        metric: agent_probes_total{matchers(sel)}\n"
                f"      grouping:{grouping}\n"
            )
        elif slo["threshold"] in bounds:
            # The stored `le` may be "1" or "1.0" (text or OpenMetrics), as in our rules.
            bucket = matchers(sel, f'le=~"{le_regex(slo["threshold"])}"')
            indicator = (
                "    latency:\n"
                f"      success:\n        metric: agent_probe_duration_seconds_bucket{bucket}\n"
                f"      total:\n        metric: agent_probe_duration_seconds_count{matchers(sel)}\n"
                f"      grouping:{grouping}\n"
            )
        else:
            indicator = (
                "    latencyNative:\n"
                f'      latency: "{duration_text(slo["threshold"])}"\n'
                f"      total:\n        metric: agent_probe_duration_seconds{matchers(sel)}\n"
                f"      grouping:{grouping}\n"
            )
        files[f"{slo['id']}.yaml"] = (
            "# GENERATED from alerts/slos.yaml by alerts/generate.py. Do not edit; edit slos.yaml.\n"
            "# Pyrra sums the raw counters of every exporter: with an HA pair or several\n"
            "# locations each probe counts once per exporter (the ratio stays, the quorum\n"
            "# of alerts/agent-slo.rules.yml does not apply), and heartbeat agents count\n"
            "# reports, not periods. See docs/service-levels.md.\n"
            "apiVersion: pyrra.dev/v1alpha1\n"
            "kind: ServiceLevelObjective\n"
            "metadata:\n"
            f"  name: {slo['id']}\n"
            "  namespace: monitoring\n"
            "  labels:\n    app.kubernetes.io/name: agent-health-exporter\n"
            "spec:\n"
            f'  target: "{slo["objective"]:g}"\n'
            f'  window: "{slo["window"]}"\n'
            f'  description: "{slo_goal(slo)}, per {" and ".join(slo["grouping"])}."\n'
            "  indicator:\n"
            f"{indicator}"
            "  alerting:\n"
            f"    name: {ALERT}\n"
            "    severities:\n"
            "      fastBurn: page\n      mediumBurn: page\n"
            "      slowBurn: ticket\n      longTermBurn: ticket\n"
        )
    return files


def duration_text(value):
    if value < 1:
        return f"{round(value * 1000)}ms"
    return f"{value:g}s"


def outputs():
    """{path: text} of every file rendered from slos.yaml."""
    slos_list = slos()
    files = {RULES: rules_text(slos_list), SLOTH: sloth_text(slos_list)}
    for name, text in pyrra_objects(slos_list).items():
        files[PYRRA / name] = text
    return files


def stale_pyrra(files):
    """Pyrra objects on disk that slos.yaml no longer renders."""
    present = set(PYRRA.glob("*.yaml")) if PYRRA.is_dir() else set()
    return sorted(present - set(files))
