#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the Debian packages rjitd, libremotejit-client0 and libremotejit-client-dev.
#
#   sh packaging/build-debs.sh [--head] [OUTDIR]      (OUTDIR defaults to build-deb/)
#
# The repository keeps its Debian packaging in packaging/debian/ (there is no top-level
# debian/). This script exports the source tree into a temporary directory - the working tree
# as it is (tracked files plus untracked ones that .gitignore does not exclude, so no build
# directories), or with --head the committed HEAD only - copies packaging/debian/ to debian/
# there, runs `dpkg-buildpackage -us -uc -b` and moves the results (*.deb, *.ddeb, *.changes,
# *.buildinfo) and the build log to OUTDIR. DEB_BUILD_OPTIONS defaults to
# "parallel=<CPUs> nocheck". Needs the build dependencies (packaging/install-deps.sh); does not
# need root.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)

from_head=no
outdir=""
for arg in "$@"; do
  case $arg in
    --head) from_head=yes ;;
    -h|--help) sed -n '3,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown option $arg (try --help)" >&2; exit 2 ;;
    *) outdir=$arg ;;
  esac
done
[ -n "$outdir" ] || outdir="$repo/build-deb"
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

version=$(dpkg-parsechangelog -l "$repo/packaging/debian/changelog" -S Version)
work=$(mktemp -d "${TMPDIR:-/tmp}/rjitd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
src="$work/rjitd-$version"
mkdir "$src"

echo "==> build-debs: exporting the source tree to $src"
if [ -d "$repo/.git" ] && command -v git >/dev/null 2>&1; then
  if [ "$from_head" = yes ]; then
    git -C "$repo" archive --format=tar HEAD | tar -xf - -C "$src"
  else
    # --ignore-failed-read: a tracked file deleted in the working tree is simply left out.
    git -C "$repo" ls-files -z --cached --others --exclude-standard \
      | (cd "$repo" && tar --null --ignore-failed-read -T - -cf -) 2>/dev/null \
      | tar -xf - -C "$src"
  fi
else
  [ "$from_head" = no ] || { echo "error: --head needs a git checkout" >&2; exit 2; }
  (cd "$repo" && tar --exclude='./build*' --exclude=./.git --exclude=./.cache -cf - .) \
    | tar -xf - -C "$src"
fi
if [ ! -f "$src/packaging/debian/rules" ]; then
  echo "error: packaging/debian/ is missing from the exported tree (not committed yet? drop --head)" >&2
  exit 1
fi
rm -rf "$src/debian"
cp -a "$src/packaging/debian" "$src/debian"

cpus=$(nproc 2>/dev/null || echo 1)
export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-parallel=$cpus nocheck}"
log="$outdir/build-debs.log"
echo "==> build-debs: dpkg-buildpackage -us -uc -b (DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS; log: $log)"
start=$(date +%s)
status=0
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$log" 2>&1 || status=$?
end=$(date +%s)
if [ "$status" -ne 0 ]; then
  echo "error: dpkg-buildpackage failed (exit $status) after $((end - start)) s; the end of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi

# Replace the previous results in OUTDIR with this build's.
rm -f "$outdir"/*.deb "$outdir"/*.ddeb "$outdir"/*.changes "$outdir"/*.buildinfo
for f in "$work"/*.deb "$work"/*.ddeb "$work"/*.changes "$work"/*.buildinfo; do
  [ -e "$f" ] && mv "$f" "$outdir/"
done
echo "==> build-debs: built in $((end - start)) s:"
(cd "$outdir" && ls -1 ./*.deb)
