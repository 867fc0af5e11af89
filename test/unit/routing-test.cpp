// SPDX-License-Identifier: MIT
// Tests for src/client/routing and the routing part of client-config: the weighted rendezvous
// ranking (deterministic, even, weighted, moving only a joining or leaving server's keys), the
// ordered policy, and the RJIT_SERVER weight and RJIT_SERVER_POLICY syntax.
#include "routing.h"

#include "client-config.h"
#include "connection.h"

#include <array>
#include <cstdlib>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace rjit::detail {
namespace {

constexpr size_t KEYS = 3000;

rjitd::Endpoint unixEndpoint(std::string path) {
  rjitd::Endpoint endpoint;
  endpoint.kind = rjitd::Endpoint::Kind::Unix;
  endpoint.path = std::move(path);
  return endpoint;
}

rjitd::Endpoint tcpEndpoint(std::string host, uint16_t port) {
  rjitd::Endpoint endpoint;
  endpoint.kind = rjitd::Endpoint::Kind::Tcp;
  endpoint.host = std::move(host);
  endpoint.port = port;
  return endpoint;
}

/// The routing key of a distinct module per `i`.
RoutingKey keyOf(size_t i) {
  CompileRequest request;
  request.module = "; module " + std::to_string(i) + "\ndefine i32 @f() { ret i32 0 }\n";
  return routingKey(request);
}

std::vector<rjitd::Endpoint> servers(std::initializer_list<const char*> names) {
  std::vector<rjitd::Endpoint> out;
  for (const char* name : names)
    out.push_back(unixEndpoint(std::string("/run/") + name + ".sock"));
  return out;
}

/// How many of KEYS keys each server ranks first.
std::vector<size_t> firstCounts(const std::vector<rjitd::Endpoint>& endpoints,
                                const std::vector<uint32_t>& weights) {
  std::vector<size_t> counts(endpoints.size(), 0);
  for (size_t i = 0; i < KEYS; ++i)
    ++counts[rankServers(keyOf(i), endpoints, weights).front()];
  return counts;
}

/// The address each of KEYS keys is ranked first at.
std::vector<std::string> winners(const std::vector<rjitd::Endpoint>& endpoints) {
  std::vector<std::string> out;
  for (size_t i = 0; i < KEYS; ++i)
    out.push_back(endpoints[rankServers(keyOf(i), endpoints, {}).front()].text());
  return out;
}

TEST(RoutingTest, RankingIsDeterministicAndAPermutation) {
  std::vector<rjitd::Endpoint> endpoints = servers({"a", "b", "c", "d"});
  for (size_t i = 0; i < 50; ++i) {
    std::vector<size_t> first = rankServers(keyOf(i), endpoints, {1, 2, 1, 3});
    EXPECT_EQ(first, rankServers(keyOf(i), endpoints, {1, 2, 1, 3}));
    std::vector<size_t> sorted = first;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, configuredOrder(4));
  }
  EXPECT_EQ(rendezvousScore(keyOf(7), "unix:/run/a.sock", 1),
            rendezvousScore(keyOf(7), "unix:/run/a.sock", 1));
}

TEST(RoutingTest, RoutingKeyCoversWhatTheClientKnows) {
  CompileRequest request;
  request.module = "define i32 @f() { ret i32 0 }\n";
  RoutingKey base = routingKey(request);
  EXPECT_EQ(base, routingKey(request));
  CompileRequest other = request;
  other.optLevel = 3;
  EXPECT_NE(routingKey(other), base);
  other = request;
  other.target = "aarch64";
  EXPECT_NE(routingKey(other), base);
  other = request;
  other.cpu = "znver3";
  EXPECT_NE(routingKey(other), base);
  other = request;
  other.features = "+avx2";
  EXPECT_NE(routingKey(other), base);
  other = request;
  other.moduleName = "another name";  // not part of what the server compiles
  EXPECT_EQ(routingKey(other), base);
}

