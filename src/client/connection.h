// SPDX-License-Identifier: MIT
// Reaching rjitd: one connection (the socket, the Cap'n Proto RPC system over it, and what the
// handshake said: the Session capability, the server's versions, targets and limits), and the
// Connector that makes it, failing over between addresses and remaking it after a failure.
#pragma once

#include "client-config.h"
#include "endpoint.h"
#include "image-mapper.h"
#include "result.h"
#include "targets.h"
#include "wire-convert.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <memory>
#include <string>
#include <vector>

namespace rjit::detail {

/// Lives on the client's I/O thread. Shared (std::shared_ptr) by the calls that use it and by a
/// connect in progress, whose forked result must be copyable; the last user closes it.
class Connection final {
public:
  /// Takes a connected stream; `capabilityStream` is the same stream when it can carry file
  /// descriptors (Unix sockets), else null. `bootstrap`, when given, is what this side offers
  /// the server as its own bootstrap capability (an executor offers rjitd its Control); a
  /// client offers none.
  Connection(rjitd::Endpoint endpoint, kj::Own<kj::AsyncIoStream> stream,
             kj::AsyncCapabilityStream* capabilityStream,
             kj::Maybe<capnp::Capability::Client> bootstrap = nullptr);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const rjitd::Endpoint& endpoint() const { return endpoint_; }
  /// "unix:/path" or "tcp:host:port", for messages.
  const std::string& address() const { return address_; }
  /// True once the peer has gone away; the next call opens a new connection.
  bool broken() const { return broken_; }
  /// Resolves when the peer has gone away (or the connection failed): for a process that lives
  /// only as long as its connection (an executor).
  kj::Promise<void> disconnected() { return network->onDisconnect(); }

  /// Valid after a successful handshake.
  proto::Session::Client& session() { return session_; }
  const ServerInfo& info() const { return info_; }
  const std::vector<rjitd::TargetName>& targets() const { return targets_; }
  /// True when the connection can carry file descriptors (a Unix socket).
  bool passesFds() const { return passesFds_; }
  /// The reservation modules loaded over this connection live in (rjitd's session keeps one per
  /// connection), made on first use; `quota` is its size. Fails with Error(Load).
  Result<std::shared_ptr<Arena>> arena(uint64_t quota);

  /// Performs the versioned handshake. Rejects when the server does not answer properly;
  /// resolves to Error(ProtocolMismatch) when it speaks another protocol version.
  kj::Promise<Result<bool>> hello(const std::string& clientName);

private:
  rjitd::Endpoint endpoint_;
  std::string address_;
  // Declaration order is teardown order in reverse: the watcher and the capabilities go before
  // the RPC system, which goes before the network, which goes before the stream it writes to.
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  proto::Session::Client session_ = nullptr;
  kj::Promise<void> watcher = nullptr;
  bool broken_ = false;
  bool passesFds_ = false;
  std::shared_ptr<Arena> arena_;
  ServerInfo info_;
  std::vector<rjitd::TargetName> targets_;
};

/// Descriptors the server may attach to one message: a loaded image's memfd
/// (LoadedImage.getFd) is the only one it sends today; the rest is headroom.
constexpr unsigned MAX_FDS_PER_MESSAGE = 4;

/// Connects to `endpoint` without a handshake. Rejects (a kj::Exception saying why) when the
/// address cannot be reached.
kj::Promise<std::shared_ptr<Connection>> connectTo(kj::AsyncIoContext& io,
                                                   const rjitd::Endpoint& endpoint);

/// A connection over `fd`, a Unix stream socket already connected to rjitd (an executor's
/// channel, which rjitd made with socketpair), offering `bootstrap` to rjitd; no handshake yet.
/// `endpoint` only names the connection in messages. The caller still calls hello().
std::shared_ptr<Connection> connectionOverFd(kj::AsyncIoContext& io, kj::AutoCloseFd fd,
                                             rjitd::Endpoint endpoint,
                                             capnp::Capability::Client bootstrap);

/// Performs the handshake on a connection from connectTo(). Rejects when the server does not
/// answer properly (DISCONNECTED when it closed the connection before answering); resolves to
/// an Error for a protocol mismatch. The two steps are separate so that the caller can tell a
/// server it cannot reach from one that accepted the connection and then went away.
kj::Promise<Result<std::shared_ptr<Connection>>> handshake(std::shared_ptr<Connection> connection,
                                                           const std::string& clientName);

/// The connection that calls use: made on the first call by trying the configured addresses in
/// order (failover), shared by the calls that wait for it while it is being made, and made anew
/// by the next call after a failure. Lives on the client's I/O thread.
class Connector final {
public:
  using ConnectionResult = Result<std::shared_ptr<Connection>>;

  /// `io` and `config` outlive this object.
  Connector(kj::AsyncIoContext& io, const Config& config) : io(io), config(config) {}
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  /// The current connection, or the one a connect in progress (started now if none is) makes.
  /// Never rejects: an address that cannot be reached is a Connection error naming every
  /// address tried.
  kj::Promise<ConnectionResult> connection();
  /// Stops handing out `connection` (it broke, or its server is draining); calls holding it
  /// keep it until they are done.
  void forget(const Connection* connection);
  /// Abandons a connect in progress (a call timed out waiting for it), so that the next call
  /// starts afresh instead of queueing behind a server that does not answer.
  void abandonConnect();
  /// The address the connect in progress is trying, for timeout messages.
  const std::string& connectingAddress() const { return connectingAddress_; }
  /// Drops the connection and any connect in progress (the client is closing).
  void reset();

private:
  /// Tries config.endpoints from `index` on. `handshakeRetried`: the address at `index` has
  /// already been tried again after its server closed a connection during the handshake.
  kj::Promise<ConnectionResult> connectFrom(size_t index, std::string reasons,
                                            bool handshakeRetried);

  kj::AsyncIoContext& io;
  const Config& config;
  /// The connection new calls use; null until the first call and after a failure.
  std::shared_ptr<Connection> current;
  /// A connect in progress that calls share; each connect has its own generation, so that an
  /// abandoned one (its caller timed out) no longer decides `current`.
  kj::Maybe<kj::ForkedPromise<ConnectionResult>> connecting;
  uint64_t connectGeneration = 0;
  std::string connectingAddress_;
};

}  // namespace rjit::detail
