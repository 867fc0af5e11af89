// SPDX-License-Identifier: MIT
// The stored form of a cache value (see envelope.h). SHA-256 and HMAC-SHA256 from Nettle, the
// library the cache key already uses (meson.build says why not libcrypto).
#include "envelope.h"

#include <cstring>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>

namespace rjitd::cache {
namespace {

constexpr char MAGIC[8] = {'R', 'J', 'I', 'T', 'D', 'O', 'B', 'J'};
constexpr uint32_t FLAG_MAC = 1;

void putLe(std::string& out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i)
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t getLe(std::string_view in, size_t offset, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; ++i)
    value |= uint64_t(static_cast<uint8_t>(in[offset + i])) << (8 * i);
  return value;
}

void sha256(std::string_view data, uint8_t out[SHA256_DIGEST_SIZE]) {
  sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, data.size(), reinterpret_cast<const uint8_t*>(data.data()));
  sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

void mac(std::string_view secret, std::string_view header, std::string_view payload,
         uint8_t out[SHA256_DIGEST_SIZE]) {
  hmac_sha256_ctx ctx;
  hmac_sha256_set_key(&ctx, secret.size(), reinterpret_cast<const uint8_t*>(secret.data()));
  hmac_sha256_update(&ctx, header.size(), reinterpret_cast<const uint8_t*>(header.data()));
  hmac_sha256_update(&ctx, payload.size(), reinterpret_cast<const uint8_t*>(payload.data()));
  hmac_sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

}  // namespace

std::string_view envelopeErrorName(EnvelopeError error) {
  switch (error) {
  case EnvelopeError::Truncated: return "truncated";
  case EnvelopeError::Foreign: return "foreign";
  case EnvelopeError::WrongKey: return "wrong-key";
  case EnvelopeError::BadChecksum: return "bad-checksum";
  case EnvelopeError::BadMac: return "bad-mac";
  case EnvelopeError::UnexpectedMac: return "unexpected-mac";
  }
  return "unknown";
}

std::string sealEnvelope(const Key& key, std::string_view payload, std::string_view secret) {
  std::string out;
  out.reserve(ENVELOPE_HEADER_BYTES + ENVELOPE_MAC_BYTES + payload.size());
  out.append(MAGIC, sizeof MAGIC);
  putLe(out, STORED_FORMAT, 4);
  putLe(out, secret.empty() ? 0 : FLAG_MAC, 4);
  out.append(reinterpret_cast<const char*>(key.data()), key.size());
  putLe(out, payload.size(), 8);
  uint8_t digest[SHA256_DIGEST_SIZE];
  sha256(payload, digest);
  out.append(reinterpret_cast<const char*>(digest), sizeof digest);
  if (!secret.empty()) {
    uint8_t tag[SHA256_DIGEST_SIZE];
    mac(secret, out, payload, tag);
    out.append(reinterpret_cast<const char*>(tag), sizeof tag);
  }
  out.append(payload);
  return out;
}

std::variant<std::string_view, EnvelopeError> openEnvelope(std::string_view stored, const Key& key,
                                                           std::string_view secret) {
  if (stored.size() < sizeof MAGIC)
    return EnvelopeError::Truncated;
  if (std::memcmp(stored.data(), MAGIC, sizeof MAGIC) != 0)
    return EnvelopeError::Foreign;
  if (stored.size() < ENVELOPE_HEADER_BYTES)
    return EnvelopeError::Truncated;
  if (getLe(stored, 8, 4) != STORED_FORMAT)
    return EnvelopeError::Foreign;
  uint64_t flags = getLe(stored, 12, 4);
  if ((flags & ~uint64_t(FLAG_MAC)) != 0)
    return EnvelopeError::Foreign;
  bool hasMac = (flags & FLAG_MAC) != 0;
  if (std::memcmp(stored.data() + 16, key.data(), key.size()) != 0)
    return EnvelopeError::WrongKey;
  uint64_t length = getLe(stored, 48, 8);
  size_t start = ENVELOPE_HEADER_BYTES + (hasMac ? ENVELOPE_MAC_BYTES : 0);
  if (stored.size() < start || stored.size() - start < length)
    return EnvelopeError::Truncated;
  if (stored.size() - start > length)
    return EnvelopeError::Foreign;
  std::string_view payload = stored.substr(start, length);
  // The MAC first when one is required: a value from someone without the secret is refused
  // as such, whatever else is wrong with it.
  if (!secret.empty()) {
    if (!hasMac)
      return EnvelopeError::BadMac;
    uint8_t tag[SHA256_DIGEST_SIZE];
    mac(secret, stored.substr(0, ENVELOPE_HEADER_BYTES), payload, tag);
    if (!memeql_sec(tag, stored.data() + ENVELOPE_HEADER_BYTES, sizeof tag))
      return EnvelopeError::BadMac;
  } else if (hasMac) {
    return EnvelopeError::UnexpectedMac;
  }
  uint8_t digest[SHA256_DIGEST_SIZE];
  sha256(payload, digest);
  if (std::memcmp(digest, stored.data() + 56, sizeof digest) != 0)
    return EnvelopeError::BadChecksum;
  return payload;
}

}  // namespace rjitd::cache
