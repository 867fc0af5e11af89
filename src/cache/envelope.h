// SPDX-License-Identifier: MIT
// The stored form of one cache value, the same on disk (DiskCache) and in Redis (SharedCache):
// a fixed header that names the full key and a checksum of the payload, an optional
// HMAC-SHA256, then the payload (a serialized CompiledObject; the service encodes it). Every
// read is checked against all of it before a byte of the payload is believed: a file truncated
// by a crash, a bit flipped on disk, a value filed under another key, or a value written by
// someone without the fleet's secret is refused, never served.
//
//   offset  size  field
//        0     8  magic "RJITDOBJ"
//        8     4  format (STORED_FORMAT), little-endian
//       12     4  flags, little-endian; bit 0: a MAC follows the checksum
//       16    32  the full cache key
//       48     8  payload length, little-endian
//       56    32  SHA-256 of the payload
//       88    32  (bit 0 set) HMAC-SHA256 with the secret over bytes [0, 88) and the payload
//   88/120     -  payload
#pragma once

#include "cache-key.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace rjitd::cache {

/// Bumped when the header or the payload's encoding changes; part of Redis keys
/// (`rjitd:v<format>:<hex key>`) and of the disk tier's directory name, so that servers of
/// different formats never read each other's values.
constexpr uint32_t STORED_FORMAT = 1;
constexpr size_t ENVELOPE_HEADER_BYTES = 88;
constexpr size_t ENVELOPE_MAC_BYTES = 32;

/// Why a stored value was refused. Each is counted (rjitd_cache_rejected_total{tier,reason}).
enum class EnvelopeError {
  Truncated,     ///< shorter than its header says (a crash mid-write, a cut-off transfer)
  Foreign,       ///< not our magic, another format, or trailing bytes
  WrongKey,      ///< filed under one key, made for another
  BadChecksum,   ///< the payload is not what was written (corruption)
  BadMac,        ///< no MAC, or not made with our secret (someone without the secret wrote it)
  UnexpectedMac  ///< a MAC where none was expected (a value from a keyed store in a keyless one)
};

/// "truncated", "foreign", "wrong-key", "bad-checksum", "bad-mac", "unexpected-mac": the
/// metric label and the word in log lines.
std::string_view envelopeErrorName(EnvelopeError error);

/// Wraps `payload` for `key`; with a secret (non-empty), adds the MAC.
std::string sealEnvelope(const Key& key, std::string_view payload, std::string_view secret = {});

/// Checks everything and returns a view of the payload inside `stored`. With a secret
/// (non-empty) a valid MAC is required; without one, a value carrying a MAC is refused.
/// Comparisons of the MAC are constant-time.
std::variant<std::string_view, EnvelopeError> openEnvelope(std::string_view stored, const Key& key,
                                                           std::string_view secret = {});

}  // namespace rjitd::cache
