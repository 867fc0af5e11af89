// SPDX-License-Identifier: MIT
// The client's side of remote execute without a daemon: argument and C++-type checks against IR
// signatures (what call<R> and callValues refuse before anything is sent, and their messages),
// Value factories, Buffers of this process, and the shared segment (a sealed memfd whose
// Boost.Interprocess heap another mapping of the same fd sees).
#include "exec-values.h"
#include "remotejit/client.h"
#include "shared-segment.h"

#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

namespace rjit::detail {
namespace {

rjitd::IrSignature parse(const char* text) {
  auto parsed = rjitd::parseIrSignature(text);
  EXPECT_TRUE(std::holds_alternative<rjitd::IrSignature>(parsed)) << text;
  return std::get<rjitd::IrSignature>(parsed);
}

/// The message of a typed (call<R>) check of `args` for a result R, or "" when it passes.
template <typename R> std::string typed(const char* signature, std::vector<Value> args) {
  RemoteModule::ResultType result = RemoteModule::resultType<R>();
  auto problem = checkArguments("f", parse(signature), args, true, &result);
  return problem ? *problem : "";
}

std::string dynamic(const char* signature, std::vector<Value> args) {
  auto problem = checkArguments("f", parse(signature), args, false, nullptr);
  return problem ? *problem : "";
}

TEST(RemoteExecValues, FactoriesKeepTheCxxTypesWidthAndSignedness) {
  EXPECT_EQ(Value::of(int8_t(-1)).kind, Value::Kind::Signed);
  EXPECT_EQ(Value::of(int8_t(-1)).bits, 8);
  EXPECT_EQ(Value::of(uint64_t(1)).kind, Value::Kind::Unsigned);
  EXPECT_EQ(Value::of(uint64_t(1)).bits, 64);
  EXPECT_EQ(Value::of(true).bits, 1);
  EXPECT_EQ(Value::of(true).u, 1u);
  EXPECT_EQ(Value::of(1.5f).kind, Value::Kind::Float);
  EXPECT_EQ(Value::of(2.5).kind, Value::Kind::Double);
  EXPECT_EQ(Value::of("x").kind, Value::Kind::String);
  EXPECT_EQ(Value::of(static_cast<const char*>(nullptr)).kind, Value::Kind::Null);
  EXPECT_EQ(Value::of(nullptr).kind, Value::Kind::Null);
  Buffer b(ElementType::I32, 4, Direction::In);
  EXPECT_EQ(Value::of(b).buffer, &b);
}

TEST(RemoteExecValues, TypedCallsNeedTheIrWidth) {
  EXPECT_EQ(typed<int64_t>("i64(i64,i64)", {Value::of(int64_t(1)), Value::of(int64_t(2))}), "");
  EXPECT_EQ(typed<uint64_t>("i64(i64)", {Value::of(uint64_t(18446744073709551615u))}), "");
  std::string narrow = typed<int64_t>("i64(i64,i64)", {Value::of(1), Value::of(int64_t(2))});
  EXPECT_EQ(narrow, "i64 f(i64, i64) called with (i32 1, i64 2): argument 1: a 32-bit C++ "
                    "integer for i64");
  EXPECT_NE(typed<int32_t>("i64(i64)", {Value::of(int64_t(1))}).find("result of a 32-bit"),
            std::string::npos);
  EXPECT_EQ(typed<void>("void(i32)", {Value::of(1)}), "");
  EXPECT_NE(typed<int32_t>("void(i32)", {Value::of(1)}), "");
  EXPECT_NE(typed<void>("i32(i32)", {Value::of(1)}), "");
}

TEST(RemoteExecValues, TypedCallsRespectSignextAndZeroext) {
  EXPECT_EQ(typed<uint8_t>("zeroext i8(zeroext i8)", {Value::of(uint8_t(200))}), "");
  EXPECT_NE(typed<int8_t>("zeroext i8(zeroext i8)", {Value::of(uint8_t(200))}), "");
  EXPECT_NE(typed<uint8_t>("zeroext i8(zeroext i8)", {Value::of(int8_t(-1))}), "");
  EXPECT_EQ(typed<int16_t>("signext i16(signext i16)", {Value::of(int16_t(-5))}), "");
  EXPECT_NE(typed<int16_t>("signext i16(signext i16)", {Value::of(uint16_t(5))}), "");
  // No attribute: either signedness of the right width.
  EXPECT_EQ(typed<uint32_t>("i32(i32)", {Value::of(uint32_t(4000000000u))}), "");
  EXPECT_EQ(typed<bool>("zeroext i1(zeroext i1)", {Value::of(true)}), "");
}

TEST(RemoteExecValues, TypedCallsNeedTheFloatingPointType) {
  EXPECT_EQ(typed<double>("double(double,float)", {Value::of(1.0), Value::of(2.0f)}), "");
  EXPECT_NE(typed<double>("double(double,float)", {Value::of(1.0f), Value::of(2.0f)}), "");
  EXPECT_NE(typed<double>("double(double,float)", {Value::of(1.0), Value::of(2.0)}), "");
  EXPECT_NE(typed<float>("double(double)", {Value::of(1.0)}), "");
}

TEST(RemoteExecValues, PointersTakeStringsBuffersAndNull) {
  Buffer b(ElementType::F64, 8, Direction::Out);
  EXPECT_EQ(typed<int32_t>("i32(ptr,ptr,ptr)", {Value::of("s"), Value::of(b), Value::of(nullptr)}),
            "");
  std::string message = dynamic("i32(ptr)", {Value::of(int64_t(5))});
  EXPECT_EQ(message, "i32 f(ptr) called with (i64 5): argument 1: expected a string, a buffer or "
                     "null for ptr");
  EXPECT_NE(dynamic("i32(i32)", {Value::of("x")}).find("argument 1: a string for i32"),
            std::string::npos);
  EXPECT_NE(dynamic("i32(i32)", {Value::of(b)}).find("buffer f64[8] out"), std::string::npos);
}

TEST(RemoteExecValues, DynamicCallsNeedOnlyAFit) {
  // callValues: an int for an i64, an unsigned literal past INT64_MAX for an i64.
  EXPECT_EQ(dynamic("i64(i64,i64)", {Value::of(1), Value::of(uint64_t(18446744073709551615u))}),
            "");
  EXPECT_EQ(dynamic("float(float)", {Value::of(2.5)}), "");
  EXPECT_NE(dynamic("i8(i8)", {Value::of(1000)}).find("argument 1: expected an integer in"),
            std::string::npos);
  EXPECT_NE(dynamic("signext i8(signext i8)", {Value::of(uint8_t(200))}), "");
}

TEST(RemoteExecValues, CountMismatchNamesSignatureAndArguments) {
  EXPECT_EQ(dynamic("i64(i64,i64)", {Value::of(int64_t(1))}),
            "i64 f(i64, i64) called with (i64 1): it takes 2 arguments, not 1");
  EXPECT_EQ(dynamic("void()", {}), "");
}

TEST(RemoteExecValues, FunctionSignatureRefusesWhatCannotBeCalled) {
  CompiledObject object;
  object.defines = {{"add", Symbol::Kind::Function, "i64(i64,i64)"},
                    {"table", Symbol::Kind::Data, ""},
                    {"log", Symbol::Kind::Function, "void(ptr,...)"},
                    {"pair", Symbol::Kind::Function, "{ i64, i64 }(i64)"}};
  EXPECT_TRUE(std::holds_alternative<rjitd::IrSignature>(functionSignature(object, "add")));
  auto text = [&](const char* name) {
    auto r = functionSignature(object, name);
    return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : "";
  };
  EXPECT_EQ(text("table"), "'table' is not a function the module defines");
  EXPECT_EQ(text("missing"), "'missing' is not a function the module defines");
  EXPECT_NE(text("log").find("variable arguments"), std::string::npos);
  EXPECT_NE(text("pair").find("its result { i64, i64 }"), std::string::npos);
}

TEST(RemoteExecBuffer, HeapBufferIsZeroedAndTyped) {
  Buffer b(ElementType::U16, 5, Direction::InOut);
  EXPECT_EQ(b.count(), 5u);
  EXPECT_EQ(b.bytes(), 10u);
  EXPECT_FALSE(b.shared());
  for (size_t i = 0; i < 5; ++i)
    EXPECT_EQ(b.as<uint16_t>()[i], 0);
  b.as<uint16_t>()[4] = 7;
  try {
    b.as<int16_t>();
    ADD_FAILURE() << "as<T>() of another element type";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidRequest);
  }
  Buffer moved = std::move(b);
  EXPECT_EQ(moved.as<uint16_t>()[4], 7);
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
  try {
    Buffer tooLarge(ElementType::F64, SIZE_MAX / 4);
    ADD_FAILURE() << "an overflowing buffer";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidRequest);
  }
}

