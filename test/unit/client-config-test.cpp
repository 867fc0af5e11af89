// SPDX-License-Identifier: MIT
// Tests for src/client/client-config: options first, then the environment, then the defaults;
// bad values fail as Configuration errors naming what was wrong.
#include "client-config.h"

#include <cstdlib>
#include <gtest/gtest.h>
#include <map>
#include <optional>
#include <string>

namespace rjit::detail {
namespace {

const char* const VARIABLES[] = {"RJIT_SERVER",           "RJIT_SERVER_POLICY",
                                 "RJIT_TIMEOUT_MS",       "RJIT_CONNECT_WAIT_MS",
                                 "RJIT_HASH_FIRST_BYTES", "RJIT_MEMORY_QUOTA"};

/// Each test starts with the client's variables unset and leaves them as it found them.
class ClientConfigTest : public ::testing::Test {
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

  /// The kind of the error resolving `options` fails with; nullopt (and a test failure) when it
  /// succeeds.
  static std::optional<ErrorKind> failureKind(const ClientOptions& options) {
    Result<Config> result = resolveConfig(options);
    if (Error* error = failed(result))
      return error->kind();
    ADD_FAILURE() << "resolveConfig succeeded";
    return std::nullopt;
  }

  std::map<std::string, std::string> saved;
};

TEST_F(ClientConfigTest, DefaultsWhenNothingIsSet) {
  Config config = resolvedOk({});
  ASSERT_FALSE(config.endpoints.empty());
  // The system socket is always tried last (alone for root).
  EXPECT_EQ(config.endpoints.back().kind, rjitd::Endpoint::Kind::Unix);
  EXPECT_EQ(config.endpoints.back().path, "/run/rjitd/rjitd.sock");
  EXPECT_EQ(config.timeout.count(), 60000);
  EXPECT_EQ(config.connectWait, DEFAULT_CONNECT_WAIT);
  EXPECT_EQ(config.hashFirstBytes, 64u * 1024);
  EXPECT_EQ(config.memoryQuota, DEFAULT_MEMORY_QUOTA);
}

TEST_F(ClientConfigTest, OptionsComeBeforeTheEnvironment) {
  ::setenv("RJIT_SERVER", "unix:/tmp/from-env.sock", 1);
  ::setenv("RJIT_TIMEOUT_MS", "1234", 1);
  ::setenv("RJIT_CONNECT_WAIT_MS", "4321", 1);
  ::setenv("RJIT_HASH_FIRST_BYTES", "99", 1);
  ::setenv("RJIT_MEMORY_QUOTA", "1048576", 1);
  ClientOptions options;
  options.servers = {"unix:/tmp/a.sock,tcp:127.0.0.1:7411", "unix:/tmp/b.sock"};
  options.timeout = std::chrono::milliseconds(500);
  options.connectWait = std::chrono::milliseconds(0);
  options.hashFirstBytes = 7;
  options.memoryQuota = 2 << 20;
  options.clientName = "config-test";
  Config config = resolvedOk(options);
  ASSERT_EQ(config.endpoints.size(), 3u);
  EXPECT_EQ(config.endpoints[0].path, "/tmp/a.sock");
  EXPECT_EQ(config.endpoints[1].kind, rjitd::Endpoint::Kind::Tcp);
  EXPECT_EQ(config.endpoints[1].port, 7411);
  EXPECT_EQ(config.endpoints[2].path, "/tmp/b.sock");
  EXPECT_EQ(config.timeout.count(), 500);
  EXPECT_EQ(config.connectWait.count(), 0);
  EXPECT_EQ(config.hashFirstBytes, 7u);
  EXPECT_EQ(config.memoryQuota, 2u << 20);
  EXPECT_EQ(config.clientName, "config-test");
}

TEST_F(ClientConfigTest, EnvironmentComesBeforeTheDefaults) {
  ::setenv("RJIT_SERVER", "unix:/tmp/x.sock,unix:/tmp/y.sock", 1);
  ::setenv("RJIT_TIMEOUT_MS", "1234", 1);
  ::setenv("RJIT_CONNECT_WAIT_MS", "0", 1);
  ::setenv("RJIT_HASH_FIRST_BYTES", "0", 1);
  ::setenv("RJIT_MEMORY_QUOTA", "1048576", 1);
  Config config = resolvedOk({});
  ASSERT_EQ(config.endpoints.size(), 2u);
  EXPECT_EQ(config.endpoints[1].path, "/tmp/y.sock");
  EXPECT_EQ(config.timeout.count(), 1234);
  EXPECT_EQ(config.connectWait.count(), 0);
  EXPECT_EQ(config.hashFirstBytes, 0u);
  EXPECT_EQ(config.memoryQuota, 1048576u);
}

TEST_F(ClientConfigTest, EmptyVariablesCountAsUnset) {
  for (const char* name : VARIABLES)
    ::setenv(name, "", 1);
  Config config = resolvedOk({});
  EXPECT_EQ(config.timeout.count(), 60000);
  EXPECT_EQ(config.memoryQuota, DEFAULT_MEMORY_QUOTA);
}

TEST_F(ClientConfigTest, BadOptionsAreConfigurationErrors) {
  ClientOptions badServer;
  badServer.servers = {"ftp:nowhere"};
  EXPECT_EQ(failureKind(badServer), ErrorKind::Configuration);
  ClientOptions negative;
  negative.timeout = std::chrono::milliseconds(-1);
  EXPECT_EQ(failureKind(negative), ErrorKind::Configuration);
  ClientOptions tooLong;
  tooLong.timeout = std::chrono::milliseconds(MAX_TIMEOUT_MS + 1);
  EXPECT_EQ(failureKind(tooLong), ErrorKind::Configuration);
  ClientOptions negativeWait;
  negativeWait.connectWait = std::chrono::milliseconds(-1);
  EXPECT_EQ(failureKind(negativeWait), ErrorKind::Configuration);
  ClientOptions tinyQuota;
  tinyQuota.memoryQuota = 4096;
  EXPECT_EQ(failureKind(tinyQuota), ErrorKind::Configuration);
}

TEST_F(ClientConfigTest, BadVariablesAreConfigurationErrors) {
  const std::pair<const char*, const char*> bad[] = {
      {"RJIT_SERVER", "unix:/a,,unix:/b"}, {"RJIT_TIMEOUT_MS", "0"},
      {"RJIT_TIMEOUT_MS", "12ms"},         {"RJIT_TIMEOUT_MS", "99999999999"},
      {"RJIT_HASH_FIRST_BYTES", "-1"},     {"RJIT_MEMORY_QUOTA", "1024"},
      {"RJIT_MEMORY_QUOTA", "lots"},       {"RJIT_CONNECT_WAIT_MS", "2s"},
      {"RJIT_CONNECT_WAIT_MS", "-5"},      {"RJIT_CONNECT_WAIT_MS", "99999999999"},
  };
  for (auto [name, value] : bad) {
    SCOPED_TRACE(std::string(name) + "=" + value);
    ::setenv(name, value, 1);
    Result<Config> result = resolveConfig({});
    Error* error = failed(result);
    ASSERT_NE(error, nullptr);
    EXPECT_EQ(error->kind(), ErrorKind::Configuration);
    ::unsetenv(name);
  }
}

}  // namespace
}  // namespace rjit::detail
