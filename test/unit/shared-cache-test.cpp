// SPDX-License-Identifier: MIT
// The shared tier (SharedCache) against a real redis-server on a private Unix socket: values,
// every check on read, size and read-only limits, a stopped, hung and restarted Redis, and
// compile leases.
#include "redis-server.h"
#include "shared-cache.h"

#include <fcntl.h>
#include <filesystem>
#include <gtest/gtest.h>
#include <mutex>
#include <thread>
#include <unistd.h>

namespace rjitd::cache {
namespace {

using rjit::test::RedisOptions;
using rjit::test::RedisReply;
using rjit::test::RedisServer;
using rjit::test::SAFETY_BOUND;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* SECRET = "fleet-secret-0123456789";

Key keyOf(uint8_t n) {
  Key key{};
  key.fill(n);
  key[31] = 0x5a;
  return key;
}

uint64_t rejected(const SharedCacheStats& stats, EnvelopeError error) {
  return stats.rejected[static_cast<size_t>(error)];
}

/// A bounded poll for what a test waits on that only time brings (a backoff ending, a TTL
/// running out): a short pause between attempts, never an assertion on speed.
void pauseBriefly() {
  std::this_thread::sleep_for(milliseconds(10));
}

/// How many of this process's sockets lack FD_CLOEXEC (a child would inherit them).
int inheritableSockets() {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    auto target = std::filesystem::read_symlink(entry.path(), error);
    if (error || !target.string().starts_with("socket:"))
      continue;
    int fd = std::stoi(entry.path().filename().string());
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && (flags & FD_CLOEXEC) == 0)
      ++count;
  }
  return count;
}

class SharedCacheTest : public ::testing::Test {
protected:
  void SetUp() override {
    redis_ = RedisServer::start();
    ASSERT_NE(redis_, nullptr);
  }

  SharedCacheConfig config() const {
    SharedCacheConfig c;
    c.address = redis_->address();
    c.secret = SECRET;
    c.connectTimeout = milliseconds(500);
    c.operationTimeout = milliseconds(300);
    c.backoffFirst = milliseconds(20);
    c.backoffMax = milliseconds(100);
    return c;
  }

  std::unique_ptr<SharedCache> make(SharedCacheConfig c) {
    auto created = SharedCache::create(std::move(c));
    if (auto* error = std::get_if<std::string>(&created)) {
      ADD_FAILURE() << *error;
      return nullptr;
    }
    return std::get<std::unique_ptr<SharedCache>>(std::move(created));
  }

  bool exists(const std::string& redisKey) const {
    RedisReply reply = redis_->command({"EXISTS", redisKey});
    EXPECT_EQ(reply.kind, RedisReply::Kind::Integer) << reply.text;
    return reply.integer == 1;
  }

  /// Redis's count of connections accepted so far (INFO's total_connections_received).
  long long connectionsReceived() const {
    RedisReply info = redis_->command({"INFO", "stats"});
    const std::string field = "total_connections_received:";
    size_t at = info.text.find(field);
    EXPECT_NE(at, std::string::npos) << info.text;
    return at == std::string::npos ? 0 : std::stoll(info.text.substr(at + field.size()));
  }

  std::unique_ptr<RedisServer> redis_;
};

TEST_F(SharedCacheTest, PutThenGetRoundTrips) {
  auto cache = make(config());
  ASSERT_NE(cache, nullptr);
  std::string payload("object\0bytes", 12);  // binary-safe: a NUL in the middle
  cache->put(keyOf(1), payload);
  cache->flush(SAFETY_BOUND);
  EXPECT_EQ(cache->get(keyOf(1)), payload);

  auto stats = cache->stats();
  EXPECT_EQ(stats.stored, 1u);
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.errors, 0u);
  EXPECT_TRUE(stats.available);
  // Under rjitd:v<format>:<hex key>, sealed with the MAC, without a TTL (Redis's LRU evicts).
  EXPECT_EQ(sharedValueKey(keyOf(1)),
            "rjitd:v" + std::to_string(STORED_FORMAT) + ":" + toHex(keyOf(1)));
  RedisReply raw = redis_->command({"GET", sharedValueKey(keyOf(1))});
  ASSERT_EQ(raw.kind, RedisReply::Kind::String);
  EXPECT_EQ(raw.text, sealEnvelope(keyOf(1), payload, SECRET));
  EXPECT_EQ(redis_->command({"PTTL", sharedValueKey(keyOf(1))}).integer, -1);
}

