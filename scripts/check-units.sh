#!/usr/bin/env bash
# Installs into a temp PREFIX (make install, debug build) and checks what was
# installed: both units pass `systemd-analyze verify --man=no` with no output,
# the system unit's offline security exposure is <= 2.0, and the catalog,
# schema, sysusers file, config and completions are in place.
set -uo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d /tmp/batchd-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() {  # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); else echo "FAILED: $what"; failed=$((failed + 1)); fi
}

make --no-print-directory install PREFIX="$tmp/usr" SYSCONFDIR="$tmp/etc" BUILD=debug >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; echo "units: 0 passed, 1 failed"; exit 1; }

for unit in "$tmp/usr/lib/systemd/system/batchd.service" "$tmp/usr/lib/systemd/user/batchd.service"; do
  out=$(systemd-analyze verify --man=no "$unit" 2>&1)
  check "systemd-analyze verify $unit printed: $out" test -z "$out"
done

# The Azure credentials drop-in, applied to the installed unit, verifies too.
dropin="$tmp/verify-dropin"
mkdir -p "$dropin/batchd.service.d"
cp "$tmp/usr/lib/systemd/system/batchd.service" "$dropin/"
cp "$tmp/usr/share/batchd/azure-credentials.conf" "$dropin/batchd.service.d/"
out=$(cd "$dropin" && systemd-analyze verify --man=no batchd.service 2>&1)
check "verify with the credentials drop-in printed: $out" test -z "$out"

score=$(systemd-analyze security --offline=yes "$tmp/usr/lib/systemd/system/batchd.service" 2>&1 \
  | sed -n 's/.*Overall exposure level for batchd.service: \([0-9.]*\).*/\1/p')
echo "system unit exposure: ${score:-unknown}"
check "exposure ${score:-unknown} <= 2.0" python3 -c "import sys; sys.exit(0 if float('${score:-99}') <= 2.0 else 1)"
check "ExecStart names the installed binary" grep -q "^ExecStart=$tmp/usr/bin/batchd --config $tmp/etc/batchd/batchd.yaml" "$tmp/usr/lib/systemd/system/batchd.service"

for f in usr/bin/batchd usr/bin/batchctl usr/lib/batchd/batchd-exec usr/lib/systemd/catalog/batchd.catalog \
         usr/lib/sysusers.d/batchd.conf usr/lib/tmpfiles.d/batchd.conf usr/share/batchd/manifest.schema.json etc/batchd/batchd.yaml \
         usr/share/bash-completion/completions/batchctl usr/share/zsh/site-functions/_batchctl \
         usr/share/fish/vendor_completions.d/batchctl.fish usr/share/doc/batchd/operations.md \
         usr/share/man/man1/batchctl.1 usr/share/man/man8/batchd.8 usr/share/man/man5/batchd-manifest.5 \
         usr/share/man/man5/batchd.yaml.5; do
  check "installed $f" test -s "$tmp/$f"
done
check "bash completion knows the subcommands" grep -q "submit" "$tmp/usr/share/bash-completion/completions/batchctl"
check "man finds the installed pages" env MANPATH="$tmp/usr/share/man" man -w batchctl batchd batchd.yaml batchd-manifest
# The installed daemon finds batchd-exec in PREFIX/lib/batchd: it starts,
# says "daemon ready" (read from its stderr as it comes), and stops on SIGTERM.
printf 'stateDirectory: %s/state\nruntimeDirectory: %s/run\n' "$tmp" "$tmp" > "$tmp/c.yaml"
check "installed batchd starts and finds batchd-exec" python3 - "$tmp/usr/bin/batchd" "$tmp/c.yaml" <<'PY'
import subprocess, sys, threading
p = subprocess.Popen([sys.argv[1], "--config", sys.argv[2]], stderr=subprocess.PIPE, text=True)
timer = threading.Timer(30, p.kill)
timer.start()
ready = False
for line in p.stderr:
    if "daemon ready" in line:
        ready = True
        break
p.terminate()
p.wait()
timer.cancel()
sys.exit(0 if ready and p.returncode == 0 else 1)
PY

echo "units: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
