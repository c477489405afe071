#!/usr/bin/env bash
# Installs what building and testing batchd needs on a fresh Debian machine of
# this kind (Swift is already there). Idempotent: does nothing when all is in
# place. Run as root, or with sudo available.
set -euo pipefail

# Debian packages: the C libraries the design card names (libsqlite3 today;
# libcurl and libsystemd for the Azure backend and systemd support), pkg-config
# to find them, Python 3 for the example task and the test helpers, systemd
# for journald, journalctl and systemd-analyze (the tests use them), tmux for
# the terminal test of batchctl watch, go-md2man and man-db for the manual
# pages made from docs/ (scripts/man.sh) and their check, debootstrap and
# systemd-container (systemd-nspawn) for the test under a real systemd.
APT_PACKAGES=(libsqlite3-dev libcurl4-openssl-dev libsystemd-dev systemd pkg-config python3 python3-venv tmux go-md2man man-db
              debootstrap systemd-container)
# PyPI packages the tests use: the schema check, and the Azure emulator's
# conformance suite, which runs Microsoft's own SDKs (pinned) against it.
PIP_PACKAGES=(jsonschema==4.26.0 PyYAML==6.0.3 pytest==9.0.3 azure-batch==15.1.0 azure-storage-blob==12.31.1)

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs the packages given that are not installed yet (extra apt-get
# options first, then --, then the packages).
install_missing() {
  local options=() missing=()
  while [ "$1" != -- ]; do options+=("$1"); shift; done; shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "${options[@]}" "${missing[@]}" >/dev/null
}
install_missing -- "${APT_PACKAGES[@]}"

# Slurm for the Slurm backend's tests: a one-host cluster on loopback
# (scripts/slurm-cluster.sh). Without recommends: no mail server, no X.
install_missing --no-install-recommends -- slurm-wlm munge

# podman for container jobs (docs/containers.md): runc, as crun refuses
# the hybrid cgroup layout of this kind of machine; busybox-static for the
# tests' image (scripts/container-image.sh), as no registry is reachable.
install_missing --no-install-recommends -- podman runc busybox-static uidmap slirp4netns fuse-overlayfs
# A real image registry on loopback for the pulls that need credentials
# (Tests/IntegrationTests/RegistryTests.swift), and htpasswd for its users.
# Debian's package starts a registry service where systemd runs; the tests
# start their own, so one this script installs is stopped and disabled.
registry_new=$(dpkg-query -W -f='${Status}' docker-registry 2>/dev/null | grep -q "install ok installed" || echo yes)
install_missing --no-install-recommends -- docker-registry apache2-utils
if [ "$registry_new" = yes ] && [ -d /run/systemd/system ]; then
  sudo_if_needed systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

command -v swift >/dev/null || { echo "setup: swift is not on PATH (expected Swift 6 at /opt/swift)" >&2; exit 1; }

# The tests' Python helpers live in a virtualenv inside the repo (ignored by git).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import jsonschema, yaml, pytest, azure.batch, azure.storage.blob' 2>/dev/null; then
  echo "setup: preparing .venv with ${PIP_PACKAGES[*]}"
  python3 -m venv .venv
  .venv/bin/pip install -q "${PIP_PACKAGES[@]}"
fi

# The benchmark suite's peer and chart (make bench, make bench-quick):
# GNU parallel beside xargs, curl beside the Blob uploads, and matplotlib
# for bench/ratios.png.
if [ "${1:-}" = bench ]; then
  install_missing -- parallel curl
  if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
    echo "setup: installing matplotlib into .venv"
    .venv/bin/pip install -q matplotlib==3.10.7
  fi
fi
