// SPDX-License-Identifier: MIT
// Tests for the in-memory LRU tier: counting, recency, the byte budget, replacement, entry
// lifetime past eviction, and consistency under concurrent use.
#include "object-cache.h"

#include <gtest/gtest.h>
#include <memory>
#include <thread>
#include <vector>

namespace rjitd::cache {
namespace {

Key makeKey(unsigned i) {
  Key k{};
  // Spread the value over the bytes KeyHash reads, and mark the tail so keys are not all-zero.
  for (size_t b = 0; b < 8; ++b)
    k[b] = static_cast<uint8_t>(i >> (8 * (b % 4)));
  k[31] = 0xa5;
  return k;
}

std::shared_ptr<const CompiledObject> makeObject(size_t objectBytes, char fill = 'x') {
  auto obj = std::make_shared<CompiledObject>();
  obj->triple = "x86_64-unknown-linux-gnu";
  obj->object.assign(objectBytes, fill);
  return obj;
}

/// Footprint of makeObject(n): what the budget counts.
uint64_t footprint(size_t objectBytes) {
  return makeObject(objectBytes)->footprintBytes();
}

constexpr size_t UNIT = 1000; // object bytes of a "standard" entry

TEST(ObjectCacheTest, CountsHitsAndMisses) {
  ObjectCache cache(10 * footprint(UNIT));
  EXPECT_EQ(cache.get(makeKey(1)), nullptr);
  auto obj = makeObject(UNIT);
  ASSERT_TRUE(cache.put(makeKey(1), obj));
  EXPECT_EQ(cache.get(makeKey(1)), obj);
  EXPECT_EQ(cache.get(makeKey(1)), obj);
  EXPECT_EQ(cache.get(makeKey(2)), nullptr);
  // contains() counts nothing.
  EXPECT_TRUE(cache.contains(makeKey(1)));
  EXPECT_FALSE(cache.contains(makeKey(2)));

  CacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.bytes, obj->footprintBytes());
  EXPECT_EQ(s.budgetBytes, 10 * footprint(UNIT));
  EXPECT_EQ(s.evictions, 0u);
}

TEST(ObjectCacheTest, EvictsLeastRecentlyUsed) {
  ObjectCache cache(3 * footprint(UNIT));
  for (unsigned i = 1; i <= 3; ++i)
    ASSERT_TRUE(cache.put(makeKey(i), makeObject(UNIT)));
  EXPECT_EQ(cache.stats().entries, 3u);

  ASSERT_TRUE(cache.put(makeKey(4), makeObject(UNIT))); // 1 is the oldest
  EXPECT_FALSE(cache.contains(makeKey(1)));
  EXPECT_TRUE(cache.contains(makeKey(2)));
  EXPECT_TRUE(cache.contains(makeKey(3)));
  EXPECT_TRUE(cache.contains(makeKey(4)));
  EXPECT_EQ(cache.stats().evictions, 1u);
}

TEST(ObjectCacheTest, GetRefreshesRecency) {
  ObjectCache cache(3 * footprint(UNIT));
  for (unsigned i = 1; i <= 3; ++i)
    ASSERT_TRUE(cache.put(makeKey(i), makeObject(UNIT)));
  ASSERT_NE(cache.get(makeKey(1)), nullptr); // 1 is now the newest; 2 the oldest

  ASSERT_TRUE(cache.put(makeKey(4), makeObject(UNIT)));
  EXPECT_TRUE(cache.contains(makeKey(1)));
  EXPECT_FALSE(cache.contains(makeKey(2)));
  EXPECT_TRUE(cache.contains(makeKey(3)));
  EXPECT_TRUE(cache.contains(makeKey(4)));
}

TEST(ObjectCacheTest, ContainsDoesNotRefreshRecency) {
  ObjectCache cache(2 * footprint(UNIT));
  ASSERT_TRUE(cache.put(makeKey(1), makeObject(UNIT)));
  ASSERT_TRUE(cache.put(makeKey(2), makeObject(UNIT)));
  EXPECT_TRUE(cache.contains(makeKey(1)));
  ASSERT_TRUE(cache.put(makeKey(3), makeObject(UNIT)));
  EXPECT_FALSE(cache.contains(makeKey(1)));
  EXPECT_TRUE(cache.contains(makeKey(2)));
}

TEST(ObjectCacheTest, NeverExceedsBudget) {
  const uint64_t budget = 5 * footprint(UNIT);
  ObjectCache cache(budget);
  uint64_t lastEvictions = 0;
  for (unsigned i = 0; i < 40; ++i) {
    // Sizes vary so that one put may evict several entries.
    ASSERT_TRUE(cache.put(makeKey(i), makeObject(UNIT * (1 + i % 4))));
    CacheStats s = cache.stats();
    EXPECT_LE(s.bytes, budget) << "after put " << i;
    EXPECT_GE(s.evictions, lastEvictions);
    lastEvictions = s.evictions;
    EXPECT_TRUE(cache.contains(makeKey(i))) << "the newest entry must survive its own put";
  }
  CacheStats s = cache.stats();
  uint64_t counted = 0, sum = 0;
  for (unsigned i = 0; i < 40; ++i) {
    if (cache.contains(makeKey(i))) {
      ++counted;
      sum += footprint(UNIT * (1 + i % 4));
    }
  }
  EXPECT_EQ(s.entries, counted);
  EXPECT_EQ(s.bytes, sum);
  EXPECT_EQ(s.evictions, 40u - counted);
}

TEST(ObjectCacheTest, CountsEvictions) {
  ObjectCache cache(2 * footprint(UNIT));
  ASSERT_TRUE(cache.put(makeKey(1), makeObject(UNIT)));
  ASSERT_TRUE(cache.put(makeKey(2), makeObject(UNIT)));
  EXPECT_EQ(cache.stats().evictions, 0u);
  ASSERT_TRUE(cache.put(makeKey(3), makeObject(UNIT)));
  EXPECT_EQ(cache.stats().evictions, 1u);
  // An entry filling the whole budget exactly evicts both others.
  const uint64_t budget = cache.stats().budgetBytes;
  const size_t whole = UNIT + (budget - footprint(UNIT));
  ASSERT_EQ(footprint(whole), budget);
  ASSERT_TRUE(cache.put(makeKey(4), makeObject(whole)));
  CacheStats s = cache.stats();
  EXPECT_EQ(s.evictions, 3u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.bytes, budget);
}

TEST(ObjectCacheTest, RefusesOversizeEntryWithoutEvicting) {
  ObjectCache cache(3 * footprint(UNIT));
  ASSERT_TRUE(cache.put(makeKey(1), makeObject(UNIT)));
  ASSERT_TRUE(cache.put(makeKey(2), makeObject(UNIT)));
  CacheStats before = cache.stats();

  EXPECT_FALSE(cache.put(makeKey(3), makeObject(4 * UNIT)));
  CacheStats after = cache.stats();
  EXPECT_FALSE(cache.contains(makeKey(3)));
  EXPECT_TRUE(cache.contains(makeKey(1)));
  EXPECT_TRUE(cache.contains(makeKey(2)));
  EXPECT_EQ(after.entries, before.entries);
  EXPECT_EQ(after.bytes, before.bytes);
  EXPECT_EQ(after.evictions, 0u);

  // Oversize under an existing key: refused, and the existing entry stays as it was.
  auto kept = cache.get(makeKey(1));
  EXPECT_FALSE(cache.put(makeKey(1), makeObject(4 * UNIT)));
  EXPECT_EQ(cache.get(makeKey(1)), kept);
  EXPECT_EQ(cache.stats().bytes, before.bytes);
}

TEST(ObjectCacheTest, ZeroBudgetStoresNothing) {
  ObjectCache cache(0);
  EXPECT_FALSE(cache.put(makeKey(1), makeObject(0)));
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.get(makeKey(1)), nullptr);
}

