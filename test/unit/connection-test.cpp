// SPDX-License-Identifier: MIT
// Tests for src/client/connection: failover between addresses, over real Unix sockets, without
// a daemon.
#include "connection.h"

#include "temp-dir.h"

#include <cstring>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <sys/socket.h>
#include <sys/un.h>

namespace rjit::detail {
namespace {

rjitd::Endpoint unixEndpoint(std::string path) {
  rjitd::Endpoint endpoint;
  endpoint.kind = rjitd::Endpoint::Kind::Unix;
  endpoint.path = std::move(path);
  return endpoint;
}

/// Accepts connections on `listener` and closes each at once, unanswered: what a draining rjitd
/// does with a connection it accepted just before it stopped accepting.
kj::Promise<void> acceptAndClose(kj::ConnectionReceiver& listener, unsigned& accepted) {
  return listener.accept().then([&listener, &accepted](kj::Own<kj::AsyncIoStream> stream) {
    ++accepted;
    stream = nullptr;
    return acceptAndClose(listener, accepted);
  });
}

/// A server at `path` that closes every connection unanswered, counting them; served on `io`'s
/// loop while the test waits.
class ClosingServer {
public:
  ClosingServer(kj::AsyncIoContext& io, const std::string& path)
      : listener(io.provider->getNetwork()
                     .parseAddress(kj::str("unix:", path.c_str()))
                     .wait(io.waitScope)
                     ->listen()),
        serving(acceptAndClose(*listener, accepted).eagerlyEvaluate(nullptr)) {}
  unsigned accepted = 0;

private:
  kj::Own<kj::ConnectionReceiver> listener;
  kj::Promise<void> serving;
};

TEST(ConnectorTest, NoReachableAddressIsAConnectionError) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  rjit::test::TempDir dir;
  Config config;
  config.endpoints = {unixEndpoint(dir.file("a.sock")), unixEndpoint(dir.file("b.sock"))};
  config.connectWait = std::chrono::milliseconds(0);  // fail at once
  Connector connector(io, config);
  Connector::ConnectionResult result = connector.connection().wait(io.waitScope);
  Error* error = failed(result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->kind(), ErrorKind::Connection);
  EXPECT_EQ(std::string(error->what()).find("tried again"), std::string::npos) << error->what();
}

TEST(ConnectorTest, MissingSocketsAreTriedAgainForTheConnectWaitThenAConnectionError) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  rjit::test::TempDir dir;
  Config config;
  config.endpoints = {unixEndpoint(dir.file("a.sock"))};
  config.connectWait = std::chrono::milliseconds(100);
  Connector connector(io, config);
  Connector::ConnectionResult result = connector.connection().wait(io.waitScope);
  Error* error = failed(result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->kind(), ErrorKind::Connection);
  std::string message = error->what();
  EXPECT_NE(message.find("no such file or directory"), std::string::npos) << message;
  // (Whether a second round fitted in the 100 ms depends on the machine's speed: not checked
  // here; ARefusingAddressIsTriedAgainUntilItListens checks the retry and its message.)
}

TEST(ConnectorTest, TheWaitEndsBeforeTheCallsDeadline) {
  // A wait longer than the deadline: the connector stops trying in time to hand back the
  // Connection error and its reasons (ClientCore's deadline would otherwise end the call with a
  // bare timeout). Without the cap this would keep trying for a minute.
  kj::AsyncIoContext io = kj::setupAsyncIo();
  rjit::test::TempDir dir;
  Config config;
  config.endpoints = {unixEndpoint(dir.file("a.sock"))};
  config.timeout = std::chrono::milliseconds(300);
  config.connectWait = std::chrono::milliseconds(60000);
  Connector connector(io, config);
  Connector::ConnectionResult result = connector.connection().wait(io.waitScope);
  Error* error = failed(result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->kind(), ErrorKind::Connection);
  EXPECT_NE(std::string(error->what()).find("no such file or directory"), std::string::npos)
      << error->what();
}

TEST(ConnectorTest, ARefusingAddressIsTriedAgainUntilItListens) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  rjit::test::TempDir dir;
  // Bound but not listening: connects are refused (ECONNREFUSED), as while a standalone rjitd
  // restarts and its successor has not called listen() yet.
  std::string path = dir.file("later.sock");
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  ASSERT_GE(fd.get(), 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);

  Config config;
  config.endpoints = {unixEndpoint(path)};
  config.connectWait = std::chrono::milliseconds(60000);  // the test's bound, never reached
  Connector connector(io, config);
  // The first round runs now, before listen(): refused.
  kj::Promise<Connector::ConnectionResult> connecting = connector.connection();
  // Then the address listens (and closes what it accepts, so the search ends with an error
  // that is not worth waiting for): the connector must come back to it.
  unsigned accepted = 0;
  ASSERT_EQ(::listen(fd.get(), 16), 0);
  kj::Own<kj::ConnectionReceiver> listener = io.lowLevelProvider->wrapListenSocketFd(
      kj::mv(fd),
      kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC | kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
  kj::Promise<void> serving = acceptAndClose(*listener, accepted).eagerlyEvaluate(nullptr);
  Connector::ConnectionResult result = connecting.wait(io.waitScope);
  Error* error = failed(result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(accepted, 2u) << error->what();  // a connect and its one retry after the close
  EXPECT_NE(std::string(error->what()).find("tried again for"), std::string::npos) << error->what();
}

TEST(ConnectorTest, AnAddressClosedDuringTheHandshakeIsTriedOnceMoreThenTheNext) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  rjit::test::TempDir dir;
  std::string closing = dir.file("closing.sock");
  ClosingServer server(io, closing);

  Config config;
  config.clientName = "connection-test";
  config.endpoints = {unixEndpoint(closing), unixEndpoint(dir.file("nobody.sock"))};
  config.connectWait = std::chrono::milliseconds(60000);  // a closing server is not waited for
  Connector connector(io, config);
  Connector::ConnectionResult result = connector.connection().wait(io.waitScope);
  Error* error = failed(result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->kind(), ErrorKind::Connection);
  // One retry for the closing server (its successor might have answered), none more.
  EXPECT_EQ(server.accepted, 2u);
}

TEST(ConnectorTest, AConnectInProgressIsSharedByItsCallers) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  rjit::test::TempDir dir;
  std::string closing = dir.file("closing.sock");
  ClosingServer server(io, closing);

  Config config;
  config.endpoints = {unixEndpoint(closing)};
  Connector connector(io, config);
  kj::Promise<Connector::ConnectionResult> first = connector.connection();
  kj::Promise<Connector::ConnectionResult> second = connector.connection();
  Connector::ConnectionResult a = first.wait(io.waitScope);
  Connector::ConnectionResult b = second.wait(io.waitScope);
  ASSERT_NE(failed(a), nullptr);
  ASSERT_NE(failed(b), nullptr);
  EXPECT_EQ(failed(b)->kind(), ErrorKind::Connection);
  EXPECT_EQ(server.accepted, 2u);  // one connect (and its one retry) for both callers
}

}  // namespace
}  // namespace rjit::detail
