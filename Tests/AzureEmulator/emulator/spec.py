"""Validates Batch request bodies against the official REST spec
(BatchService.json, Swagger 2.0): unknown properties, missing required ones,
wrong types and values outside an enum are refused, as the service refuses
them. Without the spec file, nothing is checked."""
import json
import re


class SpecError(Exception):
    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class Spec:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        self.version = doc["info"]["version"]
        self.definitions = doc["definitions"]
        self._merged = {}
        self.operations = []   # (method, regex, body schema)
        for template, item in doc["paths"].items():
            regex = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}")) + "$")
            for method, op in item.items():
                if method == "parameters":
                    continue
                body = next((p["schema"] for p in op.get("parameters", []) if p.get("in") == "body"), None)
                self.operations.append((method.upper(), regex, body, op.get("operationId")))

    def body_schema(self, method, path):
        for m, regex, body, op_id in self.operations:
            if m == method and regex.match(path):
                return body, op_id
        return None, None

    def resolve(self, schema):
        while "$ref" in schema:
            schema = self.definitions[schema["$ref"].split("/")[-1]]
        return schema

    def properties(self, schema):
        # Merged once per schema (the spec's dicts live as long as the Spec):
        # a task collection checks the same few schemas thousands of times.
        key = id(schema)
        if key not in self._merged:
            self._merged[key] = self._merge(schema)
        return self._merged[key]

    def _merge(self, schema):
        schema = self.resolve(schema)
        props = dict(schema.get("properties", {}))
        required = set(schema.get("required", []))
        for part in schema.get("allOf", []):
            p, r = self.properties(part)
            props.update(p)
            required |= r
        return props, required

    def validate(self, value, schema, path="body"):
        schema = self.resolve(schema)
        kind = schema.get("type") or ("object" if "properties" in schema or "allOf" in schema else None)
        if value is None:
            if schema.get("x-nullable"):
                return
            raise SpecError(path, "null is not allowed")
        if kind == "object":
            if not isinstance(value, dict):
                raise SpecError(path, "expected an object")
            props, required = self.properties(schema)
            extra = schema.get("additionalProperties")
            for name in required:
                if name not in value:
                    raise SpecError(f"{path}.{name}", "a required property is missing")
            for name, item in value.items():
                if name in props:
                    self.validate(item, props[name], f"{path}.{name}")
                elif isinstance(extra, dict):
                    self.validate(item, extra, f"{path}.{name}")
                elif extra is not True and props:
                    raise SpecError(f"{path}.{name}", "the property is not part of the request body")
        elif kind == "array":
            if not isinstance(value, list):
                raise SpecError(path, "expected an array")
            for i, item in enumerate(value):
                self.validate(item, schema.get("items", {}), f"{path}[{i}]")
        elif kind == "string":
            if not isinstance(value, str):
                raise SpecError(path, "expected a string")
            if "enum" in schema and value.lower() not in [str(e).lower() for e in schema["enum"]]:
                raise SpecError(path, f"'{value}' is not one of {schema['enum']}")
            fmt = schema.get("format")
            if fmt == "date-time" and not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value):
                raise SpecError(path, "not a date-time")
            elif fmt == "duration" and not re.match(r"^-?P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$", value):
                raise SpecError(path, "not an ISO 8601 duration")
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(path, "expected an integer")
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(path, "expected a number")
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise SpecError(path, "expected true or false")
