// SPDX-License-Identifier: MIT
// The executor's Control server (service/executor/control.h) in this process, against a real
// rjitd: a load by key of an object rjitd has cached, calls by signature with scalars, strings,
// copied and shared-segment buffers, the errors a call can get, and unload. (The sandbox and
// the binary around it: sandbox-test.cpp.)
#include "control.h"

#include "connection.h"
#include "daemon-process.h"
#include "endpoint.h"
#include "hash-worker.h"
#include "process-loader.h"
#include "rpc-load.h"

#include <cstring>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <sys/mman.h>
#include <unistd.h>

namespace rjitd::executor {
namespace {

const char* const MODULE = R"(
declare i64 @strlen(ptr)

define i64 @add(i64 %a, i64 %b) {
  %s = add i64 %a, %b
  ret i64 %s
}

define i64 @length(ptr %s) {
  %n = call i64 @strlen(ptr %s)
  ret i64 %n
}

define void @fill(ptr %p) {
  store i32 7, ptr %p
  ret void
}

define void @twice(ptr %p, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%next, %body]
  %done = icmp eq i64 %i, %n
  br i1 %done, label %exit, label %body
body:
  %q = getelementptr i32, ptr %p, i64 %i
  %v = load i32, ptr %q
  %w = mul i32 %v, 2
  store i32 %w, ptr %q
  %next = add i64 %i, 1
  br label %loop
exit:
  ret void
}
)";

/// A client's shared segment: a memfd, also mapped here to see what the callee wrote.
class TestSegment final : public proto::SharedSegment::Server {
public:
  explicit TestSegment(int fd) : fd(fd) {}
  kj::Maybe<int> getFd() override { return fd; }

private:
  int fd;
};

class ExecutorControl : public ::testing::Test {
protected:
  void SetUp() override {
    daemon = rjit::test::DaemonProcess::start();
    ASSERT_NE(daemon, nullptr);
    auto endpoint = parseEndpoint(daemon->endpoint());
    ASSERT_TRUE(std::holds_alternative<Endpoint>(endpoint));
    connection = rjit::detail::connectTo(io, std::get<Endpoint>(endpoint)).wait(io.waitScope);
    auto hello = connection->hello("executor-control-test").wait(io.waitScope);
    ASSERT_TRUE(std::holds_alternative<bool>(hello));

    // rjitd caches the object first, as it does before Control.load.
    auto compile = connection->session().compileRequest();
    auto request = compile.initRequest();
    request.setModuleName("control-test.ll");
    request.setOptLevel(1);
    request.setFormat(proto::IrFormat::TEXT);
    request.setModule(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(MODULE), std::strlen(MODULE)));
    auto compiled = compile.send().wait(io.waitScope);
    ASSERT_TRUE(compiled.getOutcome().isOk());
    auto keyBytes = compiled.getOutcome().getOk().getKey();
    key.assign(keyBytes.begin(), keyBytes.end());

    auto server = kj::heap<ControlServer>(page, loader, processLoader);
    server->setConnection(*connection);
    control = kj::mv(server);
  }

  /// Loads the module; its id.
  uint64_t load() {
    auto request = control.loadRequest();
    request.setOptLevel(1);
    request.setKey(capnp::Data::Reader(key.data(), key.size()));
    request.setModuleName("control-test.ll");
    auto response = request.send().wait(io.waitScope);
    auto outcome = response.getOutcome();
    KJ_REQUIRE(outcome.isId(), outcome.getError().getMessage());
    return outcome.getId();
  }

  capnp::Response<proto::executor::Control::CallResults>
  call(uint64_t id, const char* symbol, const char* signature,
       const std::function<void(capnp::List<proto::Value>::Builder)>& arguments, size_t count) {
    auto request = control.callRequest();
    request.setId(id);
    request.setSymbol(symbol);
    request.setSignature(signature);
    arguments(request.initArguments(count));
    return request.send().wait(io.waitScope);
  }

  // kj's and capnp's destructors may throw; gtest's fixture destructor is noexcept.
  ~ExecutorControl() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::unique_ptr<rjit::test::DaemonProcess> daemon;
  std::shared_ptr<rjit::detail::Connection> connection;
  std::vector<kj::byte> key;
  StatusPage page{};
  rjit::detail::Config config;
  rjit::detail::HashWorker hasher;
  rjit::detail::RpcLoader loader{config, hasher};
  rjit::detail::ProcessLoader processLoader;
  proto::executor::Control::Client control = nullptr;
};