TEST_F(SharedCacheTest, ConnectionsAreCloseOnExec) {
  int before = inheritableSockets();
  auto cache = make(config());
  ASSERT_NE(cache, nullptr);
  cache->put(keyOf(1), "object");  // the writer's connection
  cache->flush(SAFETY_BOUND);
  EXPECT_EQ(cache->get(keyOf(1)), "object");
  EXPECT_EQ(inheritableSockets(), before);
}

TEST_F(SharedCacheTest, AbsentValueIsAMiss) {
  auto cache = make(config());
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->get(keyOf(2)), std::nullopt);
  auto stats = cache->stats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.errors, 0u);
}

TEST_F(SharedCacheTest, ValueWrittenWithAnotherSecretIsRejectedAndDeleted) {
  auto cache = make(config());
  auto intruder = make([&] {
    auto c = config();
    c.secret = "not-the-fleet-secret-at-all";
    return c;
  }());
  ASSERT_NE(cache, nullptr);
  ASSERT_NE(intruder, nullptr);
  intruder->put(keyOf(3), "someone else's code");
  intruder->flush(SAFETY_BOUND);
  ASSERT_TRUE(exists(sharedValueKey(keyOf(3))));

  EXPECT_EQ(cache->get(keyOf(3)), std::nullopt);
  EXPECT_EQ(rejected(cache->stats(), EnvelopeError::BadMac), 1u);
  EXPECT_FALSE(exists(sharedValueKey(keyOf(3))));
}

TEST_F(SharedCacheTest, ValueWithoutAMacIsRejected) {
  auto cache = make(config());
  ASSERT_NE(cache, nullptr);
  ASSERT_EQ(redis_->command({"SET", sharedValueKey(keyOf(4)), sealEnvelope(keyOf(4), "code")}).kind,
            RedisReply::Kind::Status);
  EXPECT_EQ(cache->get(keyOf(4)), std::nullopt);
  EXPECT_EQ(rejected(cache->stats(), EnvelopeError::BadMac), 1u);
  EXPECT_FALSE(exists(sharedValueKey(keyOf(4))));
}

TEST_F(SharedCacheTest, ValuesCorruptedByHandAreRejectedCountedAndDeleted) {
  auto cache = make(config());
  ASSERT_NE(cache, nullptr);
  cache->put(keyOf(5), "the real object");
  cache->put(keyOf(6), "another object");
  cache->flush(SAFETY_BOUND);

  // A flipped payload byte (the MAC covers the payload, and is checked first).
  RedisReply raw = redis_->command({"GET", sharedValueKey(keyOf(5))});
  ASSERT_EQ(raw.kind, RedisReply::Kind::String);
  raw.text.back() ^= 0x01;
  redis_->command({"SET", sharedValueKey(keyOf(5)), raw.text});
  // Garbage.
  redis_->command({"SET", sharedValueKey(keyOf(7)), "this is not an envelope at all"});
  // A good value of one key filed under another.
  RedisReply other = redis_->command({"GET", sharedValueKey(keyOf(6))});
  redis_->command({"SET", sharedValueKey(keyOf(8)), other.text});
  // Cut short.
  redis_->command({"SET", sharedValueKey(keyOf(6)), other.text.substr(0, other.text.size() - 3)});

  for (uint8_t n : {5, 6, 7, 8})
    EXPECT_EQ(cache->get(keyOf(n)), std::nullopt) << int(n);
  auto stats = cache->stats();
  EXPECT_EQ(rejected(stats, EnvelopeError::BadMac), 1u);
  EXPECT_EQ(rejected(stats, EnvelopeError::Foreign), 1u);
  EXPECT_EQ(rejected(stats, EnvelopeError::WrongKey), 1u);
  EXPECT_EQ(rejected(stats, EnvelopeError::Truncated), 1u);
  EXPECT_EQ(stats.hits, 0u);
  for (uint8_t n : {5, 6, 7, 8})
    EXPECT_FALSE(exists(sharedValueKey(keyOf(n)))) << int(n);
}