TEST(RoutingTest, EqualServersShareTheKeysEvenly) {
  std::vector<size_t> counts = firstCounts(servers({"a", "b", "c"}), {});
  // 1000 each expected; the standard deviation is about 26, so 150 is far outside chance.
  for (size_t count : counts) {
    EXPECT_GT(count, 850u);
    EXPECT_LT(count, 1150u);
  }
}

TEST(RoutingTest, WeightTwoGetsAboutTwiceTheShare) {
  std::vector<size_t> counts = firstCounts(servers({"a", "b", "c"}), {2, 1, 1});
  // Expected 1500, 750, 750.
  EXPECT_GT(counts[0], 1350u);
  EXPECT_LT(counts[0], 1650u);
  for (size_t i : {1, 2}) {
    EXPECT_GT(counts[i], 600u);
    EXPECT_LT(counts[i], 900u);
  }
}

TEST(RoutingTest, RemovingAServerMovesOnlyItsKeys) {
  std::vector<std::string> before = winners(servers({"a", "b", "c"}));
  std::vector<std::string> after = winners(servers({"a", "c"}));
  size_t moved = 0;
  for (size_t i = 0; i < KEYS; ++i) {
    if (before[i] == "unix:/run/b.sock")
      ++moved;
    else
      EXPECT_EQ(after[i], before[i]) << "key " << i << " moved off a server that stayed";
  }
  EXPECT_GT(moved, 0u);
}

TEST(RoutingTest, RemovingAServerKeepsTheOthersFailoverOrder) {
  std::vector<rjitd::Endpoint> three = servers({"a", "b", "c"});
  std::vector<rjitd::Endpoint> two = servers({"a", "c"});
  for (size_t i = 0; i < 200; ++i) {
    std::vector<std::string> expected, got;
    for (size_t index : rankServers(keyOf(i), three, {}))
      if (three[index].path != "/run/b.sock")
        expected.push_back(three[index].text());
    for (size_t index : rankServers(keyOf(i), two, {}))
      got.push_back(two[index].text());
    EXPECT_EQ(got, expected);
  }
}

TEST(RoutingTest, AddingAServerMovesOnlyKeysToIt) {
  std::vector<std::string> before = winners(servers({"a", "b", "c"}));
  std::vector<std::string> after = winners(servers({"a", "b", "c", "d"}));
  size_t moved = 0;
  for (size_t i = 0; i < KEYS; ++i) {
    if (after[i] == before[i])
      continue;
    EXPECT_EQ(after[i], "unix:/run/d.sock") << "key " << i << " moved between old servers";
    ++moved;
  }
  // About a quarter: 750 expected.
  EXPECT_GT(moved, 600u);
  EXPECT_LT(moved, 900u);
}

TEST(RoutingTest, ConfiguredOrderAndUnixFirst) {
  EXPECT_EQ(configuredOrder(3), (std::vector<size_t>{0, 1, 2}));
  std::vector<rjitd::Endpoint> mixed = {tcpEndpoint("h", 1), unixEndpoint("/a.sock"),
                                        tcpEndpoint("h", 2), unixEndpoint("/b.sock")};
  EXPECT_EQ(unixFirst({2, 3, 0, 1}, mixed), (std::vector<size_t>{3, 1, 2, 0}));
}

