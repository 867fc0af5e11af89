// SPDX-License-Identifier: MIT
// The daemon's one result shape: a value or the Failure that stands in for it.
#pragma once

#include "compiled-object.h"

#include <optional>
#include <variant>

namespace rjitd {

/// What a fallible step of a request returns: its value, or the Failure to answer instead.
/// Expected failures (bad input, limits, a client that answers wrongly) are values of this
/// type; a kj exception means a fault inside rjitd, or DISCONNECTED when the client is gone, and
/// is turned into an `internal` Failure only at the RPC edge (service/rpc-server.cpp). Failure
/// reaches the wire in one place: service/proto-convert.cpp's `toProto(const Failure&, ...)`.
template <typename T> using Outcome = std::variant<T, Failure>;

/// The value of a step that succeeds with nothing to hand back (it answered in place).
struct Done {};

/// The failure `outcome` holds, or nullptr when it holds a value.
template <typename T> const Failure* failureOf(const Outcome<T>& outcome) {
  return std::get_if<Failure>(&outcome);
}
template <typename T> Failure* failureOf(Outcome<T>& outcome) {
  return std::get_if<Failure>(&outcome);
}

/// The kind of the failure `outcome` holds, or nullopt when it holds a value (the shape the
/// metrics take).
template <typename T> std::optional<ErrorKind> errorKindOf(const Outcome<T>& outcome) {
  if (const Failure* failure = failureOf(outcome))
    return failure->kind;
  return std::nullopt;
}

}  // namespace rjitd
