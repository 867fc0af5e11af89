// SPDX-License-Identifier: MIT
// Remote execute on rjitd's side (service/execute-service.h) with the real service and the real
// rjitd-executor binary (RJITD_EXECUTOR_BIN) behind it, spoken to over Cap'n Proto: a call's
// answer and output, a mismatch refused before the executor sees it, each death of its kind
// followed by a call on a fresh executor, a run's exit status, the per-connection limit, and no
// executor left once the client lets go.
#include "compile-service.h"
#include "execute-service.h"
#include "load-service.h"
#include "metrics.h"
#include "object-cache.h"
#include "rpc-server.h"
#include "worker-pool.h"

#include <capnp/rpc-twoparty.h>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <sys/mman.h>
#include <unistd.h>

namespace rjitd::service {
namespace {

/// Functions that misbehave in each of the ways rjitd names, and some that do not.
constexpr const char* MODULE = R"(
@hello = private constant [6 x i8] c"hello\00"
declare i32 @puts(ptr)
declare void @exit(i32)
define i64 @add(i64 %a, i64 %b) {
  %s = add i64 %a, %b
  ret i64 %s
}
define i32 @greet() {
  %r = call i32 @puts(ptr @hello)
  ret i32 7
}
define void @poke() {
  store volatile i32 1, ptr null
  ret void
}
define void @quit() {
  call void @exit(i32 3)
  unreachable
}
define void @spin() {
entry:
  br label %loop
loop:
  br label %loop
}
declare i32 @socket(i32, i32, i32)
define i32 @connect() {
  %r = call i32 @socket(i32 2, i32 1, i32 0)
  ret i32 %r
}
declare i64 @write(i32, ptr, i64)
define void @flood() {
entry:
  br label %loop
loop:
  %r = call i64 @write(i32 1, ptr @hello, i64 5)
  br label %loop
}
declare ptr @malloc(i64)
define void @grow() {
entry:
  br label %loop
loop:
  %p = call ptr @malloc(i64 1048576)
  store volatile i8 1, ptr %p
  br label %loop
}
define void @set(ptr %p) {
  store i32 42, ptr %p
  ret void
}
define i32 @main(i32 %argc, ptr %argv) {
  %r = call i32 @puts(ptr @hello)
  ret i32 %argc
}
)";

class ExecuteServiceTest : public ::testing::Test {
protected:
  class TaskErrors final : public kj::TaskSet::ErrorHandler {
  public:
    void taskFailed(kj::Exception&& e) override {
      if (e.getType() != kj::Exception::Type::DISCONNECTED)
        ADD_FAILURE() << e.getDescription().cStr();
    }
  };
  // Held through a pointer: kj types have noexcept(false) destructors (see rpc-server-test).
  struct Env {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    cache::ObjectCache objects{64 << 20};
    metrics::Metrics metrics{{"test", "test", {"x86_64", "aarch64"}}, objects};
    InProcessBackend backend;
    WorkerPool compilePool{"test-compile", 1};
    WorkerPool hashPool{"test-hash", 1};
    WorkerPool linkPool{"test-link", 1};
    CompileService service{ServiceConfig{.compilerIdentity = "rjitd/test llvm/test"},
                           objects,
                           backend,
                           compilePool,
                           hashPool,
                           metrics};
    LoadLimits limits;
    LoadedTotals totals;
    LoadEnvironment load{service, linkPool, metrics, io.provider->getTimer(), limits, totals};
    DaemonState state{service, metrics, "test", "test"};
    TaskErrors taskErrors;
    kj::TaskSet tasks{taskErrors};
    ExecuteEnvironment execute{state,
                               *io.lowLevelProvider,
                               io.unixEventPort,
                               io.provider->getTimer(),
                               ExecutorConfig{},
                               ExecuteLimits{},
                               capnp::ReaderOptions{},
                               0,
                               {},
                               tasks};
    kj::TwoWayPipe pipe = io.provider->newTwoWayPipe();
    kj::Own<capnp::TwoPartyServer> server;
    kj::Own<capnp::TwoPartyClient> client;

