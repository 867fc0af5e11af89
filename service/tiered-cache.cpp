// SPDX-License-Identifier: MIT
// The cache tiers behind the service (see tiered-cache.h).
#include "tiered-cache.h"

#include "log.h"
#include "proto-convert.h"
#include "rjit.capnp.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <cstring>

namespace rjitd::service {
namespace {

/// How often a server that waits for another's compile lease asks Redis for the value.
constexpr kj::Duration LEASE_POLL = 50 * kj::MILLISECONDS;

}  // namespace

std::string encodeStoredObject(const CompiledObject& object) {
  capnp::MallocMessageBuilder message;
  toProto(object, true, message.initRoot<proto::CompiledObject>());
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

std::optional<CompiledObject> decodeStoredObject(std::string_view payload) {
  if (payload.empty() || payload.size() % sizeof(capnp::word) != 0)
    return std::nullopt;
  // Aligned copy: the payload sits at an arbitrary offset of what was read.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(payload.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), payload.data(), payload.size());
  capnp::ReaderOptions options;
  options.traversalLimitInWords = words.size() * 2 + 1024;
  std::optional<CompiledObject> out;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 capnp::FlatArrayMessageReader reader(words, options);
                 out = fromProto(reader.getRoot<proto::CompiledObject>());
               })) {
    return std::nullopt;
  }
  if (out && out->object.empty())
    return std::nullopt;
  return out;
}

void TieredCache::WriteErrors::taskFailed(kj::Exception&& exception) {
  log::warning("cache write failed: ", exception.getDescription().cStr());
}

TieredCache::TieredCache(cache::ObjectCache& memory, std::unique_ptr<cache::DiskCache> disk,
                         std::unique_ptr<cache::SharedCache> shared, unsigned ioThreads,
                         kj::Timer* timer)
    : mem(memory), diskTier(std::move(disk)), sharedTier(std::move(shared)), timer(timer) {
  KJ_REQUIRE(!sharedTier || timer != nullptr, "a shared tier needs the loop's timer");
  if (hasLowerTiers())
    io = std::make_unique<WorkerPool>("rjitd-cache", std::max(1u, ioThreads));
}

void TieredCache::undecodable(metrics::CacheTier tier, const cache::Key& key) {
  ++(tier == metrics::CacheTier::Disk ? undecodableDisk : undecodableShared);
  log::warning(cacheTierName(tier), " cache: the object for key ", cache::toHex(key).substr(0, 16),
               " passed its checks but does not decode (another build's format?); ignored");
}

TieredCache::~TieredCache() = default;

std::shared_ptr<const CompiledObject> TieredCache::promote(const cache::Key& key,
                                                           CompiledObject object) {
  auto shared = std::make_shared<const CompiledObject>(std::move(object));
  mem.put(key, shared);
  return shared;
}

kj::Promise<TieredCache::Found> TieredCache::findBelow(const cache::Key& key) {
  if (!hasLowerTiers())
    return Found{};
  // What the pool thread found, decoded there (decoding a large object is not loop work).
  struct Read {
    std::optional<CompiledObject> object;
    bool diskAsked = false, diskHit = false, sharedAsked = false, sharedHit = false;
    std::string payload;  ///< a shared hit's payload, to write to disk as well
  };
  cache::DiskCache* disk = diskTier.get();
  cache::SharedCache* shared = sharedTier.get();
  return io
      ->run<Read>([this, key, disk, shared]() {
        Read r;
        if (disk != nullptr) {
          r.diskAsked = true;
          if (auto payload = disk->get(key)) {
            r.object = decodeStoredObject(*payload);
            if (r.object) {
              r.diskHit = true;
              return r;
            }
            undecodable(metrics::CacheTier::Disk, key);
          }
        }
        if (shared != nullptr) {
          r.sharedAsked = true;
          if (auto payload = shared->get(key)) {
            r.object = decodeStoredObject(*payload);
            if (r.object) {
              r.sharedHit = true;
              r.payload = std::move(*payload);
            } else {
              undecodable(metrics::CacheTier::Shared, key);
            }
          }
        }
        return r;
      })
      .then(
          [this, key](Read&& r) {
            Found found;
            found.diskAsked = r.diskAsked;
            found.diskHit = r.diskHit;
            found.sharedAsked = r.sharedAsked;
            found.sharedHit = r.sharedHit;
            if (r.object)
              found.object = promote(key, std::move(*r.object));
            if (r.sharedHit && diskTier) {
              // A shared hit is kept on this server's disk too: the next restart finds it here.
              ++pending;
              cache::DiskCache* disk = diskTier.get();
              writes.add(io->run<bool>([key, disk, payload = std::move(r.payload)]() {
                             return disk->put(key, payload);
                           })
                             .then([this](bool) { --pending; },
                                   [this](kj::Exception&& e) {
                                     --pending;
                                     kj::throwFatalException(kj::mv(e));
                                   }));
            }
            return found;
          },
          [](kj::Exception&& e) {
            // The pool stopped (shutdown): a miss like any other tier failure.
            log::warning("cache tiers: lookup failed: ", e.getDescription().cStr());
            return Found{};
          });
}

