// SPDX-License-Identifier: MIT
// The in-memory LRU tier (see object-cache.h).
#include "object-cache.h"

#include <cassert>

namespace rjitd::cache {

ObjectCache::ObjectCache(uint64_t budgetBytes) : budget(budgetBytes) {}

std::shared_ptr<const CompiledObject> ObjectCache::get(const Key& key) {
  std::lock_guard<std::mutex> lock(mutex);
  auto it = index.find(key);
  if (it == index.end()) {
    ++misses;
    return nullptr;
  }
  ++hits;
  lru.splice(lru.begin(), lru, it->second);  // iterators stay valid across splice
  return it->second->value;
}

bool ObjectCache::contains(const Key& key) const {
  std::lock_guard<std::mutex> lock(mutex);
  return index.find(key) != index.end();
}

bool ObjectCache::put(const Key& key, std::shared_ptr<const CompiledObject> value) {
  assert(value != nullptr && "ObjectCache::put needs an object");
  uint64_t bytes = value->footprintBytes();
  // Storing it would evict everything else and still not fit: refuse before touching anything.
  if (bytes > budget)
    return false;

  std::lock_guard<std::mutex> lock(mutex);
  auto it = index.find(key);
  if (it != index.end()) {
    Entry& entry = *it->second;
    totalBytes -= entry.bytes;
    entry.value = std::move(value);
    entry.bytes = bytes;
    lru.splice(lru.begin(), lru, it->second);
  } else {
    lru.push_front(Entry{key, std::move(value), bytes});
    index.emplace(key, lru.begin());
  }
  totalBytes += bytes;
  evictToFit();
  return true;
}

void ObjectCache::evictToFit() {
  // The newest entry sits at the front and fits the budget on its own (put() checked), so
  // this loop never evicts it.
  // TODO(perf): the last reference to an evicted object may be dropped here, under the mutex;
  // move evicted values out and release them after unlocking if large frees show up in
  // latency.
  while (totalBytes > budget) {
    assert(!lru.empty() && "byte count out of sync with the LRU list");
    Entry& victim = lru.back();
    totalBytes -= victim.bytes;
    index.erase(victim.key);
    lru.pop_back();
    ++evictions;
  }
}

CacheStats ObjectCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex);
  CacheStats s;
  s.entries = index.size();
  s.bytes = totalBytes;
  s.budgetBytes = budget;
  s.hits = hits;
  s.misses = misses;
  s.evictions = evictions;
  return s;
}

}  // namespace rjitd::cache
