// SPDX-License-Identifier: MIT
// The client's checks of a remote call before anything is sent: arguments (and, for call<R>,
// C++ types) against the symbol's IR signature, with messages naming the symbol, its signature
// and what was given. No kj, no LLVM: unit-tested on their own.
#pragma once

#include "ir-signature.h"
#include "remotejit/client.h"
#include "value.h"

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace rjit::detail {

/// "i32 5", "u64 18446744073709551615", "signed -1", "double 2.5", "string \"x\"",
/// "buffer i32[4] in", "null": a value as the mismatch messages show what was given.
std::string describeValue(const Value& value);

/// The scalar as src/marshal's checks take it (String, Buffer and Null become a String or a
/// Pointer: what matters for the checks is that they are pointers).
rjitd::marshal::Value toMarshal(const Value& value);

/// The IR signature of function `symbol` in `object`, parsed, or the SignatureMismatch message
/// when `object` defines no such function or its signature cannot be called by signature.
std::variant<rjitd::IrSignature, std::string> functionSignature(const CompiledObject& object,
                                                                std::string_view symbol);

/// nullopt when `args` can be passed to `symbol` of `signature`, else the whole message, e.g.
/// "i64 add(i64, i64) called with (i64 1, string \"x\"): argument 2: expected an integer ...".
/// `typed` (call<R>): integers must also be of the parameter's width and not of the other
/// signedness than a signext/zeroext attribute says, and `result` must be the IR result type.
std::optional<std::string> checkArguments(std::string_view symbol,
                                          const rjitd::IrSignature& signature,
                                          const std::vector<Value>& args, bool typed,
                                          const RemoteModule::ResultType* result);

using rjitd::describeFunction;  ///< "i64 add(i64, i64)" (src/common/ir-signature.h)

}  // namespace rjit::detail
