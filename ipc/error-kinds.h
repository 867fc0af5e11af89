// SPDX-License-Identifier: MIT
// The one table between the wire's error kinds (rjit.capnp's Error.Kind) and the shared kind
// enum (src/common/compiled-object.h), used by the daemon and the client library alike.
// Header-only, for targets that have both ipc_dep and common_dep: the ipc library is built
// before src/common, so it cannot link it.
#pragma once

#include "compiled-object.h"
#include "rjit.capnp.h"

#include <cstddef>
#include <iterator>
#include <utility>

namespace rjitd {

/// Every wire kind and the shared kind it stands for, one to one. Shared kinds missing here
/// (connection, timeout, configuration, load) arise only in the client and never travel.
inline constexpr std::pair<proto::Error::Kind, ErrorKind> WIRE_ERROR_KINDS[] = {
    {proto::Error::Kind::INTERNAL, ErrorKind::Internal},
    {proto::Error::Kind::INVALID_MODULE, ErrorKind::InvalidModule},
    {proto::Error::Kind::UNKNOWN_TARGET, ErrorKind::UnknownTarget},
    {proto::Error::Kind::TARGET_MISMATCH, ErrorKind::TargetMismatch},
    {proto::Error::Kind::TOO_LARGE, ErrorKind::TooLarge},
    {proto::Error::Kind::INVALID_REQUEST, ErrorKind::InvalidRequest},
    {proto::Error::Kind::NOT_FOUND, ErrorKind::NotFound},
    {proto::Error::Kind::SHUTTING_DOWN, ErrorKind::ShuttingDown},
    {proto::Error::Kind::PROTOCOL_MISMATCH, ErrorKind::ProtocolMismatch},
    {proto::Error::Kind::OVERLOADED, ErrorKind::Overloaded},
    {proto::Error::Kind::LINK_FAILED, ErrorKind::LinkFailed},
};

/// The wire code of `kind`. A client-only kind has none and travels as `internal`; the daemon
/// never produces one.
constexpr proto::Error::Kind toWireKind(ErrorKind kind) {
  for (const auto& [wire, shared] : WIRE_ERROR_KINDS)
    if (shared == kind)
      return wire;
  return proto::Error::Kind::INTERNAL;
}

/// The shared kind of a wire code. A code this build does not know (a newer peer added it)
/// becomes `internal`: the error's message still says what happened.
constexpr ErrorKind fromWireKind(proto::Error::Kind wire) {
  for (const auto& [code, shared] : WIRE_ERROR_KINDS)
    if (code == wire)
      return shared;
  return ErrorKind::Internal;
}

// The table is one to one: every entry survives the round trip in both directions.
static_assert([] {
  for (const auto& [wire, shared] : WIRE_ERROR_KINDS)
    if (toWireKind(shared) != wire || fromWireKind(wire) != shared)
      return false;
  return true;
}());

}  // namespace rjitd
