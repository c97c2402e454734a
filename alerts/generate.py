#!/usr/bin/env python3
"""Writes alerts/agent-health.rules.yml from alerts/template/agent-health.rules.yml.tmpl.

EXPORTER_LABELS below is the one place that names the target labels by which Prometheus
tells several exporters of the same agents apart (see the README section "Running several
exporters"). Every agent alert aggregates them away, so that an HA pair or N probing
locations page once per agent and only on quorum. Add the label your scrape config sets
(for example `region`), run

    python3 alerts/generate.py          # rewrite alerts/agent-health.rules.yml
    python3 alerts/generate.py --check  # exit 1 when the committed file is out of date

and commit both files. Standard library only.
"""

import pathlib
import sys

# Target labels that differ between exporters probing the same agents. `instance` always
# differs; `pod` is set by the Prometheus Operator on Kubernetes; `replica` and `location`
# are the labels the README's scrape configs add. A label absent from a series is ignored.
EXPORTER_LABELS = ["instance", "pod", "replica", "location"]

HERE = pathlib.Path(__file__).resolve().parent
TEMPLATE = HERE / "template" / "agent-health.rules.yml.tmpl"
OUTPUT = HERE / "agent-health.rules.yml"


def exporter_name():
    """A Go template naming one exporter from a sample's labels, inside `range query ...`:
    `[instance=10.0.0.7:10056, replica=b]`, with only the labels the sample has."""
    first, *rest = EXPORTER_LABELS
    parts = [f"{{{{ with .Labels.{first} }}}}{first}={{{{ . }}}}{{{{ end }}}}"]
    parts += [f"{{{{ with .Labels.{label} }}}}, {label}={{{{ . }}}}{{{{ end }}}}" for label in rest]
    return "[" + "".join(parts) + "]"


def render():
    text = TEMPLATE.read_text(encoding="utf-8")
    text = text.replace("@EXPORTER_LABELS@", ", ".join(EXPORTER_LABELS))
    text = text.replace("@EXPORTER_NAME@", exporter_name())
    if "@" in "".join(line for line in text.splitlines() if "@EXPORTER" in line):
        sys.exit(f"{TEMPLATE}: unknown placeholder left")
    return text


def main():
    text = render()
    if sys.argv[1:] == ["--check"]:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run python3 alerts/generate.py", file=sys.stderr)
            return 1
        print(f"{OUTPUT} matches {TEMPLATE} with EXPORTER_LABELS = {EXPORTER_LABELS}")
        return 0
    if sys.argv[1:]:
        sys.exit("usage: generate.py [--check]")
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
