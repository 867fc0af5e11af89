// SPDX-License-Identifier: MIT
// Helpers shared by the cache-tier and fleet tests: a tier's figures from ServerStats, a fresh
// module, a client of one daemon.
#pragma once

#include <string>
#include <string_view>

#include "fixture.h"

namespace rjit::test {

/// The figures of the tier named `name` ("memory", "disk", "shared"), or nullptr when the
/// server does not use it.
inline const ServerStats::TierStats* tier(const ServerStats& stats, std::string_view name) {
  for (const auto& t : stats.tiers)
    if (t.tier == name)
      return &t;
  return nullptr;
}

/// A module no server has seen (a nonce), with `functions` functions: a larger object takes
/// longer to compile and to write.
inline CompileRequest freshModule(unsigned functions, std::string name) {
  CompileRequest r;
  r.module = withNonce(generatedModule(functions));
  r.moduleName = std::move(name);
  r.optLevel = 1;
  return r;
}

/// A client of `daemon` alone.
inline ClientOptions clientOf(const DaemonProcess& daemon, std::string name = "tiers-test") {
  ClientOptions options;
  options.servers = {daemon.endpoint()};
  options.clientName = std::move(name);
  return options;
}

}  // namespace rjit::test
