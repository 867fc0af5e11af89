// SPDX-License-Identifier: MIT
#include "listeners.h"

#include "log.h"

#include <arpa/inet.h>
#include <capnp/rpc-twoparty.h>
#include <cerrno>
#include <filesystem>
#include <kj/debug.h>
#include <kj/io.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

namespace rjitd::service {

namespace {

// File descriptors rjitd accepts from a client in one message (Cap'n Proto limits incoming
// messages only). Clients send none; the memfds of loaded images go the other way. Small, so
// that a client cannot fill rjitd's descriptor table.
constexpr uint kMaxFdsPerMessage = 4;

// Waits between failed accepts: short at first (a burst of aborted connections), doubling up
// to a second (out of file descriptors until clients disconnect), so a persistent failure
// neither spins the loop nor leaves a freed descriptor unused for long.
constexpr kj::Duration ACCEPT_BACKOFF_FIRST = 10 * kj::MILLISECONDS;
constexpr kj::Duration ACCEPT_BACKOFF_MAX = 1 * kj::SECONDS;
// The same accept failure is repeated at warning level at most this often (debug otherwise).
constexpr kj::Duration ACCEPT_WARNING_INTERVAL = 60 * kj::SECONDS;

// Refused connections kept open to carry their answer; past this many, the oldest is closed
// (answered or not). Each holds an fd for at most --handshake-timeout, or REFUSAL_LINGER once
// answered.
constexpr uint32_t MAX_REFUSING = 64;
// The retry-after hint of a connection refused as `overloaded`: connections end at their
// clients' pace, so there is nothing better to say than "in a while"; a second keeps a retrying
// client from hammering rjitd and is short next to a client's deadline.
constexpr kj::Duration CONNECTION_RETRY_AFTER = 1 * kj::SECONDS;
// How often a refused connection checks whether its answer has been written.
constexpr kj::Duration FLUSH_POLL = 5 * kj::MILLISECONDS;
// How long a refused connection stays open after its answer is written, waiting for the client
// to hang up. Closing at once races the client: its next write (the Finish of its bootstrap
// question) fails with EPIPE before it reads the refusal, and it reports "cannot reach rjitd"
// instead of the refusal. A real client reads its answer and closes within milliseconds.
constexpr kj::Duration REFUSAL_LINGER = 2 * kj::SECONDS;
// Refusals of one reason are logged at info level at most this often (debug otherwise).
constexpr kj::Duration REFUSAL_LOG_INTERVAL = 60 * kj::SECONDS;

// The peer's IP address (no port): what --max-connections-per-user counts on TCP.
std::string peerAddress(kj::AsyncIoStream& stream) {
  sockaddr_storage address{};
  uint length = sizeof(address);
  stream.getpeername(reinterpret_cast<sockaddr*>(&address), &length);
  char text[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&address)->sin_addr, text, sizeof text);
  else if (address.ss_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&address)->sin6_addr, text, sizeof text);
  return text;
}

// Is someone answering on this Unix socket path? (Used to tell a stale socket file from a live
// server before replacing it.)
bool unixSocketAnswers(const std::string& path) {
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0)
    return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  return ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

