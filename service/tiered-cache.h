// SPDX-License-Identifier: MIT
// The object cache's tiers as the service sees them: memory (ObjectCache, asked on the event
// loop: the fast path), then disk (DiskCache) and shared (SharedCache, Redis), asked on the
// cache I/O pool, never on the loop. A hit in a lower tier is promoted (a disk hit into memory;
// a shared hit into memory and disk). A compiled object is filed in memory at once and written
// to disk and Redis on the pool. Owned by the event-loop thread; its figures may be read from
// any thread (the metrics scrape).
#pragma once

#include "cache-key.h"
#include "compiled-object.h"
#include "disk-cache.h"
#include "metrics.h"
#include "object-cache.h"
#include "shared-cache.h"
#include "worker-pool.h"

#include <atomic>
#include <chrono>
#include <kj/async.h>
#include <kj/timer.h>
#include <memory>
#include <string>
#include <vector>

namespace rjitd::service {

/// The stored payload of a compiled object: its Cap'n Proto `CompiledObject` (rjit.capnp, the
/// same struct the wire carries) as a flat array. Enveloped by the tiers (envelope.h).
std::string encodeStoredObject(const CompiledObject& object);
/// The object of a payload that passed its envelope's checks; nullopt if it does not decode
/// (a payload of another build that shares our format number: treated as corrupt).
std::optional<CompiledObject> decodeStoredObject(std::string_view payload);

/// A compile lease this server holds (shared tier): released when the last owner lets go,
/// unless stand() was called because the object's write releases it (in order, after the
/// write). Made on the cache thread that took the lease, so that a flight called off while the
/// answer travels to the loop still lets go of it. Thread-safe to destroy anywhere:
/// SharedCache::releaseLease only queues.
class LeaseHold {
public:
  LeaseHold(cache::SharedCache& shared, const cache::Key& key) : shared(shared), key(key) {}
  ~LeaseHold() {
    if (armed)
      shared.releaseLease(key);
  }
  LeaseHold(const LeaseHold&) = delete;
  LeaseHold& operator=(const LeaseHold&) = delete;
  /// The object is being written with releaseLease: the write lets go, not this.
  void standDown() { armed = false; }

private:
  cache::SharedCache& shared;
  cache::Key key;
  bool armed = true;
};

class TieredCache {
public:
  /// `memory` and `timer` outlive this object. `disk` and `shared` may be null (the tier is
  /// off); with either, `ioThreads` threads (rjitd-cache/N) do their blocking calls. `timer`
  /// (the loop's) is needed with a shared tier only.
  TieredCache(cache::ObjectCache& memory, std::unique_ptr<cache::DiskCache> disk = nullptr,
              std::unique_ptr<cache::SharedCache> shared = nullptr, unsigned ioThreads = 0,
              kj::Timer* timer = nullptr);
  ~TieredCache();
  TieredCache(const TieredCache&) = delete;
  TieredCache& operator=(const TieredCache&) = delete;

  cache::ObjectCache& memory() { return mem; }
  const cache::ObjectCache& memory() const { return mem; }
  cache::DiskCache* disk() const { return diskTier.get(); }
  cache::SharedCache* shared() const { return sharedTier.get(); }
  bool hasLowerTiers() const { return diskTier || sharedTier; }

  /// What a search below memory found: the object (null on a miss) and the tiers asked.
  struct Found {
    std::shared_ptr<const CompiledObject> object;
    bool diskAsked = false, diskHit = false;
    bool sharedAsked = false, sharedHit = false;
  };
  /// Disk, then shared, on the I/O pool; promotes a hit. Never fails: every error is a miss.
  kj::Promise<Found> findBelow(const cache::Key& key);

  /// Files `object` under `key`: memory now, disk and shared on the I/O pool. With
  /// `releaseLease`, the compile lease this server holds for `key` is released after the
  /// shared write. False when memory could not hold it (larger than the whole budget).
  bool store(const cache::Key& key, std::shared_ptr<const CompiledObject> object,
             bool releaseLease);

  /// Cross-server single flight (shared tier only; Unavailable without one). `hold` is set
  /// when the result is Acquired.
  struct Lease {
    cache::LeaseResult result = cache::LeaseResult::Unavailable;
    std::shared_ptr<LeaseHold> hold;
  };
  kj::Promise<Lease> tryLease(const cache::Key& key);
  /// The shared tier alone (null on a miss), promoted: asked again once a lease is ours, since
  /// the previous holder may have written the value between our first search and the lease.
  kj::Promise<std::shared_ptr<const CompiledObject>> findShared(const cache::Key& key);
  /// Waits while another server holds the lease for `key`: polls Redis for the value every
  /// LEASE_POLL until it appears (resolves to it, promoted), the lease goes without a value
  /// (its holder failed or died: resolves null, the caller compiles), or `bound` passes (null).
  kj::Promise<std::shared_ptr<const CompiledObject>> awaitLeaseHolder(const cache::Key& key,
                                                                      kj::Duration bound);

  /// Every tier's figures, memory first (metrics scrape, `rjit info`). Thread-safe.
  std::vector<metrics::TierSnapshot> snapshots() const;

  /// Stored in memory but not yet on disk or handed to the shared tier's writer (drain).
  size_t pendingWrites() const { return pending.load(); }
  /// Drain: resolves once every write has reached disk and Redis, or `bound` has passed (the
  /// writes still pending are then lost: a cache, recompiled when asked again). Blocks the
  /// loop for the shared tier's last writes, at most `bound`.
  kj::Promise<void> flush(kj::Duration bound);

private:
  std::shared_ptr<const CompiledObject> promote(const cache::Key& key, CompiledObject object);
  kj::Promise<std::shared_ptr<const CompiledObject>> pollHolder(cache::Key key,
                                                                kj::TimePoint until);

  /// An object that passed its envelope's checks but did not decode: counted as "undecodable".
  void undecodable(metrics::CacheTier tier, const cache::Key& key);

  cache::ObjectCache& mem;
  std::unique_ptr<cache::DiskCache> diskTier;
  std::unique_ptr<cache::SharedCache> sharedTier;
  kj::Timer* timer;
  std::atomic<size_t> pending{0};
  std::atomic<uint64_t> undecodableDisk{0}, undecodableShared{0};
  // Declared after everything its jobs touch (the tiers, the counters): destroyed before them,
  // it waits for its running job (queued jobs are dropped).
  std::unique_ptr<WorkerPool> io;
  class WriteErrors final : public kj::TaskSet::ErrorHandler {
  public:
    void taskFailed(kj::Exception&& exception) override;
  } writeErrors;
  kj::TaskSet writes{writeErrors};
};

}  // namespace rjitd::service
