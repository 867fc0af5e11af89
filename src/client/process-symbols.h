// SPDX-License-Identifier: MIT
// This process's own symbols as loaded code sees them: what the resolver answers rjitd for a
// name no LoadOptions symbol and no loaded module defines.
#pragma once

#include <cstdint>
#include <string>

namespace rjit::detail {

/// The address of a process symbol for JIT code, and whether it stays valid for the life of the
/// process.
struct ProcessSymbol {
  uint64_t address = 0;  ///< 0: unknown
  bool stable = false;
};

/// The address of `name` in this process for JIT code: `atexit` (which glibc does not export:
/// it lives in libc_nonshared.a) is our own that files the handler under the module it comes
/// from; everything else is dlsym(RTLD_DEFAULT). The object that defines it is pinned
/// (RTLD_NODELETE): loaded code keeps pointers into it, so it must never be unloaded, and rjitd
/// may then reuse the answer for this connection's later loads (`stable`). Not stable when the
/// object cannot be found or pinned (the answer is still right for this load).
ProcessSymbol processSymbol(const std::string& name);

}  // namespace rjit::detail
