// SPDX-License-Identifier: MIT
#include "listeners.h"

#include "log.h"

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

Listeners::Listeners(kj::AsyncIoContext& io, DaemonState& state, capnp::ReaderOptions readerOptions)
    : io(io), state(state), readerOptions(readerOptions), connectionTasks(*this) {}

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
                   " is reachable from other hosts; rjitd does not authenticate TCP clients");
  }
  auto address = io.provider->getNetwork().parseAddress(endpoint.kjAddress()).wait(io.waitScope);
  socket.receiver = address->listen();
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
            KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                                [&]() { serve(kj::mv(conn), socket.unix, socket.name); })) {
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

void Listeners::serve(kj::AuthenticatedStream&& conn, bool unix, const std::string& listener) {
  uint64_t serial = ++connectionSerial;
  std::string peer = describePeer(conn, listener, serial);
  log::debug("accepted ", peer);

  // The connection's parts, destroyed together when the client disconnects (or at exit).
  struct Connection {
    kj::Own<kj::AsyncIoStream> stream;
    kj::Own<capnp::TwoPartyVatNetwork> network;
    kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  };
  auto c = kj::heap<Connection>();
  c->stream = kj::mv(conn.stream);
  if (unix) {
    c->network = kj::heap<capnp::TwoPartyVatNetwork>(
        kj::downcast<kj::AsyncCapabilityStream>(*c->stream), kMaxFdsPerMessage,
        capnp::rpc::twoparty::Side::SERVER, readerOptions);
  } else {
    enableKeepalive(*c->stream);
    c->network = kj::heap<capnp::TwoPartyVatNetwork>(*c->stream, capnp::rpc::twoparty::Side::SERVER,
                                                     readerOptions);
  }
  c->rpc = kj::heap(
      capnp::makeRpcServer(*c->network, capnp::Capability::Client(newBootstrap(state, peer))));
  networks.emplace(serial, c->network.get());
  state.metrics.connectionOpened();
  auto closed = kj::defer([this, peer, serial]() {
    networks.erase(serial);
    state.metrics.connectionClosed();
    log::debug("closed ", peer);
  });
  connectionTasks.add(c->network->onDisconnect().attach(kj::mv(c), kj::mv(closed)));
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
