// SPDX-License-Identifier: MIT
// Lets clang (>= 16) compile Cap'n Proto 0.9.2's headers in C++20: force-included into every
// translation unit of a clang build (meson.build), never used by GCC builds.
//
// Why: in C++20 kj 0.9.2 drops its `operator==(const char*, StringPtr)` and relies on the
// reversed `StringPtr::operator==`, but P2468R2 (implemented by clang 16, not by GCC 12) forbids
// reversing an `operator==` whose class also declares `operator!=`, so capnp/blob.h's
// `a == b.asString()` has no viable candidate. Cap'n Proto 0.10 fixed its headers; these are the
// free operators kj 0.9.2 declares before C++20, spelled so that they cannot call themselves.
#pragma once

#if defined(__clang__) && defined(__cplusplus) && __cpp_impl_three_way_comparison
#include <kj/string.h>

namespace kj {
inline bool operator==(const char* a, const StringPtr& b) {
  return b.operator==(StringPtr(a));
}
inline bool operator!=(const char* a, const StringPtr& b) {
  return !b.operator==(StringPtr(a));
}
inline bool operator==(const char* a, const String& b) {
  return StringPtr(b).operator==(StringPtr(a));
}
inline bool operator!=(const char* a, const String& b) {
  return !StringPtr(b).operator==(StringPtr(a));
}
}  // namespace kj
#endif
