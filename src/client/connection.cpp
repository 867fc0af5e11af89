// SPDX-License-Identifier: MIT
// Opening a connection to rjitd, the handshake, a connection per server and failover along a
// route (see connection.h).
#include "connection.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <kj/debug.h>
#include <kj/io.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <system_error>

namespace rjit::detail {

namespace {

/// Replies can carry objects far larger than capnp's 64 MiB default; the server is trusted not
/// to flood its own clients, so the limit only guards against a corrupt stream.
capnp::ReaderOptions receiveOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t(1) << 31;  // 16 GiB
  return options;
}

/// "no such file or directory": errno text in the lower case of our messages.
std::string errnoText(int error) {
  std::string text = std::system_category().message(error);
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z' && (text.size() < 2 || text[1] > 'Z'))
    text[0] = static_cast<char>(text[0] - 'A' + 'a');
  return text;
}

kj::Exception unreachable(std::string reason) {
  return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                       kj::heapString(reason.data(), reason.size()));
}

/// A nonblocking connect of our own, so that a listener whose backlog is full fails at once
/// (EAGAIN) instead of leaving us waiting on it: that address counts as unreachable.
kj::Promise<kj::Own<kj::AsyncCapabilityStream>> connectUnix(kj::LowLevelAsyncIoProvider& lowLevel,
                                                            const std::string& path) {
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0)
    return unreachable("cannot create a socket: " + errnoText(errno));
  struct sockaddr_un addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  // parseEndpoint() rejects paths that do not fit, so this always leaves the final NUL.
  KJ_ASSERT(path.size() < sizeof(addr.sun_path), "Unix socket path too long", path.size());
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) < 0) {
    int error = errno;
    if (error == EAGAIN)
      return unreachable("the listener's backlog is full (" + errnoText(error) + ")");
    return unreachable(errnoText(error));
  }
  return lowLevel.wrapUnixSocketFd(kj::mv(fd), kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                                                   kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
}

void setIntOption(kj::AsyncIoStream& stream, int level, int option, int value) {
  stream.setsockopt(level, option, &value, sizeof(value));
}

/// Keepalive probes after 10 s of silence, every 5 s, 3 tries: a peer that vanished without a
/// FIN (host down, cable pulled) shows as a broken connection after about 25 s instead of
/// never. The per-call deadline catches it sooner for a call in flight.
void tuneTcp(kj::AsyncIoStream& stream) {
  setIntOption(stream, SOL_SOCKET, SO_KEEPALIVE, 1);
  setIntOption(stream, IPPROTO_TCP, TCP_KEEPIDLE, 10);
  setIntOption(stream, IPPROTO_TCP, TCP_KEEPINTVL, 5);
  setIntOption(stream, IPPROTO_TCP, TCP_KEEPCNT, 3);
  setIntOption(stream, IPPROTO_TCP, TCP_NODELAY, 1);
}

kj::Promise<kj::Own<kj::AsyncIoStream>> connectTcp(kj::AsyncIoProvider& provider,
                                                   const rjitd::Endpoint& endpoint) {
  std::string address = endpoint.kjAddress();
  return provider.getNetwork()
      .parseAddress(kj::StringPtr(address.c_str(), address.size()))
      .then([](kj::Own<kj::NetworkAddress> resolved) {
        auto connected = resolved->connect();
        return connected.attach(kj::mv(resolved));
      })
      .then([](kj::Own<kj::AsyncIoStream> stream) {
        tuneTcp(*stream);
        return kj::mv(stream);
      });
}

std::string text(capnp::Text::Reader t) {
  return std::string(t.cStr(), t.size());
}

}  // namespace