TEST_F(SharedCacheTest, ValueOverTheSizeLimitIsNotStored) {
  auto c = config();
  c.maxValueBytes = 1024;
  auto cache = make(c);
  ASSERT_NE(cache, nullptr);
  // The limit is on the stored size: header and MAC included.
  size_t largest = 1024 - ENVELOPE_HEADER_BYTES - ENVELOPE_MAC_BYTES;
  cache->put(keyOf(9), std::string(largest + 1, 'x'));
  cache->put(keyOf(10), std::string(largest, 'x'));
  cache->flush(SAFETY_BOUND);
  auto stats = cache->stats();
  EXPECT_EQ(stats.notStored, 1u);
  EXPECT_EQ(stats.stored, 1u);
  EXPECT_FALSE(exists(sharedValueKey(keyOf(9))));
  EXPECT_TRUE(exists(sharedValueKey(keyOf(10))));
}

TEST_F(SharedCacheTest, ReadOnlyReadsButStoresDeletesAndLeasesNothing) {
  auto writer = make(config());
  auto c = config();
  c.readOnly = true;
  auto reader = make(c);
  ASSERT_NE(writer, nullptr);
  ASSERT_NE(reader, nullptr);
  writer->put(keyOf(11), "shared object");
  writer->flush(SAFETY_BOUND);
  EXPECT_EQ(reader->get(keyOf(11)), "shared object");

  reader->put(keyOf(12), "not stored", true);
  reader->flush(SAFETY_BOUND);
  EXPECT_FALSE(exists(sharedValueKey(keyOf(12))));
  EXPECT_EQ(reader->stats().notStored, 1u);

  redis_->command({"SET", sharedValueKey(keyOf(13)), "garbage garbage"});
  EXPECT_EQ(reader->get(keyOf(13)), std::nullopt);
  EXPECT_EQ(rejected(reader->stats(), EnvelopeError::Foreign), 1u);
  EXPECT_TRUE(exists(sharedValueKey(keyOf(13))));  // refused, but left alone

  EXPECT_EQ(reader->tryLease(keyOf(14)), LeaseResult::Unavailable);
  EXPECT_FALSE(exists(sharedLeaseKey(keyOf(14))));
  EXPECT_EQ(reader->stats().leasesTaken, 0u);
}

TEST_F(SharedCacheTest, ErrorReplyIsAnErrorAndAMiss) {
  auto cache = make(config());
  ASSERT_NE(cache, nullptr);
  redis_->command({"LPUSH", sharedValueKey(keyOf(15)), "a list, not a string"});
  EXPECT_EQ(cache->get(keyOf(15)), std::nullopt);  // WRONGTYPE
  auto stats = cache->stats();
  EXPECT_EQ(stats.errors, 1u);
  EXPECT_FALSE(stats.available);
  EXPECT_NE(stats.lastError.find("WRONGTYPE"), std::string::npos) << stats.lastError;
}

