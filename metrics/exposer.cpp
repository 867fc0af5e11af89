// SPDX-License-Identifier: MIT
#include "exposer.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/compat/http.h>
#include <kj/debug.h>
#include <kj/thread.h>
#include <map>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

// Why kj-http on a thread of its own instead of prometheus-cpp's Exposer (civetweb): civetweb
// serves each connection on one of its threads from the first byte on, so 200 clients that send
// half a request hold every thread and a scrape waits behind them (curl gave up after 10 s);
// more threads only raise the number of clients needed, and its request timeout is per thread.
// kj-http multiplexes every connection on one event loop: a slow client costs a descriptor and a
// few hundred bytes, HttpServerSettings::headerTimeout closes the ones that never finish, and a
// connection cap (closing the oldest) bounds the descriptors. It is Cap'n Proto's own HTTP
// library (libcapnp-dev, already a dependency). The endpoint keeps its own loop on its own
// thread, like the civetweb threads before it, so a scrape never runs on rjitd's loop.

namespace rjitd::metrics {

std::string HttpAddress::text() const {
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool HttpAddress::loopback() const {
  if (ipv6) {
    in6_addr a;
    return ::inet_pton(AF_INET6, host.c_str(), &a) == 1 && IN6_IS_ADDR_LOOPBACK(&a);
  }
  return host.starts_with("127.");
}

std::variant<HttpAddress, std::string> parseHttpAddress(std::string_view text) {
  std::string quoted = "'" + std::string(text) + "'";
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return quoted + " is not HOST:PORT (e.g. 127.0.0.1:9464)";
  std::string_view host = text.substr(0, colon);
  std::string_view portText = text.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
  if (portText.empty() || ec != std::errc() || end != portText.data() + portText.size() ||
      port > 65535)
    return "the port in " + quoted + " is not a number from 0 to 65535";
  HttpAddress address;
  address.port = static_cast<uint16_t>(port);
  if (host.starts_with('[')) {
    address.host = std::string(host.substr(1, host.size() > 2 ? host.size() - 2 : 0));
    address.ipv6 = true;
    in6_addr a;
    if (!host.ends_with(']') || ::inet_pton(AF_INET6, address.host.c_str(), &a) != 1)
      return "the host in " + quoted + " is not an IPv6 address in brackets";
    return address;
  }
  // The endpoint binds IP addresses only (no name lookup); `localhost` is common enough to
  // accept by name.
  address.host = host == "localhost" ? "127.0.0.1" : std::string(host);
  in_addr a;
  if (::inet_pton(AF_INET, address.host.c_str(), &a) != 1)
    return "the host in " + quoted + " is not an IPv4 address, [IPv6 address] or localhost";
  return address;
}

namespace {

/// Answers GET /metrics with the text exposition; anything else 404 or 405. One per connection,
/// to close it after the answer when the client asks (`Connection: close`): kj-http 0.9.2 would
/// keep it open until the pipeline timeout, and such a client reads to end of stream.
class MetricsService final : public kj::HttpService {
public:
  /// `metrics`, `headers` and `connection` outlive the service.
  MetricsService(const Metrics& metrics, const kj::HttpHeaderTable& headers,
                 kj::AsyncIoStream& connection)
      : metrics(metrics), headers(headers), connection(connection) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& requestHeaders,
                            kj::AsyncInputStream& /*requestBody*/, Response& response) override {
    bool close = false;
    KJ_IF_MAYBE (value, requestHeaders.get(kj::HttpHeaderId::CONNECTION)) {
      std::string text(value->cStr());
      std::transform(text.begin(), text.end(), text.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      close = text.find("close") != std::string::npos;
    }
    kj::StringPtr path = url;
    kj::String withoutQuery;
    KJ_IF_MAYBE (q, url.findFirst('?')) {
      withoutQuery = kj::heapString(url.slice(0, *q));
      path = withoutQuery;
    }
    kj::Promise<void> answered = nullptr;
    if (path != "/metrics")
      answered = reply(response, 404, "Not Found", "text/plain", "not found: try /metrics\n");
    else if (method != kj::HttpMethod::GET)
      answered = reply(response, 405, "Method Not Allowed", "text/plain", "only GET\n");
    else
      answered = reply(response, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                       metrics.exposition());
    if (!close)
      return answered;
    // End of stream after the answer; the server then reads the client's close and ends.
    return answered.then([this]() { connection.shutdownWrite(); });
  }

private:
  kj::Promise<void> reply(Response& response, unsigned status, kj::StringPtr statusText,
                          kj::StringPtr contentType, std::string body) {
    kj::HttpHeaders replyHeaders(headers);
    replyHeaders.set(kj::HttpHeaderId::CONTENT_TYPE, contentType);
    auto stream = response.send(status, statusText, replyHeaders, body.size());
    auto buffer = kj::heap<std::string>(std::move(body));
    auto written = stream->write(buffer->data(), buffer->size());
    return written.attach(kj::mv(stream), kj::mv(buffer));
  }

  const Metrics& metrics;
  const kj::HttpHeaderTable& headers;
  kj::AsyncIoStream& connection;
};

/// The endpoint's accept loop on its own event loop: every connection served by one HttpServer,
/// at most `limits.maxConnections` of them open (the oldest closed to make room).
class Server final : private kj::TaskSet::ErrorHandler {
public:
  /// Everything given outlives the server.
  Server(kj::AsyncIoContext& io, kj::ConnectionReceiver& listener, const Metrics& metrics,
         const ExposerLimits& limits)
      : listener(listener), timer(io.provider->getTimer()), limits(limits),
        http(
            io.provider->getTimer(), headers,
            [this, &metrics](kj::AsyncIoStream& connection) -> kj::Own<kj::HttpService> {
              return kj::heap<MetricsService>(metrics, headers, connection);
            },
            settings(limits)),
        tasks(*this) {}

  kj::Promise<void> run() { return acceptLoop(); }

private:
  static kj::HttpServerSettings settings(const ExposerLimits& limits) {
    kj::HttpServerSettings s;
    s.headerTimeout = limits.headerTimeout.count() * kj::MILLISECONDS;
    // An idle kept-alive connection holds a slot like a slow one: at most the same bound.
    s.pipelineTimeout = kj::min(s.pipelineTimeout, s.headerTimeout);
    return s;
  }

  kj::Promise<void> acceptLoop() {
    return listener.accept()
        .then(
            [this](kj::Own<kj::AsyncIoStream> connection) -> kj::Promise<void> {
              admit(kj::mv(connection));
              return kj::READY_NOW;
            },
            [this](kj::Exception&& e) -> kj::Promise<void> {
              // Out of descriptors (EMFILE) or a connection reset before accept: the listener
              // itself is fine, so log and keep accepting, after a pause so that a lasting
              // EMFILE neither spins nor floods the log.
              KJ_LOG(WARNING, "metrics endpoint: accept failed", e);
              return timer.afterDelay(100 * kj::MILLISECONDS);
            })
        .then([this]() { return acceptLoop(); });
  }

  void admit(kj::Own<kj::AsyncIoStream> connection) {
    if (open.size() >= limits.maxConnections && !open.empty()) {
      // Close the oldest: a scraper connects, asks and leaves within milliseconds, so the oldest
      // connection is the one most likely held open by a slow or hostile client.
      auto oldest = open.begin();
      oldest->second->fulfill();
      open.erase(oldest);
    }
    uint64_t id = nextId++;
    auto evict = kj::newPromiseAndFulfiller<void>();
    open.emplace(id, kj::mv(evict.fulfiller));
    tasks.add(http.listenHttp(kj::mv(connection))
                  .exclusiveJoin(kj::mv(evict.promise))
                  .then([this, id]() { open.erase(id); },
                        [this, id](kj::Exception&& e) {
                          open.erase(id);
                          // A client that vanishes mid-request is normal for HTTP.
                          if (e.getType() != kj::Exception::Type::DISCONNECTED)
                            KJ_LOG(WARNING, "metrics endpoint: connection failed", e);
                        }));
  }

  void taskFailed(kj::Exception&& e) override {
    KJ_LOG(ERROR, "metrics endpoint: connection task failed", e);
  }

  kj::ConnectionReceiver& listener;
  kj::Timer& timer;
  const ExposerLimits limits;
  kj::HttpHeaderTable headers;
  kj::HttpServer http;
  /// Open connections by age (ids increase): the fulfiller closes one.
  std::map<uint64_t, kj::Own<kj::PromiseFulfiller<void>>> open;
  uint64_t nextId = 0;
  kj::TaskSet tasks;
};

/// The bound listening socket, or FAILED saying why not.
kj::AutoCloseFd bindListener(const HttpAddress& address, HttpAddress& bound) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (address.ipv6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(address.port);
    KJ_REQUIRE(::inet_pton(AF_INET6, address.host.c_str(), &a->sin6_addr) == 1, address.host);
    length = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&storage);
    a->sin_family = AF_INET;
    a->sin_port = htons(address.port);
    KJ_REQUIRE(::inet_pton(AF_INET, address.host.c_str(), &a->sin_addr) == 1, address.host);
    length = sizeof(*a);
  }
  auto fail = [&](const char* step) {
    int error = errno;
    kj::throwFatalException(kj::Exception(
        kj::Exception::Type::FAILED, __FILE__, __LINE__,
        kj::str("cannot serve metrics on ", address.text(), ": ", step, ": ", strerror(error))));
  };
  kj::AutoCloseFd fd(
      ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP));
  if (fd.get() < 0)
    fail("socket");
  int one = 1;
  // Like civetweb before: a restarted rjitd rebinds while the old connections are in TIME_WAIT.
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
    fail("setsockopt");
  if (::bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0)
    fail("bind");
  if (::listen(fd, SOMAXCONN) != 0)
    fail("listen");
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0)
    fail("getsockname");
  bound = address;
  bound.port = ntohs(address.ipv6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                                  : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  return fd;
}

