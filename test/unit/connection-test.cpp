// SPDX-License-Identifier: MIT
// Tests for src/client/connection: failover between addresses, over real Unix sockets, without
// a daemon.
#include "connection.h"

#include "temp-dir.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>

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
  Connector connector(io, config);
  Connector::ConnectionResult result = connector.connection().wait(io.waitScope);
  Error* error = failed(result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->kind(), ErrorKind::Connection);
}

TEST(ConnectorTest, AnAddressClosedDuringTheHandshakeIsTriedOnceMoreThenTheNext) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  rjit::test::TempDir dir;
  std::string closing = dir.file("closing.sock");
  ClosingServer server(io, closing);

  Config config;
  config.clientName = "connection-test";
  config.endpoints = {unixEndpoint(closing), unixEndpoint(dir.file("nobody.sock"))};
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