void enableKeepalive(kj::AsyncIoStream& stream) {
  // Detect clients whose host vanished (half-open connections) within about a minute.
  int on = 1, idle = 30, interval = 10, count = 3;
  stream.setsockopt(SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  stream.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  stream.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  stream.setsockopt(IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  stream.setsockopt(IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

std::string describePeer(kj::AuthenticatedStream& conn, const std::string& listener,
                         uint64_t serial) {
  std::string out = "client #" + std::to_string(serial) + " on " + listener;
  KJ_IF_MAYBE (local, kj::dynamicDowncastIfAvailable<kj::LocalPeerIdentity>(*conn.peerIdentity)) {
    auto creds = local->getCredentials();
    KJ_IF_MAYBE (pid, creds.pid) {
      out += " pid " + std::to_string(*pid);
    }
    KJ_IF_MAYBE (uid, creds.uid) {
      out += " uid " + std::to_string(*uid);
    }
  }
  KJ_IF_MAYBE (net, kj::dynamicDowncastIfAvailable<kj::NetworkPeerIdentity>(*conn.peerIdentity)) {
    out += std::string(" from ") + net->toString().cStr();
  }
  return out;
}

}  // namespace

Listeners::Listeners(kj::AsyncIoContext& io, DaemonState& state, capnp::ReaderOptions readerOptions,
                     ConnectionLimits limits)
    : io(io), state(state), readerOptions(readerOptions), limits(std::move(limits)),
      budget(this->limits.maxInflightBytes), connectionTasks(*this) {}

Listeners::~Listeners() noexcept(false) {
  stopAccepting();
}

void Listeners::listen(const Endpoint& endpoint) {
  KJ_CONTEXT("listening", endpoint.text());
  Socket socket;
  socket.name = endpoint.text();
  socket.unix = endpoint.kind == Endpoint::Kind::Unix;
  if (socket.unix) {
    std::filesystem::path path(endpoint.path);
    std::error_code ec;
    if (path.has_parent_path() && !std::filesystem::exists(path.parent_path(), ec)) {
      std::filesystem::create_directories(path.parent_path(), ec);
      KJ_REQUIRE(!ec, "cannot create the socket's directory", path.parent_path().string(),
                 ec.message());
    }
    struct stat st;
    if (::lstat(endpoint.path.c_str(), &st) == 0) {
      KJ_REQUIRE(S_ISSOCK(st.st_mode),
                 "path exists and is not a socket; remove it or choose "
                 "another --listen path",
                 endpoint.path);
      KJ_REQUIRE(!unixSocketAnswers(endpoint.path),
                 "another server is already listening on this socket", endpoint.path);
      ::unlink(endpoint.path.c_str());  // stale: left by an rjitd that was killed
    }
    socket.unlinkPath = endpoint.path;
  } else {
    bool loopback = endpoint.host == "127.0.0.1" || endpoint.host == "::1" ||
                    endpoint.host == "localhost" || endpoint.host.starts_with("127.");
    if (!loopback)
      log::warning("TCP listener ", endpoint.text(),
                   " is reachable from other hosts; rjitd does not authenticate TCP clients "
                   "(--allow-users and --allow-groups apply to Unix sockets only): serve TCP on "
                   "a trusted network only (docs/OPERATIONS.md)");
  }
  auto address = io.provider->getNetwork().parseAddress(endpoint.kjAddress()).wait(io.waitScope);
  if (socket.unix) {
    // The socket file gets exactly --socket-mode from its birth: bind() creates it with 0777
    // less the umask, so the umask is narrowed to the mode's complement around listen() (and
    // put back at once) rather than chmod()ing afterwards, which would leave a window in which
    // the file had the wider mode. Only rjitd's own threads, idle at startup, share the umask.
    mode_t old = ::umask(static_cast<mode_t>(~limits.socketMode & 0777));
    auto restore = kj::defer([old]() { ::umask(old); });
    socket.receiver = address->listen();
  } else {
    socket.receiver = address->listen();
  }
  if (!socket.unix) {
    // Show the port the kernel chose for tcp:HOST:0.
    socket.name = "tcp:" + endpoint.host + ":" + std::to_string(socket.receiver->getPort());
  }
  names.push_back(socket.name);
  sockets.push_back(kj::mv(socket));
}

size_t Listeners::adoptActivated() {
  char** fdNames = nullptr;
  int n = sd_listen_fds_with_names(1, &fdNames);  // 1: unset LISTEN_* for our children
  KJ_REQUIRE(n >= 0, "invalid socket activation environment (LISTEN_FDS/LISTEN_PID)", strerror(-n));
  for (int i = 0; i < n; ++i) {
    int fd = SD_LISTEN_FDS_START + i;
    std::string fdName = fdNames != nullptr && fdNames[i] != nullptr ? fdNames[i] : "";
    KJ_REQUIRE(sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) > 0,
               "socket-activated fd is not a listening stream socket; set ListenStream= in "
               "rjitd.socket",
               fd, fdName);
    Socket socket;
    socket.unix = sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) > 0;
    socket.activated = true;
    socket.name = "fd:" + std::to_string(fd) + (fdName.empty() ? "" : " (" + fdName + ")");
    socket.name += socket.unix ? " unix" : " tcp";
    // systemd passes fds without CLOEXEC; wrapListenSocketFd sets it (ALREADY_CLOEXEC unset).
    socket.receiver =
        io.lowLevelProvider->wrapListenSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    names.push_back(socket.name);
    sockets.push_back(kj::mv(socket));
  }
  if (fdNames != nullptr) {
    for (int i = 0; i < n; ++i)
      free(fdNames[i]);
    free(fdNames);
  }
  return static_cast<size_t>(n);
}

void Listeners::start() {
  for (Socket& s : sockets) {
    s.backoff = ACCEPT_BACKOFF_FIRST;
    // acceptLoop() never fails; were it to, that is a bug in it, logged and counted.
    s.accepting = acceptLoop(s).eagerlyEvaluate([this, name = s.name](kj::Exception&& e) {
      log::error("internal: stopped accepting on ", name, ": ", e.getDescription().cStr());
      state.metrics.daemonError(metrics::DaemonError::Internal);
    });
  }
}

void Listeners::stopAccepting() {
  for (Socket& s : sockets) {
    if (!s.unlinkPath.empty())
      ::unlink(s.unlinkPath.c_str());
  }
  sockets.clear();  // cancels the accept loops and closes the sockets
}

kj::Promise<void> Listeners::acceptLoop(Socket& socket) {
  // KJ's accept() throws EMFILE and other errors synchronously when a connection is already
  // queued; evalNow turns that into a failed promise, which the handler below retries.
  return kj::evalNow([&socket]() { return socket.receiver->acceptAuthenticated(); })
      .then(
          [this, &socket](kj::AuthenticatedStream&& conn) {
            if (socket.failures > 0) {
              log::info("accepting on ", socket.name, " again after ", socket.failures,
                        " failed attempts");
              socket.failures = 0;
              socket.backoff = ACCEPT_BACKOFF_FIRST;
              socket.lastWarning.clear();
            }
            // Setting up one connection can fail too (a socket option on a connection reset
            // meanwhile): that ends this connection, not the listener.
            KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { serve(kj::mv(conn), socket); })) {
              taskFailed(kj::mv(*e));
            }
            return acceptLoop(socket);
          },
          [this, &socket](kj::Exception&& e) { return retryAccept(socket, kj::mv(e)); });
}

