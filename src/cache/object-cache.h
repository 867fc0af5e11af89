// SPDX-License-Identifier: MIT
// The in-memory tier of the object cache: an LRU keyed by cache key, bounded by a byte budget.
#pragma once

#include "cache-key.h"
#include "compiled-object.h"

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace rjitd::cache {

struct CacheStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;
  uint64_t budgetBytes = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
};

/// Thread-safe LRU of compiled objects with a byte budget (CompiledObject::footprintBytes).
/// Entries are shared pointers because a reader may still be serializing an entry into a
/// response while another request evicts it; the bytes stay valid until the last reader is done.
class ObjectCache final {
public:
  explicit ObjectCache(uint64_t budgetBytes);
  ObjectCache(const ObjectCache&) = delete;
  ObjectCache& operator=(const ObjectCache&) = delete;

  /// Returns the entry and marks it most recently used, or nullptr. Counts a hit or a miss.
  std::shared_ptr<const CompiledObject> get(const Key& key);

  /// Like get() but counts nothing and does not touch the LRU order (for tests and probes).
  bool contains(const Key& key) const;

  /// Inserts (or replaces) the entry as most recently used, then evicts least recently used
  /// entries until the total fits the budget. An entry larger than the whole budget is not
  /// stored and nothing changes (no eviction; an entry already under the key stays); returns
  /// false then. `value` must not be null.
  bool put(const Key& key, std::shared_ptr<const CompiledObject> value);

  CacheStats stats() const;

private:
  struct Entry {
    Key key;
    std::shared_ptr<const CompiledObject> value;
    uint64_t bytes;
  };

  void evictToFit();  // requires mutex held

  mutable std::mutex mutex;
  const uint64_t budget;
  std::list<Entry> lru;  // front = most recently used
  std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index;
  uint64_t totalBytes = 0;
  uint64_t hits = 0, misses = 0, evictions = 0;
};

}  // namespace rjitd::cache
