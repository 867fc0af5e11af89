// SPDX-License-Identifier: MIT
// Tests for ipc/error-kinds.h: the one table between the wire's error kinds and the shared kind
// enum covers every wire kind, once, both ways.
#include "error-kinds.h"

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
  for (ErrorKind kind :
       {ErrorKind::Connection, ErrorKind::Timeout, ErrorKind::Configuration, ErrorKind::Load})
    EXPECT_EQ(toWireKind(kind), proto::Error::Kind::INTERNAL) << errorKindName(kind);
}

TEST(ErrorKindsTest, UnknownWireKindIsInternal) {
  // What a newer peer's added kind looks like to this build.
  EXPECT_EQ(fromWireKind(static_cast<proto::Error::Kind>(200)), ErrorKind::Internal);
}

}  // namespace
}  // namespace rjitd
