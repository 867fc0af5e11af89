// SPDX-License-Identifier: MIT
// Target name table and resolution (see targets.h).
#include "targets.h"

#include <algorithm>

namespace rjitd {

std::span<const TargetName> knownTargets() {
  // Canonical triples are LLVM's normalized spelling; clang on Debian writes "-pc-" for x86_64
  // and "-unknown-" otherwise, both accepted as aliases.
  static const std::vector<TargetName> targets = {
      {"x86_64",
       "x86_64-unknown-linux-gnu",
       {"x86-64", "amd64", "x86_64-pc-linux-gnu", "x86_64-linux-gnu"},
       "x86-64"},
      {"aarch64",
       "aarch64-unknown-linux-gnu",
       {"arm64", "aarch64-linux-gnu", "aarch64-pc-linux-gnu"},
       "generic"},
  };
  return targets;
}

const TargetName* resolveTarget(std::span<const TargetName> targets, std::string_view spec,
                                std::string_view defaultTriple) {
  if (spec.empty())
    spec = defaultTriple;
  for (const TargetName& t : targets) {
    if (t.name == spec || t.triple == spec ||
        std::find(t.aliases.begin(), t.aliases.end(), spec) != t.aliases.end())
      return &t;
  }
  return nullptr;
}

std::string describeTargets(std::span<const TargetName> targets) {
  std::string out;
  for (const TargetName& t : targets) {
    if (!out.empty())
      out += ", ";
    out += t.name + " (" + t.triple + ")";
  }
  return out.empty() ? std::string("none") : out;
}

}  // namespace rjitd
