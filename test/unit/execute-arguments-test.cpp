// SPDX-License-Identifier: MIT
// rjitd's checks before anything reaches an executor (service/execute-service.h): call
// arguments against the function's IR signature, the function's lookup, the shared segment
// and the deadline.
#include "execute-service.h"

#include <capnp/message.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/io.h>
#include <limits>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace rjitd::service {
namespace {

IrSignature signatureOf(const char* text) {
  auto parsed = parseIrSignature(text);
  EXPECT_TRUE(std::holds_alternative<IrSignature>(parsed)) << text;
  return std::get<IrSignature>(parsed);
}

/// Builds a list of wire values with `fill` and checks it against `signature`.
class Arguments {
public:
  explicit Arguments(size_t count)
      : list(message.initRoot<proto::CallRequest>().initArguments(count)) {}
  proto::Value::Builder operator[](size_t i) { return list[i]; }
  std::optional<Failure> check(const char* signature, uint64_t maxBuffer = 1 << 20,
                               std::optional<uint64_t> segment = std::nullopt,
                               uint64_t maxCopied = UINT64_MAX) {
    return checkCallArguments("f", signatureOf(signature), list.asReader(), maxBuffer, segment,
                              maxCopied);
  }

private:
  capnp::MallocMessageBuilder message;
  capnp::List<proto::Value>::Builder list;
};

void expectMismatch(const std::optional<Failure>& failure) {
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->kind, ErrorKind::SignatureMismatch);
}

TEST(ExecuteArgumentsTest, ScalarsThatFitPass) {
  Arguments a(2);
  a[0].setSigned(-1);
  a[1].setUnsigned(std::numeric_limits<uint64_t>::max());  // i64 takes either range
  EXPECT_EQ(a.check("i64(i64,i64)"), std::nullopt);
  Arguments f(2);
  f[0].setFloat64(1.5);
  f[1].setFloat32(2.5f);
  EXPECT_EQ(f.check("double(float,double)"), std::nullopt);
}

TEST(ExecuteArgumentsTest, CopiedBuffersAndStringsTogetherOverTheCallBudgetAreTooLarge) {
  // Each fits alone (1 MiB buffers), but one call may copy at most 1.5 MiB (--max-call-bytes).
  Arguments a(3);
  for (unsigned i = 0; i < 2; ++i) {
    auto b = a[i].initBuffer();
    b.setElement(proto::Buffer::Element::U8);
    b.setCount(512 << 10);
    b.setDirection(proto::Buffer::Direction::OUT);
  }
  a[2].setString(std::string(1 << 20, 'x'));
  EXPECT_EQ(a.check("void(ptr,ptr,ptr)", 1 << 20, std::nullopt, 3 << 20), std::nullopt);
  auto failure = a.check("void(ptr,ptr,ptr)", 1 << 20, std::nullopt, 3 << 19);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->kind, ErrorKind::TooLarge) << failure->message;
}

TEST(ExecuteArgumentsTest, AnExecutorsAnswerMustReturnEachCopiedOutBufferAtItsSize) {
  capnp::MallocMessageBuilder request;
  auto arguments = request.initRoot<proto::CallRequest>().initArguments(3);
  auto out = arguments[0].initBuffer();
  out.setElement(proto::Buffer::Element::I32);
  out.setCount(4);
  out.setDirection(proto::Buffer::Direction::OUT);
  auto in = arguments[1].initBuffer();  // `in`: nothing comes back
  in.setElement(proto::Buffer::Element::U8);
  in.setCount(3);
  in.initBytes(3);
  arguments[2].setSigned(1);
  auto answerWith = [&](std::initializer_list<size_t> sizes) {
    auto message = kj::heap<capnp::MallocMessageBuilder>();
    auto buffers = message->initRoot<proto::CallOutcome>().initOk().initBuffers(sizes.size());
    size_t i = 0;
    for (size_t size : sizes)
      buffers.init(i++, size);
    return message;
  };
  auto good = answerWith({16});
  EXPECT_EQ(answerProblem(arguments.asReader(), good->getRoot<proto::CallOutcome>().asReader()),
            std::nullopt);
  for (auto sizes : {std::initializer_list<size_t>{}, {15}, {16, 3}}) {
    auto bad = answerWith(sizes);
    EXPECT_NE(answerProblem(arguments.asReader(), bad->getRoot<proto::CallOutcome>().asReader()),
              std::nullopt);
  }
}

