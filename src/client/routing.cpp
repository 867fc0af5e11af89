// SPDX-License-Identifier: MIT
// Weighted rendezvous hashing and the server-list syntax (see routing.h).
#include "routing.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <nettle/sha2.h>
#include <numeric>

namespace rjit::detail {

namespace {

/// Separates an address from its weight in an RJIT_SERVER entry. ';' cannot start or end a
/// tcp: address (its port is a number) and the list separator ',' is taken, so this suffix
/// keeps every address written before weights existed meaning what it meant.
constexpr std::string_view WEIGHT_MARKER = ";weight=";

std::string quoted(std::string_view s) {
  return "'" + std::string(s) + "'";
}

std::string weightForm() {
  return "expected ADDRESS or ADDRESS;weight=N with N a whole number from 1 to " +
         std::to_string(MAX_SERVER_WEIGHT) + " (e.g. unix:/run/rjitd/rjitd.sock;weight=2)";
}

std::string_view trimmed(std::string_view item) {
  while (!item.empty() && item.front() == ' ')
    item.remove_prefix(1);
  while (!item.empty() && item.back() == ' ')
    item.remove_suffix(1);
  return item;
}

std::variant<WeightedEndpoint, std::string> parseEntry(std::string_view entry) {
  WeightedEndpoint out;
  std::string_view address = entry;
  size_t marker = entry.rfind(WEIGHT_MARKER);
  if (marker != std::string_view::npos) {
    address = entry.substr(0, marker);
    std::string_view digits = entry.substr(marker + WEIGHT_MARKER.size());
    uint64_t weight = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), weight);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
        weight == 0 || weight > MAX_SERVER_WEIGHT)
      return "bad weight " + quoted(digits) + " in entry " + quoted(entry) + "; " + weightForm();
    out.weight = static_cast<uint32_t>(weight);
  }
  auto parsed = rjitd::parseEndpoint(address);
  if (auto* message = std::get_if<std::string>(&parsed))
    return *message;
  out.endpoint = std::get<rjitd::Endpoint>(std::move(parsed));
  return out;
}

/// A double in (0, 1), never 0 or 1, from the top 53 bits of `bits`: ln(u) is then finite and
/// negative, so every score is finite and positive.
double unitInterval(uint64_t bits) {
  return (static_cast<double>(bits >> 11) + 0.5) * 0x1p-53;
}

}  // namespace

std::variant<std::vector<WeightedEndpoint>, std::string> parseServerList(std::string_view text) {
  std::vector<WeightedEndpoint> out;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view entry = trimmed(text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (entry.empty())
      return "empty address in list " + quoted(text) + "; separate addresses with single commas";
    auto parsed = parseEntry(entry);
    if (auto* message = std::get_if<std::string>(&parsed))
      return *message;
    out.push_back(std::get<WeightedEndpoint>(std::move(parsed)));
    if (comma == std::string_view::npos)
      break;
    start = comma + 1;
  }
  return out;
}

std::variant<RoutingPolicy, std::string> parseRoutingPolicy(std::string_view text) {
  if (text == "ordered")
    return RoutingPolicy::Ordered;
  if (text == "key")
    return RoutingPolicy::Key;
  return std::string("expected 'key' (rank the servers by the request's module, the default with "
                     "several servers) or 'ordered' (the first server that answers)");
}

KeyParams routingParams(const CompileRequest& request) {
  return KeyParams{request.target, request.cpu, request.features, request.optLevel, ""};
}

RoutingKey routingKey(const CompileRequest& request) {
  KeyParams params = routingParams(request);
  return rjitd::cache::computeKey({request.module, params.triple, params.cpu, params.features,
                                   params.optLevel, params.compilerIdentity});
}

double rendezvousScore(const RoutingKey& key, std::string_view address, uint32_t weight) {
  // SHA-256 rather than a fast hash: the key is already a digest, and the cost (one block per
  // server per call) is nothing next to a round trip. Nettle, as for the cache key.
  sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, key.size(), key.data());
  sha256_update(&ctx, address.size(), reinterpret_cast<const uint8_t*>(address.data()));
  uint8_t digest[SHA256_DIGEST_SIZE];
  sha256_digest(&ctx, sizeof(digest), digest);
  uint64_t bits = 0;
  for (int i = 0; i < 8; ++i)
    bits = (bits << 8) | digest[i];
  return -static_cast<double>(weight) / std::log(unitInterval(bits));
}

std::vector<size_t> rankServers(const RoutingKey& key, const std::vector<rjitd::Endpoint>& servers,
                                const std::vector<uint32_t>& weights) {
  std::vector<double> scores(servers.size());
  for (size_t i = 0; i < servers.size(); ++i)
    scores[i] = rendezvousScore(key, servers[i].text(),
                                i < weights.size() ? weights[i] : DEFAULT_SERVER_WEIGHT);
  std::vector<size_t> order = configuredOrder(servers.size());
  // Ties in configured order. std::sort with the index as tie-break, not std::stable_sort:
  // libstdc++ 12's stable_sort uses get_temporary_buffer, which clang-19 (the fuzz build)
  // flags as deprecated.
  std::sort(order.begin(), order.end(), [&scores](size_t a, size_t b) {
    return scores[a] != scores[b] ? scores[a] > scores[b] : a < b;
  });
  return order;
}

std::vector<size_t> configuredOrder(size_t count) {
  std::vector<size_t> order(count);
  std::iota(order.begin(), order.end(), size_t{0});
  return order;
}

std::vector<size_t> unixFirst(const std::vector<size_t>& order,
                              const std::vector<rjitd::Endpoint>& servers) {
  return partitionedStably(
      order, [&servers](size_t i) { return servers[i].kind == rjitd::Endpoint::Kind::Unix; });
}

}  // namespace rjit::detail
