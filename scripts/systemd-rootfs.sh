#!/usr/bin/env bash
# Prints the path of a Debian bookworm root file system for the real-systemd
# test (scripts/systemd-test.sh), making it with debootstrap when it is not
# there yet. It is kept between runs in $BATCHD_ROOTFS_CACHE (default
# /var/cache/batchd-test), keyed on the package list below: change the list
# and a new one is made. A half-made one is never used (made in a temp
# directory, renamed into place when debootstrap has finished).
set -euo pipefail

# What the guest needs: systemd as PID 1 and its D-Bus (systemctl, loginctl,
# the user manager), the C libraries batchd links (libcurl4, libsqlite3-0;
# libsystemd0 comes with systemd), acl (getfacl in the test), python3 for the
# README example, procps (pgrep), libpam-systemd and dbus-user-session for
# the user unit with lingering, and util-linux's su/runuser.
PACKAGES=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,libcurl4,libsqlite3-0,acl,python3,procps,libxml2,passwd
SUITE=bookworm

cache=${BATCHD_ROOTFS_CACHE:-/var/cache/batchd-test}
key=$(printf '%s %s %s\n' "$SUITE" "$PACKAGES" "$(uname -m)" | sha256sum | cut -c1-16)
root="$cache/rootfs-$key"
if [ -x "$root/lib/systemd/systemd" ] && [ "$(stat -c %a "$root")" = 755 ]; then
  echo "$root"
  exit 0
fi

# The mirror this machine already uses (Debian's, reachable from every
# machine of this kind); nothing else is fetched.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
  | sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p; s/^deb \(http[^ ]*debian\) .*/\1/p' | head -1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.rootfs-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "systemd-rootfs: debootstrap $SUITE from $mirror into $tmp (about a minute here, once)" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$mirror" >"$tmp.log" 2>&1 \
  || { tail -20 "$tmp.log" >&2; exit 1; }
rm -f "$tmp.log"
chmod 755 "$tmp"   # mktemp -d made it 0700: the guest's / must be searchable by its users
# apt's package lists are not needed in the guest; keep the cache small.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
rm -rf "$root"   # one left unusable (an older script made it 0700) is replaced, not moved into
mv "$tmp" "$root"
trap - EXIT
echo "$root"
