// SPDX-License-Identifier: MIT
// Helpers shared by the fuzzers: fuzz bytes as a Cap'n Proto message read under tight limits.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <kj/array.h>
#include <kj/common.h>

namespace rjitd::fuzz {

/// Limits for messages decoded from fuzz input: small enough that a crafted segment table or a
/// deep nesting is refused quickly, as rjitd's own readers refuse them (never unlimited).
inline capnp::ReaderOptions fuzzReaderOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 1u << 16;
  options.nestingLimit = 16;
  return options;
}

/// The bytes copied into word-aligned memory (FlatArrayMessageReader needs alignment); a
/// trailing partial word is zero-padded.
inline kj::Array<capnp::word> toWords(const uint8_t* data, size_t size) {
  auto words = kj::heapArray<capnp::word>((size + sizeof(capnp::word) - 1) / sizeof(capnp::word));
  if (words.size() != 0) {
    memset(words.begin(), 0, words.asBytes().size());
    memcpy(words.begin(), data, size);
  }
  return words;
}

}  // namespace rjitd::fuzz