    Env() {
      state.load = &load;
      state.execute = &execute;
      const char* bin = std::getenv("RJITD_EXECUTOR_BIN");
      execute.process.path = bin != nullptr ? bin : "rjitd-executor";
      execute.process.memoryBytes = 512ull << 20;
      execute.limits.executorMemory = 512ull << 20;
      execute.limits.maxExecutorsPerConnection = 2;
      execute.process.outputBytes = 1 << 20;
      if (::geteuid() == 0) {
        // As rjitd does when it runs as root (--executor-user's default, nobody).
        execute.process.uid = 65534;
        execute.process.gid = 65534;
      }
      execute.limits.executorOutput = 1 << 20;
      server = kj::heap<capnp::TwoPartyServer>(newBootstrap(state, "test-peer"));
      server->accept(kj::mv(pipe.ends[0]));
      client = kj::heap<capnp::TwoPartyClient>(*pipe.ends[1]);
    }
  };
  std::unique_ptr<Env> env = std::make_unique<Env>();

  kj::WaitScope& ws() { return env->io.waitScope; }

  proto::Session::Client session() {
    auto hello = env->client->bootstrap().castAs<proto::Rjitd>().helloRequest();
    hello.initClient().setProtocolVersion(proto::PROTOCOL_VERSION);
    return hello.send().wait(ws()).getSession();
  }

  proto::Executor::Client executor(proto::Session::Client s) {
    auto response = s.executorRequest().send().wait(ws());
    auto outcome = response.getOutcome();
    KJ_REQUIRE(outcome.isOk(), outcome.getError().getMessage());
    return outcome.getOk();
  }

  proto::RemoteModule::Client load(proto::Executor::Client e) {
    auto request = e.loadRequest();
    request.getRequest().setModuleName("misbehave.ll");
    request.getRequest().setOptLevel(0);
    request.getRequest().setModule(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(MODULE), strlen(MODULE)));
    auto response = request.send().wait(ws());
    auto outcome = response.getOutcome();
    KJ_REQUIRE(outcome.isOk(), outcome.getError().getMessage());
    return outcome.getOk().getModule();
  }

  capnp::Response<proto::RemoteModule::CallResults> call(proto::RemoteModule::Client m,
                                                         const char* symbol,
                                                         std::vector<int64_t> args = {},
                                                         uint64_t timeoutMillis = 0) {
    auto request = m.callRequest();
    request.getRequest().setSymbol(symbol);
    request.getRequest().setTimeoutMillis(timeoutMillis);
    auto list = request.getRequest().initArguments(args.size());
    for (size_t i = 0; i < args.size(); ++i)
      list[i].setSigned(args[i]);
    return request.send().wait(ws());
  }

  proto::Error::Kind errorOf(const capnp::Response<proto::RemoteModule::CallResults>& r) {
    auto outcome = r.getOutcome();
    EXPECT_TRUE(outcome.isError());
    return outcome.isError() ? outcome.getError().getKind() : proto::Error::Kind::INTERNAL;
  }

  void expectAddWorks(proto::RemoteModule::Client m) {
    auto r = call(m, "add", {40, 2});
    ASSERT_TRUE(r.getOutcome().isOk()) << r.getOutcome().getError().getMessage().cStr();
    EXPECT_EQ(r.getOutcome().getOk().getValue().getSigned(), 42);
  }
};

TEST_F(ExecuteServiceTest, CallsAnswerWithTheirValueAndOutput) {
  auto m = load(executor(session()));
  expectAddWorks(m);
  auto greet = call(m, "greet");
  ASSERT_TRUE(greet.getOutcome().isOk());
  EXPECT_EQ(greet.getOutcome().getOk().getValue().getSigned(), 7);
  auto out = greet.getOutcome().getOutput().getStdout();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.begin()), out.size()), "hello\n");
  EXPECT_EQ(env->metrics.totals().executors, 1u);
}

TEST_F(ExecuteServiceTest, AMismatchIsRefusedBeforeTheExecutor) {
  auto m = load(executor(session()));
  EXPECT_EQ(errorOf(call(m, "add", {1})), proto::Error::Kind::SIGNATURE_MISMATCH);
  EXPECT_EQ(errorOf(call(m, "hello")), proto::Error::Kind::SIGNATURE_MISMATCH);
  EXPECT_EQ(env->metrics.totals().executorRestarts, 0u);
  expectAddWorks(m);
}