/// The endpoint thread's body: serves until `stop` becomes readable.
void serve(kj::AutoCloseFd listenFd, int stop, const Metrics& metrics,
           const ExposerLimits& limits) {
  auto io = kj::setupAsyncIo();
  auto listener = io.lowLevelProvider->wrapListenSocketFd(
      kj::mv(listenFd),
      kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC | kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
  Server server(io, *listener, metrics, limits);
  kj::UnixEventPort::FdObserver stopObserver(io.unixEventPort, stop,
                                             kj::UnixEventPort::FdObserver::OBSERVE_READ);
  // Leaving this frame destroys the server with its connections: the stop closes them all.
  server.run().exclusiveJoin(stopObserver.whenBecomesReadable()).wait(io.waitScope);
}

}  // namespace

/// The endpoint's thread and the eventfd that stops it.
struct Exposer::Serving {
  Serving(kj::AutoCloseFd listenFd, kj::AutoCloseFd stopFd, const Metrics& metrics,
          const ExposerLimits& limits)
      : stop(kj::mv(stopFd)),
        thread([fd = kj::mv(listenFd), stop = stop.get(), &metrics, limits]() mutable {
          // Caught here: kj::Thread would rethrow it from the destructor, during rjitd's exit.
          KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                              [&]() { serve(kj::mv(fd), stop, metrics, limits); })) {
            KJ_LOG(ERROR, "metrics endpoint stopped", *e);
          }
        }) {}

  ~Serving() {
    uint64_t one = 1;
    // An eventfd write of 1 cannot fail short of a full counter, which one write cannot reach.
    ssize_t written = ::write(stop, &one, sizeof(one));
    KJ_ASSERT(written == sizeof(one), "cannot stop the metrics endpoint", errno) {
      break;
    }
  }

  kj::AutoCloseFd stop;
  /// Last: destroyed (joined) first, while `stop` is still open.
  kj::Thread thread;
};

Exposer::Exposer(Key, std::unique_ptr<Serving> serving, HttpAddress bound)
    : serving(std::move(serving)), bound(std::move(bound)) {}

Exposer::~Exposer() = default;

std::unique_ptr<Exposer> Exposer::create(const Metrics& metrics, const HttpAddress& address,
                                         const ExposerLimits& limits) {
  KJ_REQUIRE(limits.maxConnections > 0, "the metrics endpoint needs at least one connection");
  HttpAddress bound;
  kj::AutoCloseFd listenFd = bindListener(address, bound);
  int stopFd;
  KJ_SYSCALL(stopFd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd for the metrics endpoint");
  kj::AutoCloseFd stop(stopFd);
  auto serving = std::make_unique<Serving>(kj::mv(listenFd), kj::mv(stop), metrics, limits);
  return std::make_unique<Exposer>(Key{}, std::move(serving), std::move(bound));
}

}  // namespace rjitd::metrics
