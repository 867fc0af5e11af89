#!/bin/sh
# SPDX-License-Identifier: MIT
# The demo: installs the dependencies, builds rjitd, starts it with its embedded defaults on a
# private socket, compiles examples/hello.c to LLVM IR with clang-19, has rjitd compile the IR
# into an object file (`rjit compile`), links and runs the program, shows `rjit info`, and
# stops rjitd. Run as root on a fresh Debian 12 machine (or as a user with sudo).
set -eu
cd "$(dirname "$0")/.."

echo "==> installing dependencies"
sh packaging/install-deps.sh

echo "==> building (build/)"
if [ -f build/meson-private/coredata.dat ]; then
  meson setup --reconfigure build --native-file llvm19.ini >/dev/null
else
  rm -rf build
  meson setup build --native-file llvm19.ini
fi
meson compile -C build service/rjitd src/cli/rjit

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rjitd-demo.XXXXXX")
rjitd_pid=""
cleanup() {
  if [ -n "$rjitd_pid" ]; then
    kill -TERM "$rjitd_pid" 2>/dev/null || true
    wait "$rjitd_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

socket="$tmp/rjitd.sock"
export RJIT_SERVER="unix:$socket"
echo "==> starting rjitd on $RJIT_SERVER (log: $tmp/rjitd.log)"
build/service/rjitd --listen "unix:$socket" 2>"$tmp/rjitd.log" &
rjitd_pid=$!

# rjitd answers once it listens; give it up to 30 s (it normally takes milliseconds).
tries=0
until build/src/cli/rjit info >/dev/null 2>&1; do
  tries=$((tries + 1))
  if ! kill -0 "$rjitd_pid" 2>/dev/null || [ "$tries" -ge 300 ]; then
    echo "error: rjitd did not start; its log:" >&2
    cat "$tmp/rjitd.log" >&2
    exit 1
  fi
  sleep 0.1
done

echo "==> clang-19: examples/hello.c -> hello.ll (LLVM IR)"
clang-19 -O1 -Xclang -disable-llvm-passes -S -emit-llvm examples/hello.c -o "$tmp/hello.ll"

echo "==> rjit compile hello.ll -O2 -o hello.o (the compile runs in rjitd)"
build/src/cli/rjit compile "$tmp/hello.ll" -O2 -o "$tmp/hello.o" -v

echo "==> again: this time from rjitd's cache"
build/src/cli/rjit compile "$tmp/hello.ll" -O2 -o "$tmp/hello.o" -v

echo "==> cc hello.o -o hello, and run it"
cc "$tmp/hello.o" -o "$tmp/hello"
"$tmp/hello"

echo "==> rjit run hello.ll -- fast path: linked by rjitd for this process, mapped and run here"
build/src/cli/rjit run "$tmp/hello.ll" -- from-the-fast-path

echo "==> rjit call hello.ll: one function, arguments converted by its IR signature"
echo "collatz_steps(27) = $(build/src/cli/rjit call "$tmp/hello.ll" collatz_steps 27)"

echo "==> rjit run --remote / rjit call --remote: the same, executed by rjitd in a sandboxed executor"
build/src/cli/rjit run --remote "$tmp/hello.ll" -- from-an-executor
echo "collatz_steps(27) = $(build/src/cli/rjit call --remote "$tmp/hello.ll" collatz_steps 27)"

echo "==> rjit info"
build/src/cli/rjit info

echo "==> stopping rjitd (SIGTERM)"
kill -TERM "$rjitd_pid"
status=0
wait "$rjitd_pid" || status=$?
rjitd_pid=""
echo "rjitd exited with status $status"
exit "$status"