TEST_F(ExecuteServiceTest, EachDeathIsItsKindAndTheNextCallGetsAFreshExecutor) {
  auto m = load(executor(session()));
  auto crash = call(m, "poke");
  EXPECT_EQ(errorOf(crash), proto::Error::Kind::CRASHED);
  EXPECT_EQ(crash.getOutcome().getError().getSignal(), SIGSEGV);
  expectAddWorks(m);
  auto quit = call(m, "quit");
  EXPECT_EQ(errorOf(quit), proto::Error::Kind::EXITED);
  EXPECT_EQ(quit.getOutcome().getError().getExitStatus(), 3);
  expectAddWorks(m);
  EXPECT_EQ(errorOf(call(m, "spin", {}, 100)), proto::Error::Kind::TIMEOUT);
  expectAddWorks(m);
  EXPECT_EQ(env->metrics.totals().executorRestarts, 3u);
}

TEST_F(ExecuteServiceTest, SandboxOutputAndMemoryLimitsAreTheirKinds) {
  auto m = load(executor(session()));
  EXPECT_EQ(errorOf(call(m, "connect")), proto::Error::Kind::SANDBOX_VIOLATION);
  expectAddWorks(m);
  auto flood = call(m, "flood");
  EXPECT_EQ(errorOf(flood), proto::Error::Kind::OUTPUT_LIMIT);
  EXPECT_EQ(flood.getOutcome().getOutput().getStdout().size(), 1u << 20);
  expectAddWorks(m);
#if !defined(__SANITIZE_ADDRESS__)
  // Sanitizer builds run executors without RLIMIT_AS (service/executor/sandbox.cpp): the memory
  // limit is tested in the plain build only.
  EXPECT_EQ(errorOf(call(m, "grow")), proto::Error::Kind::OUT_OF_MEMORY);
  expectAddWorks(m);
#endif
}

TEST_F(ExecuteServiceTest, ARunEndsWithItsExitStatus) {
  auto m = load(executor(session()));
  auto request = m.runRequest();
  auto argv = request.getRequest().initArgv(3);
  argv.set(0, "prog");
  argv.set(1, "a");
  argv.set(2, "b");
  auto response = request.send().wait(ws());
  auto outcome = response.getOutcome();
  ASSERT_TRUE(outcome.isOk()) << outcome.getError().getMessage().cStr();
  ASSERT_TRUE(outcome.getOk().isExitStatus());
  EXPECT_EQ(outcome.getOk().getExitStatus(), 3);
  auto out = outcome.getOutput().getStdout();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.begin()), out.size()), "hello\n");
  expectAddWorks(m);  // a fresh executor with the module loaded again
}

TEST_F(ExecuteServiceTest, TheConnectionLimitIsOverloadedAndReleasingEndsTheProcesses) {
  auto s = session();
  {
    auto first = load(executor(s));
    auto second = load(executor(s));
    expectAddWorks(first);
    expectAddWorks(second);
    auto third = s.executorRequest().send().wait(ws());
    ASSERT_TRUE(third.getOutcome().isError());
    EXPECT_EQ(third.getOutcome().getError().getKind(), proto::Error::Kind::OVERLOADED);
    // No hint: the client itself holds the executors, so waiting frees none.
    EXPECT_EQ(third.getOutcome().getError().getRetryAfterMillis(), 0u);
    EXPECT_EQ(env->metrics.totals().executors, 2u);
  }
  // The capabilities are released: a round trip lets the release messages arrive.
  (void)s.statsRequest().send().wait(ws());
  EXPECT_EQ(env->execute.executors, 0u);
  // The processes are killed at once and reaped when their pidfds say they are gone (the event
  // loop never waits for that): bounded wait for the gauge.
  for (int i = 0; i < 1000 && env->metrics.totals().executors != 0; ++i)
    env->io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(ws());
  EXPECT_EQ(env->metrics.totals().executors, 0u);
}