TEST(RoutingTest, ParsesWeights) {
  auto parsed = parseServerList("unix:/a.sock;weight=2, tcp:127.0.0.1:7411 ,/b.sock;weight=1000");
  ASSERT_TRUE(std::holds_alternative<std::vector<WeightedEndpoint>>(parsed))
      << std::get<std::string>(parsed);
  auto& list = std::get<std::vector<WeightedEndpoint>>(parsed);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].endpoint.text(), "unix:/a.sock");
  EXPECT_EQ(list[0].weight, 2u);
  EXPECT_EQ(list[1].endpoint.text(), "tcp:127.0.0.1:7411");
  EXPECT_EQ(list[1].weight, DEFAULT_SERVER_WEIGHT);
  EXPECT_EQ(list[2].endpoint.text(), "unix:/b.sock");
  EXPECT_EQ(list[2].weight, 1000u);
  // A path with other semicolons is still just a path.
  auto plain = parseServerList("unix:/odd;name.sock");
  ASSERT_TRUE(std::holds_alternative<std::vector<WeightedEndpoint>>(plain));
  EXPECT_EQ(std::get<std::vector<WeightedEndpoint>>(plain)[0].endpoint.path, "/odd;name.sock");
}

TEST(RoutingTest, RejectsBadWeights) {
  for (const char* text :
       {"unix:/a.sock;weight=0", "unix:/a.sock;weight=-1", "unix:/a.sock;weight=two",
        "unix:/a.sock;weight=", "unix:/a.sock;weight=1001", "unix:/a.sock;weight=2.5",
        "unix:/a.sock;weight=99999999999999999999999", "tcp:h:1;weight=1x", ";weight=2"}) {
    auto parsed = parseServerList(text);
    EXPECT_TRUE(std::holds_alternative<std::string>(parsed)) << text;
  }
}

TEST(RoutingTest, ParsesPolicies) {
  EXPECT_EQ(std::get<RoutingPolicy>(parseRoutingPolicy("ordered")), RoutingPolicy::Ordered);
  EXPECT_EQ(std::get<RoutingPolicy>(parseRoutingPolicy("key")), RoutingPolicy::Key);
  for (const char* text : {"", "Key", "random", "ordered "})
    EXPECT_TRUE(std::holds_alternative<std::string>(parseRoutingPolicy(text))) << text;
}

TEST(RoutingTest, ConnectBudgetSharesTheDeadline) {
  Config config;
  config.endpoints = servers({"a"});
  config.timeout = std::chrono::milliseconds(60000);
  EXPECT_EQ(connectBudget(config).count(), 0);  // one server: the call's deadline
  config.endpoints = servers({"a", "b", "c"});
  EXPECT_EQ(connectBudget(config), MAX_CONNECT_BUDGET);
  config.timeout = std::chrono::milliseconds(3000);
  EXPECT_EQ(connectBudget(config).count(), 1000);
  config.timeout = std::chrono::milliseconds(1);
  EXPECT_EQ(connectBudget(config).count(), 1);
}

// --- configuration ------------------------------------------------------------------------

const char* const VARIABLES[] = {"RJIT_SERVER", "RJIT_SERVER_POLICY"};

/// Each test starts with the routing variables unset and leaves them as it found them.
class RoutingConfigTest : public ::testing::Test {
protected:
  void SetUp() override {
    for (const char* name : VARIABLES) {
      if (const char* value = std::getenv(name))
        saved[name] = value;
      ::unsetenv(name);
    }
  }
  void TearDown() override {
    for (const char* name : VARIABLES) {
      auto it = saved.find(name);
      if (it != saved.end())
        ::setenv(name, it->second.c_str(), 1);
      else
        ::unsetenv(name);
    }
  }

  static Config resolvedOk(const ClientOptions& options) {
    Result<Config> result = resolveConfig(options);
    if (Error* error = failed(result)) {
      ADD_FAILURE() << "resolveConfig failed: " << error->what();
      return {};
    }
    return std::get<Config>(std::move(result));
  }

  /// The error resolving `options` fails with; nullopt (and a test failure) when it succeeds.
  static std::optional<Error> failure(const ClientOptions& options) {
    Result<Config> result = resolveConfig(options);
    if (Error* error = failed(result))
      return *error;
    ADD_FAILURE() << "resolveConfig succeeded";
    return std::nullopt;
  }

  std::map<std::string, std::string> saved;
};

