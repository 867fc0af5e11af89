// SPDX-License-Identifier: MIT
// The GNU build id of the running rjitd binary: part of the cache key's compiler identity, so
// that a changed build (a patched LLVM, a rebuilt rjitd of the same version) never serves
// objects an old build compiled into a disk or shared cache. Compile workers are rjitd itself
// (/proc/self/exe), so one id covers both.
#pragma once

#include <string>

namespace rjitd::service {

/// Lower-case hex of the main program's NT_GNU_BUILD_ID note, or "" when it has none (a link
/// without --build-id; the caller then falls back to the binary's size and mtime).
std::string ownBuildId();

/// ownBuildId(), or when the binary has none, "exe-<size>-<mtime ns>" of /proc/self/exe:
/// something that still changes when the binary does.
std::string buildIdentity();

}  // namespace rjitd::service
