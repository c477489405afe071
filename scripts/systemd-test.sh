#!/usr/bin/env bash
# The system test under a real systemd (make test-systemd; make test runs it).
#
# Boots Debian bookworm with systemd as PID 1 in a container
# (systemd-nspawn), installs batchd into it with the same `make install` a
# user runs, and does what docs/operations.md tells an operator and two
# submitters (real users, made with useradd in the guest) to do, asserting
# each step: the unit starts with the shipped config, the README example is
# run or refused with the fix before anything reaches the inbox, outputs are
# the submitter's, the journal tells a job's story (who cancelled it
# included), reload applies, tasks outlive kill -9 of the daemon and are
# adopted, stop leaves nothing running, the watchdog never fires, the
# exposure score stays at most 2.0, and the user unit with lingering runs the
# example. Ends with "systemd: N passed, M failed".
#
# The root file system is made once by scripts/systemd-rootfs.sh and kept;
# each run boots a copy of it. Facts this rests on: ../shared/PLATFORM-NOTES.md.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

passed=0 failed=0
check() {  # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "  ok: $what"; else failed=$((failed + 1)); echo "FAILED: $what"; fi
}
say() { echo "systemd-test: $*"; }
finish() {
  echo "systemd: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}

# Booting a container and making users needs root (CI runs as root).
if [ "$(id -u)" -ne 0 ]; then
  echo "systemd: skipped (needs root for systemd-nspawn and useradd; run make test-systemd as root)"
  exit 0
fi

# --- the guest ---------------------------------------------------------------
base=$(scripts/systemd-rootfs.sh) || { echo "FAILED: making the root file system"; failed=1; finish; }
work=$(mktemp -d /var/tmp/batchd-systemd.XXXXXX)
root="$work/root"
nspawn_pid=""
cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid" 2>/dev/null   # nspawn asks the guest's systemd to power off
    timeout 30 tail --pid="$nspawn_pid" -f /dev/null || kill -KILL "$nspawn_pid" 2>/dev/null
  fi
  [ -n "${KEEP_GUEST:-}" ] && { echo "guest kept in $work"; return; }
  rm -rf "$work"
}
trap cleanup EXIT
cp -a "$base" "$root"

# A helper the scenario runs in the guest: waits (batchctl watch --json)
# until N tasks of a job run; fails if it ends first.
mkdir -p "$root/opt/batchd-test"
cat > "$root/opt/batchd-test/running.py" <<'PY'
import json, subprocess, sys
job, n = sys.argv[1], int(sys.argv[2])
watch = subprocess.Popen(["batchctl", "watch", job, "--json"], stdout=subprocess.PIPE, text=True)
ok, seen = False, []
for line in watch.stdout:
    state = json.loads(line)
    seen.append((state["state"], state["running"], state["done"]))
    if state["running"] >= n: ok = True; break
    if state["state"] in ("succeeded", "failed", "cancelled"): break
watch.kill()
if not ok: print(f"running.py: {job}: never {n} running; seen (state, running, done): {seen}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
# And one that runs a command once it follows batchd's journal, then waits
# until a new line matches: `journalctl -f -n1` prints the last line first,
# which says it is following; stdbuf, since it block-buffers into a pipe.
cat > "$root/opt/batchd-test/after.py" <<'PY'
import subprocess, sys
pattern, command = sys.argv[1], sys.argv[2]
follow = subprocess.Popen(["stdbuf", "-oL", "journalctl", "-u", "batchd", "-f", "-n1", "-o", "cat"], stdout=subprocess.PIPE, text=True)
follow.stdout.readline()
done = subprocess.run(["/bin/sh", "-c", command])
ok = False
for line in follow.stdout:
    if pattern in line: ok = True; break
follow.kill()
if not ok: print(f"after.py: no '{pattern}' in batchd's journal", file=sys.stderr)
sys.exit(0 if ok and done.returncode == 0 else 1)
PY

# The Swift runtime libraries batchd and batchctl link (not in Debian).
swift_lib=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")/lib/swift/linux
mkdir -p "$root/usr/local/lib/swift-runtime"
cp "$swift_lib"/*.so "$root/usr/local/lib/swift-runtime/"
echo /usr/local/lib/swift-runtime > "$root/etc/ld.so.conf.d/swift-runtime.conf"
chroot "$root" ldconfig

# Installed as a user would (docs/operations.md), into the guest.
say "make install DESTDIR=<guest>"
if ! make --no-print-directory install DESTDIR="$root" BUILD=debug >"$work/install.log" 2>&1; then
  tail -30 "$work/install.log"; echo "FAILED: make install into the guest"; failed=1; finish
fi

say "booting the guest (systemd-nspawn)"
# Returns when the guest's systemd says its boot has finished (READY=1
# through nspawn's --notify-ready), with nspawn's pid and the guest's PID 1.
read -r nspawn_pid guest_pid < <(scripts/systemd-boot.py "$root" batchd-test "$work/console.log" 180)
[ -n "${guest_pid:-}" ] || { tail -20 "$work/console.log"; echo "FAILED: the guest did not boot"; failed=1; finish; }

# g CMD: run CMD in the guest as root. u USER CMD: as USER, with a login shell.
g() { nsenter -t "$guest_pid" -m -u -i -p -C -- /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 /bin/sh -c "$1"; }
u() { g "su - $1 -c $(printf '%q' "$2")"; }

state=$(g 'systemctl is-system-running')
say "guest booted: $state"
[ "$state" = degraded ] && g 'systemctl --failed --no-legend' | sed 's/^/  failed unit: /'
check "the guest boots with systemd as PID 1" test "$state" = running -o "$state" = degraded

. "$repo/scripts/systemd-scenario.sh"
finish