TEST(ObjectCacheTest, ReplacesExistingKey) {
  ObjectCache cache(4 * footprint(UNIT));
  ASSERT_TRUE(cache.put(makeKey(1), makeObject(UNIT, 'a')));
  ASSERT_TRUE(cache.put(makeKey(2), makeObject(UNIT)));

  auto bigger = makeObject(2 * UNIT, 'b');
  ASSERT_TRUE(cache.put(makeKey(1), bigger));
  CacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.bytes, bigger->footprintBytes() + footprint(UNIT));
  EXPECT_EQ(cache.get(makeKey(1)), bigger);

  auto smaller = makeObject(UNIT / 2, 'c');
  ASSERT_TRUE(cache.put(makeKey(1), smaller));
  s = cache.stats();
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.bytes, smaller->footprintBytes() + footprint(UNIT));
  EXPECT_EQ(s.evictions, 0u);
  EXPECT_EQ(cache.get(makeKey(1))->object, std::string(UNIT / 2, 'c'));
}

TEST(ObjectCacheTest, ReplacementRefreshesAndMayEvictOthers) {
  ObjectCache cache(3 * footprint(UNIT));
  for (unsigned i = 1; i <= 3; ++i)
    ASSERT_TRUE(cache.put(makeKey(i), makeObject(UNIT)));
  // Growing 1 (the oldest) makes it the newest; 2 is then the oldest and must go.
  ASSERT_TRUE(cache.put(makeKey(1), makeObject(UNIT + UNIT / 2)));
  EXPECT_TRUE(cache.contains(makeKey(1)));
  EXPECT_FALSE(cache.contains(makeKey(2)));
  EXPECT_TRUE(cache.contains(makeKey(3)));
  CacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.bytes, footprint(UNIT + UNIT / 2) + footprint(UNIT));
}

