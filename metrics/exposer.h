// SPDX-License-Identifier: MIT
// The optional HTTP endpoint (`rjitd --metrics HOST:PORT`) that serves rjitd's metrics at
// /metrics for Prometheus to scrape: kj-http on its own thread and event loop, so a scrape never
// runs on rjitd's loop and slow or half-open HTTP clients cost a descriptor each, not a thread.
#pragma once

#include "metrics.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

namespace rjitd::metrics {

/// An address given as HOST:PORT: an IPv4 address, `[IPv6]` or `localhost`, and a port
/// (0: any free port).
struct HttpAddress {
  std::string host;  ///< without brackets
  uint16_t port = 0;
  bool ipv6 = false;

  /// "127.0.0.1:9464", "[::1]:9464"
  std::string text() const;
  /// Whether only this host can reach it. The endpoint is unauthenticated, so anything else
  /// deserves a warning.
  bool loopback() const;
};

/// Parses HOST:PORT; on failure, a message saying what is wrong (like parseEndpoint()).
std::variant<HttpAddress, std::string> parseHttpAddress(std::string_view text);

/// The endpoint's bounds against slow, idle or hostile HTTP clients.
struct ExposerLimits {
  /// Connections open at once. A new connection past it closes the oldest open one instead of
  /// being refused, so clients that hold connections open cannot lock a scraper out.
  size_t maxConnections = 64;
  /// Time a connection has to send a complete request header (from its start, and from the end
  /// of the previous response on a kept-alive connection) before it is closed. Prometheus's
  /// default scrape timeout is 10 s too.
  std::chrono::milliseconds headerTimeout{10'000};
};

class Exposer final {
public:
  /// Serves `metrics` at http://ADDRESS/metrics. `metrics` outlives the exposer. Throws
  /// kj::Exception (FAILED) when the address cannot be bound, saying why. Call it after
  /// kj::UnixEventPort::captureSignal(): the endpoint's thread inherits the blocked signals, so
  /// they stay for the loop that waits for them.
  static std::unique_ptr<Exposer> create(const Metrics& metrics, const HttpAddress& address,
                                         const ExposerLimits& limits = ExposerLimits{});
  /// Stops serving: closes every connection and joins the endpoint's thread (after the scrape it
  /// may be rendering).
  ~Exposer();
  Exposer(const Exposer&) = delete;
  Exposer& operator=(const Exposer&) = delete;

  /// The address served, with the port actually bound (for port 0).
  const HttpAddress& address() const { return bound; }

private:
  struct Key {
    explicit Key() = default;
  };

public:
  /// Only create() constructs (the key is private).
  struct Serving;
  Exposer(Key, std::unique_ptr<Serving> serving, HttpAddress bound);

private:
  std::unique_ptr<Serving> serving;
  HttpAddress bound;
};

}  // namespace rjitd::metrics
