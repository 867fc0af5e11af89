// SPDX-License-Identifier: MIT
// Server addresses as users write them ("unix:/path", "tcp:HOST:PORT") and the default socket
// path, shared by rjitd and its clients so both agree on where to meet.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace rjitd {

struct Endpoint {
  enum class Kind : uint8_t { Unix, Tcp };
  Kind kind = Kind::Unix;
  std::string path;   ///< Unix socket path (Kind::Unix)
  std::string host;   ///< host name or address, without IPv6 brackets (Kind::Tcp)
  uint16_t port = 0;  ///< (Kind::Tcp)

  /// The user-facing spelling: "unix:/run/rjitd/rjitd.sock", "tcp:127.0.0.1:7411",
  /// "tcp:[::1]:7411".
  std::string text() const;
  /// The address in kj's syntax for `Network::parseAddress` ("unix:/p", "127.0.0.1:7411").
  std::string kjAddress() const;
};

/// Parses one address. A bare absolute path is taken as a Unix socket. On failure returns a
/// message saying what was wrong and what a valid address looks like.
std::variant<Endpoint, std::string> parseEndpoint(std::string_view text);

/// Parses a comma-separated list (RJIT_SERVER). Empty items are an error.
std::variant<std::vector<Endpoint>, std::string> parseEndpointList(std::string_view text);

/// /run/rjitd/rjitd.sock for root; $XDG_RUNTIME_DIR/rjitd.sock for other users (falling back
/// to /run/rjitd/rjitd.sock when XDG_RUNTIME_DIR is unset, where a system rjitd listens).
std::string defaultSocketPath();

}  // namespace rjitd