TEST(ObjectCacheTest, EvictedEntryStaysValidForItsReader) {
  ObjectCache cache(footprint(UNIT));
  ASSERT_TRUE(cache.put(makeKey(1), makeObject(UNIT, 'r')));
  std::shared_ptr<const CompiledObject> reading = cache.get(makeKey(1));
  ASSERT_NE(reading, nullptr);
  std::weak_ptr<const CompiledObject> watch = reading;

  ASSERT_TRUE(cache.put(makeKey(2), makeObject(UNIT))); // evicts 1
  EXPECT_FALSE(cache.contains(makeKey(1)));
  EXPECT_EQ(reading->object, std::string(UNIT, 'r'));
  EXPECT_EQ(reading->triple, "x86_64-unknown-linux-gnu");

  // The cache kept no reference: the reader's was the last one.
  reading.reset();
  EXPECT_TRUE(watch.expired());
}

TEST(ObjectCacheTest, ConcurrentUseKeepsStatsConsistent) {
  constexpr unsigned THREADS = 4, ITERATIONS = 5000, KEYS = 24;
  // Each key always maps to an object of the same size, so the expected byte total can be
  // recomputed from which keys are present.
  auto sizeOf = [](unsigned k) { return UNIT * (1 + k % 3); };
  const uint64_t budget = 8 * footprint(UNIT);
  ObjectCache cache(budget);

  std::vector<uint64_t> gets(THREADS, 0); // one slot per thread, read after join
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < THREADS; ++t) {
    threads.emplace_back([&cache, &sizeOf, &gets, t] {
      uint32_t state = 12345 + t; // small LCG: deterministic, no shared RNG
      for (unsigned i = 0; i < ITERATIONS; ++i) {
        state = state * 1664525u + 1013904223u;
        unsigned k = (state >> 8) % KEYS;
        if ((state >> 4) % 3 == 0) {
          cache.put(makeKey(k), makeObject(sizeOf(k)));
          continue;
        }
        ++gets[t];
        if (auto obj = cache.get(makeKey(k))) {
          // Read through the pointer while other threads may evict it.
          EXPECT_EQ(obj->object.size(), sizeOf(k));
        }
      }
    });
  }
  for (std::thread& th : threads)
    th.join();

  CacheStats s = cache.stats();
  uint64_t present = 0, sum = 0;
  for (unsigned k = 0; k < KEYS; ++k) {
    if (cache.contains(makeKey(k))) {
      ++present;
      sum += footprint(sizeOf(k));
    }
  }
  EXPECT_LE(s.bytes, budget);
  EXPECT_EQ(s.entries, present);
  EXPECT_EQ(s.bytes, sum);
  EXPECT_GT(s.evictions, 0u);
  uint64_t totalGets = 0;
  for (uint64_t n : gets)
    totalGets += n;
  EXPECT_EQ(s.hits + s.misses, totalGets);
  EXPECT_GT(s.hits, 0u);
  EXPECT_GT(s.misses, 0u);
}

} // namespace
} // namespace rjitd::cache
