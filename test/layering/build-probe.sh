#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds layering probes with ninja: build-probe.sh NINJA BUILD_ROOT TARGET=HEADER...
# An empty HEADER means the target must build; otherwise it must fail because HEADER is not
# found (so a probe that fails for any other reason fails the test too).
set -u
ninja=$1
root=$2
shift 2
failed=0
for spec in "$@"; do
  target=${spec%%=*}
  header=${spec#*=}
  relative=${target#"$root"/}
  if output=$("$ninja" -C "$root" "$relative" 2>&1); then
    if [ -n "$header" ]; then
      echo "FAIL: $relative built, but it includes $header, which its dependencies must not reach"
      failed=1
    else
      echo "ok: $relative builds"
    fi
  else
    if [ -z "$header" ]; then
      echo "FAIL: $relative (the control) does not build:"
      echo "$output"
      failed=1
    elif echo "$output" | grep -F "$header" | grep -q -e 'No such file' -e 'file not found'; then
      echo "ok: $relative cannot include $header"
    else
      echo "FAIL: $relative failed, but not because $header is missing:"
      echo "$output"
      failed=1
    fi
  fi
done
exit $failed
