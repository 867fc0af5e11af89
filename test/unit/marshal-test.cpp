// SPDX-License-Identifier: MIT
// Tests for src/marshal: calls by IR signature of real C functions defined here (each signature
// written as clang writes it for the C declaration), argument literals and their ranges, typed
// values, result text, and the error values for every refusal.
#include "call.h"
#include "ir-signature.h"
#include "value.h"

#include <cstdint>
#include <cstring>
#include <gtest/gtest.h>
#include <limits>
#include <string>
#include <variant>
#include <vector>

extern "C" {
int8_t marshal_neg8(int8_t x) {
  return static_cast<int8_t>(-x);
}
uint8_t marshal_inc_u8(uint8_t x) {
  return static_cast<uint8_t>(x + 1);
}
int16_t marshal_dec16(int16_t x) {
  return static_cast<int16_t>(x - 1);
}
uint16_t marshal_twice_u16(uint16_t x) {
  return static_cast<uint16_t>(x * 2);
}
bool marshal_not(bool x) {
  return !x;
}
int32_t marshal_sub32(int32_t a, int32_t b) {
  return a - b;
}
int32_t marshal_u32_is_max(uint32_t x) {
  return x == UINT32_MAX;
}
uint32_t marshal_u32_max() {
  return UINT32_MAX;
}
int64_t marshal_id64(int64_t x) {
  return x;
}
uint64_t marshal_half_u64(uint64_t x) {
  return x / 2;
}
float marshal_halve(float x) {
  return x / 2;
}
double marshal_hyp(double a, double b) {
  return __builtin_sqrt(a * a + b * b);
}
size_t marshal_length(const char* s) {
  return std::strlen(s);
}
const char MARSHAL_GREETING[] = "hello";
const char* marshal_greeting() {
  return MARSHAL_GREETING;
}
int32_t marshal_recorded = 0;
void marshal_record(int32_t x) {
  marshal_recorded = x;
}
// More integer and floating-point arguments than the x86-64 and AArch64 ABIs pass in registers
// (6/8 integer, 8 floating-point), mixed: the tail goes on the stack.
double marshal_mix(int8_t a, uint16_t b, int32_t c, int64_t d, float e, double f, const char* g,
                   uint8_t h, int32_t i, double j, int64_t k, double l, double m, double n,
                   double o, double p, double q, float r, int16_t s) {
  return a + b + c + static_cast<double>(d) + e + f + static_cast<double>(std::strlen(g)) + h + i +
         j + static_cast<double>(k) + l + m + n + o + p + q + r + s;
}
}

