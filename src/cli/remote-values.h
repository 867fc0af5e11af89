// SPDX-License-Identifier: MIT
// `rjit call --remote`: arguments parsed by src/marshal (against the symbol's IR signature) as
// values of the client library's remote calls, and a remote result as `rjit call` prints one.
#pragma once

#include "remotejit/client.h"
#include "value.h"

#include <string>
#include <vector>

namespace rjitd::cli {

/// The parsed arguments as remote-call values (integers keep their signedness; strings are
/// strings). A Pointer argument cannot come from parseLiteral and is not converted.
std::vector<rjit::Value> toRemoteValues(const std::vector<rjitd::marshal::Value>& values);

/// A remote call's result as src/marshal's value, so that it prints as the local `rjit call`
/// prints (formatValue).
rjitd::marshal::Value fromRemoteValue(const rjit::Value& value);

}  // namespace rjitd::cli
