// SPDX-License-Identifier: MIT
// The content-addressed cache key. Computed identically by the daemon (which files entries
// under keys it computed itself from the bytes it received) and by clients (which use it for
// hash-first lookups). SHA-256 from Nettle (see crypto_dep in meson.build for why not
// libcrypto): the cache is shared by all clients, so a non-cryptographic hash would let a
// crafted collision hand one client another's code.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

namespace rjitd::cache {

using Key = std::array<uint8_t, 32>;

/// Hash of a Key for unordered containers (the in-memory cache's index, the daemon's
/// single-flight map). A key is a SHA-256 digest, already uniformly distributed: any 8 of its
/// bytes are as good a hash as anything computed from all 32.
struct KeyHash {
  size_t operator()(const Key& k) const noexcept {
    uint64_t h;
    static_assert(sizeof(h) <= std::tuple_size_v<Key>);
    std::memcpy(&h, k.data(), sizeof(h));
    return static_cast<size_t>(h);
  }
};

/// Everything that decides what object a compile produces. `triple` must already be the
/// canonical triple (rjitd::resolveTarget), `cpu` the effective CPU (the target's default when
/// the request named none), so that different spellings of one request share a key.
struct KeyInputs {
  std::string_view module;  ///< the module bytes exactly as sent (text or bitcode)
  std::string_view triple;
  std::string_view cpu;
  std::string_view features;
  unsigned optLevel = 0;
  std::string_view compilerIdentity;  ///< rjitd, LLVM, build id (compilerIdentity())
};

/// SHA-256 over a length-prefixed, domain-separated encoding of every field, so no two
/// different inputs share an encoding: the bytes "rjitd-cache-key-v1", then module, triple,
/// cpu, features, optLevel (decimal digits), compilerIdentity, each as an 8-byte little-endian
/// length followed by the bytes. The module is hashed in place, not copied. Cannot fail
/// (Nettle's SHA-256 neither allocates nor fails).
Key computeKey(const KeyInputs& in);

/// computeKey that gives up (nullopt) once `cancelled` is set: the module is hashed in pieces
/// of 256 KiB, with the flag checked before each, so a caller that takes its bytes back waits
/// for at most one piece.
std::optional<Key> computeKey(const KeyInputs& in, const std::atomic<bool>& cancelled);

/// Lower-case hex, 64 characters.
std::string toHex(const Key& key);

/// Accepts exactly 32 bytes; anything else is not a key.
std::optional<Key> keyFromBytes(std::string_view bytes);

/// "rjitd/<version> llvm/<version> build/<build id>" of this build: part of every key, so an
/// upgrade, or a rebuild of the same version, never serves objects built by another compiler
/// (the disk and shared tiers outlive a binary). Without a build id the last part is left out.
/// Clients learn the identity from ServerHello and never make it up.
std::string compilerIdentity(std::string_view rjitdVersion, std::string_view llvmVersion,
                             std::string_view buildId = {});

}  // namespace rjitd::cache