bool TieredCache::store(const cache::Key& key, std::shared_ptr<const CompiledObject> object,
                        bool releaseLease) {
  bool kept = mem.put(key, object);
  if (!hasLowerTiers())
    return kept;
  ++pending;
  cache::DiskCache* disk = diskTier.get();
  cache::SharedCache* shared = sharedTier.get();
  writes.add(io->run<bool>([key, object, disk, shared, releaseLease]() {
                 std::string payload = encodeStoredObject(*object);
                 if (disk != nullptr && !disk->put(key, payload))
                   log::debug("disk cache: object ", cache::toHex(key).substr(0, 16),
                              " not stored");
                 if (shared != nullptr)
                   shared->put(key, std::move(payload), releaseLease);
                 return true;
               })
                 .then([this](bool) { --pending; },
                       [this, key, releaseLease](kj::Exception&& e) {
                         --pending;
                         if (releaseLease && sharedTier)
                           sharedTier->releaseLease(key);
                         kj::throwFatalException(kj::mv(e));
                       }));
  return kept;
}

kj::Promise<TieredCache::Lease> TieredCache::tryLease(const cache::Key& key) {
  if (!sharedTier)
    return Lease{};
  cache::SharedCache* shared = sharedTier.get();
  return io
      ->run<Lease>([shared, key]() {
        Lease lease;
        lease.result = shared->tryLease(key);
        if (lease.result == cache::LeaseResult::Acquired)
          lease.hold = std::make_shared<LeaseHold>(*shared, key);
        return lease;
      })
      .catch_([](kj::Exception&&) { return Lease{}; });
}

kj::Promise<std::shared_ptr<const CompiledObject>> TieredCache::findShared(const cache::Key& key) {
  if (!sharedTier)
    return std::shared_ptr<const CompiledObject>();
  cache::SharedCache* shared = sharedTier.get();
  return io
      ->run<std::optional<CompiledObject>>([this, shared, key]() {
        std::optional<CompiledObject> object;
        if (auto payload = shared->get(key)) {
          object = decodeStoredObject(*payload);
          if (!object)
            undecodable(metrics::CacheTier::Shared, key);
        }
        return object;
      })
      .then(
          [this, key](std::optional<CompiledObject>&& object) {
            return object ? promote(key, std::move(*object))
                          : std::shared_ptr<const CompiledObject>();
          },
          [](kj::Exception&&) { return std::shared_ptr<const CompiledObject>(); });
}

kj::Promise<std::shared_ptr<const CompiledObject>>
TieredCache::awaitLeaseHolder(const cache::Key& key, kj::Duration bound) {
  if (!sharedTier)
    return std::shared_ptr<const CompiledObject>();
  sharedTier->noteLeaseWait();
  return pollHolder(key, timer->now() + bound);
}