kj::Promise<void> Listeners::retryAccept(Socket& socket, kj::Exception&& exception) {
  // E.g. EMFILE: the connection stays queued in the kernel and is accepted once a descriptor is
  // free again (a client disconnected), so keep trying for as long as rjitd runs.
  ++socket.failures;
  state.metrics.daemonError(metrics::DaemonError::Accept);
  kj::Duration delay = socket.backoff;
  socket.backoff = kj::min(socket.backoff * 2, ACCEPT_BACKOFF_MAX);
  auto& timer = io.provider->getTimer();
  std::string what = exception.getDescription().cStr();
  bool repeated =
      what == socket.lastWarning && timer.now() - socket.lastWarningTime < ACCEPT_WARNING_INTERVAL;
  if (!repeated) {
    socket.lastWarning = what;
    socket.lastWarningTime = timer.now();
  }
  log::print(repeated ? log::Level::Debug : log::Level::Warning, "accept on ", socket.name,
             " failed (attempt ", socket.failures, "): ", what, "; retrying in ",
             delay / kj::MILLISECONDS, " ms");
  return timer.afterDelay(delay).then([this, &socket]() { return acceptLoop(socket); });
}

/// One client connection's parts, destroyed together when it ends (the client disconnected, a
/// deadline passed, a refusal was delivered, or rjitd exits). Members are destroyed in reverse
/// order: the RPC system, then the network, then the stream, whose fd closes last.
struct Listeners::Connection {
  Connection(Listeners& owner, uint64_t serial, std::string peer)
      : owner(owner), serial(serial), peer(std::move(peer)) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  // The counts are settled before the fd closes, so that a client that sees the close (EOF)
  // and connects again finds its place free.
  ~Connection() noexcept(false) { owner.connectionEnded(*this); }

