// SPDX-License-Identifier: MIT
// Tests for the cache key: a pinned known answer, sensitivity to every field, unambiguous
// field boundaries, and the hex/bytes conversions.
#include "cache-key.h"

#include <atomic>
#include <gtest/gtest.h>
#include <memory>
#include <openssl/evp.h>
#include <optional>
#include <set>
#include <string>

namespace rjitd::cache {
namespace {

/// SHA-256 computed here, independently of cache-key.cpp (Nettle), with OpenSSL's one-shot
/// EVP_Digest.
Key sha256(std::string_view bytes) {
  Key out{};
  unsigned int size = 0;
  int ok = EVP_Digest(bytes.data(), bytes.size(), out.data(), &size, EVP_sha256(), nullptr);
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(size, out.size());
  return out;
}

void appendField(std::string& out, std::string_view field) {
  uint64_t n = field.size();
  for (int i = 0; i < 8; ++i)
    out += static_cast<char>(static_cast<uint8_t>(n >> (8 * i)));
  out += field;
}

/// The documented encoding, written out byte by byte.
std::string encode(const KeyInputs& in) {
  std::string out = "rjitd-cache-key-v1";
  appendField(out, in.module);
  appendField(out, in.triple);
  appendField(out, in.cpu);
  appendField(out, in.features);
  appendField(out, std::to_string(in.optLevel));
  appendField(out, in.compilerIdentity);
  return out;
}

KeyInputs baseInputs() {
  KeyInputs in;
  in.module = "define i32 @f() {\n  ret i32 42\n}\n";
  in.triple = "x86_64-unknown-linux-gnu";
  in.cpu = "x86-64";
  in.features = "+sse2";
  in.optLevel = 2;
  in.compilerIdentity = "rjitd/0.1.0 llvm/19.1.7";
  return in;
}

TEST(CacheKeyTest, TestHelperIsSha256) {
  // FIPS 180-2 test vector, so the independent digest below is known to be SHA-256.
  EXPECT_EQ(toHex(sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(CacheKeyTest, MatchesDocumentedEncoding) {
  KeyInputs in = baseInputs();
  EXPECT_EQ(computeKey(in), sha256(encode(in)));

  KeyInputs empty;
  EXPECT_EQ(computeKey(empty), sha256(encode(empty)));
}

TEST(CacheKeyTest, LargeModulesHashInPiecesToTheSameKey) {
  // Several 256 KiB pieces and a partial one, with a byte pattern that shows a piece misplaced.
  std::string module(3 * 256 * 1024 + 12345, '\0');
  for (size_t i = 0; i < module.size(); ++i)
    module[i] = static_cast<char>((i * 131) >> 7);
  KeyInputs in = baseInputs();
  in.module = module;
  std::atomic<bool> cancelled{false};
  std::optional<Key> pieces = computeKey(in, cancelled);
  ASSERT_TRUE(pieces.has_value());
  EXPECT_EQ(*pieces, computeKey(in));
  EXPECT_EQ(*pieces, sha256(encode(in)));
}

TEST(CacheKeyTest, CancelledHashGivesNoKey) {
  KeyInputs in = baseInputs();
  std::string module(1 << 20, 'x');
  in.module = module;
  std::atomic<bool> cancelled{true};
  EXPECT_FALSE(computeKey(in, cancelled).has_value());
}

TEST(CacheKeyTest, PinnedValue) {
  // If this fails, the encoding changed: every existing disk cache and every client built
  // before the change now disagree with the daemon. Bump the "-v1" prefix deliberately, then
  // update this value.
  EXPECT_EQ(toHex(computeKey(baseInputs())),
            "ae0776f9fd8dbd6086a511d84ab4e69841652ba3c4b3f1ba8d0e6584e2d58897");
}

TEST(CacheKeyTest, Deterministic) {
  KeyInputs in = baseInputs();
  std::string copy(in.module);  // same bytes at a different address
  KeyInputs in2 = in;
  in2.module = copy;
  EXPECT_EQ(computeKey(in), computeKey(in));
  EXPECT_EQ(computeKey(in), computeKey(in2));
}

TEST(CacheKeyTest, EveryFieldChangesTheKey) {
  std::set<Key> keys;
  keys.insert(computeKey(baseInputs()));
  auto add = [&keys](const KeyInputs& in, const char* what) {
    EXPECT_TRUE(keys.insert(computeKey(in)).second) << what << " does not change the key";
  };
  KeyInputs in = baseInputs();
  in.module = "define i32 @f() {\n  ret i32 43\n}\n";
  add(in, "module");
  in = baseInputs();
  in.triple = "aarch64-unknown-linux-gnu";
  add(in, "triple");
  in = baseInputs();
  in.cpu = "znver3";
  add(in, "cpu");
  in = baseInputs();
  in.features = "+avx2";
  add(in, "features");
  in = baseInputs();
  in.optLevel = 3;
  add(in, "optLevel");
  in = baseInputs();
  in.compilerIdentity = "rjitd/0.1.1 llvm/19.1.7";
  add(in, "compilerIdentity");
}

TEST(CacheKeyTest, ModuleBytesAreHashedExactly) {
  using namespace std::string_literals;
  KeyInputs a = baseInputs(), b = baseInputs(), c = baseInputs();
  std::string withNul = "BC\xc0\xde\0\0\x01"s;  // bitcode-like bytes with NULs
  std::string truncated = "BC\xc0\xde"s;
  a.module = withNul;
  b.module = truncated;
  EXPECT_NE(computeKey(a), computeKey(b));

  // A large module (streamed, not copied) still hashes to the documented digest.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<char>(i * 131);
  c.module = big;
  EXPECT_EQ(computeKey(c), sha256(encode(c)));
}

TEST(CacheKeyTest, FieldBoundariesAreUnambiguous) {
  KeyInputs a, b;
  a.triple = "ab";
  a.cpu = "c";
  b.triple = "a";
  b.cpu = "bc";
  EXPECT_NE(computeKey(a), computeKey(b));

  // A byte moved from the module into the next field.
  a = {};
  b = {};
  a.module = "x";
  b.triple = "x";
  EXPECT_NE(computeKey(a), computeKey(b));

  // optLevel's digits against the neighbouring field.
  a = {};
  b = {};
  a.optLevel = 1;
  a.compilerIdentity = "0x";
  b.optLevel = 10;
  b.compilerIdentity = "x";
  EXPECT_NE(computeKey(a), computeKey(b));

  // Empty fields still count as fields.
  a = {};
  b = {};
  a.features = "f";
  b.cpu = "f";
  EXPECT_NE(computeKey(a), computeKey(b));
}

TEST(CacheKeyTest, HexIsLowerCase64Chars) {
  Key k{};
  for (size_t i = 0; i < k.size(); ++i)
    k[i] = static_cast<uint8_t>(i * 8 + 0x0f);
  std::string hex = toHex(k);
  EXPECT_EQ(hex.size(), 64u);
  EXPECT_EQ(hex.substr(0, 8), "0f171f27");
  EXPECT_EQ(hex.substr(56), "eff7ff07");
  EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(toHex(Key{}), std::string(64, '0'));
}

TEST(CacheKeyTest, KeyFromBytesRoundTrip) {
  Key k = computeKey(baseInputs());
  std::string bytes(k.begin(), k.end());
  std::optional<Key> back = keyFromBytes(bytes);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, k);
}

TEST(CacheKeyTest, KeyFromBytesRejectsWrongSizes) {
  Key k = computeKey(baseInputs());
  std::string bytes(k.begin(), k.end());
  EXPECT_FALSE(keyFromBytes("").has_value());
  EXPECT_FALSE(keyFromBytes(bytes.substr(0, 31)).has_value());
  EXPECT_FALSE(keyFromBytes(bytes + '\0').has_value());
  EXPECT_FALSE(keyFromBytes(toHex(k)).has_value());  // hex is text, not a key
}

TEST(CacheKeyTest, CompilerIdentityFormat) {
  EXPECT_EQ(compilerIdentity("0.1.0", "19.1.7"), "rjitd/0.1.0 llvm/19.1.7");
  EXPECT_EQ(compilerIdentity("", ""), "rjitd/ llvm/");
  EXPECT_EQ(compilerIdentity("0.1.0", "19.1.7", "57a5"), "rjitd/0.1.0 llvm/19.1.7 build/57a5");
}

}  // namespace
}  // namespace rjitd::cache
