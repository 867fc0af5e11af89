// SPDX-License-Identifier: MIT
// The one table for each enum the wire carries (rjit.capnp's Error.Kind, Diagnostic.Severity,
// Symbol.Kind) and its shared twin (src/common/compiled-object.h), used by the daemon and the
// client library alike; the client's public enums are the shared ones by number.
// Header-only, for targets that have both ipc_dep and common_dep: the ipc library is built
// before src/common, so it cannot link it.
#pragma once

#include "compiled-object.h"
#include "rjit.capnp.h"

#include <cstddef>
#include <iterator>
#include <tuple>
#include <utility>

namespace rjitd {

namespace wire_detail {

/// The first element of the pair in `table` whose `From` side is `value`, or `fallback`.
template <size_t FROM, typename Table, typename Value, typename Fallback>
constexpr Fallback lookup(const Table& table, Value value, Fallback fallback) {
  for (const auto& entry : table)
    if (std::get<FROM>(entry) == value)
      return std::get<1 - FROM>(entry);
  return fallback;
}

/// Whether every pair of `table` survives the round trip in both directions (one to one).
template <typename Table> constexpr bool oneToOne(const Table& table) {
  for (const auto& [wire, shared] : table)
    if (lookup<1>(table, shared, wire) != wire || lookup<0>(table, wire, shared) != shared)
      return false;
  for (size_t i = 0; i < std::size(table); ++i)
    for (size_t j = i + 1; j < std::size(table); ++j)
      if (table[i].first == table[j].first || table[i].second == table[j].second)
        return false;
  return true;
}

}  // namespace wire_detail

/// Every wire kind and the shared kind it stands for, one to one. Shared kinds missing here
/// (connection, configuration, load) arise only in the client and never travel.
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
    {proto::Error::Kind::TIMEOUT, ErrorKind::Timeout},
    {proto::Error::Kind::CRASHED, ErrorKind::Crashed},
    {proto::Error::Kind::OUT_OF_MEMORY, ErrorKind::OutOfMemory},
    {proto::Error::Kind::EXITED, ErrorKind::Exited},
    {proto::Error::Kind::OUTPUT_LIMIT, ErrorKind::OutputLimit},
    {proto::Error::Kind::SANDBOX_VIOLATION, ErrorKind::SandboxViolation},
    {proto::Error::Kind::SIGNATURE_MISMATCH, ErrorKind::SignatureMismatch},
    {proto::Error::Kind::PERMISSION_DENIED, ErrorKind::PermissionDenied},
};

/// The wire code of `kind`. A client-only kind has none and travels as `internal`; the daemon
/// never produces one.
constexpr proto::Error::Kind toWireKind(ErrorKind kind) {
  return wire_detail::lookup<1>(WIRE_ERROR_KINDS, kind, proto::Error::Kind::INTERNAL);
}

/// The shared kind of a wire code. A code this build does not know (a newer peer added it)
/// becomes `internal`: the error's message still says what happened.
constexpr ErrorKind fromWireKind(proto::Error::Kind wire) {
  return wire_detail::lookup<0>(WIRE_ERROR_KINDS, wire, ErrorKind::Internal);
}

static_assert(wire_detail::oneToOne(WIRE_ERROR_KINDS), "error kinds: not one to one");

/// Diagnostic severities, one to one.
inline constexpr std::pair<proto::Diagnostic::Severity, Diagnostic::Severity> WIRE_SEVERITIES[] = {
    {proto::Diagnostic::Severity::ERROR, Diagnostic::Severity::Error},
    {proto::Diagnostic::Severity::WARNING, Diagnostic::Severity::Warning},
    {proto::Diagnostic::Severity::NOTE, Diagnostic::Severity::Note},
};
static_assert(wire_detail::oneToOne(WIRE_SEVERITIES), "severities: not one to one");

constexpr proto::Diagnostic::Severity toWireSeverity(Diagnostic::Severity severity) {
  return wire_detail::lookup<1>(WIRE_SEVERITIES, severity, proto::Diagnostic::Severity::ERROR);
}

/// A severity this build does not know (a newer peer added it) reads as a note: it must not
/// turn a message into an error, and its text still says what it is.
constexpr Diagnostic::Severity fromWireSeverity(proto::Diagnostic::Severity wire) {
  return wire_detail::lookup<0>(WIRE_SEVERITIES, wire, Diagnostic::Severity::Note);
}

/// Kinds of symbols an object defines, one to one.
inline constexpr std::pair<proto::Symbol::Kind, ObjectSymbol::Kind> WIRE_SYMBOL_KINDS[] = {
    {proto::Symbol::Kind::FUNCTION, ObjectSymbol::Kind::Function},
    {proto::Symbol::Kind::DATA, ObjectSymbol::Kind::Data},
    {proto::Symbol::Kind::OTHER, ObjectSymbol::Kind::Other},
};
static_assert(wire_detail::oneToOne(WIRE_SYMBOL_KINDS), "symbol kinds: not one to one");

constexpr proto::Symbol::Kind toWireSymbolKind(ObjectSymbol::Kind kind) {
  return wire_detail::lookup<1>(WIRE_SYMBOL_KINDS, kind, proto::Symbol::Kind::OTHER);
}

/// A kind this build does not know is `other`.
constexpr ObjectSymbol::Kind fromWireSymbolKind(proto::Symbol::Kind wire) {
  return wire_detail::lookup<0>(WIRE_SYMBOL_KINDS, wire, ObjectSymbol::Kind::Other);
}

/// Remote execute's buffer element types: size and name ("i8", "f64"), one row each.
struct WireElement {
  proto::Buffer::Element wire;
  uint8_t bytes;
  const char* name;
};
inline constexpr WireElement WIRE_ELEMENTS[] = {
    {proto::Buffer::Element::I8, 1, "i8"},   {proto::Buffer::Element::U8, 1, "u8"},
    {proto::Buffer::Element::I16, 2, "i16"}, {proto::Buffer::Element::U16, 2, "u16"},
    {proto::Buffer::Element::I32, 4, "i32"}, {proto::Buffer::Element::U32, 4, "u32"},
    {proto::Buffer::Element::I64, 8, "i64"}, {proto::Buffer::Element::U64, 8, "u64"},
    {proto::Buffer::Element::F32, 4, "f32"}, {proto::Buffer::Element::F64, 8, "f64"},
};

/// Bytes of one element; 0 for an element this build does not know (a newer peer's).
constexpr size_t elementBytes(proto::Buffer::Element element) {
  for (const auto& e : WIRE_ELEMENTS)
    if (e.wire == element)
      return e.bytes;
  return 0;
}

/// "i8" ... "f64"; "unknown" for an element this build does not know.
constexpr const char* elementName(proto::Buffer::Element element) {
  for (const auto& e : WIRE_ELEMENTS)
    if (e.wire == element)
      return e.name;
  return "unknown";
}

/// "in", "out", "in-out".
constexpr const char* directionName(proto::Buffer::Direction direction) {
  switch (direction) {
  case proto::Buffer::Direction::IN: return "in";
  case proto::Buffer::Direction::OUT: return "out";
  case proto::Buffer::Direction::IN_OUT: return "in-out";
  }
  return "unknown";
}

}  // namespace rjitd
