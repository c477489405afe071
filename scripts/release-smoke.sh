#!/usr/bin/env bash
# The release build, end to end, in a few seconds: the suite runs the debug
# build, and an -O miscompile once broke `files put` in release alone (a
# task group's tuple result came back with a garbage index; issue 14). Builds
# with -c release, starts batchd on a temp directory, puts 300 files, runs
# a 300-task job over them with outputs.merge, prunes, and checks each step.
# Waits on the daemon's log (tail -f), never on a sleep.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product batchd >/dev/null
swift build -c release --product batchctl >/dev/null
swift build -c release --product batchd-exec >/dev/null
bin="$(swift build -c release --show-bin-path)"
dir=$(mktemp -d /tmp/batchd-release-smoke.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "release smoke: FAILED: $*"; tail -20 "$dir/batchd.log" | sed 's/^/  | /'; exit 1; }
printf 'stateDirectory: state\nruntimeDirectory: run\nlocal:\n  slots: 2\n' > "$dir/batchd.yaml"
ctl() { "$bin/batchctl" --config "$dir/batchd.yaml" "$@"; }
# Waits (at most 60 s) for a line of the daemon's log matching $1.
waitlog() { timeout 60 grep -q -m1 -E "$1" <(tail -n +1 -f "$dir/batchd.log") || fail "no '$1' in the log"; }
: > "$dir/batchd.log"
"$bin/batchd" --config "$dir/batchd.yaml" 2>"$dir/batchd.log" &
pid=$!
waitlog "daemon ready"
mkdir -p "$dir/data"
for i in $(seq 0 299); do head -c $((1000 + i)) /dev/zero > "$dir/data/f$(printf %03d "$i").bin"; done
put=$(ctl files put "$dir/data" --json) || fail "files put failed"
grep -q '"count" : 300' <<<"$put" || fail "files put: $put"
cat > "$dir/job.yaml" <<'YAML'
name: smoke
tasks:
  forEachFile: data/*.bin
command: printf 'name,bytes\n%s,%s\n' {stem} "$(wc -c < {file})" > r-{index}.csv
outputs:
  patterns: ['r-*.csv']
  destination: out
  merge: {from: 'r-*.csv', into: all.csv}
YAML
ctl submit "$dir/job.yaml" --wait --timeout 300 >/dev/null || fail "the job did not succeed"
grep -q 'inputs staged.*copied=0.*inputs=300' "$dir/batchd.log" || fail "the job copied inputs that files put had stored"
[ "$(wc -l < "$dir/out/all.csv")" -eq 301 ] || fail "all.csv has $(wc -l < "$dir/out/all.csv") lines, not 301"
[ "$(grep -c '^name,bytes$' "$dir/out/all.csv")" -eq 1 ] || fail "all.csv has more than one header"
[ "$(sed -n 2p "$dir/out/all.csv")" = "f000,1000" ] && [ "$(tail -1 "$dir/out/all.csv")" = "f299,1299" ] || fail "all.csv is not in task order"
pruned=$(ctl files prune --unused-for 0s --json) || fail "files prune failed"
grep -q '"count" : 300' <<<"$pruned" || fail "files prune: $pruned"
kill -TERM "$pid"
wait "$pid" || fail "batchd exited with $?"
pid=""
echo "release smoke: files put 300, a 300-task job copied nothing and merged 300 rows in order, prune removed 300: ok"
