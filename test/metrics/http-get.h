// SPDX-License-Identifier: MIT
// A minimal HTTP/1.0 GET over a loopback TCP socket, for the tests that read rjitd's /metrics
// endpoint and Prometheus's HTTP API (no HTTP library in the test's dependencies needed).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rjit::test {

struct HttpResponse {
  int status = 0;
  std::string body;
};

/// GET http://127.0.0.1:PORT{target}. Each socket operation is bounded (10 s). nullopt, with the
/// reason in `error`, when the server cannot be reached or answers something that is not HTTP.
std::optional<HttpResponse> httpGet(uint16_t port, const std::string& target,
                                    std::string* error = nullptr);

/// Percent-encodes everything but unreserved characters (RFC 3986), for query parameters.
std::string urlEncode(std::string_view text);

}  // namespace rjit::test