TEST(ExecuteArgumentsTest, WrongCountIsAMismatch) {
  Arguments a(1);
  a[0].setSigned(1);
  expectMismatch(a.check("i64(i64,i64)"));
}

TEST(ExecuteArgumentsTest, AStringForAnIntegerIsAMismatchNamingTheFunction) {
  Arguments a(2);
  a[0].setSigned(1);
  a[1].setString("x");
  auto failure = a.check("i64(i64,i64)");
  expectMismatch(failure);
  // The message names the function with its signature and what was given.
  EXPECT_EQ(failure->message.rfind("i64 f(i64, i64) called with (1, string \"x\"): argument 2", 0),
            0u)
      << failure->message;
}

TEST(ExecuteArgumentsTest, IntegerRangesFollowTheExtension) {
  Arguments big(1);
  big[0].setSigned(300);
  expectMismatch(big.check("i8(i8)"));
  Arguments minus(1);
  minus[0].setSigned(-1);
  EXPECT_EQ(minus.check("i32(signext i8)"), std::nullopt);
  expectMismatch(minus.check("i32(zeroext i8)"));
  Arguments tooLargeFloat(1);
  tooLargeFloat[0].setFloat64(1e300);
  expectMismatch(tooLargeFloat.check("float(float)"));
}

TEST(ExecuteArgumentsTest, PointersTakeStringsBuffersAndNullOnly) {
  Arguments ok(3);
  ok[0].setString("hello");
  ok[1].setNull();
  auto b = ok[2].initBuffer();
  b.setElement(proto::Buffer::Element::I32);
  b.setCount(4);
  b.setDirection(proto::Buffer::Direction::IN);
  b.initBytes(16);
  EXPECT_EQ(ok.check("void(ptr,ptr,ptr)"), std::nullopt);

  Arguments number(1);
  number[0].setSigned(0);
  expectMismatch(number.check("void(ptr)"));
  Arguments null(1);
  null[0].setNull();
  expectMismatch(null.check("void(i32)"));
  Arguments buffer(1);
  buffer[0].initBuffer().setCount(1);
  expectMismatch(buffer.check("void(i64)"));
  Arguments voidValue(1);
  voidValue[0].setVoid();
  expectMismatch(voidValue.check("void(ptr)"));
}

TEST(ExecuteArgumentsTest, BufferBytesMustMatchTheirCount) {
  Arguments shortBytes(1);
  auto b = shortBytes[0].initBuffer();
  b.setElement(proto::Buffer::Element::F64);
  b.setCount(4);
  b.setDirection(proto::Buffer::Direction::IN_OUT);
  b.initBytes(31);
  expectMismatch(shortBytes.check("void(ptr)"));

  Arguments out(1);
  auto o = out[0].initBuffer();
  o.setElement(proto::Buffer::Element::U8);
  o.setCount(8);
  o.setDirection(proto::Buffer::Direction::OUT);
  EXPECT_EQ(out.check("void(ptr)"), std::nullopt);
  o.initBytes(8);  // an out buffer sends nothing
  expectMismatch(out.check("void(ptr)"));
}

TEST(ExecuteArgumentsTest, BuffersLargerThanAnExecutorAreRefused) {
  Arguments a(1);
  auto b = a[0].initBuffer();
  b.setElement(proto::Buffer::Element::U64);
  b.setCount(std::numeric_limits<uint64_t>::max() / 4);  // count * 8 overflows
  b.setDirection(proto::Buffer::Direction::OUT);
  expectMismatch(a.check("void(ptr)", 1 << 20));
  b.setCount((1 << 20) / 8 + 1);
  expectMismatch(a.check("void(ptr)", 1 << 20));
}

TEST(ExecuteArgumentsTest, SegmentBuffersNeedASegmentHoldingThem) {
  Arguments a(1);
  auto b = a[0].initBuffer();
  b.setElement(proto::Buffer::Element::I32);
  b.setCount(4);
  b.setDirection(proto::Buffer::Direction::IN_OUT);
  b.setSegmentOffset(4096);
  expectMismatch(a.check("void(ptr)"));                          // no segment
  EXPECT_EQ(a.check("void(ptr)", 1 << 20, 8192), std::nullopt);  // 4096 + 16 <= 8192
  expectMismatch(a.check("void(ptr)", 1 << 20, 4100));           // runs past the end
  b.setSegmentOffset(std::numeric_limits<uint64_t>::max());
  expectMismatch(a.check("void(ptr)", 1 << 20, 8192));
}

