// SPDX-License-Identifier: MIT
// Cache key computation (see cache-key.h). The encoding is part of the cache's contract: the
// daemon and every client must produce the same bytes, and a change here must bump the prefix.
#include "cache-key.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <openssl/evp.h>

namespace rjitd::cache {

namespace {

/// Domain separation: these bytes start every encoding, so a digest of some other structure
/// that happens to hash the same fields can never be taken for a cache key. Bump the version
/// whenever the encoding below changes.
constexpr std::string_view KEY_PREFIX = "rjitd-cache-key-v1";

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

/// OpenSSL's digest calls fail only on allocation failure or misuse, neither of which a caller
/// can handle. Checked in every build type (not `assert`): a silently wrong key would file one
/// request's object under another's key, which is a security bug, not a slowdown.
void checkOpenssl(bool ok, const char* call) {
  if (!ok) {
    std::fprintf(stderr, "rjitd: bug: OpenSSL %s failed while computing a cache key\n", call);
    std::abort();
  }
}

void update(EVP_MD_CTX* ctx, const void* data, size_t size) {
  if (size != 0)
    checkOpenssl(EVP_DigestUpdate(ctx, data, size) == 1, "EVP_DigestUpdate");
}

/// One field: its length as 8 little-endian bytes, then its bytes. The length prefix is what
/// keeps ("ab", "c") and ("a", "bc") apart.
void updateField(EVP_MD_CTX* ctx, std::string_view bytes) {
  uint64_t n = bytes.size();
  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<uint8_t>(n >> (8 * i));
  update(ctx, len, sizeof(len));
  update(ctx, bytes.data(), bytes.size());
}

}  // namespace

// Encoding: KEY_PREFIX, then the fields module, triple, cpu, features, optLevel (its decimal
// digits, e.g. "2"), compilerIdentity, each as (u64 little-endian length, bytes).
Key computeKey(const KeyInputs& in) {
  MdCtx ctx(EVP_MD_CTX_new());
  checkOpenssl(ctx != nullptr, "EVP_MD_CTX_new");
  checkOpenssl(EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1, "EVP_DigestInit_ex");
  update(ctx.get(), KEY_PREFIX.data(), KEY_PREFIX.size());
  updateField(ctx.get(), in.module);  // streamed from the caller's buffer, never copied
  updateField(ctx.get(), in.triple);
  updateField(ctx.get(), in.cpu);
  updateField(ctx.get(), in.features);
  updateField(ctx.get(), std::to_string(in.optLevel));
  updateField(ctx.get(), in.compilerIdentity);

  Key key;
  unsigned int size = 0;
  checkOpenssl(EVP_DigestFinal_ex(ctx.get(), key.data(), &size) == 1, "EVP_DigestFinal_ex");
  checkOpenssl(size == key.size(), "EVP_DigestFinal_ex (digest size)");
  return key;
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

std::string compilerIdentity(std::string_view rjitdVersion, std::string_view llvmVersion) {
  std::string out = "rjitd/";
  out += rjitdVersion;
  out += " llvm/";
  out += llvmVersion;
  return out;
}

}  // namespace rjitd::cache