  Listeners& owner;
  uint64_t serial;
  std::string peer;
  std::string peerKey;   // served: what --max-connections-per-user counts ("uid 1000")
  bool served = false;   // counted against the limits
  bool refused = false;  // carries a refusal, then closes
  bool helloDone = false;
  kj::Own<kj::PromiseFulfiller<void>> answered;  // refused: hello has been answered
  kj::Own<kj::PromiseFulfiller<void>> closeNow;  // refused: closed to make room for another
  kj::Own<FramedStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
};

void Listeners::serve(kj::AuthenticatedStream&& conn, const Socket& socket) {
  bool unix = socket.unix;
  const std::string& listener = socket.name;
  uint64_t serial = ++connectionSerial;
  std::string peer = describePeer(conn, listener, serial);
  log::debug("accepted ", peer);

  std::optional<std::pair<uid_t, gid_t>> unixPeer;
  std::string peerKey;
  if (unix) {
    // SO_PEERCRED rather than KJ's LocalPeerIdentity: it also gives the peer's gid.
    ucred credentials{};
    uint length = sizeof(credentials);
    conn.stream->getsockopt(SOL_SOCKET, SO_PEERCRED, &credentials, &length);
    unixPeer = std::make_pair(credentials.uid, credentials.gid);
    peerKey = "uid " + std::to_string(credentials.uid);
  } else {
    enableKeepalive(*conn.stream);
    peerKey = "address " + peerAddress(*conn.stream);
  }
  bool checkPeer = unix && (!socket.activated || limits.peers.explicitList);
  auto refusal = this->refusal(checkPeer ? unixPeer : std::nullopt, peerKey);
  if (refusal && refusingBySerial.size() >= MAX_REFUSING) {
    // A flood of refused connections that do not say hello (a real client says it at once and
    // reads its answer): each would hold an fd until its handshake deadline, so the oldest
    // makes room for this one and is closed unanswered.
    for (auto& [oldSerial, old] : refusingBySerial) {
      if (old->closeNow->isWaiting()) {
        old->closeNow->fulfill();
        break;
      }
    }
  }

  auto c = kj::heap<Connection>(*this, serial, peer);
  kj::AsyncCapabilityStream* capability =
      unix ? &kj::downcast<kj::AsyncCapabilityStream>(*conn.stream) : nullptr;
  Connection* raw = c.get();
  c->stream =
      kj::heap<FramedStream>(kj::mv(conn.stream), capability, io.provider->getTimer(),
                             limits.readTimeout, budget, kj::Function<void()>([this, raw]() {
                               refused(metrics::ConnectionRefusal::ReadTimeout, raw->peer,
                                       "a message did not arrive whole within --read-timeout (" +
                                           std::to_string(limits.readTimeout / kj::MILLISECONDS) +
                                           " ms); closing the connection");
                             }));
  if (unix)
    c->network = kj::heap<capnp::TwoPartyVatNetwork>(
        static_cast<kj::AsyncCapabilityStream&>(*c->stream), kMaxFdsPerMessage,
        capnp::rpc::twoparty::Side::SERVER, readerOptions);
  else
    c->network =
        kj::heap<capnp::TwoPartyVatNetwork>(static_cast<kj::AsyncIoStream&>(*c->stream),
                                            capnp::rpc::twoparty::Side::SERVER, readerOptions);
  kj::Promise<void> answered = kj::NEVER_DONE;
  if (refusal) {
    c->refused = true;
    refusingBySerial.emplace(serial, c.get());
    refused(refusal->first, peer, refusal->second.message);
    auto paf = kj::newPromiseAndFulfiller<void>();
    c->answered = kj::mv(paf.fulfiller);
    auto evicted = kj::newPromiseAndFulfiller<void>();
    c->closeNow = kj::mv(evicted.fulfiller);
    answered = paf.promise.then([this, raw]() { return flushed(*raw->network); })
                   .then([this]() { return io.provider->getTimer().afterDelay(REFUSAL_LINGER); })
                   .exclusiveJoin(kj::mv(evicted.promise));
    c->rpc = kj::heap(capnp::makeRpcServer(
        *c->network,
        capnp::Capability::Client(newRefusingBootstrap(state, kj::mv(refusal->second), [raw]() {
          raw->helloDone = true;
          if (raw->answered->isWaiting())  // a second hello on the same connection
            raw->answered->fulfill();
        }))));
  } else {
    c->served = true;
    c->peerKey = peerKey;
    ++served;
    ++perPeer[peerKey];
    state.metrics.connectionOpened();
    c->rpc = kj::heap(capnp::makeRpcServer(
        *c->network, capnp::Capability::Client(
                         newBootstrap(state, peer, true, [raw]() { raw->helloDone = true; }))));
  }
  if (limits.flowLimitWords != 0)
    c->rpc->setFlowLimit(limits.flowLimitWords);
  networks.emplace(serial, c->network.get());

  kj::Promise<void> handshake =
      io.provider->getTimer()
          .afterDelay(limits.handshakeTimeout)
          .then([this, raw]() -> kj::Promise<void> {
            if (raw->helloDone)
              return kj::NEVER_DONE;
            if (!raw->refused)  // a refused one was counted as such already
              refused(metrics::ConnectionRefusal::HandshakeTimeout, raw->peer,
                      "no hello within --handshake-timeout (" +
                          std::to_string(limits.handshakeTimeout / kj::MILLISECONDS) +
                          " ms); closing the connection");
            return kj::READY_NOW;
          });
  kj::Promise<void> lifetime =
      c->network->onDisconnect().exclusiveJoin(kj::mv(handshake)).exclusiveJoin(kj::mv(answered));
  connectionTasks.add(lifetime
                          .catch_([this, raw](kj::Exception&& e) {
                            // A read that overran --read-timeout was counted as such when it
                            // did, not as a connection error.
                            if (!raw->stream->timedOut())
                              taskFailed(kj::mv(e));
                          })
                          .attach(kj::mv(c)));
}

