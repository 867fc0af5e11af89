// SPDX-License-Identifier: MIT
// A fleet of three real rjitd sharing one real redis-server (issue 13): a compile on one server
// is a shared-tier hit on another, the same new module sent to all three at once compiles once,
// damaged or unsigned values are refused, and a stopped or hung Redis costs misses, never
// failed requests.
#include <sys/stat.h>

#include <future>

#include "fixture.h"
#include "redis-server.h"
#include "tier-helpers.h"

namespace rjit::test {
namespace {

/// Upper bound for polling loops (each iteration is a round trip to rjitd or Redis); reaching
/// it is a failure.
constexpr unsigned MAX_POLLS = 20'000;

class FleetTest : public ::testing::Test {
protected:
  void SetUp() override {
    redis = RedisServer::start();
    ASSERT_NE(redis, nullptr);
    keyFile = dir.file("fleet.key");
    writeFile(keyFile, "fleet-secret-0123456789abcdef\n");
    ASSERT_EQ(::chmod(keyFile.c_str(), 0600), 0);
  }

  /// rjitd with the shared tier on the test's Redis, a short Redis deadline (a hung Redis is
  /// a miss after it) and `extra` flags. Its disk tier is its own (the harness's --cache-dir).
  std::unique_ptr<DaemonProcess> server(std::vector<std::string> extra = {}) {
    DaemonOptions options;
    options.extraArgs = {"--shared-cache", redis->address(),         "--shared-cache-key-file",
                         keyFile,          "--shared-cache-timeout", "300ms"};
    options.extraArgs.insert(options.extraArgs.end(), extra.begin(), extra.end());
    return DaemonProcess::start(options);
  }

  /// Polls `daemon`'s stats until `done` holds (bounded).
  template <typename Done> bool waitStats(const DaemonProcess& daemon, Done done) {
    Client client(clientOf(daemon));
    for (unsigned i = 0; i < MAX_POLLS; ++i) {
      if (done(client.stats()))
        return true;
    }
    ADD_FAILURE() << "the condition did not hold within " << MAX_POLLS << " polls";
    return false;
  }

  bool waitStored(const DaemonProcess& daemon, uint64_t count) {
    return waitStats(daemon, [count](const ServerStats& s) {
      const auto* shared = tier(s, "shared");
      return shared != nullptr && shared->stored >= count;
    });
  }

  TempDir dir;
  std::string keyFile;
  std::unique_ptr<RedisServer> redis;
};

TEST_F(FleetTest, ACompileOnAIsASharedHitOnB) {
  auto a = server();
  auto b = server();
  ASSERT_TRUE(a && b);
  CompileRequest request = freshModule(4, "shared.ll");
  CompiledObject onA = Client(clientOf(*a)).compile(request);
  EXPECT_FALSE(onA.fromCache);
  ASSERT_TRUE(waitStored(*a, 1));

  Client client(clientOf(*b));
  CompiledObject onB = client.compile(request);
  EXPECT_TRUE(onB.fromCache);
  EXPECT_EQ(onB.key, onA.key);
  EXPECT_EQ(onB.object, onA.object);
  ServerStats stats = client.stats();
  EXPECT_EQ(stats.compiles, 0u);
  EXPECT_EQ(tier(stats, "shared")->hits, 1u);
  EXPECT_EQ(tier(stats, "disk")->misses, 1u);
  // B keeps it on its own disk too, and in memory: the next request asks neither tier.
  EXPECT_TRUE(client.compile(request).fromCache);
  EXPECT_EQ(tier(client.stats(), "shared")->hits, 1u);
  // The value in Redis is under rjitd:v1:<key>.
  RedisReply exists = redis->command({"EXISTS", "rjitd:v1:" + onA.key});
  EXPECT_EQ(exists.integer, 1) << exists.text;
}

TEST_F(FleetTest, ARedisThatAsksForAPasswordGetsItFromTheAuthFile) {
  RedisOptions locked;
  locked.password = "fleet-redis-password-42";
  auto guarded = RedisServer::start(locked);
  ASSERT_NE(guarded, nullptr);
  std::string authFile = dir.file("redis.auth");
  writeFile(authFile, "fleet-redis-password-42\n");
  ASSERT_EQ(::chmod(authFile.c_str(), 0600), 0);
  auto on = [&](std::vector<std::string> extra) {
    DaemonOptions options;
    options.extraArgs = {"--shared-cache", guarded->address(), "--shared-cache-key-file", keyFile};
    options.extraArgs.insert(options.extraArgs.end(), extra.begin(), extra.end());
    return DaemonProcess::start(options);
  };
  auto a = on({"--shared-cache-auth-file", authFile});
  auto b = on({"--shared-cache-auth-file", authFile});
  ASSERT_TRUE(a && b);
  CompileRequest request = freshModule(3, "guarded.ll");
  EXPECT_FALSE(Client(clientOf(*a)).compile(request).fromCache);
  ASSERT_TRUE(waitStored(*a, 1));
  Client client(clientOf(*b));
  EXPECT_TRUE(client.compile(request).fromCache);
  ServerStats stats = client.stats();
  EXPECT_EQ(tier(stats, "shared")->hits, 1u);
  EXPECT_EQ(tier(stats, "shared")->errors, 0u);

  // Without the file: Redis refuses every command; requests still succeed (compiles), and the
  // log says why and what to do, once.
  auto c = on({});
  ASSERT_NE(c, nullptr);
  Client third(clientOf(*c));
  EXPECT_FALSE(third.compile(request).fromCache);
  ServerStats cStats = third.stats();
  EXPECT_FALSE(tier(cStats, "shared")->available);
  EXPECT_GE(tier(cStats, "shared")->errors, 1u);
  std::string log = c->log();
  EXPECT_NE(log.find("shared cache unavailable"), std::string::npos) << log;
  EXPECT_NE(log.find("NOAUTH"), std::string::npos) << log;
  EXPECT_NE(log.find("--shared-cache-auth-file"), std::string::npos) << log;
  EXPECT_EQ(log.find("fleet-redis-password-42"), std::string::npos) << log;
}

TEST_F(FleetTest, TheSameNewModuleSentToThreeServersAtOnceCompilesOnce) {
  auto gate = CompileGate::create(dir.file("gate.sock"));
  ASSERT_NE(gate, nullptr);
  std::vector<std::unique_ptr<DaemonProcess>> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(server(gate->daemonArgs()));
    ASSERT_NE(servers.back(), nullptr);
  }
  CompileRequest request = freshModule(6, "once.ll");
  std::vector<std::future<CompiledObject>> answers;
  for (auto& s : servers)
    answers.push_back(std::async(
        std::launch::async, [&s, request]() { return Client(clientOf(*s)).compile(request); }));
  // One server holds the lease and its compile waits at the gate; the other two wait for its
  // lease (and would compile too without it).
  ASSERT_TRUE(gate->waitArrival().has_value());
  uint64_t waiting = 0;
  for (unsigned poll = 0; poll < MAX_POLLS && waiting < 2; ++poll) {
    waiting = 0;
    for (auto& s : servers)
      waiting += tier(Client(clientOf(*s)).stats(), "shared")->leaseWaits;
  }
  ASSERT_EQ(waiting, 2u);
  EXPECT_FALSE(gate->arrivalPending());
  gate->open();

