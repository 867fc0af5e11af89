// SPDX-License-Identifier: MIT
// Tests for ipc/wire-enums.h: each table between a wire enum and its shared twin covers every
// wire enumerant, once, both ways.
#include "wire-enums.h"

#include <capnp/schema.h>
#include <gtest/gtest.h>
#include <set>

namespace rjitd {
namespace {

TEST(ErrorKindsTest, TableCoversEveryWireKindOnce) {
  // The schema knows every enumerant, including any added to rjit.capnp after the table.
  capnp::EnumSchema schema = capnp::Schema::from<proto::Error::Kind>();
  ASSERT_EQ(schema.getEnumerants().size(), std::size(WIRE_ERROR_KINDS));
  std::set<proto::Error::Kind> wires;
  std::set<ErrorKind> shareds;
  for (const auto& [wire, shared] : WIRE_ERROR_KINDS) {
    EXPECT_TRUE(wires.insert(wire).second) << static_cast<int>(wire);
    EXPECT_TRUE(shareds.insert(shared).second) << errorKindName(shared);
  }
  for (capnp::EnumSchema::Enumerant e : schema.getEnumerants())
    EXPECT_EQ(wires.count(static_cast<proto::Error::Kind>(e.getOrdinal())), 1u)
        << e.getProto().getName().cStr();
}

TEST(ErrorKindsTest, RoundTripsBothWays) {
  for (const auto& [wire, shared] : WIRE_ERROR_KINDS) {
    EXPECT_EQ(fromWireKind(toWireKind(shared)), shared) << errorKindName(shared);
    EXPECT_EQ(toWireKind(fromWireKind(wire)), wire) << errorKindName(shared);
  }
  // Same-named kinds, which need not share numbers (link-failed does not).
  EXPECT_EQ(fromWireKind(proto::Error::Kind::LINK_FAILED), ErrorKind::LinkFailed);
  EXPECT_EQ(toWireKind(ErrorKind::LinkFailed), proto::Error::Kind::LINK_FAILED);
  EXPECT_EQ(fromWireKind(proto::Error::Kind::SHUTTING_DOWN), ErrorKind::ShuttingDown);
}

TEST(ErrorKindsTest, ClientOnlyKindsTravelAsInternal) {
  for (ErrorKind kind : {ErrorKind::Connection, ErrorKind::Configuration, ErrorKind::Load})
    EXPECT_EQ(toWireKind(kind), proto::Error::Kind::INTERNAL) << errorKindName(kind);
  // Timeout is the client's own deadline and also an executor call's (remote execute).
  EXPECT_EQ(toWireKind(ErrorKind::Timeout), proto::Error::Kind::TIMEOUT);
}

TEST(ErrorKindsTest, UnknownWireKindIsInternal) {
  // What a newer peer's added kind looks like to this build.
  EXPECT_EQ(fromWireKind(static_cast<proto::Error::Kind>(200)), ErrorKind::Internal);
}

/// Every enumerant of wire enum `Wire` appears in `table` exactly once, and round-trips.
template <typename Wire, typename Table, typename To, typename From>
void expectCoversEveryEnumerant(const Table& table, To to, From from) {
  capnp::EnumSchema schema = capnp::Schema::from<Wire>();
  ASSERT_EQ(schema.getEnumerants().size(), std::size(table));
  for (capnp::EnumSchema::Enumerant e : schema.getEnumerants()) {
    auto wire = static_cast<Wire>(e.getOrdinal());
    EXPECT_EQ(to(from(wire)), wire) << e.getProto().getName().cStr();
  }
}

TEST(WireEnumsTest, SeveritiesCoverEveryWireSeverity) {
  expectCoversEveryEnumerant<proto::Diagnostic::Severity>(WIRE_SEVERITIES, toWireSeverity,
                                                          fromWireSeverity);
  EXPECT_EQ(fromWireSeverity(proto::Diagnostic::Severity::WARNING), Diagnostic::Severity::Warning);
  // A severity a newer peer added reads as a note, never as an error.
  EXPECT_EQ(fromWireSeverity(static_cast<proto::Diagnostic::Severity>(200)),
            Diagnostic::Severity::Note);
}

TEST(WireEnumsTest, SymbolKindsCoverEveryWireKind) {
  expectCoversEveryEnumerant<proto::Symbol::Kind>(WIRE_SYMBOL_KINDS, toWireSymbolKind,
                                                  fromWireSymbolKind);
  EXPECT_EQ(fromWireSymbolKind(proto::Symbol::Kind::DATA), ObjectSymbol::Kind::Data);
  EXPECT_EQ(fromWireSymbolKind(static_cast<proto::Symbol::Kind>(200)), ObjectSymbol::Kind::Other);
}

}  // namespace
}  // namespace rjitd
