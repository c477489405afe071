#!/usr/bin/env bash
# Local-backend benchmark: starts the built batchd on a temp state directory
# and times whole jobs end to end through batchctl (submit → succeeded):
#   wordcount     the example (3 python tasks)
#   sleep-200     200 tasks of `sleep 0.2` on 8 slots (ideal: 25 waves × 0.2 s = 5 s)
#   true-N        N tasks of `true` on 8 slots: the daemon's own cost per task
# Usage: scripts/bench-local.sh [N]   (default N=1000). Prints one line per job.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
BIN="$(swift build --show-bin-path)"
swift build >/dev/null
dir=$(mktemp -d /tmp/batchd-bench.XXXXXX)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
cat > "$dir/batchd.yaml" <<CFG
stateDirectory: state
runtimeDirectory: run
local: {slots: 8}
CFG
"$BIN/batchd" --config "$dir/batchd.yaml" 2> "$dir/daemon.log" &
pid=$!
until grep -q "daemon ready" "$dir/daemon.log"; do
  kill -0 $pid 2>/dev/null || { cat "$dir/daemon.log"; exit 1; }
  sleep 0.05
done

run() {  # name manifest-path
  local start end
  start=$(date +%s.%N)
  "$BIN/batchctl" --config "$dir/batchd.yaml" submit "$2" --wait >/dev/null
  end=$(date +%s.%N)
  python3 - "$1" "$start" "$end" "$3" <<'PY'
import sys
name, start, end, tasks = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
wall = end - start
print(f"{name:12s} tasks={tasks:5d} wall={wall:7.2f}s  per-task={1000 * wall / tasks:7.1f}ms")
PY
}

cp -r examples/wordcount "$dir/wordcount"
run wordcount "$dir/wordcount/job.yaml" 3

mkdir -p "$dir/sleep"
printf 'name: sleep200\ntasks: {forEachInteger: {from: 1, to: 200}}\ncommand: sleep 0.2\n' > "$dir/sleep/job.yaml"
run sleep-200 "$dir/sleep/job.yaml" 200

mkdir -p "$dir/true"
printf 'name: truen\ntasks: {forEachInteger: {from: 1, to: %d}}\ncommand: "true"\n' "$N" > "$dir/true/job.yaml"
run "true-$N" "$dir/true/job.yaml" "$N"