Connection::Connection(rjitd::Endpoint endpoint, kj::Own<kj::AsyncIoStream> stream,
                       kj::AsyncCapabilityStream* capabilityStream,
                       kj::Maybe<capnp::Capability::Client> bootstrap)
    : endpoint_(std::move(endpoint)), address_(endpoint_.text()), stream(kj::mv(stream)),
      passesFds_(capabilityStream != nullptr) {
  if (capabilityStream != nullptr)
    network =
        kj::heap<capnp::TwoPartyVatNetwork>(*capabilityStream, MAX_FDS_PER_MESSAGE,
                                            capnp::rpc::twoparty::Side::CLIENT, receiveOptions());
  else
    network = kj::heap<capnp::TwoPartyVatNetwork>(*this->stream, capnp::rpc::twoparty::Side::CLIENT,
                                                  receiveOptions());
  KJ_IF_MAYBE (offered, bootstrap) {
    // Two-party RPC has a bootstrap on each side: the peer reaches ours with bootstrap(CLIENT).
    rpc = kj::heap(capnp::makeRpcServer(*network, kj::mv(*offered)));
  } else {
    rpc = kj::heap(capnp::makeRpcClient(*network));
  }
  // Noticing the disconnect here means the next call reconnects at once, instead of first
  // failing on a dead connection and retrying.
  watcher = network->onDisconnect()
                .then([this]() { broken_ = true; },
                      [this](kj::Exception&&) {
                        // Reading failed: the connection is as dead as after a clean close.
                        broken_ = true;
                      })
                .eagerlyEvaluate(nullptr);
}

Connection::~Connection() = default;

Result<std::shared_ptr<Arena>> Connection::arena(uint64_t quota) {
  if (arena_ == nullptr) {
    Result<std::shared_ptr<Arena>> made = Arena::create(quota);
    if (std::holds_alternative<Error>(made))
      return made;
    arena_ = std::get<std::shared_ptr<Arena>>(std::move(made));
  }
  return arena_;
}

kj::Promise<Result<bool>> Connection::hello(const std::string& clientName) {
  capnp::word scratch[4];
  std::memset(scratch, 0, sizeof(scratch));
  capnp::MallocMessageBuilder message(scratch);
  auto vatId = message.getRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
  proto::Rjitd::Client bootstrap = rpc->bootstrap(vatId).castAs<proto::Rjitd>();

  auto request = bootstrap.helloRequest();
  proto::ClientHello::Builder client = request.initClient();
  client.setProtocolVersion(proto::PROTOCOL_VERSION);
  client.setClientName(kj::StringPtr(clientName.c_str(), clientName.size()));
  return request.send().then(
      [this](capnp::Response<proto::Rjitd::HelloResults>&& response) -> Result<bool> {
        proto::ServerHello::Reader server = response.getServer();
        // Refused (too many connections, a user rjitd does not serve): rjitd's own words and
        // kind, never the disconnect that follows.
        if (server.hasRefused())
          return toError(server.getRefused());
        uint32_t theirs = server.getProtocolVersion();
        uint32_t ours = proto::PROTOCOL_VERSION;
        if (theirs != ours)
          return Error(ErrorKind::ProtocolMismatch,
                       "rjitd at " + address_ + " (version " + text(server.getRjitdVersion()) +
                           ") speaks protocol " + std::to_string(theirs) + ", this client speaks " +
                           std::to_string(ours) + "; upgrade " +
                           (theirs > ours ? "libremotejit-client" : "rjitd") +
                           " so that both speak the same protocol");
        session_ = response.getSession();
        info_ = toServerInfo(server, address_);
        targets_ = toTargetNames(server);
        return true;
      });
}

kj::Promise<std::shared_ptr<Connection>> connectTo(kj::AsyncIoContext& io,
                                                   const rjitd::Endpoint& endpoint) {
  if (endpoint.kind == rjitd::Endpoint::Kind::Unix)
    return connectUnix(*io.lowLevelProvider, endpoint.path)
        .then([endpoint](kj::Own<kj::AsyncCapabilityStream> stream) {
          kj::AsyncCapabilityStream* capabilityStream = stream.get();
          return std::make_shared<Connection>(endpoint, kj::mv(stream), capabilityStream);
        });
  return connectTcp(*io.provider, endpoint).then([endpoint](kj::Own<kj::AsyncIoStream> stream) {
    return std::make_shared<Connection>(endpoint, kj::mv(stream), nullptr);
  });
}

