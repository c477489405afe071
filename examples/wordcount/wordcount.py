#!/usr/bin/env python3
"""The Azure Batch tutorial's task: count the words of one text file and
write the N most frequent as `word<TAB>count` lines (count descending, then
word ascending) to <stem>_OUTPUT.txt.

Words are runs of letters, digits and apostrophes, lower-cased; apostrophes at
either end of a word are dropped. Only the standard library is used, so the
task runs on any node with Python 3.
"""
import argparse
import collections
import pathlib
import re


def top_words(text, n):
    words = (w.strip("'") for w in re.findall(r"[a-z0-9']+", text.lower()))
    counts = collections.Counter(w for w in words if w)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--filepath", required=True, help="the text file to count")
    parser.add_argument("--numwords", type=int, default=3, help="how many words to report")
    args = parser.parse_args()
    path = pathlib.Path(args.filepath)
    rows = top_words(path.read_text(encoding="utf-8"), args.numwords)
    out = pathlib.Path(f"{path.stem}_OUTPUT.txt")
    out.write_text("".join(f"{w}\t{c}\n" for w, c in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
