#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs each libFuzzer fuzzer of test/fuzz for a bounded time over a copy of its committed
# corpus (the source tree is never written) and prints one line per fuzzer:
#   fuzz: NAME: passed (RUNS runs, EXECS exec/s, cov: COV, ft: FT, corpus: N)
#   fuzz: NAME: failed (...)            followed by the end of its log
# then "fuzz: N passed, N failed". A crash, a leak, a timeout (-timeout) or running past the
# memory limit (-rss_limit_mb) fails the fuzzer; its inputs are kept in BUILD/fuzz-artifacts/.
# Usage: test/fuzz/run-fuzzers.sh [BUILD_DIR (default build-fuzz)] [FUZZER...]
# Environment: FUZZ_SECONDS (default 60 per fuzzer), FUZZ_RSS_MB (default 2048),
# FUZZ_CORPUS_OUT (a directory: each fuzzer's grown corpus is kept in FUZZ_CORPUS_OUT/NAME, to
# merge into the committed one with -merge=1, see docs/TESTING.md).
# Build first: CC=clang-19 CXX=clang++-19 meson setup build-fuzz --native-file llvm19.ini \
#   -Dfuzzers=true -Db_sanitize=address -Db_lundef=false -Dtests=false
#   meson compile -C build-fuzz -j 2 rpc-fuzzer compile-worker-fuzzer load-answer-fuzzer \
#     ir-signature-fuzzer marshal-fuzzer
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-fuzz}
[ $# -gt 0 ] && shift
fuzzers=${*:-rpc-fuzzer compile-worker-fuzzer load-answer-fuzzer ir-signature-fuzzer marshal-fuzzer}
seconds=${FUZZ_SECONDS:-60}
rss=${FUZZ_RSS_MB:-2048}

work=$(mktemp -d "${TMPDIR:-/tmp}/rjitd-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM

passed=0
failed=0
for name in $fuzzers; do
  exe="$build/test/fuzz/$name"
  if [ ! -x "$exe" ]; then
    echo "fuzz: $name: failed (not built: $exe)"
    failed=$((failed + 1))
    continue
  fi
  # Inputs stay small: the compile worker and the daemon compile what they decode in process.
  max_len=4096
  mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
  if [ -d "$here/corpus/$name" ]; then
    cp "$here/corpus/$name"/* "$work/$name/corpus/" 2>/dev/null
  fi
  # -close_fd_mask=3: the code under test logs every request (rjitd's log, LLVM's diagnostics);
  # libFuzzer and AddressSanitizer keep reporting on a copy of stderr.
  "$exe" -max_total_time="$seconds" -rss_limit_mb="$rss" -timeout=30 -max_len="$max_len" \
    -print_final_stats=1 -close_fd_mask=3 -artifact_prefix="$work/$name/artifacts/" \
    "$work/$name/corpus" >"$work/$name/log" 2>&1
  rc=$?
  last=$(grep -E '^#[0-9]+' "$work/$name/log" | tail -n 1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name/log")
  execs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$name/log")
  cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  corpus=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
  summary="${runs:-?} runs, ${execs:-?} exec/s, cov: ${cov:-?}, ft: ${ft:-?}, corpus: ${corpus:-?}"
  if [ -n "${FUZZ_CORPUS_OUT:-}" ]; then
    mkdir -p "$FUZZ_CORPUS_OUT/$name" && cp "$work/$name/corpus"/* "$FUZZ_CORPUS_OUT/$name/"
  fi
  if [ "$rc" -eq 0 ] && [ -z "$(ls -A "$work/$name/artifacts")" ]; then
    echo "fuzz: $name: passed ($summary)"
    passed=$((passed + 1))
  else
    echo "fuzz: $name: failed (exit status $rc; $summary)"
    keep="$build/fuzz-artifacts/$name"
    mkdir -p "$keep"
    cp "$work/$name/artifacts"/* "$keep/" 2>/dev/null
    cp "$work/$name/log" "$keep/log"
    echo "  inputs and log kept in $keep; the end of the log:"
    tail -n 40 "$work/$name/log" | sed 's/^/  | /'
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