namespace rjitd::marshal {
namespace {

using Kind = Value::Kind;

void* address(auto* function) {
  return reinterpret_cast<void*>(function);
}

IrSignature signatureOf(std::string_view text) {
  auto parsed = parseIrSignature(text);
  if (auto* error = std::get_if<IrSignatureError>(&parsed)) {
    ADD_FAILURE() << error->describe();
    return {};
  }
  return std::get<IrSignature>(parsed);
}

/// Parses `literals` for `signature` and makes the call; a failure is a test failure.
Value callOk(void* function, const char* symbol, std::string_view signature,
             const std::vector<std::string>& literals) {
  IrSignature parsed = signatureOf(signature);
  auto arguments = parseArguments(symbol, parsed, literals);
  if (auto* error = std::get_if<CallError>(&arguments)) {
    ADD_FAILURE() << error->message;
    return {};
  }
  auto result = callBySignature(function, symbol, parsed, std::get<std::vector<Value>>(arguments));
  if (auto* error = std::get_if<CallError>(&result)) {
    ADD_FAILURE() << error->message;
    return {};
  }
  return std::get<Value>(result);
}

/// What `rjit call` prints for the call.
std::string callText(void* function, const char* symbol, std::string_view signature,
                     const std::vector<std::string>& literals) {
  return formatValue(callOk(function, symbol, signature, literals));
}

CallError parseFails(const char* symbol, std::string_view signature,
                     const std::vector<std::string>& literals) {
  auto arguments = parseArguments(symbol, signatureOf(signature), literals);
  if (!std::holds_alternative<CallError>(arguments)) {
    ADD_FAILURE() << "arguments for " << symbol << " parsed";
    return {};
  }
  return std::get<CallError>(arguments);
}

CallError callFails(void* function, const char* symbol, std::string_view signature,
                    const std::vector<Value>& arguments) {
  auto result = callBySignature(function, symbol, signatureOf(signature), arguments);
  if (!std::holds_alternative<CallError>(result)) {
    ADD_FAILURE() << symbol << " was called";
    return {};
  }
  return std::get<CallError>(result);
}

// --- calls -------------------------------------------------------------------------------------

TEST(MarshalTest, SmallSignedAndUnsignedIntegers) {
  EXPECT_EQ(callOk(address(marshal_neg8), "neg8", "signext i8(signext i8)", {"-127"}),
            Value::signedInt(127));
  EXPECT_EQ(callOk(address(marshal_neg8), "neg8", "signext i8(signext i8)", {"5"}),
            Value::signedInt(-5));
  EXPECT_EQ(callOk(address(marshal_inc_u8), "inc_u8", "zeroext i8(zeroext i8)", {"254"}),
            Value::unsignedInt(255));
  EXPECT_EQ(callOk(address(marshal_inc_u8), "inc_u8", "zeroext i8(zeroext i8)", {"255"}),
            Value::unsignedInt(0));
  EXPECT_EQ(callOk(address(marshal_dec16), "dec16", "signext i16(signext i16)", {"-32767"}),
            Value::signedInt(-32768));
  EXPECT_EQ(callOk(address(marshal_twice_u16), "twice_u16", "zeroext i16(zeroext i16)", {"0x7fff"}),
            Value::unsignedInt(65534));
  EXPECT_EQ(callOk(address(marshal_not), "not", "zeroext i1(zeroext i1)", {"0"}),
            Value::unsignedInt(1));
  EXPECT_EQ(callOk(address(marshal_not), "not", "zeroext i1(zeroext i1)", {"1"}),
            Value::unsignedInt(0));
}

TEST(MarshalTest, Int32TakesTheSignedAndTheUnsignedRange) {
  EXPECT_EQ(callText(address(marshal_sub32), "sub32", "i32(i32,i32)", {"-2147483648", "-1"}),
            "-2147483647");
  EXPECT_EQ(callText(address(marshal_u32_is_max), "u32_is_max", "i32(i32)", {"4294967295"}), "1");
  EXPECT_EQ(callText(address(marshal_u32_is_max), "u32_is_max", "i32(i32)", {"-1"}), "1");
  // IR does not say the result was unsigned: it prints as signed.
  EXPECT_EQ(callText(address(marshal_u32_max), "u32_max", "i32()", {}), "-1");
}

TEST(MarshalTest, Int64TakesTheSignedAndTheUnsignedRange) {
  EXPECT_EQ(callOk(address(marshal_id64), "id64", "i64(i64)", {"-9223372036854775808"}),
            Value::signedInt(std::numeric_limits<int64_t>::min()));
  EXPECT_EQ(callOk(address(marshal_id64), "id64", "i64(i64)", {"9223372036854775807"}),
            Value::signedInt(std::numeric_limits<int64_t>::max()));
  EXPECT_EQ(callText(address(marshal_half_u64), "half_u64", "i64(i64)", {"18446744073709551615"}),
            "9223372036854775807");
  EXPECT_EQ(callText(address(marshal_id64), "id64", "i64(i64)", {"18446744073709551615"}), "-1");
}

TEST(MarshalTest, FloatingPoint) {
  EXPECT_EQ(callOk(address(marshal_halve), "halve", "float(float)", {"3"}),
            Value::floatNumber(1.5f));
  EXPECT_EQ(callText(address(marshal_halve), "halve", "float(float)", {"0.2"}), "0.100000001");
  EXPECT_EQ(callOk(address(marshal_hyp), "hyp", "double(double,double)", {"3", "-4e0"}),
            Value::doubleNumber(5));
  EXPECT_EQ(callText(address(marshal_hyp), "hyp", "double(double,double)", {"0.1", "0"}),
            "0.10000000000000001");
  EXPECT_EQ(callText(address(marshal_hyp), "hyp", "double(double,double)", {"inf", "1"}), "inf");
}

TEST(MarshalTest, PointersAreStringsInAndAddressesOut) {
  EXPECT_EQ(callText(address(marshal_length), "length", "i64(ptr)", {"four words, really"}), "18");
  EXPECT_EQ(callText(address(marshal_length), "length", "i64(ptr)", {""}), "0");
  EXPECT_EQ(callOk(address(marshal_greeting), "greeting", "ptr()", {}),
            Value::pointer(reinterpret_cast<uintptr_t>(MARSHAL_GREETING)));
  // A typed pointer value passes the address itself.
  auto result = callBySignature(address(marshal_length), "length", signatureOf("i64(ptr)"),
                                {Value::pointer(reinterpret_cast<uintptr_t>(MARSHAL_GREETING))});
  EXPECT_EQ(std::get<Value>(result), Value::signedInt(5));
}

TEST(MarshalTest, VoidResult) {
  marshal_recorded = 0;
  Value result = callOk(address(marshal_record), "record", "void(i32)", {"1234"});
  EXPECT_EQ(result, Value::voidValue());
  EXPECT_EQ(formatValue(result), "");
  EXPECT_EQ(marshal_recorded, 1234);
}

TEST(MarshalTest, ManyMixedArgumentsReachTheStack) {
  const char* signature = "double(signext i8,zeroext i16,i32,i64,float,double,ptr,zeroext i8,i32,"
                          "double,i64,double,double,double,double,double,double,float,signext i16)";
  std::vector<std::string> literals = {"-1", "2",  "3",  "4",    "0.5", "6",  "seven",
                                       "8",  "9",  "10", "-11",  "12",  "13", "14",
                                       "15", "16", "17", "0.25", "-19"};
  double expected =
      -1 + 2 + 3 + 4 + 0.5 + 6 + 5 + 8 + 9 + 10 - 11 + 12 + 13 + 14 + 15 + 16 + 17 + 0.25 - 19;
  EXPECT_EQ(callOk(address(marshal_mix), "mix", signature, literals),
            Value::doubleNumber(expected));
}

TEST(MarshalTest, TypedValuesOfEitherSignednessAndWidth) {
  IrSignature id64 = signatureOf("i64(i64)");
  EXPECT_EQ(std::get<Value>(callBySignature(address(marshal_id64), "id64", id64,
                                            {Value::unsignedInt(UINT64_MAX)})),
            Value::signedInt(-1));
  EXPECT_EQ(std::get<Value>(callBySignature(address(marshal_hyp), "hyp",
                                            signatureOf("double(double,double)"),
                                            {Value::floatNumber(3), Value::doubleNumber(4)})),
            Value::doubleNumber(5));
  EXPECT_EQ(std::get<Value>(callBySignature(address(marshal_halve), "halve",
                                            signatureOf("float(float)"), {Value::doubleNumber(5)})),
            Value::floatNumber(2.5f));
}

// --- literals and ranges ---------------------------------------------------------------------

std::string literalProblem(std::string_view text, const IrType& type) {
  auto parsed = parseLiteral(text, type);
  if (auto* problem = std::get_if<std::string>(&parsed))
    return *problem;
  return "accepted as " + formatValue(std::get<Value>(parsed));
}

TEST(MarshalTest, IntegerRangesFollowTheExtension) {
  using Extension = IrType::Extension;
  EXPECT_EQ(literalProblem("128", IrType::integer(8, Extension::Sign)),
            "expected an integer in [-128, 127] for signext i8");
  EXPECT_EQ(literalProblem("-1", IrType::integer(16, Extension::Zero)),
            "expected an integer in [0, 65535] for zeroext i16");
  EXPECT_EQ(literalProblem("256", IrType::integer(8)), "expected an integer in [-128, 255] for i8");
  EXPECT_EQ(literalProblem("255", IrType::integer(8)), "accepted as 255");
  EXPECT_EQ(literalProblem("-128", IrType::integer(8)), "accepted as -128");
  EXPECT_EQ(literalProblem("2", IrType::integer(1)), "expected an integer in [0, 1] for i1");
  EXPECT_EQ(literalProblem("4294967296", IrType::integer(32)),
            "expected an integer in [-2147483648, 4294967295] for i32");
  EXPECT_EQ(literalProblem("-2147483649", IrType::integer(32)),
            "expected an integer in [-2147483648, 4294967295] for i32");
  EXPECT_EQ(literalProblem("2147483648", IrType::integer(32, Extension::Sign)),
            "expected an integer in [-2147483648, 2147483647] for signext i32");
  EXPECT_EQ(literalProblem("18446744073709551616", IrType::integer(64)),
            "expected an integer in [-9223372036854775808, 18446744073709551615] for i64");
  EXPECT_EQ(literalProblem("-9223372036854775809", IrType::integer(64)),
            "expected an integer in [-9223372036854775808, 18446744073709551615] for i64");
  EXPECT_EQ(literalProblem("18446744073709551615", IrType::integer(64, Extension::Sign)),
            "expected an integer in [-9223372036854775808, 9223372036854775807] for signext i64");
  EXPECT_EQ(literalProblem("-1", IrType::integer(64, Extension::Zero)),
            "expected an integer in [0, 18446744073709551615] for zeroext i64");
  for (const char* text : {"", " 1", "1x", "x", "1.5", "--1"})
    EXPECT_EQ(literalProblem(text, IrType::integer(32)),
              "expected an integer in [-2147483648, 4294967295] for i32")
        << text;
  EXPECT_EQ(parseLiteral("-5", IrType::integer(32)),
            (std::variant<Value, std::string>(Value::signedInt(-5))));
  EXPECT_EQ(parseLiteral("0x10", IrType::integer(32)),
            (std::variant<Value, std::string>(Value::unsignedInt(16))));
}

TEST(MarshalTest, FloatingPointLiterals) {
  EXPECT_EQ(literalProblem("1e39", IrType::floatType()),
            "expected a number within the range of float");
  EXPECT_EQ(literalProblem("1e309", IrType::doubleType()),
            "expected a number within the range of double");
  EXPECT_EQ(literalProblem("one", IrType::doubleType()), "expected a number for double");
  EXPECT_EQ(literalProblem("", IrType::floatType()), "expected a number for float");
  EXPECT_EQ(literalProblem("1e-320", IrType::doubleType()), "accepted as 9.9998886718268301e-321");
}

TEST(MarshalTest, FormatsEachKind) {
  EXPECT_EQ(formatValue(Value::unsignedInt(UINT64_MAX)), "18446744073709551615");
  EXPECT_EQ(formatValue(Value::signedInt(INT64_MIN)), "-9223372036854775808");
  EXPECT_EQ(formatValue(Value::pointer(0)), "(nil)");
  EXPECT_EQ(formatValue(Value::pointer(0x1000)), "0x1000");
  EXPECT_EQ(formatValue(Value::string("text")), "text");
}

// --- refusals ----------------------------------------------------------------------------------

TEST(MarshalTest, BadArgumentNamesSymbolSignatureAndArgument) {
  CallError error = parseFails("neg8", "signext i8(signext i8)", {"300"});
  EXPECT_EQ(error.kind, CallError::Kind::BadArgument);
  EXPECT_EQ(error.symbol, "neg8");
  EXPECT_EQ(error.signature, "signext i8(signext i8)");
  EXPECT_EQ(error.argument, 0u);
  EXPECT_EQ(error.message, "argument 1 '300' of 'neg8' (signext i8(signext i8)): expected an "
                           "integer in [-128, 127] for signext i8");

  error = parseFails("hyp", "double(double,double)", {"1", "two"});
  EXPECT_EQ(error.argument, 1u);
  EXPECT_EQ(error.message,
            "argument 2 'two' of 'hyp' (double(double,double)): expected a number for double");
}

TEST(MarshalTest, TypedValueOfTheWrongKindOrRangeIsRefused) {
  CallError error = callFails(address(marshal_sub32), "sub32", "i32(i32,i32)",
                              {Value::signedInt(1), Value::string("x")});
  EXPECT_EQ(error.kind, CallError::Kind::BadArgument);
  EXPECT_EQ(error.argument, 1u);
  EXPECT_EQ(error.message, "argument 2 (x) of 'sub32' (i32(i32,i32)): expected an integer in "
                           "[-2147483648, 4294967295] for i32, not a string");

  error = callFails(address(marshal_inc_u8), "inc_u8", "zeroext i8(zeroext i8)",
                    {Value::unsignedInt(256)});
  EXPECT_EQ(error.kind, CallError::Kind::BadArgument);
  EXPECT_EQ(error.message, "argument 1 (256) of 'inc_u8' (zeroext i8(zeroext i8)): expected an "
                           "integer in [0, 255] for zeroext i8");

  error = callFails(address(marshal_halve), "halve", "float(float)", {Value::doubleNumber(1e300)});
  EXPECT_EQ(error.message, "argument 1 (1.0000000000000001e+300) of 'halve' (float(float)): "
                           "expected a number within the range of float");

  error = callFails(address(marshal_length), "length", "i64(ptr)", {Value::doubleNumber(1)});
  EXPECT_EQ(error.message,
            "argument 1 (1) of 'length' (i64(ptr)): expected a pointer or a string for ptr, not "
            "a floating-point number");
}

TEST(MarshalTest, WrongArgumentCountIsRefused) {
  CallError error = parseFails("hyp", "double(double,double)", {"1"});
  EXPECT_EQ(error.kind, CallError::Kind::ArgumentCount);
  EXPECT_EQ(error.argument, std::nullopt);
  EXPECT_EQ(error.message, "'hyp' (double(double,double)) takes 2 arguments; 1 given");

  error = callFails(address(marshal_halve), "halve", "float(float)", {});
  EXPECT_EQ(error.kind, CallError::Kind::ArgumentCount);
  EXPECT_EQ(error.message, "'halve' (float(float)) takes 1 argument; 0 given");
}

TEST(MarshalTest, UnsupportedSignaturesAreRefusedBeforeTheCall) {
  CallError error = parseFails("printf", "i32(ptr,...)", {"x"});
  EXPECT_EQ(error.kind, CallError::Kind::Unsupported);
  EXPECT_EQ(error.message, "'printf' (i32(ptr,...)) takes variable arguments; only functions "
                           "with a fixed parameter list can be called by signature");

  error = parseFails("sum", "i64({ i64, i64 },i32)", {"1", "2"});
  EXPECT_EQ(error.kind, CallError::Kind::Unsupported);
  EXPECT_EQ(error.message, "'sum' (i64({ i64, i64 },i32)): parameter 1 is { i64, i64 }; calls by "
                           "signature pass integers (i1, i8, i16, i32, i64), float, double and "
                           "ptr (a string) only");

  error = callFails(nullptr, "wide", "i128(i64)", {Value::signedInt(1)});
  EXPECT_EQ(error.kind, CallError::Kind::Unsupported);
  EXPECT_EQ(error.message, "'wide' (i128(i64)) returns i128; calls by signature return integers "
                           "(i1, i8, i16, i32, i64), float, double, ptr and void only");

  EXPECT_EQ(checkCallable("odd", signatureOf("void(i7)"))->kind, CallError::Kind::Unsupported);
  EXPECT_EQ(checkCallable("fine", signatureOf("void(i1,i8,i16,i32,i64,float,double,ptr)")),
            std::nullopt);
}

}  // namespace
}  // namespace rjitd::marshal
