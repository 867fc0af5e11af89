// SPDX-License-Identifier: MIT
// Routing by key across three real rjitd: one module goes to one server, different modules
// spread, and a call fails over past a hung server (stopped with SIGSTOP, or a socket that
// listens and never accepts) and past a dead one, along the key's ranking and within its
// deadline. Which server served is read from each server's own stats, never from timings.
#include <array>
#include <csignal>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>

#include <kj/io.h>

#include "fixture.h"

namespace rjit::test {
namespace {

/// The deadline of the clients that meet a hung server: with three servers each address gets a
/// third of it (at most 5 s) to connect and answer the handshake, which leaves a compile on
/// the next server far more time than it needs.
constexpr std::chrono::milliseconds HUNG_DEADLINE{12'000};

/// Three standalone rjitd; the clients route by key among them.
class RoutingTest : public ::testing::Test {
protected:
  void SetUp() override {
    for (auto& daemon : daemons) {
      daemon = DaemonProcess::start(DaemonOptions{});
      ASSERT_NE(daemon, nullptr);
    }
  }

  void TearDown() override {
    for (auto& daemon : daemons)
      if (daemon != nullptr && daemon->running()) {
        ::kill(daemon->pid(), SIGCONT);  // a test may have stopped it
        EXPECT_TRUE(daemon->stop().exitedWith(0)) << daemon->log();
      }
  }

  /// A client of `servers` (the three daemons' endpoints when empty), routing by key.
  ClientOptions options(std::vector<std::string> servers = {}) const {
    ClientOptions out;
    if (servers.empty())
      for (const auto& daemon : daemons)
        servers.push_back(daemon->endpoint());
    out.servers = std::move(servers);
    out.serverPolicy = ServerPolicy::Key;
    out.clientName = "routing-test";
    return out;
  }

  /// Server `i`'s stats, through a client of that server alone.
  ServerStats statsOf(size_t i) const {
    ClientOptions single;
    single.servers = {daemons[i]->endpoint()};
    return Client(single).stats();
  }

  /// Indexes of the servers that ran at least one compile.
  std::vector<size_t> compiledOn() const {
    std::vector<size_t> out;
    for (size_t i = 0; i < daemons.size(); ++i)
      if (daemons[i] != nullptr && daemons[i]->running() && statsOf(i).compiles > 0)
        out.push_back(i);
    return out;
  }

  static CompileRequest requestFor(std::string module) {
    CompileRequest request;
    request.module = std::move(module);
    request.moduleName = "answer.ll";
    request.optLevel = 1;
    return request;
  }

  std::array<std::unique_ptr<DaemonProcess>, 3> daemons;
};

TEST_F(RoutingTest, OneModuleGoesToOneServer) {
  Client client(options());
  CompileRequest request = requestFor(tinyModule());
  for (int i = 0; i < 10; ++i)
    client.compile(request);
  size_t serving = daemons.size();
  for (size_t i = 0; i < daemons.size(); ++i) {
    ServerStats stats = statsOf(i);
    if (stats.requests == 0) {
      EXPECT_EQ(stats.compiles, 0u);
      continue;
    }
    EXPECT_EQ(serving, daemons.size()) << "servers " << serving << " and " << i << " both served";
    serving = i;
    EXPECT_EQ(stats.requests, 10u);
    EXPECT_EQ(stats.compiles, 1u);  // then nine cache hits
  }
  EXPECT_LT(serving, daemons.size()) << "no server served the module";
}

TEST_F(RoutingTest, DifferentModulesSpreadOverTheServers) {
  Client client(options());
  // 20 fresh modules all on one of three servers has a probability of 3^-19.
  for (int i = 0; i < 20; ++i)
    client.compile(requestFor(tinyModule()));
  EXPECT_GT(compiledOn().size(), 1u);
  uint64_t compiles = 0;
  for (size_t i = 0; i < daemons.size(); ++i)
    compiles += statsOf(i).compiles;
  EXPECT_EQ(compiles, 20u);  // each module once, on one server
}

TEST_F(RoutingTest, FailsOverPastAHungServerAlongTheRanking) {
  CompileRequest request = requestFor(tinyModule());
  Client(options()).compile(request);
  std::vector<size_t> first = compiledOn();
  ASSERT_EQ(first.size(), 1u);
  size_t top = first[0];

  // The top-ranked server hangs: its listening socket still takes connections (the kernel
  // queues them) but nothing answers the handshake.
  ASSERT_EQ(::kill(daemons[top]->pid(), SIGSTOP), 0);
  ClientOptions hungFirst = options();
  hungFirst.timeout = HUNG_DEADLINE;
  CompiledObject object = Client(hungFirst).compile(request);
  EXPECT_FALSE(object.fromCache);  // compiled anew on the next server

  // The next in the ranking is the first of the others', so a client of those two alone sends
  // the module to the server that just compiled it.
  std::vector<std::string> others;
  for (size_t i = 0; i < daemons.size(); ++i)
    if (i != top)
      others.push_back(daemons[i]->endpoint());
  CompiledObject again = Client(options(others)).compile(request);
  EXPECT_TRUE(again.fromCache);
  uint64_t compilesOnOthers = 0;
  for (size_t i = 0; i < daemons.size(); ++i)
    if (i != top)
      compilesOnOthers += statsOf(i).compiles;
  EXPECT_EQ(compilesOnOthers, 1u);
  ::kill(daemons[top]->pid(), SIGCONT);
}

TEST_F(RoutingTest, FailsOverPastADeadServer) {
  CompileRequest request = requestFor(tinyModule());
  Client client(options());
  client.compile(request);
  std::vector<size_t> first = compiledOn();
  ASSERT_EQ(first.size(), 1u);
  size_t top = first[0];
  EXPECT_TRUE(daemons[top]->stop().exitedWith(0));

  // The same client: its connection to the dead server broke and the server is gone.
  CompiledObject object = client.compile(request);
  EXPECT_FALSE(object.fromCache);
  std::vector<size_t> now = compiledOn();
  ASSERT_EQ(now.size(), 1u);
  EXPECT_NE(now[0], top);
}

TEST_F(RoutingTest, OrderedPolicyFailsOverPastASocketThatNeverAccepts) {
  // A listening socket nobody accepts on: connects succeed (the kernel queues them) and no
  // handshake is ever answered.
  TempDir dir;
  std::string path = dir.file("hung.sock");
  kj::AutoCloseFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(listener.get(), 0) << std::strerror(errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  ASSERT_EQ(::listen(listener.get(), 16), 0) << std::strerror(errno);

  ClientOptions ordered = options({"unix:" + path, daemons[1]->endpoint(), daemons[2]->endpoint()});
  ordered.serverPolicy = ServerPolicy::Ordered;
  ordered.timeout = HUNG_DEADLINE;
  Client client(ordered);
  for (int i = 0; i < 3; ++i)
    client.compile(requestFor(tinyModule()));
  // Ordered: everything on the first server that answers.
  EXPECT_EQ(statsOf(1).compiles, 3u);
  EXPECT_EQ(statsOf(2).compiles, 0u);
}

TEST_F(RoutingTest, LoadsGoToUnixSocketsFirst) {
  // A fourth server reached over TCP, ranked with the two Unix ones: loads pass the image's
  // file descriptor, which only a Unix socket carries, so they go to a Unix server by key.
  DaemonOptions tcpOptions;
  tcpOptions.tcpPort = freeTcpPort();
  std::unique_ptr<DaemonProcess> tcp = DaemonProcess::start(tcpOptions);
  ASSERT_NE(tcp, nullptr);
  Client client(options({tcp->tcpEndpoint(), daemons[0]->endpoint(), daemons[1]->endpoint()}));
  // Without the preference, 10 loads would all miss the TCP server with a probability of
  // (2/3)^10, under 2 %.
  for (int i = 0; i < 10; ++i) {
    Module module = client.load(requestFor(tinyModule()));
    EXPECT_EQ(module.lookup<int()>("answer")(), 42);
  }
  ClientOptions overTcp;
  overTcp.servers = {tcp->tcpEndpoint()};
  EXPECT_EQ(Client(overTcp).stats().loads, 0u);
  EXPECT_EQ(statsOf(0).loads + statsOf(1).loads, 10u);
  EXPECT_TRUE(tcp->stop().exitedWith(0));
}

TEST_F(RoutingTest, NoServerAnsweringIsAConnectionError) {
  for (auto& daemon : daemons)
    EXPECT_TRUE(daemon->stop().exitedWith(0));
  Client client(options());
  std::optional<Error> error = catchError([&] { client.compile(requestFor(tinyModule())); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::Connection);
}

}  // namespace
}  // namespace rjit::test