TEST(ExecuteArgumentsTest, UncallableSignaturesAreAMismatch) {
  Arguments a(1);
  a[0].setSigned(1);
  expectMismatch(a.check("i32(i32,...)"));
  expectMismatch(a.check("{ i64, i64 }(i32)"));
}

TEST(ExecuteArgumentsTest, FindFunctionNeedsAFunctionTheModuleDefines) {
  CompiledObject object;
  object.defines = {{"add", ObjectSymbol::Kind::Function, "i64(i64,i64)"},
                    {"table", ObjectSymbol::Kind::Data, ""},
                    {"odd", ObjectSymbol::Kind::Function, "i32(i32"}};
  auto add = findFunction(object, "add");
  ASSERT_TRUE(std::holds_alternative<IrSignature>(add));
  EXPECT_EQ(formatIrSignature(std::get<IrSignature>(add)), "i64(i64,i64)");
  for (const char* name : {"table", "missing", "odd"}) {
    auto found = findFunction(object, name);
    ASSERT_TRUE(std::holds_alternative<Failure>(found)) << name;
    EXPECT_EQ(std::get<Failure>(found).kind, ErrorKind::SignatureMismatch) << name;
  }
}

TEST(ExecuteArgumentsTest, MainHasOneOfTheProgramSignatures) {
  for (const char* ok : {"i32()", "i32(i32,ptr)", "i32(i32,ptr,ptr)"})
    EXPECT_EQ(checkMain(signatureOf(ok)), std::nullopt) << ok;
  for (const char* bad : {"void()", "i64()", "i32(i32)", "i32(ptr,ptr)", "i32(i32,ptr,...)",
                          "i32(i32,ptr,ptr,ptr)"}) {
    auto failure = checkMain(signatureOf(bad));
    ASSERT_TRUE(failure.has_value()) << bad;
    EXPECT_EQ(failure->kind, ErrorKind::SignatureMismatch) << bad;
  }
}

kj::AutoCloseFd memfd(uint64_t size, bool seal) {
  kj::AutoCloseFd fd(::memfd_create("segment-test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  EXPECT_GE(fd.get(), 0);
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  if (seal) {
    EXPECT_EQ(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  }
  return fd;
}

TEST(ExecuteArgumentsTest, SegmentsMustBeSealedMemfdsWithinHalfTheMemory) {
  auto sealed = memfd(1 << 16, true);
  EXPECT_EQ(checkSegment(sealed.get(), 1 << 16, 1 << 20), std::nullopt);
  auto tooLarge = checkSegment(sealed.get(), 1 << 16, 1 << 15);
  ASSERT_TRUE(tooLarge);
  EXPECT_EQ(tooLarge->kind, ErrorKind::TooLarge);
  auto claimsMore = checkSegment(sealed.get(), 1 << 17, 1 << 20);
  ASSERT_TRUE(claimsMore);
  EXPECT_EQ(claimsMore->kind, ErrorKind::InvalidRequest);
  auto unsealed = memfd(1 << 16, false);
  auto shrinkable = checkSegment(unsealed.get(), 1 << 16, 1 << 20);
  ASSERT_TRUE(shrinkable);
  EXPECT_EQ(shrinkable->kind, ErrorKind::InvalidRequest);
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  kj::AutoCloseFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  auto notAFile = checkSegment(readEnd.get(), 0, 1 << 20);
  ASSERT_TRUE(notAFile);
  EXPECT_EQ(notAFile->kind, ErrorKind::InvalidRequest);
}

TEST(ExecuteArgumentsTest, TheDeadlineIsTheClientsCappedByRjitds) {
  using std::chrono::milliseconds;
  EXPECT_EQ(callDeadline(0, milliseconds(30000)), milliseconds(30000));
  EXPECT_EQ(callDeadline(250, milliseconds(30000)), milliseconds(250));
  EXPECT_EQ(callDeadline(60000, milliseconds(30000)), milliseconds(30000));
}

}  // namespace
}  // namespace rjitd::service
