#!/usr/bin/env python3
"""Boots a root file system with systemd as PID 1 (systemd-nspawn) and
returns once its boot has finished: nspawn, run with --notify-ready=yes and a
NOTIFY_SOCKET bound here, says READY=1 when the guest's systemd says it has
finished starting up. Prints nspawn's pid and the guest's PID 1 and leaves
nspawn running. Used by scripts/systemd-test.sh.

usage: systemd-boot.py ROOT MACHINE CONSOLE_LOG TIMEOUT_SECONDS"""
import os
import socket
import subprocess
import sys
import tempfile

root, machine, console, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
directory = tempfile.mkdtemp(prefix="batchd-boot-")
path = os.path.join(directory, "notify")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
sock.settimeout(timeout)
# --register=no --keep-unit: the host has no systemd or D-Bus. The system
# call filter lets Landlock through nspawn's own seccomp filter.
nspawn = subprocess.Popen(
    ["systemd-nspawn", "-D", root, "-b", "-M", machine, "--register=no", "--keep-unit", "--console=pipe",
     "--notify-ready=yes", "--system-call-filter=landlock_create_ruleset landlock_add_rule landlock_restrict_self"],
    stdout=open(console, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    env=dict(os.environ, NOTIFY_SOCKET=path), start_new_session=True)
ready = False
try:
    while not ready:
        message = sock.recv(4096).decode(errors="replace")
        ready = "READY=1" in message.split("\n")
except socket.timeout:
    pass
finally:
    sock.close()
    os.unlink(path)
    os.rmdir(directory)
if not ready:
    print(f"systemd-boot: no READY=1 from the guest within {timeout:.0f} s", file=sys.stderr)
    nspawn.kill()
    sys.exit(1)
# The guest's PID 1 is nspawn's child.
children = open(f"/proc/{nspawn.pid}/task/{nspawn.pid}/children").read().split()
print(nspawn.pid, children[0] if children else "")