std::optional<std::pair<metrics::ConnectionRefusal, Failure>>
Listeners::refusal(const std::optional<std::pair<uid_t, gid_t>>& unixPeer,
                   const std::string& peerKey) {
  using metrics::ConnectionRefusal;
  if (unixPeer && !peerAllowed(limits.peers, unixPeer->first, unixPeer->second))
    return std::make_pair(
        ConnectionRefusal::Permission,
        Failure{ErrorKind::PermissionDenied,
                "uid " + std::to_string(unixPeer->first) + " (gid " +
                    std::to_string(unixPeer->second) + ") may not use this rjitd, which serves " +
                    describePolicy(limits.peers) +
                    "; an administrator can add the user to the rjitd group (usermod -aG rjitd "
                    "USER) or to rjitd's --allow-users/--allow-groups",
                {}});
  uint32_t retryAfterMillis = static_cast<uint32_t>(CONNECTION_RETRY_AFTER / kj::MILLISECONDS);
  if (served >= limits.maxConnections) {
    Failure failure{ErrorKind::Overloaded,
                    "rjitd serves at most " + std::to_string(limits.maxConnections) +
                        " connections at once (--max-connections); try again later, or ask its "
                        "administrator to raise the limit",
                    {}};
    failure.retryAfterMillis = retryAfterMillis;
    return std::make_pair(ConnectionRefusal::Limit, kj::mv(failure));
  }
  auto open = perPeer.find(peerKey);
  if (open != perPeer.end() && open->second >= limits.maxConnectionsPerUser) {
    Failure failure{ErrorKind::Overloaded,
                    "rjitd serves at most " + std::to_string(limits.maxConnectionsPerUser) +
                        " connections per user at once (--max-connections-per-user) and " +
                        peerKey + " has that many open; close some, or try again later",
                    {}};
    failure.retryAfterMillis = retryAfterMillis;
    return std::make_pair(ConnectionRefusal::PerUser, kj::mv(failure));
  }
  return std::nullopt;
}

