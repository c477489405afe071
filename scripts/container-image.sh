#!/usr/bin/env bash
# Builds the tests' container image, localhost/batchd-test:1, when the
# engine lacks it: no registry is reachable here, so it is made from
# Debian's busybox-static (docs/containers.md, "Testing"). Idempotent.
# It is tagged batchd.test/batchd-test:1 too, a name as a registry would
# serve it: Azure's nodes cannot pull a localhost/ image, so batchd refuses
# one there, and the Azure emulator "pulls" what the engine has.
#
# The image has /bin/sh and the usual tools as busybox applets, and a file
# the host has not, /etc/batchd-image, by which a task proves it runs
# inside. Its own working directory is /srv.
#
#   scripts/container-image.sh [CONTAINERS_CONF]
set -euo pipefail
image=localhost/batchd-test:1
served=batchd.test/batchd-test:1
conf=${1:-${CONTAINERS_CONF:-}}
[ -n "$conf" ] && export CONTAINERS_CONF="$conf"
if podman image exists "$image" 2>/dev/null; then
  podman image exists "$served" 2>/dev/null || podman tag "$image" "$served"
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/srv"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
echo "batchd-test image" > "$root/etc/batchd-image"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
tar -C "$root" -cf "$root.tar" .
podman import --change 'WORKDIR /srv' --change 'ENV PATH=/bin' -q "$root.tar" "$image" >/dev/null
rm -f "$root.tar"
podman tag "$image" "$served"
echo "container-image: made $image ($served)"
