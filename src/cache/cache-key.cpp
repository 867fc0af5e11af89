// SPDX-License-Identifier: MIT
// Cache key computation (see cache-key.h). The encoding is part of the cache's contract: the
// daemon and every client must produce the same bytes, and a change here must bump the prefix.
#include "cache-key.h"

#include <algorithm>
#include <nettle/sha2.h>
#include <tuple>

namespace rjitd::cache {

namespace {

/// Domain separation: these bytes start every encoding, so a digest of some other structure
/// that happens to hash the same fields can never be taken for a cache key. Bump the version
/// whenever the encoding below changes.
constexpr std::string_view KEY_PREFIX = "rjitd-cache-key-v1";

void update(sha256_ctx* ctx, const void* data, size_t size) {
  if (size != 0)
    sha256_update(ctx, size, static_cast<const uint8_t*>(data));
}

/// One field: its length as 8 little-endian bytes, then its bytes. The length prefix is what
/// keeps ("ab", "c") and ("a", "bc") apart.
void updateLength(sha256_ctx* ctx, uint64_t n) {
  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<uint8_t>(n >> (8 * i));
  update(ctx, len, sizeof(len));
}

void updateField(sha256_ctx* ctx, std::string_view bytes) {
  updateLength(ctx, bytes.size());
  update(ctx, bytes.data(), bytes.size());
}

constexpr size_t PIECE_BYTES = 256 * 1024;

// Encoding: KEY_PREFIX, then the fields module, triple, cpu, features, optLevel (its decimal
// digits, e.g. "2"), compilerIdentity, each as (u64 little-endian length, bytes).
std::optional<Key> hashKey(const KeyInputs& in, const std::atomic<bool>* cancelled) {
  sha256_ctx ctx;
  sha256_init(&ctx);
  update(&ctx, KEY_PREFIX.data(), KEY_PREFIX.size());
  // The module is streamed from the caller's buffer, never copied.
  updateLength(&ctx, in.module.size());
  for (size_t done = 0; done < in.module.size(); done += PIECE_BYTES) {
    if (cancelled != nullptr && cancelled->load(std::memory_order_acquire))
      return std::nullopt;
    update(&ctx, in.module.data() + done, std::min(PIECE_BYTES, in.module.size() - done));
  }
  updateField(&ctx, in.triple);
  updateField(&ctx, in.cpu);
  updateField(&ctx, in.features);
  updateField(&ctx, std::to_string(in.optLevel));
  updateField(&ctx, in.compilerIdentity);

  static_assert(std::tuple_size_v<Key> == SHA256_DIGEST_SIZE);
  Key key;
  sha256_digest(&ctx, key.size(), key.data());
  return key;
}

}  // namespace

Key computeKey(const KeyInputs& in) {
  return *hashKey(in, nullptr);
}

std::optional<Key> computeKey(const KeyInputs& in, const std::atomic<bool>& cancelled) {
  return hashKey(in, &cancelled);
}

std::string toHex(const Key& key) {
  static constexpr char DIGITS[] = "0123456789abcdef";
  std::string out;
  out.reserve(key.size() * 2);
  for (uint8_t b : key) {
    out += DIGITS[b >> 4];
    out += DIGITS[b & 0xf];
  }
  return out;
}

std::optional<Key> keyFromBytes(std::string_view bytes) {
  Key key;
  if (bytes.size() != key.size())
    return std::nullopt;
  for (size_t i = 0; i < key.size(); ++i)
    key[i] = static_cast<uint8_t>(bytes[i]);
  return key;
}

std::string compilerIdentity(std::string_view rjitdVersion, std::string_view llvmVersion,
                             std::string_view buildId) {
  std::string out = "rjitd/";
  out += rjitdVersion;
  out += " llvm/";
  out += llvmVersion;
  if (!buildId.empty()) {
    out += " build/";
    out += buildId;
  }
  return out;
}

}  // namespace rjitd::cache
