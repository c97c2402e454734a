"""Reads scrapes with prometheus_client's parsers, as a Python consumer would: `.om` files as
OpenMetrics, others as Prometheus text 0.0.4. Prints each file it rejects and exits 1 if any."""
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families


def main():
    rejected = 0
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        parse = openmetrics_families if path.endswith(".om") else text_families
        try:
            # Both parsers reject a series with a label name twice ("Invalid labels").
            for _family in parse(text):
                pass
        except Exception as e:  # any rejection is reported with its file
            rejected += 1
            print(f"{path}: {type(e).__name__}: {e}")
    sys.exit(1 if rejected else 0)


if __name__ == "__main__":
    main()
