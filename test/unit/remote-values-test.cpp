// SPDX-License-Identifier: MIT
// `rjit call --remote`'s value conversions: literals parsed against an IR type keep their
// signedness on the way to the client library, and results print as the local `rjit call`'s.
#include "remote-values.h"

#include <gtest/gtest.h>

namespace rjitd::cli {
namespace {

marshal::Value literal(const char* text, const IrType& type) {
  auto parsed = marshal::parseLiteral(text, type);
  EXPECT_TRUE(std::holds_alternative<marshal::Value>(parsed)) << text;
  return std::get<marshal::Value>(parsed);
}

TEST(RemoteValues, LiteralsKeepTheirSignedness) {
  std::vector<rjit::Value> values =
      toRemoteValues({literal("18446744073709551615", IrType::integer(64)),
                      literal("-1", IrType::integer(64)), literal("2.5", IrType::doubleType()),
                      literal("1.5", IrType::floatType()), literal("hello", IrType::pointer())});
  ASSERT_EQ(values.size(), 5u);
  EXPECT_EQ(values[0].kind, rjit::Value::Kind::Unsigned);
  EXPECT_EQ(values[0].u, UINT64_MAX);
  EXPECT_EQ(values[1].kind, rjit::Value::Kind::Signed);
  EXPECT_EQ(values[1].i, -1);
  EXPECT_EQ(values[2].kind, rjit::Value::Kind::Double);
  EXPECT_EQ(values[2].d, 2.5);
  EXPECT_EQ(values[3].kind, rjit::Value::Kind::Float);
  EXPECT_EQ(values[3].f, 1.5f);
  EXPECT_EQ(values[4].kind, rjit::Value::Kind::String);
  EXPECT_EQ(values[4].text, "hello");
  EXPECT_EQ(values[4].bits, 0);  // literals: only the fit is checked, not a C++ width
}

TEST(RemoteValues, ResultsPrintAsTheLocalCall) {
  rjit::Value r;
  r.kind = rjit::Value::Kind::Signed;
  r.i = -7;
  EXPECT_EQ(marshal::formatValue(fromRemoteValue(r)), "-7");
  r.kind = rjit::Value::Kind::Unsigned;
  r.u = UINT64_MAX;
  EXPECT_EQ(marshal::formatValue(fromRemoteValue(r)), "18446744073709551615");
  r.kind = rjit::Value::Kind::Double;
  r.d = 0.1;
  EXPECT_EQ(marshal::formatValue(fromRemoteValue(r)),
            marshal::formatValue(marshal::Value::doubleNumber(0.1)));
  r.kind = rjit::Value::Kind::Void;
  EXPECT_EQ(fromRemoteValue(r).kind, marshal::Value::Kind::Void);
}

}  // namespace
}  // namespace rjitd::cli