  uint64_t compiled = 0, fromCache = 0;
  std::string object;
  for (auto& answer : answers) {
    CompiledObject o = answer.get();
    fromCache += o.fromCache ? 1 : 0;
    if (object.empty())
      object = o.object;
    EXPECT_EQ(o.object, object);
  }
  for (auto& s : servers)
    compiled += Client(clientOf(*s)).stats().compiles;
  EXPECT_EQ(compiled, 1u);
  EXPECT_EQ(fromCache, 2u);
}

TEST_F(FleetTest, ALeaseWhoseHolderDiedExpiresAndAnotherServerCompiles) {
  auto gate = CompileGate::create(dir.file("gate.sock"));
  ASSERT_NE(gate, nullptr);
  std::vector<std::string> held = gate->daemonArgs();
  // A TTL long enough that the other server surely asks while the dead holder's lease is still
  // there (it must wait, then see the lease expire), short enough for a test.
  held.insert(held.end(), {"--shared-cache-lease-ttl", "3s"});
  auto holder = server(held);
  auto other = server({"--shared-cache-lease-ttl", "3s"});
  ASSERT_TRUE(holder && other);
  CompileRequest request = freshModule(3, "orphan.ll");
  DaemonProcess* holding = holder.get();
  auto lost = std::async(std::launch::async, [holding, request]() {
    try {
      Client(clientOf(*holding)).compile(request);
    } catch (const Error&) {
    }
  });
  ASSERT_TRUE(gate->waitArrival().has_value());  // the holder compiles, leased
  holder->kill();                                // and dies holding the lease
  lost.get();
  // The other server waits for the lease, sees it expire, and compiles itself.
  Client client(clientOf(*other));
  CompiledObject o = client.compile(request);
  EXPECT_FALSE(o.fromCache);
  ServerStats stats = client.stats();
  EXPECT_EQ(stats.compiles, 1u);
  EXPECT_EQ(tier(stats, "shared")->leaseWaits, 1u);
}

TEST_F(FleetTest, DamagedAndUnsignedValuesAreRefusedCountedAndRecompiled) {
  auto a = server();
  auto b = server();
  ASSERT_TRUE(a && b);
  CompileRequest damaged = freshModule(4, "damaged.ll");
  CompileRequest unsigned_ = freshModule(5, "unsigned.ll");
  Client onA(clientOf(*a));
  CompiledObject d = onA.compile(damaged);
  CompiledObject u = onA.compile(unsigned_);
  ASSERT_TRUE(waitStored(*a, 2));

  // A byte flipped in the stored value; and the other value replaced by one a writer without
  // the secret made: another rjitd's envelope under another key file.
  std::string key = "rjitd:v1:" + d.key;
  RedisReply value = redis->command({"GET", key});
  ASSERT_EQ(value.kind, RedisReply::Kind::String);
  value.text[value.text.size() / 2] ^= 0x01;
  ASSERT_EQ(redis->command({"SET", key, value.text}).kind, RedisReply::Kind::Status);
  {
    std::string otherKey = dir.file("other.key");
    writeFile(otherKey, "not-the-fleet-secret-0123456789\n");
    ASSERT_EQ(::chmod(otherKey.c_str(), 0600), 0);
    DaemonOptions options;
    options.extraArgs = {"--shared-cache", redis->address(), "--shared-cache-key-file", otherKey};
    auto forger = DaemonProcess::start(options);
    ASSERT_NE(forger, nullptr);
    RedisReply good = redis->command({"GET", "rjitd:v1:" + u.key});
    ASSERT_EQ(redis->command({"DEL", "rjitd:v1:" + u.key}).integer, 1);
    Client(clientOf(*forger)).compile(unsigned_);  // writes its own, signed with its key
    ASSERT_TRUE(waitStored(*forger, 1));
  }

  Client onB(clientOf(*b));
  EXPECT_FALSE(onB.compile(damaged).fromCache);
  EXPECT_FALSE(onB.compile(unsigned_).fromCache);
  ServerStats stats = onB.stats();
  EXPECT_EQ(stats.compiles, 2u);
  EXPECT_EQ(tier(stats, "shared")->rejected, 2u);
  EXPECT_EQ(tier(stats, "shared")->hits, 0u);
}

TEST_F(FleetTest, ReadOnlyServerUsesButNeverWritesTheSharedTier) {
  auto a = server();
  auto reader = server({"--shared-cache-read-only"});
  ASSERT_TRUE(a && reader);
  CompileRequest fromA = freshModule(3, "a.ll");
  Client(clientOf(*a)).compile(fromA);
  ASSERT_TRUE(waitStored(*a, 1));
  Client client(clientOf(*reader));
  EXPECT_TRUE(client.compile(fromA).fromCache);
  CompiledObject own = client.compile(freshModule(3, "reader.ll"));
  EXPECT_FALSE(own.fromCache);
  EXPECT_EQ(redis->command({"EXISTS", "rjitd:v1:" + own.key}).integer, 0);
  EXPECT_EQ(tier(client.stats(), "shared")->stored, 0u);
}

TEST_F(FleetTest, StoppedOrHungRedisCostsMissesNotRequestsAndIsUsedAgainWhenBack) {
  auto a = server();
  ASSERT_NE(a, nullptr);
  Client client(clientOf(*a));
  client.compile(freshModule(2, "before.ll"));

  redis->pause();  // hung: accepts nothing, answers nothing (SIGSTOP)
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(client.compile(freshModule(2, "hung" + std::to_string(i) + ".ll")).fromCache);
  redis->resume();
  redis->stop();  // gone: connections refused
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(client.compile(freshModule(2, "down" + std::to_string(i) + ".ll")).fromCache);
  ServerStats stats = client.stats();
  EXPECT_GE(tier(stats, "shared")->errors, 2u);

  ASSERT_TRUE(redis->restart());
  // Back: once the backoff (at most 10 s) has passed, the next request's calls reach Redis
  // again and its object is written. Each iteration is a compile; bounded.
  uint64_t stored = tier(client.stats(), "shared")->stored;
  bool written = false;
  for (unsigned i = 0; i < MAX_POLLS && !written; ++i) {
    client.compile(freshModule(1, "retry" + std::to_string(i) + ".ll"));
    written = tier(client.stats(), "shared")->stored > stored;
  }
  EXPECT_TRUE(written);
  EXPECT_TRUE(tier(client.stats(), "shared")->available);
}

TEST_F(FleetTest, RestartWithAWarmDiskServesHitsWithoutRedis) {
  DaemonOptions options;
  options.mode = DaemonMode::HeldSocket;
  options.extraArgs = {"--shared-cache", redis->address(), "--shared-cache-key-file", keyFile};
  auto a = DaemonProcess::start(options);
  ASSERT_NE(a, nullptr);
  CompileRequest request = freshModule(4, "warm.ll");
  Client(clientOf(*a)).compile(request);
  a->stop();
  redis->stop();
  ASSERT_TRUE(a->startAgain());
  Client client(clientOf(*a));
  EXPECT_TRUE(client.compile(request).fromCache);
  ServerStats stats = client.stats();
  EXPECT_EQ(stats.compiles, 0u);
  EXPECT_EQ(tier(stats, "disk")->hits, 1u);
}

}  // namespace
}  // namespace rjit::test
