#!/usr/bin/env bash
# Runs every test: the Swift suites (unit and integration, against the real
# binaries), the schema check of the examples, the installed units
# (systemd-analyze verify and security), the units booted under a real
# systemd (scripts/systemd-test.sh), the manual pages, the Azure emulator's conformance
# suite, a release-build smoke run (scripts/release-smoke.sh), the Azure chaos
# soak at 200 tasks (bench/chaos.py), and manifest
# intake under libFuzzer (a corpus replay and a bounded run). Ends with one
# summary line.
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
BATCHD_BIN="$(swift build --show-bin-path)"
export BATCHD_BIN

# The Slurm suite runs on its own after the others: its 2,000-task job keeps
# both cores busy for minutes (Slurm's own start-up cost per task), which
# would starve suites with time limits.
swift test --skip SlurmTests 2>&1 | tee "$log"
swift_rc=${PIPESTATUS[0]}
slurm_log=$(mktemp)
trap 'rm -f "$log" "$slurm_log"' EXIT
swift test --skip-build --filter SlurmTests 2>&1 | tee "$slurm_log"
slurm_rc=${PIPESTATUS[0]}

.venv/bin/python scripts/check-examples.py
schema_rc=$?

scripts/check-units.sh
units_rc=$?

# The units installed and booted under a real systemd (Debian 12 in
# systemd-nspawn), with an operator's and two submitters' steps.
scripts/systemd-test.sh
systemd_rc=$?

# The Azure emulator's conformance suite (Microsoft's SDKs against it).
.venv/bin/python -m pytest -q -p no:cacheprovider Tests/AzureEmulator/tests
emulator_rc=$?

# batchctl reads SQLite and talks to a socket: it must link neither libcurl
# nor libsystemd (BatchControl keeps its logic apart from the daemon's).
if ldd "$BATCHD_BIN/batchctl" | grep -E 'libcurl|libsystemd'; then
  echo "links: batchctl links libcurl or libsystemd"; links_rc=1
else
  echo "links: batchctl links neither libcurl nor libsystemd"; links_rc=0
fi

# batchd-exec starts once per task and runs on cluster nodes without Swift:
# it must stay a static executable.
# (ldd exits 1 for a static executable; pipefail must not read that as a failure)
if { ldd "$BATCHD_BIN/batchd-exec" 2>&1 || true; } | grep -q "not a dynamic executable"; then
  echo "links: batchd-exec is static"
else
  echo "links: batchd-exec is dynamically linked"; links_rc=1
fi

# The manual pages build, render without warnings and cover every command.
scripts/check-man.sh
man_rc=$?

# The benchmark suite at small sizes, so it cannot rot (no time is asserted).
scripts/release-smoke.sh
release_rc=$?
scripts/setup.sh bench && .venv/bin/python bench/run.py --quick
bench_rc=$?

# The Azure chaos soak at a tenth of its size (make chaos runs it whole):
# every one of the emulator's faults at random, seeded; its checks, no
# time asserted (its polling budget is checked at full size only).
.venv/bin/python bench/chaos.py --tasks 200 --seed 23 > /tmp/batchd-chaos.json
chaos_rc=$?
echo "chaos: $(grep -o '"checks": "passed"' /tmp/batchd-chaos.json || echo 'FAILED, see /tmp/batchd-chaos.json')"

# Manifest intake under libFuzzer: every input that ever crashed it and the
# seed corpus replayed, then a bounded run (make fuzz runs longer).
"$BATCHD_BIN/batchd-fuzz" Tests/Fuzz/corpus Tests/Fuzz/FailCases
replay_rc=$?
scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
fuzz_rc=$?

# Swift Testing ends with "Test run with N tests in M suites passed|failed ... with K issues".
count() { grep -oE 'Test run with [0-9]+ tests? .* passed' "$1" | grep -oE '[0-9]+' | head -1; }
passed=$(( $(count "$log" || echo 0) + $(count "$slurm_log" || echo 0) ))
failed=$(( $(grep -cE '^✘ Test .* failed' "$log") + $(grep -cE '^✘ Test .* failed' "$slurm_log") ))
echo "swift: ${passed:-0} passed, ${failed:-0} failed"
[ "$swift_rc" -eq 0 ] && [ "$slurm_rc" -eq 0 ] && [ "$schema_rc" -eq 0 ] && [ "$units_rc" -eq 0 ] && [ "$systemd_rc" -eq 0 ] && [ "$emulator_rc" -eq 0 ] \
  && [ "$replay_rc" -eq 0 ] && [ "$fuzz_rc" -eq 0 ] && [ "$links_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$man_rc" -eq 0 ] && [ "$release_rc" -eq 0 ] && [ "$chaos_rc" -eq 0 ]