TEST(RemoteExecSegment, SealedMemfdSharedWithAnotherMapping) {
  auto made = SharedSegment::create(uint64_t{4} << 20);
  ASSERT_TRUE(std::holds_alternative<std::shared_ptr<SharedSegment>>(made));
  std::shared_ptr<SharedSegment> segment = std::get<std::shared_ptr<SharedSegment>>(made);
  int seals = fcntl(segment->fd(), F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
  EXPECT_EQ(fcntl(segment->fd(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  EXPECT_NE(ftruncate(segment->fd(), 4096), 0);  // the seal holds

  auto* p = static_cast<int32_t*>(segment->allocate(1024 * sizeof(int32_t)));
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(segment->contains(p));
  uint64_t offset = segment->offsetOf(p);
  EXPECT_LT(offset, segment->size());
  // The executor's view: the same fd mapped elsewhere sees the same bytes at the offset.
  void* other =
      mmap(nullptr, segment->size(), PROT_READ | PROT_WRITE, MAP_SHARED, segment->fd(), 0);
  ASSERT_NE(other, MAP_FAILED);
  auto* there = reinterpret_cast<int32_t*>(static_cast<char*>(other) + offset);
  p[10] = 42;
  EXPECT_EQ(there[10], 42);
  there[11] = 43;  // "written by the callee"
  EXPECT_EQ(p[11], 43);
  munmap(other, segment->size());

  // Freed memory comes back zeroed; a request larger than the segment is refused.
  segment->deallocate(p);
  auto* again = static_cast<int32_t*>(segment->allocate(1024 * sizeof(int32_t)));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again[10], 0);
  EXPECT_EQ(segment->allocate(uint64_t{8} << 20), nullptr);
  segment->deallocate(again);
}

TEST(RemoteExecSegment, SizeFromTheEnvironment) {
  unsetenv("RJIT_SEGMENT_BYTES");
  auto size = segmentSizeFromEnvironment();
  ASSERT_TRUE(std::holds_alternative<uint64_t>(size));
  EXPECT_EQ(std::get<uint64_t>(size), DEFAULT_SEGMENT_BYTES);
  setenv("RJIT_SEGMENT_BYTES", "8388608", 1);
  size = segmentSizeFromEnvironment();
  ASSERT_TRUE(std::holds_alternative<uint64_t>(size));
  EXPECT_EQ(std::get<uint64_t>(size), 8388608u);
  for (const char* bad : {"12", "-5", "8M", "99999999999999999999"}) {
    setenv("RJIT_SEGMENT_BYTES", bad, 1);
    size = segmentSizeFromEnvironment();
    ASSERT_TRUE(std::holds_alternative<Error>(size)) << bad;
    EXPECT_EQ(std::get<Error>(size).kind(), ErrorKind::Configuration);
  }
  unsetenv("RJIT_SEGMENT_BYTES");
}

TEST(RemoteExecHandles, EmptyHandlesFailWithInvalidRequest) {
  RemoteModule module;
  EXPECT_FALSE(module);
  try {
    module.call<int64_t>("add", int64_t(1), int64_t(2));
    ADD_FAILURE() << "a call on an empty handle";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidRequest);
  }
  RemoteExecutor executor;
  EXPECT_FALSE(executor.sharedMemory());
  try {
    executor.buffer(ElementType::I8, 1);
    ADD_FAILURE() << "a buffer of an empty handle";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidRequest);
  }
}

}  // namespace
}  // namespace rjit::detail