TEST_F(SharedCacheTest, StoppedServerIsAMissThenBackoffSkipsCalls) {
  auto c = config();
  c.backoffFirst = milliseconds(60'000);  // the second call surely falls inside it
  c.backoffMax = milliseconds(60'000);
  auto cache = make(c);
  ASSERT_NE(cache, nullptr);
  cache->put(keyOf(16), "object");
  cache->flush(SAFETY_BOUND);
  ASSERT_EQ(cache->get(keyOf(16)), "object");  // a pooled connection now exists

  redis_->stop();
  EXPECT_EQ(cache->get(keyOf(16)), std::nullopt);
  auto stats = cache->stats();
  EXPECT_EQ(stats.errors, 1u);
  EXPECT_FALSE(stats.available);

  // Backing off: no Redis calls, at once.
  EXPECT_EQ(cache->get(keyOf(16)), std::nullopt);
  EXPECT_EQ(cache->tryLease(keyOf(16)), LeaseResult::Unavailable);
  EXPECT_FALSE(cache->leaseHeld(keyOf(16)));
  cache->put(keyOf(17), "dropped");
  cache->flush(SAFETY_BOUND);
  stats = cache->stats();
  EXPECT_EQ(stats.errors, 1u);
  EXPECT_EQ(stats.skipped, 4u);
  EXPECT_EQ(stats.notStored, 1u);
  EXPECT_FALSE(stats.available);
}

TEST_F(SharedCacheTest, AnOutageIsReportedOnceAndTheReturnOnce) {
  auto c = config();
  std::mutex mutex;
  std::vector<std::string> reports;  // what onAvailability was told, in order
  c.onAvailability = [&](const std::string& error) {
    std::lock_guard lock(mutex);
    reports.push_back(error);
  };
  auto cache = make(c);
  ASSERT_NE(cache, nullptr);
  cache->put(keyOf(18), "object");
  cache->flush(SAFETY_BOUND);
  ASSERT_EQ(cache->get(keyOf(18)), "object");

  redis_->stop();
  for (int i = 0; i < 3; ++i)  // failures and skipped calls: one report
    EXPECT_EQ(cache->get(keyOf(18)), std::nullopt);
  ASSERT_TRUE(redis_->restart());
  // Back once a call after the backoff succeeds (a miss: the new Redis is empty).
  auto deadline = Clock::now() + SAFETY_BOUND;
  while (!cache->stats().available && Clock::now() < deadline) {
    cache->get(keyOf(18));
    pauseBriefly();
  }
  ASSERT_TRUE(cache->stats().available);
  std::lock_guard lock(mutex);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_NE(reports[0].find(redis_->address()), std::string::npos) << reports[0];
  EXPECT_EQ(reports[1], "");
}

TEST_F(SharedCacheTest, RestartedServerIsUsedAgainAfterTheBackoff) {
  auto cache = make(config());
  ASSERT_NE(cache, nullptr);
  ASSERT_EQ(cache->get(keyOf(18)), std::nullopt);

  redis_->kill();
  EXPECT_EQ(cache->get(keyOf(18)), std::nullopt);
  EXPECT_GE(cache->stats().errors, 1u);
  EXPECT_FALSE(cache->stats().available);

  ASSERT_TRUE(redis_->restart());  // same socket, empty
  redis_->command({"SET", sharedValueKey(keyOf(18)), sealEnvelope(keyOf(18), "back", SECRET)});
  std::optional<std::string> value;
  auto deadline = Clock::now() + SAFETY_BOUND;
  while (!value && Clock::now() < deadline) {
    value = cache->get(keyOf(18));
    if (!value)
      pauseBriefly();
  }
  EXPECT_EQ(value, "back");
  EXPECT_TRUE(cache->stats().available);
}

TEST_F(SharedCacheTest, HungServerTimesOutAsAMissAndShutdownIsBounded) {
  auto c = config();
  c.backoffFirst = milliseconds(60'000);
  c.backoffMax = milliseconds(60'000);
  auto cache = make(c);
  ASSERT_NE(cache, nullptr);
  ASSERT_EQ(cache->get(keyOf(19)), std::nullopt);  // connected

  redis_->pause();
  EXPECT_EQ(cache->get(keyOf(19)), std::nullopt);  // the operation timeout
  auto stats = cache->stats();
  EXPECT_EQ(stats.errors, 1u);
  EXPECT_FALSE(stats.available);
  EXPECT_NE(stats.lastError.find(redis_->address()), std::string::npos) << stats.lastError;

  // Writes pending at shutdown are tried (or skipped by the backoff); the destructor returns
  // although Redis answers nothing.
  for (uint8_t n = 20; n < 30; ++n)
    cache->put(keyOf(n), "pending");
  cache.reset();
  redis_->resume();
  EXPECT_FALSE(exists(sharedValueKey(keyOf(20))));
}

TEST_F(SharedCacheTest, WritesOverTheQueueAreDropped) {
  auto c = config();
  c.writeQueue = 2;
  c.operationTimeout = milliseconds(30'000);  // the writer stays on its first write meanwhile
  auto cache = make(c);
  ASSERT_NE(cache, nullptr);
  ASSERT_EQ(cache->get(keyOf(40)), std::nullopt);  // connected

  redis_->pause();
  constexpr uint8_t PUTS = 6;
  for (uint8_t n = 0; n < PUTS; ++n)
    cache->put(keyOf(41 + n), "queued");
  // At most the queue's two plus the one the writer has taken.
  EXPECT_GE(cache->stats().notStored, PUTS - 3u);
  redis_->resume();
  cache->flush(SAFETY_BOUND);
  auto stats = cache->stats();
  EXPECT_EQ(stats.stored + stats.notStored, PUTS);
  EXPECT_GE(stats.stored, 2u);
  EXPECT_EQ(stats.errors, 0u);
}

TEST_F(SharedCacheTest, HungServerFromTheFirstConnectionTimesOut) {
  redis_->pause();
  auto cache = make(config());
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->get(keyOf(30)), std::nullopt);
  EXPECT_EQ(cache->tryLease(keyOf(30)), LeaseResult::Unavailable);
  EXPECT_GE(cache->stats().errors, 1u);
  redis_->resume();
}

TEST_F(SharedCacheTest, LeaseIsExclusiveUntilReleased) {
  auto a = make(config());
  auto b = make(config());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->tryLease(keyOf(31)), LeaseResult::Acquired);
  EXPECT_EQ(b->tryLease(keyOf(31)), LeaseResult::Held);
  EXPECT_TRUE(b->leaseHeld(keyOf(31)));
  b->noteLeaseWait();

  a->put(keyOf(31), "compiled by a", true);  // the value, then the release, in order
  a->flush(SAFETY_BOUND);
  EXPECT_FALSE(b->leaseHeld(keyOf(31)));
  EXPECT_EQ(b->get(keyOf(31)), "compiled by a");
  EXPECT_EQ(b->tryLease(keyOf(31)), LeaseResult::Acquired);
  b->releaseLease(keyOf(31));  // a compile that failed: no value
  b->flush(SAFETY_BOUND);
  EXPECT_FALSE(a->leaseHeld(keyOf(31)));

  EXPECT_EQ(a->stats().leasesTaken, 1u);
  EXPECT_EQ(b->stats().leasesTaken, 1u);
  EXPECT_EQ(b->stats().leaseWaits, 1u);
}

TEST_F(SharedCacheTest, ReleaseDoesNotDeleteAnotherServersLease) {
  auto a = make(config());
  ASSERT_NE(a, nullptr);
  // Our lease expired meanwhile and another server took it.
  ASSERT_EQ(a->tryLease(keyOf(32)), LeaseResult::Acquired);
  redis_->command({"SET", sharedLeaseKey(keyOf(32)), "another-server", "PX", "60000"});
  a->releaseLease(keyOf(32));
  a->flush(SAFETY_BOUND);
  RedisReply holder = redis_->command({"GET", sharedLeaseKey(keyOf(32))});
  EXPECT_EQ(holder.text, "another-server");
}

TEST_F(SharedCacheTest, LeaseOfADeadHolderExpires) {
  auto cache = make(config());
  ASSERT_NE(cache, nullptr);
  // A server that took the lease and died (nobody renews it).
  ASSERT_EQ(
      redis_->command({"SET", sharedLeaseKey(keyOf(33)), "dead-server", "NX", "PX", "200"}).kind,
      RedisReply::Kind::Status);
  EXPECT_EQ(cache->tryLease(keyOf(33)), LeaseResult::Held);
  LeaseResult result = LeaseResult::Held;
  auto deadline = Clock::now() + SAFETY_BOUND;
  while (result == LeaseResult::Held && Clock::now() < deadline) {
    pauseBriefly();
    result = cache->tryLease(keyOf(33));
  }
  EXPECT_EQ(result, LeaseResult::Acquired);
}

TEST_F(SharedCacheTest, HeldLeaseIsRenewedPastItsTtl) {
  auto c = config();
  c.leaseTtl = milliseconds(600);  // renewed every 200 ms: slack for a busy machine
  auto cache = make(c);
  ASSERT_NE(cache, nullptr);
  auto acquired = Clock::now();
  ASSERT_EQ(cache->tryLease(keyOf(34)), LeaseResult::Acquired);
  // The token names this process for a person reading Redis.
  RedisReply token = redis_->command({"GET", sharedLeaseKey(keyOf(34))});
  EXPECT_NE(token.text.find(":" + std::to_string(getpid())), std::string::npos) << token.text;

  // Several TTLs later the lease is still there, and its TTL was set again meanwhile.
  long long lowest = c.leaseTtl.count();
  bool renewed = false;
  while (Clock::now() < acquired + 3 * c.leaseTtl) {
    RedisReply ttl = redis_->command({"PTTL", sharedLeaseKey(keyOf(34))});
    ASSERT_EQ(ttl.kind, RedisReply::Kind::Integer);
    ASSERT_GT(ttl.integer, 0) << "the lease expired";
    renewed = renewed || ttl.integer > lowest;
    lowest = std::min(lowest, ttl.integer);
    pauseBriefly();
  }
  EXPECT_TRUE(renewed);

  cache->releaseLease(keyOf(34));
  cache->flush(SAFETY_BOUND);
  EXPECT_FALSE(exists(sharedLeaseKey(keyOf(34))));
}

TEST_F(SharedCacheTest, ALeaseIsRenewedNoLongerThanItsLongestHold) {
  auto c = config();
  c.leaseTtl = milliseconds(600);
  c.maxLeaseHold = milliseconds(1);  // past it at the first renewal
  auto cache = make(c);
  ASSERT_NE(cache, nullptr);
  ASSERT_EQ(cache->tryLease(keyOf(35)), LeaseResult::Acquired);
  // Never released, yet it goes: not renewed, it expires after its TTL (bounded wait).
  auto deadline = Clock::now() + SAFETY_BOUND;
  while (cache->leaseHeld(keyOf(35)) && Clock::now() < deadline)
    pauseBriefly();
  EXPECT_FALSE(cache->leaseHeld(keyOf(35)));
  // Another server may take it now.
  auto other = make(config());
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->tryLease(keyOf(35)), LeaseResult::Acquired);
}

TEST_F(SharedCacheTest, ConcurrentCallersShareThePool) {
  auto c = config();
  c.writeQueue = 1024;
  auto cache = make(c);
  ASSERT_NE(cache, nullptr);
  constexpr int THREADS = 6;
  constexpr int ROUNDS = 40;
  long long connectionsBefore = connectionsReceived();
  std::vector<std::thread> threads;
  for (int t = 0; t < THREADS; ++t) {
    threads.emplace_back([&cache, t]() {
      for (int i = 0; i < ROUNDS; ++i) {
        Key key = keyOf(static_cast<uint8_t>(100 + t));
        key[0] = static_cast<uint8_t>(i);
        if (cache->tryLease(key) == LeaseResult::Acquired)
          cache->put(key, "value " + std::to_string(t), true);
        cache->get(key);  // a hit or a miss, depending on the writer
        cache->leaseHeld(key);
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  cache->flush(SAFETY_BOUND);
  // Connections are reused: at most one per thread at once (callers, writer, renewer), and
  // this test's own INFO.
  EXPECT_LE(connectionsReceived() - connectionsBefore, THREADS + 2 + 1);
  auto stats = cache->stats();
  EXPECT_EQ(stats.errors, 0u) << stats.lastError;
  EXPECT_EQ(stats.leasesTaken, unsigned(THREADS * ROUNDS));
  EXPECT_EQ(stats.stored, unsigned(THREADS * ROUNDS));
  EXPECT_EQ(stats.hits + stats.misses, unsigned(THREADS * ROUNDS));
  EXPECT_EQ(redis_->command({"KEYS", "rjitd:v*:lease:*"}).integer, 0);  // all released
  EXPECT_EQ(redis_->command({"DBSIZE"}).integer, THREADS * ROUNDS);
}

TEST_F(SharedCacheTest, DestroyedCacheReleasesItsLeases) {
  auto cache = make(config());
  ASSERT_NE(cache, nullptr);
  ASSERT_EQ(cache->tryLease(keyOf(35)), LeaseResult::Acquired);
  cache.reset();
  EXPECT_FALSE(exists(sharedLeaseKey(keyOf(35))));
}

TEST(SharedCacheTcpTest, RoundTripsOverLoopbackTcp) {
  uint16_t port = rjit::test::freeTcpPort();
  ASSERT_NE(port, 0);
  auto redis = RedisServer::start(RedisOptions{port, {}});
  ASSERT_NE(redis, nullptr);
  SharedCacheConfig c;
  c.address = redis->tcpAddress();
  c.secret = SECRET;
  auto created = SharedCache::create(c);
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<SharedCache>>(created))
      << std::get<std::string>(created);
  auto& cache = std::get<std::unique_ptr<SharedCache>>(created);
  int before = inheritableSockets();
  cache->put(keyOf(36), "over tcp");
  cache->flush(SAFETY_BOUND);
  EXPECT_EQ(cache->get(keyOf(36)), "over tcp");
  EXPECT_EQ(inheritableSockets(), before);
}

TEST(SharedCacheEvictionTest, EvictedValuesAreMisses) {
  // How a fleet runs Redis: a memory limit, and the least recently used keys evicted.
  auto redis = RedisServer::start(
      RedisOptions{0, {"--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"}});
  ASSERT_NE(redis, nullptr);
  SharedCacheConfig c;
  c.address = redis->address();
  c.secret = SECRET;
  c.writeQueue = 128;
  auto created = SharedCache::create(c);
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<SharedCache>>(created))
      << std::get<std::string>(created);
  auto& cache = std::get<std::unique_ptr<SharedCache>>(created);
  constexpr uint8_t VALUES = 100;  // 10 MB into 4
  for (uint8_t n = 0; n < VALUES; ++n)
    cache->put(keyOf(n), std::string(100'000, static_cast<char>(n)));
  cache->flush(SAFETY_BOUND);
  EXPECT_EQ(cache->stats().stored, VALUES);
  for (uint8_t n = 0; n < VALUES; ++n) {
    auto value = cache->get(keyOf(n));
    if (value) {
      EXPECT_EQ(*value, std::string(100'000, static_cast<char>(n)));
    }
  }
  auto stats = cache->stats();
  EXPECT_EQ(stats.hits + stats.misses, VALUES);
  EXPECT_GT(stats.misses, VALUES / 2u);
  EXPECT_GT(stats.hits, 0u);
  EXPECT_EQ(stats.errors, 0u);
}

TEST(SharedCacheConnectTest, NoServerIsAnErrorNamingTheAddress) {
  uint16_t port = rjit::test::freeTcpPort();  // nobody listens there
  ASSERT_NE(port, 0);
  for (std::string address :
       {std::string("unix:/nonexistent/redis.sock"), "redis://127.0.0.1:" + std::to_string(port)}) {
    SharedCacheConfig c;
    c.address = address;
    c.secret = SECRET;
    auto created = SharedCache::create(c);
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<SharedCache>>(created));
    auto& cache = std::get<std::unique_ptr<SharedCache>>(created);
    EXPECT_EQ(cache->get(keyOf(37)), std::nullopt);
    auto stats = cache->stats();
    EXPECT_EQ(stats.errors, 1u);
    EXPECT_EQ(stats.misses, 0u);
    EXPECT_FALSE(stats.available);
    EXPECT_NE(stats.lastError.find(address), std::string::npos) << stats.lastError;
  }
}

TEST(SharedCacheCreateTest, BadAddressesAreRefusedNamingTheValue) {
  for (const char* address :
       {"", "redis://", "redis://host", "redis://host:", "redis://:6379", "redis://host:0",
        "redis://host:65536", "redis://host:63x", "redis://::1:6379", "redis://[::1:6379",
        "redis://us@er:6379", "redis://host:6379/0", "tcp:127.0.0.1:6379",
        "unix:", "unix:relative/path", "/abs/path", "http://host:80", "rediss://host:6379"}) {
    SharedCacheConfig c;
    c.address = address;
    c.secret = SECRET;
    auto created = SharedCache::create(c);
    auto* error = std::get_if<std::string>(&created);
    ASSERT_NE(error, nullptr) << address;
    EXPECT_NE(error->find("'" + std::string(address) + "'"), std::string::npos) << *error;
    EXPECT_NE(error->find("redis://HOST:PORT"), std::string::npos) << *error;
    EXPECT_NE(error->find("unix:/ABSOLUTE/PATH"), std::string::npos) << *error;
  }
}

TEST(SharedCacheCreateTest, GoodAddressesAreAcceptedWithoutConnecting) {
  for (const char* address :
       {"redis://127.0.0.1:6379", "redis://[::1]:6379", "redis://redis.example.org:1",
        "redis://cache-1:65535", "unix:/nonexistent/redis.sock"}) {
    SharedCacheConfig c;
    c.address = address;
    c.secret = SECRET;
    auto created = SharedCache::create(c);
    EXPECT_TRUE(std::holds_alternative<std::unique_ptr<SharedCache>>(created))
        << address << ": " << std::get<std::string>(created);
  }
}

/// A Redis that asks for a password (requirepass), and one with an ACL user.
class SharedCacheAuthTest : public ::testing::Test {
protected:
  static constexpr const char* PASSWORD = "redis pass word 0123";

  void SetUp() override {
    RedisOptions options;
    options.password = PASSWORD;
    redis_ = RedisServer::start(options);
    ASSERT_NE(redis_, nullptr);
  }

  std::unique_ptr<SharedCache> make(std::string user, std::string password,
                                    milliseconds leaseTtl = milliseconds(30000)) const {
    SharedCacheConfig c;
    c.leaseTtl = leaseTtl;
    c.address = redis_->address();
    c.secret = SECRET;
    c.authUser = std::move(user);
    c.authPassword = std::move(password);
    c.backoffFirst = milliseconds(20);
    c.backoffMax = milliseconds(100);
    auto created = SharedCache::create(std::move(c));
    EXPECT_TRUE(std::holds_alternative<std::unique_ptr<SharedCache>>(created));
    return std::get<std::unique_ptr<SharedCache>>(std::move(created));
  }

  std::unique_ptr<RedisServer> redis_;
};

TEST_F(SharedCacheAuthTest, ThePasswordOpensIt) {
  auto cache = make("", PASSWORD);
  cache->put(keyOf(40), "object");
  cache->flush(SAFETY_BOUND);
  EXPECT_EQ(cache->get(keyOf(40)), "object");
  EXPECT_EQ(cache->tryLease(keyOf(41)), LeaseResult::Acquired);
  SharedCacheStats stats = cache->stats();
  EXPECT_EQ(stats.errors, 0u) << stats.lastError;
  EXPECT_EQ(stats.stored, 1u);
}

TEST_F(SharedCacheAuthTest, AnAclUserWithTheDocumentedRulesDoesEverything) {
  // The user docs/FLEET.md tells operators to make: rjitd's keys, and the commands it sends
  // and its lease scripts run (Redis checks a script's commands against the caller's ACL).
  RedisReply made =
      redis_->command({"ACL", "SETUSER", "rjitd", "on", ">rjitd-pass-0123", "~rjitd:*", "+get",
                       "+set", "+del", "+eval", "+exists", "+pexpire"});
  ASSERT_EQ(made.kind, RedisReply::Kind::Status) << made.text;
  auto cache = make("rjitd", "rjitd-pass-0123", milliseconds(600));
  cache->put(keyOf(42), "object");
  cache->flush(SAFETY_BOUND);
  EXPECT_EQ(cache->get(keyOf(42)), "object");
  // A lease held past its TTL is renewed (PEXPIRE in a script), then released (DEL in one).
  auto acquired = Clock::now();
  ASSERT_EQ(cache->tryLease(keyOf(45)), LeaseResult::Acquired);
  EXPECT_TRUE(cache->leaseHeld(keyOf(45)));
  while (Clock::now() < acquired + milliseconds(3 * 600)) {
    ASSERT_TRUE(cache->leaseHeld(keyOf(45))) << "the lease expired: " << cache->stats().lastError;
    pauseBriefly();
  }
  cache->releaseLease(keyOf(45));
  cache->flush(SAFETY_BOUND);
  EXPECT_FALSE(cache->leaseHeld(keyOf(45)));
  SharedCacheStats stats = cache->stats();
  EXPECT_EQ(stats.errors, 0u) << stats.lastError;
}

TEST_F(SharedCacheAuthTest, AWrongPasswordIsAnErrorSayingSoNeverTheSecret) {
  auto cache = make("", "not the password");
  EXPECT_EQ(cache->get(keyOf(43)), std::nullopt);
  SharedCacheStats stats = cache->stats();
  EXPECT_EQ(stats.errors, 1u);
  EXPECT_FALSE(stats.available);
  EXPECT_NE(stats.lastError.find("refused AUTH"), std::string::npos) << stats.lastError;
  EXPECT_NE(stats.lastError.find("--shared-cache-auth-file"), std::string::npos) << stats.lastError;
  EXPECT_EQ(stats.lastError.find("not the password"), std::string::npos) << stats.lastError;
}

TEST_F(SharedCacheAuthTest, NoPasswordIsAnErrorNamingTheOption) {
  auto cache = make("", "");
  EXPECT_EQ(cache->get(keyOf(44)), std::nullopt);
  SharedCacheStats stats = cache->stats();
  EXPECT_EQ(stats.errors, 1u);
  EXPECT_NE(stats.lastError.find("NOAUTH"), std::string::npos) << stats.lastError;
  EXPECT_NE(stats.lastError.find("--shared-cache-auth-file"), std::string::npos) << stats.lastError;
}

TEST(SharedCacheCreateTest, ShortSecretIsRefused) {
  SharedCacheConfig c;
  c.address = "unix:/nonexistent/redis.sock";
  c.secret = std::string(15, 's');
  auto created = SharedCache::create(c);
  auto* error = std::get_if<std::string>(&created);
  ASSERT_NE(error, nullptr);
  EXPECT_NE(error->find("16"), std::string::npos) << *error;
  c.secret = std::string(16, 's');
  EXPECT_TRUE(std::holds_alternative<std::unique_ptr<SharedCache>>(SharedCache::create(c)));
}

}  // namespace
}  // namespace rjitd::cache