TEST_F(ExecutorControl, CallsScalarsAndStrings) {
  uint64_t id = load();
  auto sum = call(
      id, "add", "i64(i64,i64)",
      [](auto args) {
        args[0].setSigned(-2);
        args[1].setUnsigned(44);
      },
      2);
  ASSERT_TRUE(sum.getOutcome().isOk());
  EXPECT_EQ(sum.getOutcome().getOk().getValue().getSigned(), 42);
  EXPECT_EQ(page.phase.load(), StatusPage::Idle);

  // strlen comes from this process (the resolver rjitd asked).
  auto length = call(
      id, "length", "i64(ptr)", [](auto args) { args[0].setString("hello"); }, 1);
  ASSERT_TRUE(length.getOutcome().isOk());
  EXPECT_EQ(length.getOutcome().getOk().getValue().getSigned(), 5);
}

TEST_F(ExecutorControl, CopiedBuffersGoBackInArgumentOrder) {
  uint64_t id = load();
  int32_t values[] = {1, 2, 3};
  auto doubled = call(
      id, "twice", "void(ptr,i64)",
      [&](auto args) {
        auto buffer = args[0].initBuffer();
        buffer.setElement(proto::Buffer::Element::I32);
        buffer.setCount(3);
        buffer.setDirection(proto::Buffer::Direction::IN_OUT);
        buffer.setBytes(
            capnp::Data::Reader(reinterpret_cast<const kj::byte*>(values), sizeof(values)));
        args[1].setSigned(3);
      },
      2);
  ASSERT_TRUE(doubled.getOutcome().isOk());
  auto buffers = doubled.getOutcome().getOk().getBuffers();
  ASSERT_EQ(buffers.size(), 1u);
  ASSERT_EQ(buffers[0].size(), sizeof(values));
  int32_t back[3];
  std::memcpy(back, buffers[0].begin(), sizeof(back));
  EXPECT_EQ(back[0], 2);
  EXPECT_EQ(back[2], 6);

  auto filled = call(
      id, "fill", "void(ptr)",
      [](auto args) {
        auto buffer = args[0].initBuffer();
        buffer.setElement(proto::Buffer::Element::U32);
        buffer.setCount(1);
        buffer.setDirection(proto::Buffer::Direction::OUT);
        buffer.setBytes(nullptr);
      },
      1);
  ASSERT_TRUE(filled.getOutcome().isOk());
  ASSERT_EQ(filled.getOutcome().getOk().getBuffers().size(), 1u);
  uint32_t seven = 0;
  std::memcpy(&seven, filled.getOutcome().getOk().getBuffers()[0].begin(), sizeof(seven));
  EXPECT_EQ(seven, 7u);
}

