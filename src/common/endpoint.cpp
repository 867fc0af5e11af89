// SPDX-License-Identifier: MIT
// Address parsing and default locations (see endpoint.h).
#include "endpoint.h"

#include <charconv>
#include <cstdlib>
#include <unistd.h>
#include <vector>

namespace rjitd {

namespace {

constexpr const char* kAddressHelp =
    "expected unix:/PATH or tcp:HOST:PORT (e.g. unix:/run/rjitd/rjitd.sock, tcp:127.0.0.1:7411)";

std::string quoted(std::string_view s) {
  return "'" + std::string(s) + "'";
}

}  // namespace

std::string Endpoint::text() const {
  if (kind == Kind::Unix)
    return "unix:" + path;
  bool v6 = host.find(':') != std::string::npos;
  return "tcp:" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string Endpoint::kjAddress() const {
  if (kind == Kind::Unix)
    return "unix:" + path;
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::variant<Endpoint, std::string> parseEndpoint(std::string_view text) {
  Endpoint ep;
  if (text.starts_with("unix:") || text.starts_with("/")) {
    std::string_view path = text.starts_with("unix:") ? text.substr(5) : text;
    if (path.empty())
      return "empty Unix socket path in address " + quoted(text) + "; " + kAddressHelp;
    // sun_path holds 108 bytes including the terminating NUL.
    if (path.size() > 107)
      return "Unix socket path " + quoted(path) + " is longer than 107 bytes";
    ep.kind = Endpoint::Kind::Unix;
    ep.path = std::string(path);
    return ep;
  }
  if (!text.starts_with("tcp:"))
    return "unknown address " + quoted(text) + "; " + kAddressHelp;
  std::string_view rest = text.substr(4);
  std::string_view host, port;
  if (rest.starts_with("[")) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
      return "bad IPv6 address " + quoted(text) + "; expected tcp:[ADDRESS]:PORT";
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos)
      return "missing port in address " + quoted(text) + "; " + kAddressHelp;
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return "IPv6 address " + quoted(text) + " needs brackets: tcp:[ADDRESS]:PORT";
  }
  if (host.empty())
    return "missing host in address " + quoted(text) + "; " + kAddressHelp;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535)
    return "bad port " + quoted(port) + " in address " + quoted(text) +
           "; expected a number from 0 to 65535";
  ep.kind = Endpoint::Kind::Tcp;
  ep.host = std::string(host);
  ep.port = static_cast<uint16_t>(value);
  return ep;
}

std::variant<std::vector<Endpoint>, std::string> parseEndpointList(std::string_view text) {
  std::vector<Endpoint> out;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    // Tolerate spaces around commas, as people write lists.
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    if (item.empty())
      return "empty address in list " + quoted(text) + "; separate addresses with single commas";
    auto parsed = parseEndpoint(item);
    if (auto* err = std::get_if<std::string>(&parsed))
      return *err;
    out.push_back(std::get<Endpoint>(std::move(parsed)));
    if (comma == std::string_view::npos)
      break;
    start = comma + 1;
  }
  return out;
}

std::string defaultSocketPath() {
  if (geteuid() != 0) {
    const char* runtime = std::getenv("XDG_RUNTIME_DIR");
    if (runtime != nullptr && runtime[0] == '/')
      return std::string(runtime) + "/rjitd.sock";
  }
  return "/run/rjitd/rjitd.sock";
}

}  // namespace rjitd
