// SPDX-License-Identifier: MIT
#include "exposer.h"

#include <arpa/inet.h>
#include <charconv>
#include <exception>
#include <kj/debug.h>
#include <prometheus/exposer.h>

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
  // civetweb binds IP addresses only; `localhost` is common enough to accept by name.
  address.host = host == "localhost" ? "127.0.0.1" : std::string(host);
  in_addr a;
  if (::inet_pton(AF_INET, address.host.c_str(), &a) != 1)
    return "the host in " + quoted + " is not an IPv4 address, [IPv6 address] or localhost";
  return address;
}

Exposer::Exposer(Key, std::unique_ptr<prometheus::Exposer> exposer, HttpAddress bound)
    : exposer(std::move(exposer)), bound(std::move(bound)) {}

Exposer::~Exposer() = default;

std::unique_ptr<Exposer> Exposer::create(const Metrics& metrics, const HttpAddress& address) {
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // Two threads: a scrape and a human's curl at once. Scrapes are cheap.
    exposer = std::make_unique<prometheus::Exposer>(address.text(), 2);
  } catch (const std::exception& e) {
    // prometheus-cpp reports a failed bind by throwing (civetweb's CivetException, whose text
    // does not say why); this is the boundary where that becomes rjitd's kind of error.
    kj::throwFatalException(kj::Exception(
        kj::Exception::Type::FAILED, __FILE__, __LINE__,
        kj::str("cannot serve metrics on ", address.text(),
                " (is the port in use, or the address not this host's?): ", e.what())));
  }
  exposer->RegisterCollectable(metrics.collectable());
  HttpAddress bound = address;
  auto ports = exposer->GetListeningPorts();
  if (!ports.empty())
    bound.port = static_cast<uint16_t>(ports.front());
  return std::make_unique<Exposer>(Key{}, std::move(exposer), std::move(bound));
}

}  // namespace rjitd::metrics
