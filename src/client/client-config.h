// SPDX-License-Identifier: MIT
// The client's effective configuration: ClientOptions, else the environment (RJIT_SERVER,
// RJIT_SERVER_POLICY, RJIT_TIMEOUT_MS, RJIT_CONNECT_WAIT_MS, RJIT_HASH_FIRST_BYTES,
// RJIT_MEMORY_QUOTA), else the
// defaults.
#pragma once

#include "endpoint.h"
#include "remotejit/client.h"
#include "result.h"
#include "routing.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace rjit::detail {

/// Address space reserved per connection for loaded modules, unless configured.
constexpr uint64_t DEFAULT_MEMORY_QUOTA = 256ull << 20;

/// How long a call waits for refusing servers, unless configured: long enough for a standalone
/// rjitd to be restarted (systemd's RestartSec=100ms and a start of well under a second),
/// short enough that a client without any rjitd hears so soon.
constexpr std::chrono::milliseconds DEFAULT_CONNECT_WAIT{2000};

struct Config {
  std::vector<rjitd::Endpoint> endpoints;  ///< in the configured order; never empty
  /// weights[i] weighs endpoints[i] in the key ranking; missing ones count as 1.
  std::vector<uint32_t> weights;
  RoutingPolicy policy = RoutingPolicy::Ordered;
  std::chrono::milliseconds timeout{60000};
  /// How long a call keeps trying servers that refuse connections (Connector::connection).
  std::chrono::milliseconds connectWait = DEFAULT_CONNECT_WAIT;
  uint64_t hashFirstBytes = 64 * 1024;
  uint64_t memoryQuota = DEFAULT_MEMORY_QUOTA;
  std::string clientName;
};

/// The largest deadline accepted (about 24.8 days): keeps every duration far from overflow.
constexpr int64_t MAX_TIMEOUT_MS = 2147483647;

/// Resolves `options` against the environment. Fails with Error(Configuration) naming the option
/// or variable, its value and what is expected. An environment variable set to "" counts as
/// unset.
Result<Config> resolveConfig(const ClientOptions& options);

}  // namespace rjit::detail
