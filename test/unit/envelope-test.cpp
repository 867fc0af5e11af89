// SPDX-License-Identifier: MIT
// Tests for the stored form of a cache value: round trips with and without the fleet's secret,
// and every way a stored value is refused (each EnvelopeError).
#include "envelope.h"

#include <gtest/gtest.h>
#include <string>
#include <variant>

namespace rjitd::cache {
namespace {

Key makeKey(uint8_t seed) {
  Key key{};
  for (size_t i = 0; i < key.size(); ++i)
    key[i] = static_cast<uint8_t>(seed * 31 + i);
  return key;
}

const std::string PAYLOAD = "a compiled object, or what stands in for one in a test";
const std::string SECRET = "the fleet's secret, 32 bytes...";

/// The error openEnvelope gives, or nullopt when it accepts.
std::optional<EnvelopeError> errorOf(std::string_view stored, const Key& key,
                                     std::string_view secret = {}) {
  auto opened = openEnvelope(stored, key, secret);
  if (auto* error = std::get_if<EnvelopeError>(&opened))
    return *error;
  return std::nullopt;
}

TEST(EnvelopeTest, RoundTripWithoutSecret) {
  Key key = makeKey(1);
  std::string stored = sealEnvelope(key, PAYLOAD);
  EXPECT_EQ(stored.size(), ENVELOPE_HEADER_BYTES + PAYLOAD.size());
  auto opened = openEnvelope(stored, key);
  ASSERT_TRUE(std::holds_alternative<std::string_view>(opened));
  EXPECT_EQ(std::get<std::string_view>(opened), PAYLOAD);
}

TEST(EnvelopeTest, RoundTripWithSecret) {
  Key key = makeKey(2);
  std::string stored = sealEnvelope(key, PAYLOAD, SECRET);
  EXPECT_EQ(stored.size(), ENVELOPE_HEADER_BYTES + ENVELOPE_MAC_BYTES + PAYLOAD.size());
  auto opened = openEnvelope(stored, key, SECRET);
  ASSERT_TRUE(std::holds_alternative<std::string_view>(opened));
  EXPECT_EQ(std::get<std::string_view>(opened), PAYLOAD);
}

TEST(EnvelopeTest, EmptyPayloadRoundTrips) {
  Key key = makeKey(3);
  auto opened = openEnvelope(sealEnvelope(key, ""), key);
  ASSERT_TRUE(std::holds_alternative<std::string_view>(opened));
  EXPECT_TRUE(std::get<std::string_view>(opened).empty());
}

TEST(EnvelopeTest, TruncatedAtAnyLengthIsTruncated) {
  Key key = makeKey(4);
  for (const std::string& secret : {std::string(), SECRET}) {
    std::string stored = sealEnvelope(key, PAYLOAD, secret);
    // Inside the magic, inside the header, right after it, inside the MAC, one byte short.
    for (size_t length : {size_t(0), size_t(5), size_t(8), size_t(40), ENVELOPE_HEADER_BYTES - 1,
                          ENVELOPE_HEADER_BYTES, ENVELOPE_HEADER_BYTES + 10, stored.size() - 1}) {
      SCOPED_TRACE(length);
      SCOPED_TRACE(secret.empty() ? "without secret" : "with secret");
      EXPECT_EQ(errorOf(std::string_view(stored).substr(0, length), key, secret),
                EnvelopeError::Truncated);
    }
  }
}

TEST(EnvelopeTest, BadMagicIsForeign) {
  Key key = makeKey(5);
  std::string stored = sealEnvelope(key, PAYLOAD);
  stored[0] = 'X';
  EXPECT_EQ(errorOf(stored, key), EnvelopeError::Foreign);
  // Even when too short to be anything: the first bytes already say it is not ours.
  EXPECT_EQ(errorOf(std::string_view(stored).substr(0, 20), key), EnvelopeError::Foreign);
}

TEST(EnvelopeTest, OtherFormatIsForeign) {
  Key key = makeKey(6);
  std::string stored = sealEnvelope(key, PAYLOAD);
  stored[8] = static_cast<char>(STORED_FORMAT + 1);
  EXPECT_EQ(errorOf(stored, key), EnvelopeError::Foreign);
}

TEST(EnvelopeTest, UnknownFlagIsForeign) {
  Key key = makeKey(7);
  std::string stored = sealEnvelope(key, PAYLOAD);
  stored[12] = 2;
  EXPECT_EQ(errorOf(stored, key), EnvelopeError::Foreign);
}

TEST(EnvelopeTest, TrailingBytesAreForeign) {
  Key key = makeKey(8);
  EXPECT_EQ(errorOf(sealEnvelope(key, PAYLOAD) + "x", key), EnvelopeError::Foreign);
  EXPECT_EQ(errorOf(sealEnvelope(key, PAYLOAD, SECRET) + "x", key, SECRET), EnvelopeError::Foreign);
}

TEST(EnvelopeTest, AnotherKeysValueIsWrongKey) {
  std::string stored = sealEnvelope(makeKey(9), PAYLOAD);
  EXPECT_EQ(errorOf(stored, makeKey(10)), EnvelopeError::WrongKey);
  EXPECT_EQ(errorOf(sealEnvelope(makeKey(9), PAYLOAD, SECRET), makeKey(10), SECRET),
            EnvelopeError::WrongKey);
}

TEST(EnvelopeTest, FlippedPayloadBitIsBadChecksum) {
  Key key = makeKey(11);
  std::string stored = sealEnvelope(key, PAYLOAD);
  stored[stored.size() - 3] ^= 0x10;
  EXPECT_EQ(errorOf(stored, key), EnvelopeError::BadChecksum);
  // The stored checksum itself damaged.
  std::string damaged = sealEnvelope(key, PAYLOAD);
  damaged[60] ^= 0x01;
  EXPECT_EQ(errorOf(damaged, key), EnvelopeError::BadChecksum);
}

TEST(EnvelopeTest, FlippedPayloadBitUnderMacIsBadMac) {
  // With a secret the MAC is checked first: the payload is covered by it.
  Key key = makeKey(12);
  std::string stored = sealEnvelope(key, PAYLOAD, SECRET);
  stored[stored.size() - 3] ^= 0x10;
  EXPECT_EQ(errorOf(stored, key, SECRET), EnvelopeError::BadMac);
}

TEST(EnvelopeTest, MissingMacIsBadMac) {
  Key key = makeKey(13);
  EXPECT_EQ(errorOf(sealEnvelope(key, PAYLOAD), key, SECRET), EnvelopeError::BadMac);
}

TEST(EnvelopeTest, MacWithAnotherSecretIsBadMac) {
  Key key = makeKey(14);
  std::string stored = sealEnvelope(key, PAYLOAD, "someone else's secret, 32 bytes");
  EXPECT_EQ(errorOf(stored, key, SECRET), EnvelopeError::BadMac);
}

TEST(EnvelopeTest, MacWhereNoneIsExpectedIsUnexpectedMac) {
  Key key = makeKey(15);
  EXPECT_EQ(errorOf(sealEnvelope(key, PAYLOAD, SECRET), key), EnvelopeError::UnexpectedMac);
}

TEST(EnvelopeTest, EveryErrorHasItsName) {
  EXPECT_EQ(envelopeErrorName(EnvelopeError::Truncated), "truncated");
  EXPECT_EQ(envelopeErrorName(EnvelopeError::Foreign), "foreign");
  EXPECT_EQ(envelopeErrorName(EnvelopeError::WrongKey), "wrong-key");
  EXPECT_EQ(envelopeErrorName(EnvelopeError::BadChecksum), "bad-checksum");
  EXPECT_EQ(envelopeErrorName(EnvelopeError::BadMac), "bad-mac");
  EXPECT_EQ(envelopeErrorName(EnvelopeError::UnexpectedMac), "unexpected-mac");
}

}  // namespace
}  // namespace rjitd::cache
