#!/usr/bin/env python3
"""Markdown on stdin, for a manual page on stdout: each table becomes a list
(a table as wide as docs/manifest.md's does not fit a terminal's man page),
links become "text (target)", and a line that would start with a quote or a
dot (which roff reads as a request) is shielded."""
import re
import sys

def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]

out, header = [], None
for line in sys.stdin.read().split("\n"):
    if line.startswith("|"):
        row = cells(line)
        if header is None:
            header = row
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in row if c):
            continue
        first, rest = row[0], row[1:]
        details = "; ".join(f"{h}: {c}" for h, c in zip(header[1:], rest) if c) if len(header) > 2 else " ".join(rest)
        out.append(f"- {first}" + (f" — {details}" if details else ""))
        continue
    if header is not None:
        header = None
        out.append("")
    line = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", line)
    out.append(line)
sys.stdout.write("\n".join(out))