TEST_F(RoutingConfigTest, SeveralServersRouteByKeyByDefault) {
  ::setenv("RJIT_SERVER", "unix:/a.sock;weight=3,unix:/b.sock", 1);
  Config config = resolvedOk({});
  EXPECT_EQ(config.policy, RoutingPolicy::Key);
  EXPECT_EQ(config.weights, (std::vector<uint32_t>{3, 1}));
  ASSERT_EQ(config.endpoints.size(), 2u);
  EXPECT_EQ(config.endpoints[0].path, "/a.sock");
}

TEST_F(RoutingConfigTest, OneServerAndTheDefaultSocketsAreOrdered) {
  ::setenv("RJIT_SERVER", "unix:/a.sock", 1);
  EXPECT_EQ(resolvedOk({}).policy, RoutingPolicy::Ordered);
  ::unsetenv("RJIT_SERVER");
  Config defaults = resolvedOk({});
  EXPECT_EQ(defaults.policy, RoutingPolicy::Ordered);
  EXPECT_EQ(defaults.weights.size(), defaults.endpoints.size());
}

TEST_F(RoutingConfigTest, PolicyFromTheEnvironmentAndTheOptions) {
  ::setenv("RJIT_SERVER", "unix:/a.sock,unix:/b.sock", 1);
  ::setenv("RJIT_SERVER_POLICY", "ordered", 1);
  EXPECT_EQ(resolvedOk({}).policy, RoutingPolicy::Ordered);
  ClientOptions options;
  options.serverPolicy = ServerPolicy::Key;
  EXPECT_EQ(resolvedOk(options).policy, RoutingPolicy::Key);
  ::setenv("RJIT_SERVER_POLICY", "key", 1);
  options.serverPolicy = ServerPolicy::Ordered;
  EXPECT_EQ(resolvedOk(options).policy, RoutingPolicy::Ordered);
  options.serverPolicy = ServerPolicy::Default;
  EXPECT_EQ(resolvedOk(options).policy, RoutingPolicy::Key);
}

TEST_F(RoutingConfigTest, ServersOptionTakesWeights) {
  ClientOptions options;
  options.servers = {"unix:/a.sock;weight=2,unix:/b.sock", "tcp:127.0.0.1:1;weight=5"};
  Config config = resolvedOk(options);
  EXPECT_EQ(config.weights, (std::vector<uint32_t>{2, 1, 5}));
  EXPECT_EQ(config.policy, RoutingPolicy::Key);
  options.servers = {"unix:/a.sock;weight=0"};
  std::optional<Error> error = failure(options);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::Configuration);
}

TEST_F(RoutingConfigTest, BadWeightNamesTheVariableTheEntryAndTheForm) {
  ::setenv("RJIT_SERVER", "unix:/a.sock,unix:/b.sock;weight=0", 1);
  std::optional<Error> error = failure({});
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::Configuration);
  // The message is what a user reads to fix the variable: it must say which and how.
  EXPECT_THAT(error->what(), ::testing::HasSubstr("RJIT_SERVER"));
  EXPECT_THAT(error->what(), ::testing::HasSubstr("'unix:/b.sock;weight=0'"));
  EXPECT_THAT(error->what(), ::testing::HasSubstr("ADDRESS;weight=N"));
}

TEST_F(RoutingConfigTest, BadPolicyNamesTheVariableAndTheValues) {
  ::setenv("RJIT_SERVER", "unix:/a.sock,unix:/b.sock", 1);
  ::setenv("RJIT_SERVER_POLICY", "round-robin", 1);
  std::optional<Error> error = failure({});
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::Configuration);
  EXPECT_THAT(error->what(), ::testing::HasSubstr("RJIT_SERVER_POLICY"));
  EXPECT_THAT(error->what(), ::testing::HasSubstr("'ordered'"));
  EXPECT_THAT(error->what(), ::testing::HasSubstr("'key'"));
}

}  // namespace
}  // namespace rjit::detail