TEST_F(ExecuteServiceTest, HashFirstLoadsFindTheCachedObjectOrAskForTheModule) {
  auto s = session();
  auto e = executor(s);
  auto byKey = [&](kj::ArrayPtr<const kj::byte> key) {
    auto request = e.loadRequest();
    request.getRequest().setOptLevel(0);
    request.setKey(key);
    return request.send().wait(ws());
  };
  kj::byte unknown[32] = {1};
  auto missing = byKey(unknown);
  ASSERT_TRUE(missing.getOutcome().isError());
  EXPECT_EQ(missing.getOutcome().getError().getKind(), proto::Error::Kind::NOT_FOUND);

  kj::Array<kj::byte> key;
  {
    auto compiled = e.loadRequest();
    compiled.getRequest().setOptLevel(0);
    compiled.getRequest().setModule(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(MODULE), strlen(MODULE)));
    auto first = compiled.send().wait(ws());
    ASSERT_TRUE(first.getOutcome().isOk());
    key = kj::heapArray(first.getOutcome().getOk().getObject().getKey());
  }  // released: unloaded, so that the same module may be loaded again
  auto found = byKey(key);
  ASSERT_TRUE(found.getOutcome().isOk()) << found.getOutcome().getError().getMessage().cStr();
  EXPECT_TRUE(found.getOutcome().getOk().getObject().getFromCache());
  expectAddWorks(found.getOutcome().getOk().getModule());
}

TEST_F(ExecuteServiceTest, OnlyTheHostTargetRunsAndTheTotalLimitHolds) {
  auto s = session();
  auto other = s.executorRequest();
  other.initTarget().setTriple("aarch64");
  auto refused = other.send().wait(ws());
  ASSERT_TRUE(refused.getOutcome().isError());
  EXPECT_EQ(refused.getOutcome().getError().getKind(), proto::Error::Kind::UNKNOWN_TARGET);

  env->execute.limits.maxExecutors = 1;
  auto held = executor(s);
  auto second = s.executorRequest().send().wait(ws());
  ASSERT_TRUE(second.getOutcome().isError());
  EXPECT_EQ(second.getOutcome().getError().getKind(), proto::Error::Kind::OVERLOADED);
  EXPECT_EQ(second.getOutcome().getError().getRetryAfterMillis(), EXECUTOR_RETRY_MILLIS);
}

TEST_F(ExecuteServiceTest, ADrainKillsTheExecutorsAndTheirCallsAnswerShuttingDown) {
  auto s = session();
  auto m = load(executor(s));
  auto request = m.callRequest();
  request.getRequest().setSymbol("spin");
  auto spinning = request.send();
  // A round trip after it on the same connection: the call has reached the executor's queue.
  (void)s.statsRequest().send().wait(ws());
  env->state.draining = true;
  env->execute.killAll();
  auto response = spinning.wait(ws());
  ASSERT_TRUE(response.getOutcome().isError());
  EXPECT_EQ(response.getOutcome().getError().getKind(), proto::Error::Kind::SHUTTING_DOWN);
  EXPECT_EQ(errorOf(call(m, "add", {1, 2})), proto::Error::Kind::SHUTTING_DOWN);
  EXPECT_EQ(env->metrics.totals().executors, 0u);
}

TEST_F(ExecuteServiceTest, AnExecutorsChannelOpensNoExecutors) {
  // What rjitd serves an executor (whose user code could speak on the channel).
  auto pipe = env->io.provider->newTwoWayPipe();
  capnp::TwoPartyServer server(newBootstrap(env->state, "executor-channel", false));
  server.accept(kj::mv(pipe.ends[0]));
  capnp::TwoPartyClient client(*pipe.ends[1]);
  auto hello = client.bootstrap().castAs<proto::Rjitd>().helloRequest();
  hello.initClient().setProtocolVersion(proto::PROTOCOL_VERSION);
  auto channelSession = hello.send().wait(ws()).getSession();
  auto refused = channelSession.executorRequest().send().wait(ws());
  ASSERT_TRUE(refused.getOutcome().isError());
  EXPECT_EQ(refused.getOutcome().getError().getKind(), proto::Error::Kind::INVALID_REQUEST);
  EXPECT_EQ(env->execute.executors, 0u);
  // Nor does it compile or look up for the code in the executor: loads by key only.
  auto compile = channelSession.compileRequest();
  compile.getRequest().setModule(
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(MODULE), strlen(MODULE)));
  auto compiled = compile.send().wait(ws());
  ASSERT_TRUE(compiled.getOutcome().isError());
  EXPECT_EQ(compiled.getOutcome().getError().getKind(), proto::Error::Kind::INVALID_REQUEST);
  auto lookup = channelSession.lookupRequest();
  lookup.getRequest().initKey(32);
  auto looked = lookup.send().wait(ws());
  ASSERT_TRUE(looked.getOutcome().isError());
  EXPECT_EQ(looked.getOutcome().getError().getKind(), proto::Error::Kind::INVALID_REQUEST);
}

