#!/usr/bin/env bash
# Builds the manual pages (scripts/man.sh) into a temp directory and checks
# that man renders each without a warning, and that each says what it must:
# every batchctl subcommand, and the manifest's and config's newest keys.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(swift build --show-bin-path)"
swift build --product generate-manual >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
scripts/man.sh "$out" "$bin"
rc=0
for page in "$out"/man1/batchctl.1 "$out"/man8/batchd.8 "$out"/man5/batchd-manifest.5 "$out"/man5/batchd.yaml.5; do
  warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null || true)
  if [ -n "$warnings" ]; then echo "man: $(basename "$page"): $warnings"; rc=1; fi
done
# Rendered once into files (grep -q on a pipe would cut man short, and
# pipefail would count that as a failure).
for page in batchctl.1 batchd.8 batchd-manifest.5 batchd.yaml.5; do
  MANWIDTH=200 man -l "$out"/man*/"$page" 2>/dev/null | col -bx > "$out/$page.txt"
done
for sub in submit list show watch logs wait cancel retry plan pools pool types outputs files; do
  grep -qE "^ +$sub\b" "$out/batchctl.1.txt" || { echo "man: batchctl(1) lacks '$sub'"; rc=1; }
done
grep -q -- "--set" "$out/batchctl.1.txt" || { echo "man: batchctl(1) lacks --set"; rc=1; }
grep -q -- "--log-level" "$out/batchd.8.txt" || { echo "man: batchd(8) lacks --log-level"; rc=1; }
grep -q "Job types and parameters" "$out/batchd-manifest.5.txt" || { echo "man: batchd-manifest(5) lacks job types"; rc=1; }
grep -q "^ *types: types" "$out/batchd.yaml.5.txt" || { echo "man: batchd.yaml(5) lacks the types key"; rc=1; }
[ "$rc" -eq 0 ] && echo "man: 4 pages render without warnings and say what they must"
exit "$rc"
