// SPDX-License-Identifier: MIT
// Remote execute: a C++ exception no one catches (natively: std::terminate, then abort()).
#include <cstdint>
#include <stdexcept>

extern "C" int64_t throw_uncaught() {
  throw std::runtime_error("nobody catches this");
}