kj::Promise<std::shared_ptr<const CompiledObject>> TieredCache::pollHolder(cache::Key key,
                                                                           kj::TimePoint until) {
  if (timer->now() >= until)
    return std::shared_ptr<const CompiledObject>();
  cache::SharedCache* shared = sharedTier.get();
  struct Poll {
    std::optional<CompiledObject> object;
    bool held = false;
  };
  return timer->afterDelay(LEASE_POLL)
      .then([this, shared, key]() {
        return io->run<Poll>([shared, key]() {
          Poll p;
          if (auto payload = shared->get(key)) {
            p.object = decodeStoredObject(*payload);
            if (p.object)
              return p;
          }
          p.held = shared->leaseHeld(key);
          return p;
        });
      })
      .then([this, key, until](Poll&& p) -> kj::Promise<std::shared_ptr<const CompiledObject>> {
        if (p.object)
          return promote(key, std::move(*p.object));
        if (!p.held)
          return std::shared_ptr<const CompiledObject>();  // the holder is gone: compile here
        return pollHolder(key, until);
      });
}

kj::Promise<void> TieredCache::flush(kj::Duration bound) {
  if (!hasLowerTiers())
    return kj::READY_NOW;
  KJ_REQUIRE(timer != nullptr, "flush needs the loop's timer");
  kj::TimePoint until = timer->now() + bound;
  // Polled: the writes are pool jobs whose ends the loop sees one by one; 10 ms is nothing next
  // to a drain.
  auto poll = [this, until](auto& self) -> kj::Promise<void> {
    if (pending.load() == 0 || timer->now() >= until) {
      if (pending.load() != 0)
        log::warning(pending.load(), " cache writes still pending at exit; they are lost");
      if (sharedTier) {
        auto left = until - timer->now();
        auto ms = std::chrono::milliseconds(left > 0 * kj::SECONDS ? left / kj::MILLISECONDS : 0);
        sharedTier->flush(std::max(ms, std::chrono::milliseconds(100)));
      }
      return kj::READY_NOW;
    }
    return timer->afterDelay(10 * kj::MILLISECONDS).then([&self]() { return self(self); });
  };
  // The poll refers to itself: kept alive by the promise it returns.
  auto owned = kj::heap<decltype(poll)>(kj::mv(poll));
  auto& ref = *owned;
  return ref(ref).attach(kj::mv(owned));
}

std::vector<metrics::TierSnapshot> TieredCache::snapshots() const {
  std::vector<metrics::TierSnapshot> out;
  auto rejections = [](const uint64_t(&counts)[6]) {
    std::vector<std::pair<std::string, uint64_t>> r;
    for (size_t i = 0; i < 6; ++i)
      if (counts[i] != 0)
        r.emplace_back(cache::envelopeErrorName(static_cast<cache::EnvelopeError>(i)), counts[i]);
    return r;
  };
  if (diskTier) {
    cache::DiskCacheStats s = diskTier->stats();
    metrics::TierSnapshot t;
    t.tier = metrics::CacheTier::Disk;
    t.address = diskTier->directory();
    t.entries = s.entries;
    t.bytes = s.bytes;
    t.budgetBytes = s.budgetBytes;
    t.hits = s.hits;
    t.misses = s.misses;
    t.evictions = s.evictions;
    t.stored = s.stored;
    t.notStored = s.writeErrors + s.tooLarge;
    t.errors = s.writeErrors + s.readErrors;
    t.rejected = rejections(s.rejected);
    if (uint64_t n = undecodableDisk.load())
      t.rejected.emplace_back("undecodable", n);
    t.scanned = s.scanned;
    out.push_back(std::move(t));
  }
  if (sharedTier) {
    cache::SharedCacheStats s = sharedTier->stats();
    metrics::TierSnapshot t;
    t.tier = metrics::CacheTier::Shared;
    t.address = sharedTier->config().address;
    t.hits = s.hits;
    t.misses = s.misses;
    t.stored = s.stored;
    t.notStored = s.notStored;
    t.errors = s.errors;
    t.skipped = s.skipped;
    t.rejected = rejections(s.rejected);
    if (uint64_t n = undecodableShared.load())
      t.rejected.emplace_back("undecodable", n);
    t.leasesTaken = s.leasesTaken;
    t.leaseWaits = s.leaseWaits;
    t.available = s.available;
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace rjitd::service
