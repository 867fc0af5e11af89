#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs every Debian 12 package rjitd needs to build, test, benchmark and package.
# Idempotent: when everything is present it only checks (no apt-get update), so it is quick.
set -eu

PACKAGES="
  build-essential pkg-config meson ninja-build python3 git ca-certificates
  llvm-19-dev llvm-19-tools clang-19 lld-19 libclang-rt-19-dev
  capnproto libcapnp-dev
  libsystemd-dev systemd
  libboost-dev
  prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nettle-dev libssl-dev libcli11-dev nlohmann-json3-dev libffi-dev libseccomp-dev
  libzstd-dev libstb-dev
  libhiredis-dev redis-server
  curl
  prometheus
  debhelper dpkg-dev fakeroot
  g++-aarch64-linux-gnu qemu-user
  libcapnp-dev:arm64 libffi-dev:arm64 nettle-dev:arm64 libseccomp-dev:arm64
  libgtest-dev:arm64 libgmock-dev:arm64
"
# The last lines are AArch64 (issue 11): the cross compiler, qemu-user (the dynamic build: 99 MB
# installed against qemu-user-static's 379 MB, ../shared/notes/toolchain-probe.md) and the
# arm64 libraries the cross build (cross-aarch64.ini) links, through Debian's multiarch
# (`dpkg --add-architecture arm64`; libcapnp-dev:arm64 pulls libssl-dev:arm64, which moves the
# host's libssl to the same Debian revision).
# libhiredis-dev and redis-server (issue 13): the shared cache tier's client, and the Redis the
# fleet tests start on private sockets (the package's own service is not used).

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing="$missing $p"
  fi
done

if [ -z "$missing" ]; then
  echo "install-deps: all build and test dependencies are present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: missing packages:$missing; run this script as root (or install sudo)" >&2
    exit 1
  fi
fi
echo "install-deps: installing:$missing"
case "$missing" in
  *:arm64*)
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      $SUDO dpkg --add-architecture arm64
    fi
    ;;
esac
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