TEST_F(ExecutorControl, SegmentBuffersAreWrittenInPlace) {
  uint64_t id = load();
  constexpr size_t SIZE = 1 << 20;
  kj::AutoCloseFd fd(::memfd_create("segment", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(fd.get(), SIZE), 0);
  void* mapped = ::mmap(nullptr, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(mapped, MAP_FAILED);
  KJ_DEFER(::munmap(mapped, SIZE));
  auto attach = control.attachSegmentRequest();
  attach.setSegment(kj::heap<TestSegment>(fd.get()));
  attach.setSize(SIZE);
  EXPECT_EQ(std::string(attach.send().wait(io.waitScope).getError().cStr()), "");

  int32_t* ints = static_cast<int32_t*>(mapped) + 1024;
  ints[0] = 10;
  ints[1] = 20;
  auto doubled = call(
      id, "twice", "void(ptr,i64)",
      [](auto args) {
        auto buffer = args[0].initBuffer();
        buffer.setElement(proto::Buffer::Element::I32);
        buffer.setCount(2);
        buffer.setDirection(proto::Buffer::Direction::IN_OUT);
        buffer.setSegmentOffset(4096);
        args[1].setSigned(2);
      },
      2);
  ASSERT_TRUE(doubled.getOutcome().isOk());
  EXPECT_EQ(doubled.getOutcome().getOk().getBuffers().size(), 0u);
  EXPECT_EQ(ints[0], 20);
  EXPECT_EQ(ints[1], 40);

  // Past the segment's end: refused before the call.
  auto outside = call(
      id, "twice", "void(ptr,i64)",
      [](auto args) {
        auto buffer = args[0].initBuffer();
        buffer.setElement(proto::Buffer::Element::I32);
        buffer.setCount(2);
        buffer.setDirection(proto::Buffer::Direction::IN_OUT);
        buffer.setSegmentOffset(SIZE - 4);
        args[1].setSigned(2);
      },
      2);
  ASSERT_TRUE(outside.getOutcome().isError());
  EXPECT_EQ(outside.getOutcome().getError().getKind(), proto::Error::Kind::INVALID_REQUEST);
}

TEST_F(ExecutorControl, MismatchesAreSignatureErrors) {
  uint64_t id = load();
  auto wrongType = call(
      id, "add", "i64(i64,i64)",
      [](auto args) {
        args[0].setSigned(1);
        args[1].setString("x");
      },
      2);
  ASSERT_TRUE(wrongType.getOutcome().isError());
  EXPECT_EQ(wrongType.getOutcome().getError().getKind(), proto::Error::Kind::SIGNATURE_MISMATCH);

  auto tooFew = call(
      id, "add", "i64(i64,i64)", [](auto) {}, 0);
  ASSERT_TRUE(tooFew.getOutcome().isError());
  EXPECT_EQ(tooFew.getOutcome().getError().getKind(), proto::Error::Kind::SIGNATURE_MISMATCH);

  auto unknown = call(
      id, "nothing", "void()", [](auto) {}, 0);
  ASSERT_TRUE(unknown.getOutcome().isError());
  EXPECT_EQ(unknown.getOutcome().getError().getKind(), proto::Error::Kind::SIGNATURE_MISMATCH);

  // A copied in-buffer whose contents do not match its count.
  auto shortBuffer = call(
      id, "twice", "void(ptr,i64)",
      [](auto args) {
        auto buffer = args[0].initBuffer();
        buffer.setElement(proto::Buffer::Element::I32);
        buffer.setCount(4);
        buffer.setDirection(proto::Buffer::Direction::IN);
        buffer.setBytes(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("ab"), 2));
        args[1].setSigned(0);
      },
      2);
  ASSERT_TRUE(shortBuffer.getOutcome().isError());
  EXPECT_EQ(shortBuffer.getOutcome().getError().getKind(), proto::Error::Kind::SIGNATURE_MISMATCH);
}

TEST_F(ExecutorControl, UnloadedModulesAreGone) {
  uint64_t id = load();
  auto unload = control.unloadRequest();
  unload.setId(id);
  unload.send().wait(io.waitScope);
  auto request = control.callRequest();
  request.setId(id);
  request.setSymbol("add");
  request.setSignature("i64(i64,i64)");
  auto failure = kj::runCatchingExceptions([&] { request.send().wait(io.waitScope); });
  KJ_IF_MAYBE (e, failure) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::FAILED);
  } else {
    ADD_FAILURE() << "a call of an unloaded module was answered";
  }
}

TEST_F(ExecutorControl, UnknownKeyIsNotFound) {
  auto request = control.loadRequest();
  std::vector<kj::byte> other(32, 0xab);
  request.setKey(capnp::Data::Reader(other.data(), other.size()));
  auto response = request.send().wait(io.waitScope);
  auto outcome = response.getOutcome();
  ASSERT_TRUE(outcome.isError());
  EXPECT_EQ(outcome.getError().getKind(), proto::Error::Kind::NOT_FOUND);

  auto badKey = control.loadRequest();
  badKey.setKey(capnp::Data::Reader(other.data(), 5));
  auto badResponse = badKey.send().wait(io.waitScope);
  auto bad = badResponse.getOutcome();
  ASSERT_TRUE(bad.isError());
  EXPECT_EQ(bad.getError().getKind(), proto::Error::Kind::INVALID_REQUEST);
}

}  // namespace
}  // namespace rjitd::executor
