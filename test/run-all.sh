#!/bin/sh
# SPDX-License-Identifier: MIT
# The whole test suite from a fresh Debian 12 machine (run as root, or with sudo available):
# installs the dependencies, builds and runs `meson test` three times - a normal build in build/,
# an AArch64 cross build in build-arm64/ (the client library, rjit, the aarch64 executor and
# their tests, run under qemu-user against build/'s rjitd) and an AddressSanitizer +
# UndefinedBehaviorSanitizer build in build-asan/ - then builds, installs
# and tests the Debian packages (packaging/test-packages.sh, one test), builds the libFuzzer
# fuzzers with clang-19 in build-fuzz/ and runs each for 60 s (one test each), and ends with one line
# "N passed, N failed, N skipped" summed over all (a build that fails counts as one failed
# test; a GoogleTest case that called GTEST_SKIP and a meson test that exited 77 count as
# skipped, not passed).
# Exits non-zero on any failure. Re-runnable: existing build directories are reconfigured.
set -u
cd "$(dirname "$0")/.." || exit 1

build_failures=0
suite_failures=0

# configure DIR [meson options...]: set up DIR, or reconfigure it if it is already set up.
configure() {
  dir=$1
  shift
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$dir" --native-file llvm19.ini "$@"
  else
    rm -rf "$dir"
    meson setup "$dir" --native-file llvm19.ini "$@"
  fi
}

# build_dir DIR [meson options...]: configure and build DIR; a failure is counted and DIR's
# tests are then not run (test_dir skips a directory without a successful build).
build_dir() {
  dir=$1
  echo "==> $dir: configure, build"
  rm -f "$dir/meson-logs/testlog.json" "$dir/.built"
  if ! configure "$@" || ! meson compile -C "$dir"; then
    echo "error: the build in $dir failed" >&2
    build_failures=$((build_failures + 1))
    return
  fi
  touch "$dir/.built"
}

# test_dir DIR: run every test in DIR. Failures are counted from the test log below; a failing
# `meson test` without a log entry to show for it (it could not run at all) counts as one.
test_dir() {
  dir=$1
  [ -f "$dir/.built" ] || return
  echo "==> $dir: test"
  if ! meson test -C "$dir" --print-errorlogs --num-processes 2; then
    suite_failures=$((suite_failures + 1))
  fi
}

if ! sh packaging/install-deps.sh; then
  echo "error: installing the dependencies failed" >&2
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi

# The native build's tests run aarch64 executors from the cross build, and the cross build's
# tests run against the native build's rjitd: build both, then test both.
aarch64_executor="$PWD/build-arm64/service/executor/rjitd-executor"
build_dir build -Daarch64_executor="$aarch64_executor"
build_dir build-arm64 --cross-file cross-aarch64.ini -Dnative_build="$PWD/build"
test_dir build
test_dir build-arm64
# -fno-sanitize=vptr: UBSan's vptr check reports kj's own template classes (XThreadFulfiller,
# Disposer, FdInputStream, instantiated both in libkj and in our objects) as "not an object of
# type ..." - false positives across the shared-library boundary - and the type names it
# demangles for those reports (__cxa_demangle in libstdc++) are never freed, which LeakSanitizer
# then reports at exit, failing a random test. Every other UBSan check stays on.
build_dir build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dcpp_args=-fno-sanitize=vptr \
  -Daarch64_executor="$aarch64_executor"
test_dir build-asan

# The Debian packages, counted as one test: build them into build-deb/ (as this user), then
# install them and use them (as root: packaging/test-packages.sh).
package_passed=0
package_failed=0
echo "==> build-deb: Debian packages: build, install, test"
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if sh packaging/build-debs.sh build-deb && $SUDO sh packaging/test-packages.sh build-deb; then
  package_passed=1
else
  echo "error: the Debian package test failed" >&2
  package_failed=1
fi

# The fuzzers (test/fuzz), one test each: built with clang-19 in build-fuzz/ (only the fuzz
# targets), each run FUZZ_SECONDS (default 60) over a copy of its committed corpus
# (test/fuzz/run-fuzzers.sh prints "fuzz: NAME: passed|failed (...)" per fuzzer).
fuzz_names="rpc-fuzzer compile-worker-fuzzer load-answer-fuzzer ir-signature-fuzzer marshal-fuzzer"
fuzz_passed=0
fuzz_failed=0
echo "==> build-fuzz: configure, build the fuzzers, run them"
# shellcheck disable=SC2086 # fuzz_names is a list of target names
if CC=clang-19 CXX=clang++-19 configure build-fuzz -Dfuzzers=true -Db_sanitize=address \
     -Db_lundef=false -Dtests=false && meson compile -C build-fuzz $fuzz_names; then
  fuzz_log=$(sh test/fuzz/run-fuzzers.sh build-fuzz $fuzz_names)
  echo "$fuzz_log"
  fuzz_passed=$(echo "$fuzz_log" | grep -c '^fuzz: [a-z-]*: passed')
  fuzz_failed=$(echo "$fuzz_log" | grep -c '^fuzz: [a-z-]*: failed')
else
  echo "error: the build in build-fuzz failed" >&2
  build_failures=$((build_failures + 1))
fi

# Sum both test logs (one JSON object per line, one line per meson test). A GoogleTest
# executable counts its test cases, read from its output ("[       OK ] Suite.Case (N ms)",
# "[  FAILED  ] Suite.Case (N ms)", "[  SKIPPED ] Suite.Case (N ms)"); one that failed without a
# failed case to show for it (a crash, a timeout) counts one more failure. Other tests (scripts)
# count as one each; meson's SKIP (exit status 77) counts as skipped.
counts=$(python3 -c '
import json, os, re, sys
suffix = r" \S+(, where GetParam\(\) = .*)? \(\d+ ms\)$"
ok_case = re.compile(r"^\[       OK \]" + suffix, re.M)
failed_case = re.compile(r"^\[  FAILED  \]" + suffix, re.M)
skipped_case = re.compile(r"^\[  SKIPPED \]" + suffix, re.M)
passed = failed = skipped = 0
for d in sys.argv[1:]:
    path = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(path):
        continue
    with open(path) as log:
        for line in log:
            if not line.strip():
                continue
            test = json.loads(line)
            result = test.get("result")
            good = result in ("OK", "EXPECTEDFAIL")
            bad = result in ("FAIL", "TIMEOUT", "UNEXPECTEDPASS", "ERROR")
            out = test.get("stdout") or ""
            cases_ok = len(ok_case.findall(out))
            cases_failed = len(failed_case.findall(out))
            cases_skipped = len(skipped_case.findall(out))
            if cases_ok or cases_failed or cases_skipped:
                passed += cases_ok
                failed += cases_failed
                skipped += cases_skipped
                if bad and cases_failed == 0:
                    failed += 1
            elif good:
                passed += 1
            elif result == "SKIP":
                skipped += 1
            elif bad:
                failed += 1
print(passed, failed, skipped)
' build build-arm64 build-asan) || counts="0 0 0"
set -- $counts
passed=$1
failed=$2
skipped=$3
if [ "$failed" -eq 0 ] && [ "$suite_failures" -gt 0 ]; then
  failed=$suite_failures
fi
failed=$((failed + build_failures + package_failed + fuzz_failed))
passed=$((passed + package_passed + fuzz_passed))

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