/// A client's shared segment (a sealed memfd), as the client library offers it.
class Segment final : public proto::SharedSegment::Server {
public:
  explicit Segment(int fd) : fd(fd) {}
  kj::Maybe<int> getFd() override { return fd; }

private:
  int fd;
};

TEST_F(ExecuteServiceTest, ASegmentBufferIsWrittenInPlace) {
  // This test's client speaks over a socketpair that carries descriptors.
  auto pipe = env->io.provider->newCapabilityPipe();
  capnp::TwoPartyServer server(newBootstrap(env->state, "segment-peer"));
  server.accept(kj::mv(pipe.ends[0]), 4);
  capnp::TwoPartyClient client(*pipe.ends[1], 4);
  auto hello = client.bootstrap().castAs<proto::Rjitd>().helloRequest();
  hello.initClient().setProtocolVersion(proto::PROTOCOL_VERSION);
  auto e = executor(hello.send().wait(ws()).getSession());
  auto m = load(e);

  constexpr size_t SIZE = 1 << 16;
  kj::AutoCloseFd fd(::memfd_create("segment", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_GE(fd.get(), 0);
  ASSERT_EQ(::ftruncate(fd.get(), SIZE), 0);
  ASSERT_EQ(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  void* base = ::mmap(nullptr, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(base, MAP_FAILED);
  KJ_DEFER(::munmap(base, SIZE));
  auto attach = e.attachSegmentRequest();
  attach.setSegment(kj::heap<Segment>(fd.get()));
  attach.setSize(SIZE);
  auto attached = attach.send().wait(ws());
  ASSERT_TRUE(attached.getOutcome().isOk()) << attached.getOutcome().getError().getMessage().cStr();

  auto setInSegment = [&]() {
    auto request = m.callRequest();
    request.getRequest().setSymbol("set");
    auto buffer = request.getRequest().initArguments(1)[0].initBuffer();
    buffer.setElement(proto::Buffer::Element::I32);
    buffer.setCount(1);
    buffer.setDirection(proto::Buffer::Direction::IN_OUT);
    buffer.setSegmentOffset(64);
    return request.send().wait(ws());
  };
  auto response = setInSegment();
  ASSERT_TRUE(response.getOutcome().isOk()) << response.getOutcome().getError().getMessage().cStr();
  EXPECT_EQ(static_cast<const int32_t*>(base)[16], 42);
  EXPECT_EQ(response.getOutcome().getOk().getBuffers().size(), 0u);  // nothing copied back

  // A new executor after a crash gets the segment again.
  EXPECT_EQ(errorOf(call(m, "poke")), proto::Error::Kind::CRASHED);
  static_cast<int32_t*>(base)[16] = 0;
  auto again = setInSegment();
  ASSERT_TRUE(again.getOutcome().isOk()) << again.getOutcome().getError().getMessage().cStr();
  EXPECT_EQ(static_cast<const int32_t*>(base)[16], 42);
}

TEST_F(ExecuteServiceTest, ASegmentNeedsADescriptor) {
  auto e = executor(session());  // over a pipe that carries no descriptors
  kj::AutoCloseFd fd(::memfd_create("segment", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  auto attach = e.attachSegmentRequest();
  attach.setSegment(kj::heap<Segment>(fd.get()));
  attach.setSize(4096);
  auto attached = attach.send().wait(ws());
  ASSERT_TRUE(attached.getOutcome().isError());
  EXPECT_EQ(attached.getOutcome().getError().getKind(), proto::Error::Kind::INVALID_REQUEST);
}

}  // namespace
}  // namespace rjitd::service
