#!/usr/bin/env python3
"""Validates every example manifest against docs/manifest.schema.json, and
checks that the schema rejects a typo'd key, so editors flag what batchd flags."""
import json
import pathlib
import sys

import jsonschema
import yaml

root = pathlib.Path(__file__).resolve().parent.parent
schema = json.loads((root / "docs/manifest.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)

failures = 0
manifests = sorted(root.glob("examples/*/*.yaml")) + sorted(root.glob("examples/*/*.json"))
for path in manifests:
    errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
    for e in errors:
        print(f"{path.relative_to(root)}: {'.'.join(map(str, e.path))}: {e.message}")
    failures += bool(errors)

typo = {"name": "x", "tasks": [{"comand": "true"}]}
if validator.is_valid(typo):
    print("schema accepts an unknown key in a task")
    failures += 1

print(f"schema: {len(manifests) + 1 - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
