// SPDX-License-Identifier: MIT
// Calls a function of a loaded module by its IR signature, with typed values (libffi makes the
// call: no hand-written calling-convention code). Used by `rjit call`; made to run unchanged
// inside an executor process, where the values come off the wire rather than a command line.
#pragma once

#include "ir-signature.h"
#include "value.h"

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace rjitd::marshal {

/// Why a call by signature was not made. `message` is the whole sentence for a user and names
/// the symbol, its signature and (for an argument) which argument and what it should be.
struct CallError {
  enum class Kind : uint8_t {
    Unsupported,    ///< variadic, or a parameter or result type calls by signature do not pass
    ArgumentCount,  ///< more or fewer arguments than parameters
    BadArgument,    ///< an argument that does not parse as, or fit, its parameter's type
  };
  Kind kind = Kind::Unsupported;
  std::string symbol;
  std::string signature;           ///< formatIrSignature of the function's signature
  std::optional<size_t> argument;  ///< BadArgument: 0-based index of the argument at fault
  std::string message;
};

/// nullopt when `signature` can be called by signature: not variadic, each parameter and the
/// result (or void) of a type isMarshalled() accepts.
std::optional<CallError> checkCallable(std::string_view symbol, const IrSignature& signature);

/// Converts argument literals (parseLiteral) for the parameters of `signature`, after
/// checkCallable and a count check.
std::variant<std::vector<Value>, CallError>
parseArguments(std::string_view symbol, const IrSignature& signature,
               const std::vector<std::string>& literals);

/// Calls `function` (the address of `symbol`, which must have `signature`) with `arguments`,
/// after checkCallable, a count check and checkFits on each argument, and returns its result:
/// Void, Signed (or Unsigned for `zeroext` and i1 results: IR tells no other signedness),
/// Float, Double or Pointer. String arguments are copied and live for the call only. What the
/// function does (crash, exit, write through a bad pointer) is not checked: the caller trusts
/// the code it calls, or runs it in a process it can lose.
std::variant<Value, CallError> callBySignature(void* function, std::string_view symbol,
                                               const IrSignature& signature,
                                               const std::vector<Value>& arguments);

}  // namespace rjitd::marshal
