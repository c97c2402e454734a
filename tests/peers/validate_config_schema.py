"""Validates YAML config files against the exporter's JSON Schema with the jsonschema package.

Usage: validate_config_schema.py SCHEMA FILE...
Checks the schema against the draft 2020-12 meta-schema, then prints one line per file:
`ok FILE` or `invalid FILE: <first error> at <path>`. Exit 0 when the schema is valid.
"""

import json
import sys

import jsonschema
import yaml


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name in sys.argv[2:]:
        with open(name, encoding="utf-8") as f:
            document = yaml.safe_load(f)
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            path = "/".join(str(p) for p in first.absolute_path)
            print(f"invalid {name}: {first.message} at /{path}")
        else:
            print(f"ok {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
