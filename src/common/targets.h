// SPDX-License-Identifier: MIT
// Target names: which spellings name which canonical triple. LLVM-free so the client library
// resolves names exactly as the daemon does (both must compute the same cache key).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rjitd {

struct TargetName {
  std::string name;                  ///< short name: "x86_64", "aarch64"
  std::string triple;                ///< canonical triple
  std::vector<std::string> aliases;  ///< other accepted spellings (short names, other triples)
  std::string defaultCpu;            ///< CPU used when a request names none
};

/// The targets this build of rjitd knows how to name (the compiler reports which it serves).
std::span<const TargetName> knownTargets();

/// Resolves `spec` (short name, alias or canonical triple; case-sensitive as LLVM is) against
/// `targets`. An empty spec names `defaultTriple`. Returns nullptr when nothing matches.
const TargetName* resolveTarget(std::span<const TargetName> targets, std::string_view spec,
                                std::string_view defaultTriple);

/// "x86_64 (x86_64-unknown-linux-gnu), aarch64 (...)" for error messages.
std::string describeTargets(std::span<const TargetName> targets);

}  // namespace rjitd
