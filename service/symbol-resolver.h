// SPDX-License-Identifier: MIT
// Resolving a load's imports: from what rjitd knows (the request's offer, the connection's
// loaded modules and remembered process symbols), then by one question to the client.
#pragma once

#include "client-symbols.h"
#include "outcome.h"

#include <chrono>
#include <cstdint>
#include <kj/async.h>
#include <kj/timer.h>
#include <memory>
#include <rjit.capnp.h>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace rjitd::service {

/// Imports resolved for one load, the modules of this client they come from, and the names
/// the client was asked about (answered 0 or not: it is not asked again).
struct Resolution {
  std::unordered_map<std::string, uint64_t> addresses;
  std::set<uint64_t> modules;
  std::set<std::string> asked;
};

/// What rjitd answers imports from without asking the client, in this order of precedence.
/// Both references outlive the calls they are passed to.
struct KnownSymbols {
  const std::unordered_map<std::string, uint64_t>& offered;  ///< LoadRequest.symbols
  const ClientSymbols& client;  ///< definitions of loaded modules, remembered process symbols
  bool processSymbols = true;   ///< LoadRequest.processSymbols: use the remembered ones
};

/// Resolves the `names` rjitd can answer itself into `r` (skipping those the linker defines
/// and those resolved or asked already) and returns the rest, which only the client can answer.
std::vector<std::string> resolveKnown(const KnownSymbols& known, Resolution& r,
                                      const std::vector<std::string>& names);

/// How long a client may take to answer and how many of its stable answers are remembered.
struct QuestionLimits {
  std::chrono::milliseconds timeout{30000};
  uint32_t maxRememberedSymbols = 65536;
  uint64_t maxRememberedSymbolBytes = 4ull << 20;
};

/// Asks the client's `resolver` for `names` (none: resolves at once) and records its answers in
/// `r`, and the stable ones in `client` within `limits`. The client's faults are Failures: an
/// InvalidRequest when it answers with the wrong number of addresses or its resolver fails, a
/// LinkFailed when it does not answer within the timeout (the link cannot go on without its
/// imports; nothing in the request was malformed). Rejects with DISCONNECTED when the client is
/// gone (nobody to answer), and with any other exception only for a fault inside rjitd.
/// `client` and `timer` outlive the promise.
kj::Promise<Outcome<Done>> askClient(proto::SymbolResolver::Client& resolver,
                                     std::vector<std::string> names, std::shared_ptr<Resolution> r,
                                     ClientSymbols& client, kj::Timer& timer,
                                     QuestionLimits limits);

}  // namespace rjitd::service
