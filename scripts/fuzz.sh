#!/usr/bin/env bash
# Fuzzes manifest intake (parsing, validation, task expansion, template
# rendering) with libFuzzer and AddressSanitizer for SECONDS (default 600):
#   scripts/fuzz.sh [SECONDS]
# The target is Tests/Fuzz/Sources (built into .build-fuzz/ with
# -sanitize=fuzzer,address); it starts from a copy of Tests/Fuzz/corpus. A
# crash or a hang leaves its input in .build-fuzz/artifacts/: fix the cause,
# then add the input to Tests/Fuzz/FailCases/, which make test replays.
# Ends with one line: "fuzz: N runs in S s, no crash".
set -uo pipefail
seconds=${1:-600}
cd "$(dirname "$0")/.."

build_log=$(mktemp)
trap 'rm -f "$build_log"; [ -n "${work:-}" ] && rm -rf "$work"' EXIT
if ! swift build --scratch-path .build-fuzz --product batchd-fuzz \
      -Xswiftc -sanitize=fuzzer,address -Xswiftc -D -Xswiftc FUZZING >"$build_log" 2>&1; then
  grep -v "Cannot export local symbol" "$build_log" | tail -30
  echo "fuzz: the fuzz target did not build"
  exit 1
fi
bin="$(swift build --scratch-path .build-fuzz --show-bin-path)/batchd-fuzz"
work=$(mktemp -d /tmp/batchd-fuzz.XXXXXX)
cp Tests/Fuzz/corpus/* "$work/"
mkdir -p .build-fuzz/artifacts
log=.build-fuzz/last-run.log
# The Swift runtime's own crash handler trips ASan: SWIFT_BACKTRACE=enable=no.
SWIFT_BACKTRACE=enable=no "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix=.build-fuzz/artifacts/ "$work" >"$log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
if [ "$rc" -ne 0 ]; then
  grep -E "ERROR|SUMMARY|Test unit written|Fatal error|precondition" "$log" | head -20
  echo "fuzz: FAILED after ${runs:-?} runs (log: $log; input in .build-fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: ${runs:-?} runs in ${seconds} s, no crash (log: $log)"
