// SPDX-License-Identifier: MIT
// The optional HTTP endpoint (`rjitd --metrics HOST:PORT`) that serves rjitd's metrics at
// /metrics for Prometheus to scrape; prometheus-cpp's Exposer on its own civetweb threads, so
// a scrape never runs on the event loop.
#pragma once

#include "metrics.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

namespace prometheus {
class Exposer;
}  // namespace prometheus

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

class Exposer final {
public:
  /// Serves `metrics` at http://ADDRESS/metrics. `metrics` outlives the exposer. Throws
  /// kj::Exception (FAILED) when the address cannot be bound.
  static std::unique_ptr<Exposer> create(const Metrics& metrics, const HttpAddress& address);
  /// Stops serving (waits for a scrape in progress to finish).
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
  Exposer(Key, std::unique_ptr<prometheus::Exposer> exposer, HttpAddress bound);

private:
  std::unique_ptr<prometheus::Exposer> exposer;
  HttpAddress bound;
};

}  // namespace rjitd::metrics
