// SPDX-License-Identifier: MIT
// Tests for src/common/ir-signature: every kind of type the compiler writes formats and parses
// back to the same text and value, and malformed strings are refused with the offset at fault.
#include "ir-signature.h"

#include <gtest/gtest.h>
#include <string>
#include <variant>

namespace rjitd {
namespace {

using Extension = IrType::Extension;

IrSignature parseOk(std::string_view text) {
  auto parsed = parseIrSignature(text);
  if (auto* error = std::get_if<IrSignatureError>(&parsed)) {
    ADD_FAILURE() << error->describe();
    return {};
  }
  return std::get<IrSignature>(parsed);
}

IrSignatureError parseFails(std::string_view text) {
  auto parsed = parseIrSignature(text);
  if (!std::holds_alternative<IrSignatureError>(parsed)) {
    ADD_FAILURE() << "'" << text << "' parsed as "
                  << formatIrSignature(std::get<IrSignature>(parsed));
    return {};
  }
  return std::get<IrSignatureError>(parsed);
}

TEST(IrSignatureTest, FormatsEachKindOfType) {
  IrSignature signature;
  signature.result = IrType::integer(8, Extension::Zero);
  signature.params = {IrType::integer(16, Extension::Sign),
                      IrType::integer(1),
                      IrType::integer(64),
                      IrType::floatType(),
                      IrType::doubleType(),
                      IrType::pointer(),
                      IrType::other("{ i64, i64 }")};
  EXPECT_EQ(formatIrSignature(signature),
            "zeroext i8(signext i16,i1,i64,float,double,ptr,{ i64, i64 })");
  signature.variadic = true;
  EXPECT_EQ(formatIrSignature(signature),
            "zeroext i8(signext i16,i1,i64,float,double,ptr,{ i64, i64 },...)");
  EXPECT_EQ(formatIrSignature({IrType::voidType(), {}, false}), "void()");
  EXPECT_EQ(formatIrSignature({IrType::voidType(), {}, true}), "void(...)");
}

TEST(IrSignatureTest, ParsesToTypedValues) {
  IrSignature signature = parseOk("zeroext i8(signext i16,i32,ptr,double,float,i128,...)");
  EXPECT_EQ(signature.result, IrType::integer(8, Extension::Zero));
  EXPECT_EQ(signature.params,
            (std::vector<IrType>{IrType::integer(16, Extension::Sign), IrType::integer(32),
                                 IrType::pointer(), IrType::doubleType(), IrType::floatType(),
                                 IrType::integer(128)}));
  EXPECT_TRUE(signature.variadic);

  IrSignature none = parseOk("void()");
  EXPECT_EQ(none.result.kind, IrType::Kind::Void);
  EXPECT_TRUE(none.params.empty());
  EXPECT_FALSE(none.variadic);

  IrSignature onlyVarargs = parseOk("i32(...)");
  EXPECT_TRUE(onlyVarargs.params.empty());
  EXPECT_TRUE(onlyVarargs.variadic);
}

TEST(IrSignatureTest, EveryTypeTheCompilerWritesRoundTrips) {
  // Kept in step with compiler-test's SignaturesAreWrittenInTheIrSignatureFormat, plus types
  // only other front ends produce.
  for (const char* text : {
           "void()",
           "i32()",
           "i32(i32)",
           "i32(i32,ptr)",
           "i32(i32,ptr,ptr)",
           "zeroext i1(zeroext i1)",
           "signext i8(signext i8,zeroext i8)",
           "zeroext i16(signext i16,i16)",
           "i64(i64,i32,float,double,ptr)",
           "void(i32,...)",
           "ptr(...)",
           "i128(i128)",
           "i7(i33)",
           "%pair(<4 x float>,[2 x i32],half,ptr addrspace(1))",
           // How LLVM's Type::print spells a named struct (with its body).
           "%pair = type { i64, i64 }(<4 x float>,[2 x i32],half,ptr addrspace(1))",
           "{ i32, double }(x86_fp80)",
           "ptr addrspace(1)(ptr addrspace(1),{ ptr, { i8, [3 x i16] } })",
           "%\"struct.odd (name), here\"(bfloat,fp128)",
           "<vscale x 4 x i32>(<2 x ptr>)",
           "target(\"aarch64.svcount\")(token)",
       }) {
    IrSignature signature = parseOk(text);
    EXPECT_EQ(formatIrSignature(signature), text);
  }
}

TEST(IrSignatureTest, OtherTypesKeepTheirSpelling) {
  IrSignature signature = parseOk("{ i64, i64 }(<4 x float>,ptr addrspace(3))");
  EXPECT_EQ(signature.result, IrType::other("{ i64, i64 }"));
  ASSERT_EQ(signature.params.size(), 2u);
  EXPECT_EQ(signature.params[0], IrType::other("<4 x float>"));
  EXPECT_EQ(signature.params[1], IrType::other("ptr addrspace(3)"));
}

TEST(IrSignatureTest, MalformedStringsAreRefusedWithThePosition) {
  struct Case {
    const char* text;
    size_t position;
    const char* message;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"", 0, "expected a parameter list '(...)' at the end"},
           {"i32", 3, "expected a parameter list '(...)' at the end"},
           {"i32(i32", 7, "expected ')'"},
           {"i32(i32))", 8, "unbalanced ')'"},
           {"i32(i32)x", 9, "expected a parameter list '(...)' at the end"},
           {"i32({ i32 )", 10, "unbalanced ')'"},
           {"(i32)", 0, "expected a type"},
           {"i32(,ptr)", 4, "expected a type"},
           {"i32(ptr,)", 8, "expected a type"},
           {"i32(int)", 4, "unknown type 'int'"},
           {"i0()", 0, "unknown type 'i0'"},
           {"i032()", 0, "unknown type 'i032'"},
           {"i8388609()", 0, "unknown type 'i8388609'"},
           {"i32 (i32)", 0, "unexpected space around the type 'i32 '"},
           {"i32(i32, ptr)", 8, "unexpected space around the type ' ptr'"},
           {"i32(...,i32)", 4, "'...' must be the last parameter"},
           {"i32(void)", 4, "void is not a parameter type"},
           {"zeroext double()", 0, "zeroext on the non-integer type 'double'"},
           {"i32(signext ptr)", 4, "signext on the non-integer type 'ptr'"},
           {"i32(signext )", 12, "expected a type"},
           {"%\"open(i32)", 1, "unterminated quoted name"},
       }) {
    IrSignatureError error = parseFails(c.text);
    EXPECT_EQ(error.text, c.text);
    EXPECT_EQ(error.position, c.position) << c.text;
    EXPECT_EQ(error.message, c.message) << c.text;
  }
}

TEST(IrSignatureTest, ErrorsDescribeTextPositionAndProblem) {
  EXPECT_EQ(parseFails("i32(i32").describe(),
            "malformed IR signature 'i32(i32' at offset 7: expected ')'");
}

}  // namespace
}  // namespace rjitd
