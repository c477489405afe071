"""The slice of OData the Batch list operations take: $filter with eq, ne,
gt, ge, lt, le, and, or, not and parentheses over fields such as state, id,
stateTransitionTime and executionInfo/exitCode; $select of top-level fields."""
import re
from datetime import datetime, timezone

TOKEN = re.compile(r"\s*(?:(\()|(\))|(datetime'[^']*')|('(?:[^']|'')*')|(-?\d+(?:\.\d+)?)|([A-Za-z_][\w/]*))")


class FilterError(Exception):
    pass


def _time(text):
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    m = re.match(r"^(.*\.\d{6})\d*(.*)$", text)
    if m:
        text = m.group(1) + m.group(2)
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def tokenize(text):
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN.match(text, pos)
        if not m:
            raise FilterError(f"cannot parse $filter at '{text[pos:]}'")
        pos = m.end()
        lp, rp, dt, s, n, ident = m.groups()
        if lp: out.append(("(", None))
        elif rp: out.append((")", None))
        elif dt: out.append(("value", _time(dt[9:-1])))
        elif s: out.append(("value", s[1:-1].replace("''", "'")))
        elif n: out.append(("value", float(n) if "." in n else int(n)))
        else:
            low = ident.lower()
            if low in ("and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le"):
                out.append((low, None))
            elif low in ("true", "false"):
                out.append(("value", low == "true"))
            else:
                out.append(("field", ident))
    return out


def compile_filter(text):
    """A predicate over an entity's JSON form."""
    tokens = tokenize(text)
    pos = [0]

    def peek():
        return tokens[pos[0]][0] if pos[0] < len(tokens) else None

    def take(kind=None):
        if pos[0] >= len(tokens):
            raise FilterError("unexpected end of $filter")
        tok = tokens[pos[0]]
        if kind and tok[0] != kind:
            raise FilterError(f"expected {kind} in $filter")
        pos[0] += 1
        return tok

    def expr():
        left = term()
        while peek() == "or":
            take()
            right = term()
            left = (lambda a, b: lambda e: a(e) or b(e))(left, right)
        return left

    def term():
        left = factor()
        while peek() == "and":
            take()
            right = factor()
            left = (lambda a, b: lambda e: a(e) and b(e))(left, right)
        return left

    def factor():
        if peek() == "(":
            take()
            inner = expr()
            take(")")
            return inner
        if peek() == "not":
            take()
            inner = factor()
            return lambda e: not inner(e)
        _, field = take("field")
        op = take()[0]
        if op not in ("eq", "ne", "gt", "ge", "lt", "le"):
            raise FilterError(f"unknown operator {op}")
        _, value = take("value")
        return lambda e: compare(lookup(e, field), op, value)

    result = expr()
    if pos[0] != len(tokens):
        raise FilterError("trailing text in $filter")
    return result


def lookup(entity, field):
    value = entity
    for part in field.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def compare(actual, op, expected):
    if actual is None:
        return op == "ne"
    if isinstance(expected, datetime):
        try:
            actual = _time(actual)
        except (TypeError, ValueError):
            return False
    elif isinstance(expected, str):
        actual, expected = str(actual).lower(), expected.lower()
    try:
        return {"eq": actual == expected, "ne": actual != expected, "gt": actual > expected,
                "ge": actual >= expected, "lt": actual < expected, "le": actual <= expected}[op]
    except TypeError:
        return False


def select(entity, fields):
    if not fields:
        return entity
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    return {k: v for k, v in entity.items() if k in wanted}
