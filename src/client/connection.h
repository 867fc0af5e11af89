// SPDX-License-Identifier: MIT
// Reaching rjitd: one connection (the socket, the Cap'n Proto RPC system over it, and what the
// handshake said: the Session capability, the server's versions, targets and limits), and the
// Connector that makes and keeps one per server, failing over along a call's route and remaking
// a connection after a failure.
#pragma once

#include "client-config.h"
#include "endpoint.h"
#include "image-mapper.h"
#include "result.h"
#include "targets.h"
#include "wire-convert.h"

#include <capnp/rpc-twoparty.h>
#include <chrono>
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

/// The longest one address may take to connect and answer the handshake when there are
/// several (connectBudget()).
constexpr std::chrono::milliseconds MAX_CONNECT_BUDGET{5000};

/// How long one address may take to connect and answer the handshake before the next one is
/// tried: with one server, no budget of its own (zero: the call's deadline bounds it); with N,
/// an equal share of the call's deadline, at most MAX_CONNECT_BUDGET. A server that accepts
/// connections and never answers (hung, stopped with SIGSTOP, a full machine) then costs a call
/// at most that long, and each of the N servers gets its try within the call's deadline. The
/// cap is far above what a healthy rjitd needs (a socket-activated one starts on the first
/// connection in well under a second) and short enough that one hung server among many does
/// not stall interactive use.
std::chrono::milliseconds connectBudget(const Config& config);

/// How long a server that could not be reached (refused, gone, or no answer within its budget)
/// is tried last by every route: a hung server then costs the budget once per this period, not
/// once per call, and its keys go to their next server meanwhile. Short, so that a server that
/// is back gets its keys back soon.
constexpr std::chrono::milliseconds TRY_LAST_FOR{10000};

/// The first and the longest pause between rounds of connect attempts while every server of a
/// route refuses (Config::connectWait): short at first, as a restarted rjitd listens again
/// within a few hundred milliseconds.
constexpr std::chrono::milliseconds FIRST_CONNECT_PAUSE{20};
constexpr std::chrono::milliseconds MAX_CONNECT_PAUSE{250};

/// Whether a failed connect is worth trying again shortly: nobody listens on the address
/// (refused), its socket file is missing, or the listener's backlog is full — what a
/// standalone rjitd that is restarting, or a busy one, looks like. Not a handshake that timed
/// out, nor an address that does not resolve.
bool worthWaitingFor(const kj::Exception& exception);

/// The connections calls use: one per server, made on the first call that needs that server,
/// shared by the calls that wait for it while it is being made, kept for later calls, and made
/// anew by the next call after it broke. A call names the servers to try in order (its route,
/// from routing.h); the first that answers serves it (failover), each within connectBudget().
/// Lives on the client's I/O thread.
class Connector final {
public:
  using ConnectionResult = Result<std::shared_ptr<Connection>>;

  /// `io` and `config` outlive this object.
  Connector(kj::AsyncIoContext& io, const Config& config);
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  /// A connection to the first server of `route` (indexes into config.endpoints) that can be
  /// reached, trying the servers that failed within TRY_LAST_FOR last: its current connection,
  /// or the one a connect in progress (started now if none is) makes. Never rejects: when no server
  /// of the route can be reached, a Connection error naming every address tried; a server that
  /// answers the handshake with an error (a refusal, another protocol version) ends the search with
  /// that error. When every server failed in a way worthWaitingFor(), the route is tried again
  /// after a short pause (FIRST_CONNECT_PAUSE, doubling up to MAX_CONNECT_PAUSE) for up to
  /// config.connectWait from now: a request made while a standalone rjitd restarts is served
  /// by its successor instead of failing at once. No round starts later than MAX_CONNECT_PAUSE
  /// before `deadline` (the call's; unset: config.timeout from now), so a call whose deadline
  /// is shorter than the wait still ends with the Connection error and its reasons, not a
  /// timeout.
  kj::Promise<ConnectionResult> connection(std::vector<size_t> route,
                                           kj::Maybe<kj::TimePoint> deadline = nullptr);
  /// Same, over every server in the configured order.
  kj::Promise<ConnectionResult> connection();
  /// Stops handing out `connection` (it broke, or its server is draining); calls holding it
  /// keep it until they are done.
  void forget(const Connection* connection);
  /// Abandons the connects in progress (a call timed out waiting for one), so that the next
  /// call starts afresh instead of queueing behind a server that does not answer.
  void abandonConnect();
  /// The address the connect started last is trying, for timeout messages.
  const std::string& connectingAddress() const { return connectingAddress_; }
  /// Drops every connection and connect in progress (the client is closing).
  void reset();

private:
  /// One configured server's connection and the connect in progress to it, if any; each
  /// connect has its own generation, so that an abandoned one no longer decides `current`.
  struct Server {
    std::shared_ptr<Connection> current;
    kj::Maybe<kj::ForkedPromise<ConnectionResult>> connecting;
    uint64_t generation = 0;
    /// Until then, routes try this server last (it could not be reached).
    kj::TimePoint tryLastUntil = kj::origin<kj::TimePoint>();
  };

  /// One round of connect attempts along a route, and when to give up waiting for a server.
  struct Round {
    std::vector<size_t> route;
    std::string reasons;       ///< why the servers tried so far in this round failed
    bool worthWaiting = true;  ///< every failure of this round was worthWaitingFor()
    kj::TimePoint waitUntil = kj::origin<kj::TimePoint>();  ///< no new round starts after this
    std::chrono::milliseconds pause = FIRST_CONNECT_PAUSE;  ///< before the next round
    std::chrono::milliseconds waited{0};                    ///< paused so far, for the message
  };
  /// Tries `round.route` from `position` on; then, if worth it, another round after a pause.
  kj::Promise<ConnectionResult> connectFrom(Round round, size_t position);
  /// Server `index`'s connection: the current one, or the connect in progress (started now if
  /// none is). Rejects when the server cannot be reached within connectBudget().
  kj::Promise<ConnectionResult> connectionTo(size_t index);
  /// Connects to server `index` and performs the handshake. `handshakeRetried`: it has already
  /// been tried again after the server closed a connection during the handshake.
  kj::Promise<ConnectionResult> connectAndGreet(size_t index, bool handshakeRetried);

  kj::AsyncIoContext& io;
  const Config& config;
  std::chrono::milliseconds budget;
  std::vector<Server> servers;  ///< servers[i] is config.endpoints[i]
  std::string connectingAddress_;
};

}  // namespace rjit::detail
