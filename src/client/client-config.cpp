// SPDX-License-Identifier: MIT
// Option and environment resolution (see config.h).
#include "client-config.h"

#include <charconv>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <variant>

namespace rjit::detail {

namespace {

/// Where rjitd.socket listens (units/rjitd.socket); also root's default socket.
constexpr const char* SYSTEM_SOCKET_PATH = "/run/rjitd/rjitd.sock";

/// The variable's value, or nullopt when it is unset or empty.
std::optional<std::string> environment(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || value[0] == '\0')
    return std::nullopt;
  return std::string(value);
}

/// A whole decimal number with nothing around it, or nullopt.
std::optional<uint64_t> parseUnsigned(std::string_view text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

Error badVariable(const char* name, const std::string& value, const std::string& expected) {
  return Error(ErrorKind::Configuration,
               "invalid " + std::string(name) + " '" + value + "': " + expected);
}

/// The servers and their weights; `listed` tells a configured list from the default sockets.
struct Servers {
  std::vector<rjitd::Endpoint> endpoints;
  std::vector<uint32_t> weights;
  bool listed = false;
};

void append(Servers& out, std::vector<WeightedEndpoint>&& entries) {
  for (WeightedEndpoint& entry : entries) {
    out.endpoints.push_back(std::move(entry.endpoint));
    out.weights.push_back(entry.weight);
  }
}

Result<Servers> resolveServers(const ClientOptions& options) {
  Servers out;
  if (!options.servers.empty()) {
    out.listed = true;
    // An item may itself be a comma-separated list, as `rjit --server a,b` passes it.
    for (const std::string& item : options.servers) {
      auto parsed = parseServerList(item);
      if (auto* message = std::get_if<std::string>(&parsed))
        return Error(ErrorKind::Configuration, "invalid server address: " + *message);
      append(out, std::get<std::vector<WeightedEndpoint>>(std::move(parsed)));
    }
    return out;
  }
  if (std::optional<std::string> env = environment("RJIT_SERVER")) {
    auto parsed = parseServerList(*env);
    if (auto* message = std::get_if<std::string>(&parsed))
      return badVariable("RJIT_SERVER", *env, *message);
    out.listed = true;
    append(out, std::get<std::vector<WeightedEndpoint>>(std::move(parsed)));
    return out;
  }
  // The caller's default socket (root: the system one), then, for an ordinary user, the
  // system socket too: the one rjitd.socket listens on (units/rjitd.socket), which members of
  // the group `rjitd` may use. An rjitd the user runs themselves comes first.
  for (std::string path : {rjitd::defaultSocketPath(), std::string(SYSTEM_SOCKET_PATH)}) {
    if (!out.endpoints.empty() && out.endpoints.front().path == path)
      break;
    rjitd::Endpoint ep;
    ep.kind = rjitd::Endpoint::Kind::Unix;
    ep.path = std::move(path);
    out.endpoints.push_back(std::move(ep));
    out.weights.push_back(DEFAULT_SERVER_WEIGHT);
  }
  return out;
}

/// Key routing by default for a list the user configured; the default sockets stay in order,
/// so that a user's own rjitd keeps coming before the system one.
Result<RoutingPolicy> resolvePolicy(const ClientOptions& options, const Servers& servers) {
  switch (options.serverPolicy) {
  case ServerPolicy::Ordered: return RoutingPolicy::Ordered;
  case ServerPolicy::Key: return RoutingPolicy::Key;
  case ServerPolicy::Default: break;
  }
  if (std::optional<std::string> env = environment("RJIT_SERVER_POLICY")) {
    auto parsed = parseRoutingPolicy(*env);
    if (auto* message = std::get_if<std::string>(&parsed))
      return badVariable("RJIT_SERVER_POLICY", *env, *message);
    return std::get<RoutingPolicy>(parsed);
  }
  return servers.listed && servers.endpoints.size() > 1 ? RoutingPolicy::Key
                                                        : RoutingPolicy::Ordered;
}

Result<std::chrono::milliseconds> resolveTimeout(const ClientOptions& options) {
  if (options.timeout.count() != 0) {
    if (options.timeout.count() < 0 || options.timeout.count() > MAX_TIMEOUT_MS)
      return Error(ErrorKind::Configuration,
                   "invalid timeout of " + std::to_string(options.timeout.count()) +
                       " ms: expected 1 to " + std::to_string(MAX_TIMEOUT_MS) + " ms");
    return options.timeout;
  }
  if (std::optional<std::string> env = environment("RJIT_TIMEOUT_MS")) {
    std::optional<uint64_t> value = parseUnsigned(*env);
    if (!value || *value == 0 || *value > static_cast<uint64_t>(MAX_TIMEOUT_MS))
      return badVariable("RJIT_TIMEOUT_MS", *env,
                         "expected a positive whole number of milliseconds (at most " +
                             std::to_string(MAX_TIMEOUT_MS) + ")");
    return std::chrono::milliseconds(static_cast<int64_t>(*value));
  }
  return std::chrono::milliseconds(60000);
}

Result<std::chrono::milliseconds> resolveConnectWait(const ClientOptions& options) {
  if (options.connectWait) {
    if (options.connectWait->count() < 0 || options.connectWait->count() > MAX_TIMEOUT_MS)
      return Error(ErrorKind::Configuration,
                   "invalid connect wait of " + std::to_string(options.connectWait->count()) +
                       " ms: expected 0 to " + std::to_string(MAX_TIMEOUT_MS) + " ms");
    return *options.connectWait;
  }
  if (std::optional<std::string> env = environment("RJIT_CONNECT_WAIT_MS")) {
    std::optional<uint64_t> value = parseUnsigned(*env);
    if (!value || *value > static_cast<uint64_t>(MAX_TIMEOUT_MS))
      return badVariable("RJIT_CONNECT_WAIT_MS", *env,
                         "expected a whole number of milliseconds (0: fail at once when no "
                         "server accepts the connection)");
    return std::chrono::milliseconds(static_cast<int64_t>(*value));
  }
  return DEFAULT_CONNECT_WAIT;
}

Result<uint64_t> resolveHashFirstBytes(const ClientOptions& options) {
  if (options.hashFirstBytes)
    return *options.hashFirstBytes;
  if (std::optional<std::string> env = environment("RJIT_HASH_FIRST_BYTES")) {
    std::optional<uint64_t> value = parseUnsigned(*env);
    if (!value)
      return badVariable("RJIT_HASH_FIRST_BYTES", *env,
                         "expected a non-negative whole number of bytes (0: always look up by "
                         "hash first)");
    return *value;
  }
  return uint64_t{64 * 1024};
}

Result<uint64_t> resolveMemoryQuota(const ClientOptions& options) {
  constexpr uint64_t MIN = 64 * 1024, MAX = 1ull << 44;  // 16 TiB: far below any address space
  if (options.memoryQuota != 0) {
    if (options.memoryQuota < MIN || options.memoryQuota > MAX)
      return Error(ErrorKind::Configuration,
                   "invalid memory quota of " + std::to_string(options.memoryQuota) +
                       " bytes: expected " + std::to_string(MIN) + " to " + std::to_string(MAX));
    return options.memoryQuota;
  }
  if (std::optional<std::string> env = environment("RJIT_MEMORY_QUOTA")) {
    std::optional<uint64_t> value = parseUnsigned(*env);
    if (!value || *value < MIN || *value > MAX)
      return badVariable("RJIT_MEMORY_QUOTA", *env,
                         "expected a whole number of bytes from " + std::to_string(MIN) + " to " +
                             std::to_string(MAX));
    return *value;
  }
  return DEFAULT_MEMORY_QUOTA;
}

/// Moves a resolved value into `out`, or hands back the error.
template <typename T> std::optional<Error> take(Result<T>&& result, T& out) {
  if (auto* error = std::get_if<Error>(&result))
    return std::move(*error);
  out = std::get<T>(std::move(result));
  return std::nullopt;
}

}  // namespace

Result<Config> resolveConfig(const ClientOptions& options) {
  Config config;
  Servers servers;
  if (auto error = take(resolveServers(options), servers))
    return std::move(*error);
  if (auto error = take(resolvePolicy(options, servers), config.policy))
    return std::move(*error);
  config.endpoints = std::move(servers.endpoints);
  config.weights = std::move(servers.weights);
  if (auto error = take(resolveTimeout(options), config.timeout))
    return std::move(*error);
  if (auto error = take(resolveConnectWait(options), config.connectWait))
    return std::move(*error);
  if (auto error = take(resolveHashFirstBytes(options), config.hashFirstBytes))
    return std::move(*error);
  if (auto error = take(resolveMemoryQuota(options), config.memoryQuota))
    return std::move(*error);
  config.clientName = options.clientName;
  return config;
}

}  // namespace rjit::detail
