// SPDX-License-Identifier: MIT
// The client's one error model: every internal function that can fail returns a Result (a value
// or an rjit::Error); only the public API (client.cpp) throws, and only the RPC layer's
// kj::Exceptions are converted (wire-convert.h). Also the cast between the public and the
// shared error kinds.
#pragma once

#include "compiled-object.h"
#include "remotejit/client.h"

#include <kj/async.h>
#include <variant>

namespace rjit::detail {

/// A call's outcome as it travels through promises and across threads: errors are values, so
/// their kind and diagnostics survive (a kj::Exception would keep only a type and a string).
template <typename T> using Result = std::variant<T, Error>;

/// The value of a Result that has nothing else to say.
struct Done {};

/// The error of a failed Result, or null.
template <typename T> Error* failed(Result<T>& result) {
  return std::get_if<Error>(&result);
}

/// An already settled promise of `result`.
template <typename T> kj::Promise<Result<T>> ready(Result<T> result) {
  return kj::Promise<Result<T>>(kj::mv(result));
}

// The public kinds are the shared ones by number (src/common/compiled-object.h): a cast, not a
// map. These asserts are what keeps the two enums in step.
#define RJIT_SAME_KIND(kind)                                                                       \
  static_assert(static_cast<int>(ErrorKind::kind) == static_cast<int>(rjitd::ErrorKind::kind),     \
                #kind)
RJIT_SAME_KIND(Internal);
RJIT_SAME_KIND(InvalidModule);
RJIT_SAME_KIND(UnknownTarget);
RJIT_SAME_KIND(TargetMismatch);
RJIT_SAME_KIND(TooLarge);
RJIT_SAME_KIND(InvalidRequest);
RJIT_SAME_KIND(NotFound);
RJIT_SAME_KIND(ShuttingDown);
RJIT_SAME_KIND(ProtocolMismatch);
RJIT_SAME_KIND(Overloaded);
RJIT_SAME_KIND(Connection);
RJIT_SAME_KIND(Timeout);
RJIT_SAME_KIND(Configuration);
RJIT_SAME_KIND(LinkFailed);
RJIT_SAME_KIND(Load);
RJIT_SAME_KIND(Crashed);
RJIT_SAME_KIND(OutOfMemory);
RJIT_SAME_KIND(Exited);
RJIT_SAME_KIND(OutputLimit);
RJIT_SAME_KIND(SandboxViolation);
RJIT_SAME_KIND(SignatureMismatch);
RJIT_SAME_KIND(PermissionDenied);
#undef RJIT_SAME_KIND

// Severities and symbol kinds too: the wire tables (ipc/wire-enums.h) map the shared ones.
#define RJIT_SAME_ENUM(type, shared, value)                                                        \
  static_assert(static_cast<int>(type::value) == static_cast<int>(shared::value), #value)
RJIT_SAME_ENUM(Diagnostic::Severity, rjitd::Diagnostic::Severity, Error);
RJIT_SAME_ENUM(Diagnostic::Severity, rjitd::Diagnostic::Severity, Warning);
RJIT_SAME_ENUM(Diagnostic::Severity, rjitd::Diagnostic::Severity, Note);
RJIT_SAME_ENUM(Symbol::Kind, rjitd::ObjectSymbol::Kind, Function);
RJIT_SAME_ENUM(Symbol::Kind, rjitd::ObjectSymbol::Kind, Data);
RJIT_SAME_ENUM(Symbol::Kind, rjitd::ObjectSymbol::Kind, Other);
#undef RJIT_SAME_ENUM

/// The public kind of a shared one.
constexpr ErrorKind toPublicKind(rjitd::ErrorKind kind) {
  return static_cast<ErrorKind>(kind);
}

/// The shared kind of a public one.
constexpr rjitd::ErrorKind toSharedKind(ErrorKind kind) {
  return static_cast<rjitd::ErrorKind>(kind);
}

}  // namespace rjit::detail
