// SPDX-License-Identifier: MIT
// Which server a request goes to: weighted rendezvous hashing of a routing key over the
// configured servers (the ranking is also the failover order), the `ordered` policy, and the
// RJIT_SERVER weight and RJIT_SERVER_POLICY syntax.
#pragma once

#include "cache-key.h"
#include "endpoint.h"
#include "hash-worker.h"
#include "remotejit/client.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace rjit::detail {

/// How calls that carry a module choose among several servers.
enum class RoutingPolicy : uint8_t {
  Ordered,  ///< first available in the configured order (one server takes everything)
  Key,      ///< ranked by rendezvous hashing of the request's routing key
};

/// A server's weight when its entry names none.
constexpr uint32_t DEFAULT_SERVER_WEIGHT = 1;
/// The largest weight accepted: a share 1000 times another's is already "all of it", and a
/// bound keeps a typo (an extra zero or ten) from passing silently.
constexpr uint32_t MAX_SERVER_WEIGHT = 1000;

/// One entry of RJIT_SERVER: an address and its weight.
struct WeightedEndpoint {
  rjitd::Endpoint endpoint;
  uint32_t weight = DEFAULT_SERVER_WEIGHT;
};

/// Parses a comma-separated list of `ADDRESS[;weight=N]` (N a whole number from 1 to
/// MAX_SERVER_WEIGHT). No address contains ";weight=" except a Unix socket path written that
/// way on purpose, which this syntax gives up. On failure returns a message naming the entry
/// and the accepted form.
std::variant<std::vector<WeightedEndpoint>, std::string> parseServerList(std::string_view text);

/// "ordered" or "key"; otherwise a message naming the accepted values.
std::variant<RoutingPolicy, std::string> parseRoutingPolicy(std::string_view text);

/// What requests are routed by: a SHA-256 digest, uniformly distributed.
using RoutingKey = rjitd::cache::Key;

/// What a request's routing key covers besides its module bytes. The daemon's cache key also
/// covers the compiler identity, the canonical triple and the target's default CPU, which the
/// client learns only from a server's hello, i.e. after it has chosen the server. So the
/// routing key is computed the same way (rjitd::cache::computeKey) from what the client has
/// before it connects: the module bytes, the target and CPU as the request spells them, the
/// features and the optimization level, with an empty compiler identity. Requests with one
/// cache key have one routing key unless they spell the target or CPU differently (e.g.
/// "x86_64" and its triple), which only costs a cache miss on the second server, never a wrong
/// result. The digest is only ever hashed further with server addresses, never sent.
KeyParams routingParams(const CompileRequest& request);

/// The routing key of `request` (routingParams over its module bytes), on the calling thread.
RoutingKey routingKey(const CompileRequest& request);

/// The weighted rendezvous score of `address` for `key`: -weight / ln(u), where u in (0, 1)
/// comes from the first 8 bytes of SHA-256(key || address). Each server's score depends only
/// on the key and itself, so a server joining or leaving changes no other's score: only the
/// keys it wins (or won) move.
double rendezvousScore(const RoutingKey& key, std::string_view address, uint32_t weight);

/// Indexes of `servers` from the highest score for `key` to the lowest (ties: configured order
/// first). `weights[i]` weighs `servers[i]`; missing weights count as DEFAULT_SERVER_WEIGHT.
std::vector<size_t> rankServers(const RoutingKey& key, const std::vector<rjitd::Endpoint>& servers,
                                const std::vector<uint32_t>& weights);

/// 0, 1, ..., count - 1: the configured order.
std::vector<size_t> configuredOrder(size_t count);

/// `order` with the Unix-socket servers first, each group in its own order: a load's ranking.
/// Loading into this process passes the image's memfd over a Unix socket (the same-host fast
/// path); over TCP the image's bytes are copied, so a TCP server serves a load only when no
/// Unix one answers.
std::vector<size_t> unixFirst(const std::vector<size_t>& order,
                              const std::vector<rjitd::Endpoint>& servers);

/// `order` with the entries for which `first` holds moved to the front, each part in its
/// former order: std::stable_partition, without it (libstdc++ 12's uses get_temporary_buffer,
/// which clang-19, the fuzz build's compiler, rejects as deprecated under -Werror).
template <typename Pred>
std::vector<size_t> partitionedStably(const std::vector<size_t>& order, Pred first) {
  std::vector<size_t> out;
  out.reserve(order.size());
  for (size_t i : order)
    if (first(i))
      out.push_back(i);
  for (size_t i : order)
    if (!first(i))
      out.push_back(i);
  return out;
}

}  // namespace rjit::detail
