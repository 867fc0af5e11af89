// SPDX-License-Identifier: MIT
// The shared tier of the object cache: one Redis (Debian's redis-server 7.0) shared by a fleet
// of rjitd servers, through hiredis 0.14's blocking API on rjitd's cache I/O threads (hiredis
// is the C client Debian packages; its async API would need an event-loop adapter for kj, and
// a blocking call with short socket timeouts on a worker thread is as fast for one GET).
//
// Values are envelopes (envelope.h) with an HMAC-SHA256 under the fleet's secret, under
// `rjitd:v<STORED_FORMAT>:<hex key>`. Redis is a cache, never a dependency: every error,
// timeout or missing value is a miss and the request goes on (compiles). After an error the
// tier backs off (no Redis calls for a while, doubling up to a maximum) and then tries again.
// Writes go through a bounded queue to a writer thread; values over the size limit are not
// stored. Cross-server single flight: a compile lease `rjitd:v<F>:lease:<hex key>` taken with
// SET NX PX; the holder renews it while it compiles and deletes it (if still its own) after
// the value is written, so a lease whose holder died expires after its TTL.
//
// A Redis that asks for a password gets one on each new connection (AUTH, or AUTH user
// password for Redis 6 ACLs). hiredis 0.14 has no TLS: Redis must be on a trusted network or a
// Unix socket (or behind a TLS tunnel such as stunnel on loopback). The HMAC keeps
// whoever can write to Redis without the secret from making rjitd serve their code, but not
// from reading objects or deleting them (a denial of service: misses and compiles).
#pragma once

#include "cache-key.h"
#include "envelope.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace rjitd::cache {

struct SharedCacheConfig {
  /// `redis://HOST:PORT` or `unix:/PATH` (rjitd --shared-cache).
  std::string address;
  /// The HMAC secret (contents of --shared-cache-key-file; at least 16 bytes).
  std::string secret;
  /// Redis AUTH on each new connection (--shared-cache-auth-file): a password alone (Redis's
  /// requirepass, the `default` user), or a user and password (Redis 6 ACLs). No AUTH when
  /// the password is empty.
  std::string authUser;
  std::string authPassword;
  /// Called (on a cache thread, no lock held) when the tier becomes unavailable, with the
  /// error, and when it answers again, with "": the daemon logs both. Optional.
  std::function<void(const std::string& error)> onAvailability;
  bool readOnly = false;                            ///< --shared-cache-read-only
  uint64_t maxValueBytes = 16ull << 20;             ///< --shared-cache-max-value-bytes
  std::chrono::milliseconds connectTimeout{200};    ///< per connection attempt
  std::chrono::milliseconds operationTimeout{500};  ///< per command (socket timeout)
  std::chrono::milliseconds backoffFirst{100};      ///< after the first error
  std::chrono::milliseconds backoffMax{10000};      ///< doubling up to this
  std::chrono::milliseconds leaseTtl{30000};        ///< --shared-cache-lease-ttl
  /// A lease is renewed for at most this long after it was taken, then left to expire: the
  /// servers waiting for it stop waiting after about as long (rjitd: its compile timeout + 5 s),
  /// and a holder that never releases (a bug) cannot hold a key for ever.
  std::chrono::milliseconds maxLeaseHold{std::chrono::minutes(10)};
  size_t writeQueue = 64;  ///< pending writes; more are dropped
};

struct SharedCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;        ///< no value (including evicted ones)
  uint64_t errors = 0;        ///< connection failures, timeouts, error replies
  uint64_t skipped = 0;       ///< calls not made because the tier was backing off
  uint64_t stored = 0;        ///< values written
  uint64_t notStored = 0;     ///< too large, read-only, queue full, or the write failed
  uint64_t rejected[6] = {};  ///< values refused on read by reason (index = EnvelopeError)
  uint64_t leasesTaken = 0;
  uint64_t leaseWaits = 0;  ///< compiles that waited for another server's lease
  /// False from an error until the next successful call (while backing off, and until Redis
  /// has answered again).
  bool available = true;
  /// The last error (hiredis's text or Redis's error reply), for the log; "" before any.
  std::string lastError;
};

/// How a lease attempt went.
enum class LeaseResult {
  Acquired,    ///< ours: compile, put(), then release
  Held,        ///< another server compiles it: wait for its value (or for the lease to go)
  Unavailable  ///< Redis failed or is backing off: compile without a lease
};

class SharedCache {
public:
  /// Parses the address and checks the configuration; connects lazily (the first call).
  /// The error names the bad value and what is expected. Starts the writer thread and the
  /// lease-renewal thread.
  ///
  /// Read-only (config.readOnly): get() reads and verifies but never deletes a bad value,
  /// put() stores nothing, tryLease() returns Unavailable without asking Redis (the server
  /// compiles without a lease), releaseLease() does nothing; leaseHeld() still reads.
  static std::variant<std::unique_ptr<SharedCache>, std::string> create(SharedCacheConfig config);
  /// Drains the write queue (each pending write bounded by the timeouts; once Redis fails the
  /// rest are skipped by the backoff, so a hung Redis cannot hang shutdown), releases the
  /// leases still held, and stops the threads.
  virtual ~SharedCache() = default;

  /// Blocking, bounded by the operation timeout: the verified payload for `key`, or nullopt
  /// (a miss, an error, or a value that failed a check, which is deleted from Redis unless
  /// read-only, and counted).
  virtual std::optional<std::string> get(const Key& key) = 0;

  /// Queues a write of `payload` for `key` and returns at once; the writer thread seals it.
  /// Not stored when read-only, over maxValueBytes, or the queue is full. When `releaseLease`,
  /// the lease this server holds for `key` is released after the write (in order).
  virtual void put(const Key& key, std::string payload, bool releaseLease = false) = 0;

  /// Blocking: tries to take the compile lease for `key`. An Acquired lease is renewed in the
  /// background until released.
  virtual LeaseResult tryLease(const Key& key) = 0;
  /// Releases this server's lease for `key` (only if it is still ours), without a value: the
  /// compile failed or was cancelled. Asynchronous, like put().
  virtual void releaseLease(const Key& key) = 0;
  /// Blocking: whether some server holds the lease for `key` now (false on error).
  virtual bool leaseHeld(const Key& key) = 0;
  /// Counts a compile that waited for another server's lease (SharedCacheStats::leaseWaits):
  /// the waiting is the service's, the counter lives with the tier's others.
  virtual void noteLeaseWait() = 0;

  virtual SharedCacheStats stats() const = 0;
  virtual const SharedCacheConfig& config() const = 0;

  /// Blocks until the write queue is empty (tests; shutdown with a bound).
  virtual void flush(std::chrono::milliseconds bound) = 0;
};

/// `rjitd:v<STORED_FORMAT>:<hex key>`
std::string sharedValueKey(const Key& key);
/// `rjitd:v<STORED_FORMAT>:lease:<hex key>`
std::string sharedLeaseKey(const Key& key);

}  // namespace rjitd::cache