std::shared_ptr<Connection> connectionOverFd(kj::AsyncIoContext& io, kj::AutoCloseFd fd,
                                             rjitd::Endpoint endpoint,
                                             capnp::Capability::Client bootstrap) {
  kj::Own<kj::AsyncCapabilityStream> stream = io.lowLevelProvider->wrapUnixSocketFd(
      kj::mv(fd), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  kj::AsyncCapabilityStream* capabilityStream = stream.get();
  return std::make_shared<Connection>(std::move(endpoint), kj::mv(stream), capabilityStream,
                                      kj::mv(bootstrap));
}

kj::Promise<Result<std::shared_ptr<Connection>>> handshake(std::shared_ptr<Connection> connection,
                                                           const std::string& clientName) {
  auto hello = connection->hello(clientName);
  return hello.then([connection](Result<bool>&& r) mutable -> Result<std::shared_ptr<Connection>> {
    if (auto* error = std::get_if<Error>(&r))
      return std::move(*error);
    return std::move(connection);
  });
}

// --- failover -------------------------------------------------------------------------------

std::chrono::milliseconds connectBudget(const Config& config) {
  size_t count = config.endpoints.size();
  if (count < 2)
    return std::chrono::milliseconds(0);
  std::chrono::milliseconds share = config.timeout / static_cast<int64_t>(count);
  return std::clamp(share, std::chrono::milliseconds(1), MAX_CONNECT_BUDGET);
}

Connector::Connector(kj::AsyncIoContext& io, const Config& config)
    : io(io), config(config), budget(connectBudget(config)), servers(config.endpoints.size()) {}

kj::Promise<Connector::ConnectionResult> Connector::connection() {
  return connection(configuredOrder(config.endpoints.size()));
}

kj::Promise<Connector::ConnectionResult> Connector::connection(std::vector<size_t> route,
                                                               kj::Maybe<kj::TimePoint> deadline) {
  kj::TimePoint now = io.provider->getTimer().now();
  Round round;
  round.route = partitionedStably(
      route, [this, now](size_t index) { return servers[index].tryLastUntil <= now; });
  kj::TimePoint callEnds = now + config.timeout.count() * kj::MILLISECONDS;
  KJ_IF_MAYBE (d, deadline)
    callEnds = *d;
  round.waitUntil = std::min(now + config.connectWait.count() * kj::MILLISECONDS,
                             callEnds - MAX_CONNECT_PAUSE.count() * kj::MILLISECONDS);
  return connectFrom(std::move(round), 0);
}

bool worthWaitingFor(const kj::Exception& exception) {
  // Our own Unix connect says errnoText(); KJ's TCP connect says strerror(): compare without
  // case. A description is all a kj::Exception of this KJ carries.
  // Both sides lower-cased whole: a localized strerror() may capitalize more than its first
  // letter.
  auto lower = [](std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
  };
  std::string description = lower(exception.getDescription().cStr());
  for (int error : {ECONNREFUSED, ENOENT, EAGAIN})
    if (description.find(lower(errnoText(error))) != std::string::npos)
      return true;
  return false;
}

void Connector::forget(const Connection* connection) {
  for (Server& server : servers)
    if (server.current.get() == connection)
      server.current = nullptr;
}

void Connector::abandonConnect() {
  for (Server& server : servers) {
    server.connecting = nullptr;
    ++server.generation;
  }
}

void Connector::reset() {
  for (Server& server : servers)
    server.current = nullptr;
  abandonConnect();
}

kj::Promise<Connector::ConnectionResult> Connector::connectFrom(Round round, size_t position) {
  if (position == round.route.size()) {
    kj::Timer& timer = io.provider->getTimer();
    if (round.worthWaiting && !round.route.empty() &&
        timer.now() + round.pause.count() * kj::MILLISECONDS <= round.waitUntil) {
      std::chrono::milliseconds pause = round.pause;
      return timer.afterDelay(pause.count() * kj::MILLISECONDS)
          .then([this, round = std::move(round), pause]() mutable {
            round.reasons.clear();
            round.waited += pause;
            round.pause = std::min(pause * 2, MAX_CONNECT_PAUSE);
            return connectFrom(std::move(round), 0);
          });
    }
    std::string waited = round.waited.count() > 0
                             ? " (tried again for " + std::to_string(round.waited.count()) +
                                   " ms, RJIT_CONNECT_WAIT_MS)"
                             : std::string();
    return kj::Promise<ConnectionResult>(ConnectionResult(
        Error(ErrorKind::Connection, "cannot reach rjitd: " + round.reasons + waited +
                                         " (is rjitd running? set RJIT_SERVER to its address)")));
  }
  size_t index = round.route[position];
  KJ_ASSERT(index < servers.size(), "a route names a server that is not configured", index);
  // evalNow: an address that fails synchronously (a socket() error) still goes to the handler.
  return kj::evalNow([&] { return connectionTo(index); })
      .then([](ConnectionResult&& result) { return kj::Promise<ConnectionResult>(kj::mv(result)); },
            [this, round = std::move(round), position, index](kj::Exception&& exception) mutable {
              // Unreachable, no answer within its budget, or the handshake broke: try the
              // next server of the route.
              round.reasons += (round.reasons.empty() ? "" : "; ") +
                               config.endpoints[index].text() + ": " + describe(exception);
              round.worthWaiting = round.worthWaiting && worthWaitingFor(exception);
              return connectFrom(std::move(round), position + 1);
            });
}

kj::Promise<Connector::ConnectionResult> Connector::connectionTo(size_t index) {
  Server& server = servers[index];
  if (server.current != nullptr && !server.current->broken())
    return kj::Promise<ConnectionResult>(ConnectionResult(server.current));
  server.current = nullptr;
  if (server.connecting == nullptr) {
    ++server.generation;
    connectingAddress_ = config.endpoints[index].text();
    kj::Promise<ConnectionResult> connect =
        kj::evalNow([&] { return connectAndGreet(index, false); });
    if (budget.count() > 0) {
      int64_t millis = budget.count();
      connect = connect.exclusiveJoin(
          io.provider->getTimer()
              .afterDelay(millis * kj::MILLISECONDS)
              .then([millis]() -> kj::Promise<ConnectionResult> {
                return unreachable("no answer to the handshake within " + std::to_string(millis) +
                                   " ms (its share of the deadline with several "
                                   "servers)");
              }));
    }
    server.connecting = connect.fork();
  }
  uint64_t generation = server.generation;
  return KJ_ASSERT_NONNULL(server.connecting)
      .addBranch()
      .then(
          [this, index, generation](ConnectionResult&& result) {
            Server& server = servers[index];
            server.tryLastUntil = kj::origin<kj::TimePoint>();
            if (generation == server.generation) {
              // This connect is over: the next call that finds no usable connection to this
              // server starts anew.
              server.connecting = nullptr;
              auto* connection = std::get_if<std::shared_ptr<Connection>>(&result);
              if (connection != nullptr && server.current == nullptr)
                server.current = *connection;
            }
            return kj::Promise<ConnectionResult>(kj::mv(result));
          },
          [this, index, generation](kj::Exception&& exception) {
            Server& server = servers[index];
            if (generation == server.generation)
              server.connecting = nullptr;
            server.tryLastUntil =
                io.provider->getTimer().now() + TRY_LAST_FOR.count() * kj::MILLISECONDS;
            return kj::Promise<ConnectionResult>(kj::mv(exception));
          });
}

kj::Promise<Connector::ConnectionResult> Connector::connectAndGreet(size_t index,
                                                                    bool handshakeRetried) {
  return connectTo(io, config.endpoints[index])
      .then([this, index, handshakeRetried](std::shared_ptr<Connection> connection) {
        return handshake(std::move(connection), config.clientName)
            .then(
                [](ConnectionResult&& result) {
                  return kj::Promise<ConnectionResult>(kj::mv(result));
                },
                [this, index,
                 handshakeRetried](kj::Exception&& exception) -> kj::Promise<ConnectionResult> {
                  if (exception.getType() == kj::Exception::Type::DISCONNECTED && !handshakeRetried)
                    // The server accepted the connection and closed it unanswered: what a
                    // draining rjitd does with one it accepted just before it stopped
                    // accepting. Its successor (systemd holds the socket meanwhile) answers a
                    // new connection, so this address gets one more try.
                    return connectAndGreet(index, true);
                  return kj::mv(exception);
                });
      });
}

}  // namespace rjit::detail
