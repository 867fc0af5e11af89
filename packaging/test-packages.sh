#!/bin/sh
# SPDX-License-Identifier: MIT
# Install test of the Debian packages (run as root):
#
#   sh packaging/test-packages.sh [DEBDIR]
#
# Without DEBDIR it builds the packages first (packaging/build-debs.sh into build-deb/). Then it
# installs rjitd, libremotejit-client0 and libremotejit-client-dev with apt-get, checks what
# they put on the system (and, when the source tree has systemd units, that the package ships
# and enables them), builds examples/client-example.cpp in a scratch directory outside the
# source tree with `g++ -std=c++20 ... $(pkg-config --cflags --libs remotejit-client)`, starts
# the installed /usr/sbin/rjitd through socket activation on the default socket
# (systemd-socket-activate -l /run/rjitd/rjitd.sock), runs the example against it (no
# RJIT_SERVER: the default socket) and the installed `rjit info`, stops rjitd with SIGTERM and
# prints "test-packages: PASS" (exit 0) or "test-packages: FAIL: ..." (exit 1).
# The packages stay installed; the rjitd it started is stopped and its socket removed.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
socket_dir=/run/rjitd
socket=$socket_dir/rjitd.sock

tmp=""
rjitd_pid=""
made_socket_dir=no
cleanup() {
  if [ -n "$rjitd_pid" ]; then
    kill -TERM "$rjitd_pid" 2>/dev/null
    wait "$rjitd_pid" 2>/dev/null
    rm -f "$socket"
  fi
  if [ "$made_socket_dir" = yes ]; then rmdir "$socket_dir" 2>/dev/null; fi
  [ -z "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "error: $*" >&2
  echo "test-packages: FAIL: $*"
  exit 1
}
step() { echo "==> test-packages: $*"; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs packages and uses $socket_dir)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rjitd-pkgtest.XXXXXX") || fail "mktemp failed"

# --- the packages ---------------------------------------------------------------------------
if [ $# -ge 1 ]; then
  debdir=$(cd "$1" 2>/dev/null && pwd) || fail "no directory $1"
else
  debdir=$repo/build-deb
  step "building the packages (packaging/build-debs.sh $debdir)"
  sh "$repo/packaging/build-debs.sh" "$debdir" || fail "building the packages failed"
fi
debs=""
for p in rjitd libremotejit-client0 libremotejit-client-dev; do
  # The newest file of each package (there is normally exactly one).
  f=$(ls -t "$debdir/${p}"_*.deb 2>/dev/null | head -n 1)
  [ -n "$f" ] || fail "no ${p}_*.deb in $debdir"
  debs="$debs $f"
done

step "installing:$(for f in $debs; do printf ' %s' "${f##*/}"; done)"
# --reinstall: a rebuilt package of the same version is installed again.
# shellcheck disable=SC2086
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall --no-install-recommends \
    $debs >"$tmp/apt.log" 2>&1; then
  cat "$tmp/apt.log" >&2
  fail "apt-get install of the packages failed"
fi

# --- what the packages installed ------------------------------------------------------------
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for f in /usr/sbin/rjitd /usr/libexec/rjitd/rjitd-executor /usr/bin/rjit \
    /usr/lib/"$multiarch"/libremotejit-client.so.0 \
    /usr/lib/"$multiarch"/libremotejit-client.so /usr/include/remotejit/client.h \
    /usr/include/remotejit/remotejit.h /usr/share/rjitd/grafana/rjitd.json \
    /usr/lib/"$multiarch"/pkgconfig/remotejit-client.pc; do
  [ -e "$f" ] || fail "$f is not installed"
done
owner=$(dpkg -S /usr/lib/"$multiarch"/libremotejit-client.so.0 2>/dev/null | cut -d: -f1)
[ "$owner" = libremotejit-client0 ] || fail "libremotejit-client.so.0 belongs to '$owner'"
# The units, once units/meson.build installs them: shipped, the socket enabled, the system user
# created.
if grep -qs 'rjitd\.socket' "$repo/units/meson.build"; then
  [ -f /lib/systemd/system/rjitd.socket ] || fail "the rjitd package does not ship rjitd.socket"
  [ -f /lib/systemd/system/rjitd.service ] || fail "the rjitd package does not ship rjitd.service"
  if ! grep -q "^ExecStart=/usr/sbin/rjitd" /lib/systemd/system/rjitd.service; then
    fail "the installed rjitd.service does not run /usr/sbin/rjitd"
  fi
  if grep -q '^WantedBy=' /lib/systemd/system/rjitd.socket \
      && [ "$(systemctl is-enabled rjitd.socket 2>/dev/null)" != enabled ]; then
    fail "rjitd.socket is not enabled after installation"
  fi
  if ls /usr/lib/sysusers.d/*.conf >/dev/null 2>&1 \
      && grep -qs rjitd /usr/lib/sysusers.d/*.conf && ! getent passwd rjitd >/dev/null; then
    fail "the system user rjitd was not created"
  fi
fi

# --- an external program built against the installed library -------------------------------
# Only the system's pkg-config directories: the installed .pc, not one from a build tree.
unset PKG_CONFIG_PATH PKG_CONFIG_LIBDIR
flags=$(pkg-config --cflags --libs remotejit-client) || fail "pkg-config remotejit-client failed"
libdir=$(pkg-config --variable=libdir remotejit-client)
[ "$libdir" = "/usr/lib/$multiarch" ] \
  || fail "pkg-config finds remotejit-client in $libdir, not the package's /usr/lib/$multiarch"
step "pkg-config --cflags --libs remotejit-client: $flags"

cp "$repo/examples/client-example.cpp" "$tmp/" || fail "examples/client-example.cpp is missing"
step "g++ -std=c++20 client-example.cpp $flags (in $tmp)"
# shellcheck disable=SC2086
(cd "$tmp" && g++ -std=c++20 -Wall -Wextra -Werror client-example.cpp $flags -o client-example) \
  || fail "building examples/client-example.cpp against the installed library failed"
# (/lib is /usr/lib on Debian 12, so compare resolved paths.)
loaded=$(ldd "$tmp/client-example" | sed -n 's/^[[:space:]]*libremotejit-client\.so\.0 => \([^ ]*\) .*/\1/p')
[ -n "$loaded" ] && [ "$(readlink -f "$loaded")" = \
    "$(readlink -f /usr/lib/"$multiarch"/libremotejit-client.so.0)" ] \
  || fail "client-example loads libremotejit-client.so.0 from '$loaded', not the package's"
if ldd "$tmp/client-example" | grep -qi llvm; then fail "client-example pulls in LLVM"; fi

# --- the installed rjitd, socket-activated on the default socket -----------------------------
unset RJIT_SERVER RJIT_TIMEOUT_MS RJIT_HASH_FIRST_BYTES
if [ -S "$socket" ] || [ -e "$socket" ]; then
  if /usr/bin/rjit info --timeout-ms 2000 >/dev/null 2>&1; then
    fail "another rjitd already serves $socket; stop it first (this test needs the default socket)"
  fi
  rm -f "$socket"  # left behind by an rjitd that is gone
fi
if [ ! -d "$socket_dir" ]; then
  mkdir -p "$socket_dir" || fail "cannot create $socket_dir"
  made_socket_dir=yes
fi
step "systemd-socket-activate -l $socket /usr/sbin/rjitd"
systemd-socket-activate -l "$socket" /usr/sbin/rjitd 2>"$tmp/rjitd.log" &
rjitd_pid=$!
tries=0
until [ -S "$socket" ]; do
  tries=$((tries + 1))
  if ! kill -0 "$rjitd_pid" 2>/dev/null || [ "$tries" -ge 100 ]; then
    cat "$tmp/rjitd.log" >&2
    fail "systemd-socket-activate did not create $socket"
  fi
  sleep 0.1
done

step "client-example (default socket, no RJIT_SERVER)"
if ! RJIT_TIMEOUT_MS=60000 "$tmp/client-example" >"$tmp/example.out" 2>&1; then
  cat "$tmp/example.out" >&2
  echo "--- rjitd log:" >&2; cat "$tmp/rjitd.log" >&2
  fail "client-example failed against the installed rjitd"
fi
cat "$tmp/example.out"
grep -q "^defines: add (function)" "$tmp/example.out" \
  || fail "client-example's output lacks the function add"
grep -Eq "^key: [0-9a-f]{64}$" "$tmp/example.out" || fail "client-example printed no cache key"
grep -q "^loaded: add(40, 2) = 42$" "$tmp/example.out" \
  || fail "client-example could not load its module through the fast path and call it"
grep -q "^server: .* at unix:$socket" "$tmp/example.out" \
  || fail "client-example did not use the default socket $socket"
"$tmp/client-example" >"$tmp/example2.out" 2>&1 || fail "client-example failed the second time"
grep -q "(from the cache)" "$tmp/example2.out" \
  || fail "the second compile of the same module was not served from rjitd's cache"

step "/usr/bin/rjit info"
/usr/bin/rjit info >"$tmp/info.out" 2>&1 || { cat "$tmp/info.out" >&2; fail "rjit info failed"; }
cat "$tmp/info.out"

step "stopping rjitd (SIGTERM)"
kill -TERM "$rjitd_pid"
status=0
wait "$rjitd_pid" || status=$?
rjitd_pid=""
rm -f "$socket"
if [ "$status" -ne 0 ]; then
  cat "$tmp/rjitd.log" >&2
  fail "the installed rjitd exited with status $status on SIGTERM"
fi

echo "test-packages: PASS"
