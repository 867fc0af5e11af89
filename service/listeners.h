// SPDX-License-Identifier: MIT
// Listening sockets (own Unix/TCP, or inherited through systemd socket activation) and the
// connections accepted on them, each served as a two-party Cap'n Proto RPC connection.
#pragma once

#include "endpoint.h"
#include "framed-stream.h"
#include "peer-policy.h"
#include "rpc-server.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rjitd::service {

/// What Listeners enforces on client connections (rjitd's options of the same names).
struct ConnectionLimits {
  /// Connections served at once; more are answered `overloaded` and closed.
  uint32_t maxConnections = 1024;
  /// Connections served at once per peer: a uid on Unix sockets, an IP address on TCP.
  uint32_t maxConnectionsPerUser = 128;
  /// A connection that has not said hello by then is closed.
  kj::Duration handshakeTimeout = 10 * kj::SECONDS;
  /// A message whose first byte arrived must arrive whole by then, or its connection closes.
  kj::Duration readTimeout = 30 * kj::SECONDS;
  /// Bytes of request messages being received, all connections together (InflightBudget).
  uint64_t maxInflightBytes = 1ull << 30;
  /// File mode of the Unix sockets listen() creates.
  uint32_t socketMode = 0660;
  /// Who may connect over Unix sockets.
  PeerPolicy peers;
  /// RpcSystem::setFlowLimit() of each connection, in words (0: none).
  size_t flowLimitWords = 0;
};

class Listeners final : private kj::TaskSet::ErrorHandler {
public:
  /// `io` and `state` outlive this object.
  Listeners(kj::AsyncIoContext& io, DaemonState& state, capnp::ReaderOptions readerOptions,
            ConnectionLimits limits = {});
  ~Listeners() noexcept(false);
  Listeners(const Listeners&) = delete;
  Listeners& operator=(const Listeners&) = delete;

  /// Binds and listens on `endpoint`. For a Unix socket: creates the parent directory if it is
  /// missing, replaces a stale socket file (one nobody answers on), and refuses to start when
  /// another server already answers there. Throws kj::Exception with a clear message.
  void listen(const Endpoint& endpoint);

  /// Adopts the sockets passed by systemd (LISTEN_FDS/LISTEN_PID). Returns how many.
  size_t adoptActivated();

  /// Starts accepting on every socket.
  void start();

  /// Stops accepting (closes our listening sockets; a socket-activated one stays open in
  /// systemd, which queues new connections for the next rjitd). Open connections stay.
  void stopAccepting();

  /// Resolves when every open connection has written what it still had to send (answers to
  /// requests that just finished), or after `limit`.
  kj::Promise<void> closeConnections(kj::Duration limit);

  /// One "unix:/path" / "tcp:host:port" / "fd:3 (name)" per socket, for logs and status.
  const std::vector<std::string>& describe() const { return names; }
  size_t connections() const { return networks.size(); }

private:
  struct Connection;
  /// Refusals of one reason logged at info level at most once a minute (debug otherwise), so
  /// that a flood of them does not flood the log.
  struct RefusalLog {
    kj::TimePoint last = kj::origin<kj::TimePoint>();
    uint64_t since = 0;  // refusals not logged at info level since `last`
    bool any = false;
  };

  struct Socket {
    kj::Own<kj::ConnectionReceiver> receiver;
    bool unix;
    bool activated = false;  // passed by systemd (see PeerPolicy::explicitList)
    std::string name;
    std::string unlinkPath;                 // socket file we created and remove on stop
    kj::Promise<void> accepting = nullptr;  // the accept loop; dropping it stops accepting
    // Failed accepts in a row, the wait before the next attempt, and what was last logged at
    // warning level (and when), so a persistent failure is logged once, not at every retry.
    uint64_t failures = 0;
    kj::Duration backoff = 0 * kj::SECONDS;
    std::string lastWarning;
    kj::TimePoint lastWarningTime = kj::origin<kj::TimePoint>();
  };

  /// Accepts on `socket` for as long as it exists: a failed accept is retried (retryAccept), so
  /// the returned promise never fails.
  kj::Promise<void> acceptLoop(Socket& socket);
  kj::Promise<void> retryAccept(Socket& socket, kj::Exception&& exception);
  void serve(kj::AuthenticatedStream&& connection, const Socket& socket);
  /// Why `peer` (its uid and gid on a Unix socket, else nullopt) may not be served now, if so.
  std::optional<std::pair<metrics::ConnectionRefusal, Failure>>
  refusal(const std::optional<std::pair<uid_t, gid_t>>& unixPeer, const std::string& peerKey);
  /// Counts and logs (rate-limited) a refusal of `peer` for `reason`.
  void refused(metrics::ConnectionRefusal reason, const std::string& peer, const std::string& what);
  /// Resolves once `network` has written every queued message (bounded by the handshake
  /// deadline the caller races it with).
  kj::Promise<void> flushed(capnp::TwoPartyVatNetwork& network);
  void connectionEnded(Connection& connection);
  kj::Promise<void> waitFlushed(kj::TimePoint deadline);
  void taskFailed(kj::Exception&& exception) override;

  kj::AsyncIoContext& io;
  DaemonState& state;
  capnp::ReaderOptions readerOptions;
  std::list<Socket> sockets;  // stable addresses: accept loops hold references
  std::vector<std::string> names;
  ConnectionLimits limits;
  InflightBudget budget;
  std::unordered_map<uint64_t, capnp::TwoPartyVatNetwork*> networks;  // by connection serial
  uint64_t connectionSerial = 0;
  uint32_t served = 0;                                // connections counted against maxConnections
  std::map<uint64_t, Connection*> refusingBySerial;   // refused, still open to carry the answer
  std::unordered_map<std::string, uint32_t> perPeer;  // served connections by peer key
  RefusalLog refusalLogs[5];                          // by metrics::ConnectionRefusal
  kj::TaskSet connectionTasks;
};

}  // namespace rjitd::service