void Listeners::refused(metrics::ConnectionRefusal reason, const std::string& peer,
                        const std::string& what) {
  state.metrics.connectionRefused(reason);
  RefusalLog& entry = refusalLogs[static_cast<size_t>(reason)];
  kj::TimePoint now = io.provider->getTimer().now();
  if (entry.any && now - entry.last < REFUSAL_LOG_INTERVAL) {
    ++entry.since;
    log::debug(peer, ": ", what);
    return;
  }
  std::string more = entry.since == 0 ? ""
                                      : " (and " + std::to_string(entry.since) +
                                            " more refusals like it since the last such line)";
  log::info(peer, ": ", what, more);
  entry.any = true;
  entry.last = now;
  entry.since = 0;
}

kj::Promise<void> Listeners::flushed(capnp::TwoPartyVatNetwork& network) {
  // Last in the queue: by then the answer has been handed to the network.
  return kj::evalLast([this, &network]() -> kj::Promise<void> {
    if (network.getCurrentQueueCount() == 0)
      return kj::READY_NOW;
    return io.provider->getTimer().afterDelay(FLUSH_POLL).then([this, &network]() {
      return flushed(network);
    });
  });
}

void Listeners::connectionEnded(Connection& c) {
  networks.erase(c.serial);
  if (c.served) {
    --served;
    auto open = perPeer.find(c.peerKey);
    if (open != perPeer.end() && --open->second == 0)
      perPeer.erase(open);
    state.metrics.connectionClosed();
  }
  if (c.refused)
    refusingBySerial.erase(c.serial);
  log::debug("closed ", c.peer);
}

kj::Promise<void> Listeners::closeConnections(kj::Duration limit) {
  // Answers to the requests that just finished sit in each connection's write queue; exiting
  // now would drop them. TwoPartyVatNetwork exposes its queue length but no "flushed" event
  // (its shutdown() is private), so check it between loop turns, bounded by `limit`.
  auto deadline = io.provider->getTimer().now() + limit;
  return kj::evalLast([this, deadline]() { return waitFlushed(deadline); });
}

kj::Promise<void> Listeners::waitFlushed(kj::TimePoint deadline) {
  size_t queued = 0;
  for (auto& [serial, network] : networks)
    queued += network->getCurrentQueueCount();
  if (queued == 0)
    return kj::READY_NOW;
  auto& timer = io.provider->getTimer();
  if (timer.now() >= deadline) {
    log::warning(queued, " answers were not taken by their clients in time; closing anyway");
    return kj::READY_NOW;
  }
  return timer.afterDelay(5 * kj::MILLISECONDS).then([this, deadline]() {
    return waitFlushed(deadline);
  });
}

void Listeners::taskFailed(kj::Exception&& exception) {
  // A broken connection or a failed accept: log it and carry on serving the others.
  log::warning("connection error: ", exception.getDescription().cStr());
  state.metrics.daemonError(metrics::DaemonError::Connection);
}

}  // namespace rjitd::service
