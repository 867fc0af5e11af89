// SPDX-License-Identifier: MIT
// Listening sockets (own Unix/TCP, or inherited through systemd socket activation) and the
// connections accepted on them, each served as a two-party Cap'n Proto RPC connection.
#pragma once

#include "endpoint.h"
#include "rpc-server.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

namespace rjitd::service {

class Listeners final : private kj::TaskSet::ErrorHandler {
public:
  /// `io` and `state` outlive this object.
  Listeners(kj::AsyncIoContext& io, DaemonState& state, capnp::ReaderOptions readerOptions);
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
  struct Socket {
    kj::Own<kj::ConnectionReceiver> receiver;
    bool unix;
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
  void serve(kj::AuthenticatedStream&& connection, bool unix, const std::string& listener);
  kj::Promise<void> waitFlushed(kj::TimePoint deadline);
  void taskFailed(kj::Exception&& exception) override;

  kj::AsyncIoContext& io;
  DaemonState& state;
  capnp::ReaderOptions readerOptions;
  std::list<Socket> sockets;  // stable addresses: accept loops hold references
  std::vector<std::string> names;
  std::unordered_map<uint64_t, capnp::TwoPartyVatNetwork*> networks;  // by connection serial
  uint64_t connectionSerial = 0;
  kj::TaskSet connectionTasks;
};

}  // namespace rjitd::service
