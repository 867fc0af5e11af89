// SPDX-License-Identifier: MIT
// How the compile backend tells a worker killed from outside (retried, never the module's
// fault) from one that crashed by its own doing (the module is reported invalid), and how it
// ends compiles on purpose (cancellation, the drain's stop()) and bounds what a worker may
// produce and use (--max-object-bytes, --compile-memory), with real worker processes.
#include "compile-backend.h"

#include "compile-gate.h"
#include "object-cache.h"
#include "temp-dir.h"

#include <csignal>
#include <cstdlib>
#include <future>
#include <gtest/gtest.h>
#include <kj/common.h>

namespace rjitd::service {
namespace {

// waitpid() statuses as the kernel builds them (see <bits/waitstatus.h>).
int killedBy(int signal) {
  return signal & 0x7f;
}
int exitedWith(int code) {
  return (code & 0xff) << 8;
}

TEST(KilledFromOutside, SignalsOnlyAnotherProcessSends) {
  ASSERT_TRUE(WIFSIGNALED(killedBy(SIGKILL)));
  EXPECT_TRUE(killedFromOutside(killedBy(SIGKILL)));  // the OOM killer, kill -9
  EXPECT_TRUE(killedFromOutside(killedBy(SIGTERM)));
  EXPECT_TRUE(killedFromOutside(killedBy(SIGINT)));
  EXPECT_TRUE(killedFromOutside(killedBy(SIGHUP)));
}

TEST(KilledFromOutside, CrashesAreTheWorkersOwnDoing) {
  for (int signal : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS}) {
    EXPECT_FALSE(killedFromOutside(killedBy(signal))) << strsignal(signal);
    EXPECT_FALSE(killedFromOutside(killedBy(signal) | 0x80)) << "core dumped";
  }
}

TEST(KilledFromOutside, AnExitIsNotAKill) {
  ASSERT_TRUE(WIFEXITED(exitedWith(70)));
  EXPECT_FALSE(killedFromOutside(exitedWith(70)));
  EXPECT_FALSE(killedFromOutside(exitedWith(0)));
}

// --- real workers ---------------------------------------------------------------------------

constexpr const char* ADD = R"(
define i32 @add(i32 %a, i32 %b) {
  %s = add i32 %a, %b
  ret i32 %s
}
)";

/// The reproduction of issue 12 item 4: a few bytes of IR whose object holds `bytes` zeros.
std::string zeroArray(uint64_t bytes) {
  return "@g = constant [" + std::to_string(bytes) + " x i8] zeroinitializer\n";
}

class WorkerBackendTest : public ::testing::Test {
protected:
  void SetUp() override {
    const char* bin = std::getenv("RJITD_BIN");
    ASSERT_NE(bin, nullptr) << "RJITD_BIN is not set";
    rjitd = bin;
  }

  static compiler::CompileOptions options(std::string moduleName) {
    compiler::CompileOptions o;
    o.triple = "x86_64-unknown-linux-gnu";
    o.cpu = "x86-64";
    o.optLevel = 0;
    o.moduleName = std::move(moduleName);
    return o;
  }

  static const Failure* failure(const compiler::CompileResult& result) {
    return std::get_if<Failure>(&result);
  }

  static void expectObject(const compiler::CompileResult& result) {
    const Failure* f = failure(result);
    EXPECT_EQ(f, nullptr) << errorKindName(f->kind) << ": " << f->message;
  }

  std::string rjitd;
  rjit::test::TempDir dir;
  cache::ObjectCache objects{1 << 20};
  metrics::Metrics metrics{{"test", "test", {"x86_64"}}, objects};
};

TEST_F(WorkerBackendTest, CancelKillsTheWorkerAndIsNeitherRetriedNorBlamed) {
  auto gate = rjit::test::CompileGate::create(dir.file("gate.sock"));
  ASSERT_NE(gate, nullptr);
  ProcessBackend backend(rjitd, std::chrono::seconds(60), metrics, dir.file("gate.sock"));
  CompileCancel cancel;
  auto compiled = std::async(std::launch::async,
                             [&] { return backend.compile(ADD, options("held.ll"), &cancel); });
  KJ_DEFER(gate->open());  // before `compiled` waits, on every way out

  // The worker has read the request and waits at the gate: the compile is in its worker.
  ASSERT_EQ(gate->waitArrival(), "held.ll");
  cancel.cancel();
  ASSERT_EQ(compiled.wait_for(rjit::test::SAFETY_BOUND), std::future_status::ready);
  compiler::CompileResult result = compiled.get();
  const Failure* f = failure(result);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->kind, ErrorKind::Internal);
  EXPECT_EQ(f->message, "cancelled");
  EXPECT_EQ(backend.spawned(), 1u) << "a cancelled compile is never retried";
  EXPECT_EQ(metrics.totals().compileWorkerRestarts, 0u) << "nor counted as a worker lost";

  // The next compile gets a new worker and works.
  gate->open();
  expectObject(backend.compile(ADD, options("next.ll")));
  EXPECT_EQ(backend.spawned(), 2u);
}

TEST_F(WorkerBackendTest, ACompileCancelledBeforeItStartsNeverStarts) {
  ProcessBackend backend(rjitd, std::chrono::seconds(60), metrics);
  CompileCancel cancel;
  cancel.cancel();
  const Failure* f = nullptr;
  compiler::CompileResult result = backend.compile(ADD, options("late.ll"), &cancel);
  f = failure(result);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->kind, ErrorKind::Internal);
  EXPECT_EQ(backend.spawned(), 0u);
}

TEST_F(WorkerBackendTest, StopCutsOffRunningCompilesAndRefusesNewOnes) {
  auto gate = rjit::test::CompileGate::create(dir.file("gate.sock"));
  ASSERT_NE(gate, nullptr);
  ProcessBackend backend(rjitd, std::chrono::seconds(60), metrics, dir.file("gate.sock"));
  auto compiled =
      std::async(std::launch::async, [&] { return backend.compile(ADD, options("held.ll")); });
  KJ_DEFER(gate->open());
  ASSERT_EQ(gate->waitArrival(), "held.ll");

  backend.stop();
  ASSERT_EQ(compiled.wait_for(rjit::test::SAFETY_BOUND), std::future_status::ready);
  compiler::CompileResult result = compiled.get();
  ASSERT_NE(failure(result), nullptr);
  EXPECT_EQ(failure(result)->kind, ErrorKind::ShuttingDown) << failure(result)->message;
  EXPECT_EQ(backend.spawned(), 1u) << "a compile cut off by the drain is never retried";

  compiler::CompileResult after = backend.compile(ADD, options("after.ll"));
  ASSERT_NE(failure(after), nullptr);
  EXPECT_EQ(failure(after)->kind, ErrorKind::ShuttingDown);
  EXPECT_EQ(backend.spawned(), 1u);
}

TEST_F(WorkerBackendTest, AnObjectOverTheLimitIsTooLargeAndTheWorkerGoesOn) {
  WorkerLimits limits;
  limits.maxObjectBytes = 64 << 10;
  ProcessBackend backend(rjitd, std::chrono::seconds(60), metrics, {}, limits);
  compiler::CompileResult result = backend.compile(zeroArray(1 << 20), options("zeros.ll"));
  ASSERT_NE(failure(result), nullptr);
  EXPECT_EQ(failure(result)->kind, ErrorKind::TooLarge);
  EXPECT_NE(failure(result)->message.find("--max-object-bytes"), std::string::npos)
      << failure(result)->message;
  expectObject(backend.compile(ADD, options("small.ll")));
  EXPECT_EQ(backend.spawned(), 1u) << "refusing an object costs no worker";
}

TEST_F(WorkerBackendTest, RunningOutOfCompileMemoryIsTooLargeNotAnInvalidModule) {
#if defined(__SANITIZE_ADDRESS__)
  // Sanitizer builds run compile workers without RLIMIT_AS (ASan's shadow memory needs
  // terabytes of address space), so the limit cannot be met there; the plain build tests it.
  GTEST_SKIP() << "sanitizer build: compile workers run without RLIMIT_AS";
#endif
  WorkerLimits limits;
  limits.maxObjectBytes = 4ull << 30;  // the memory limit, not this one, must stop it
  limits.memoryBytes = 512ull << 20;
  ProcessBackend backend(rjitd, std::chrono::seconds(60), metrics, {}, limits);
  compiler::CompileResult result = backend.compile(zeroArray(1ull << 30), options("huge.ll"));
  ASSERT_NE(failure(result), nullptr);
  EXPECT_EQ(failure(result)->kind, ErrorKind::TooLarge) << failure(result)->message;
  EXPECT_NE(failure(result)->message.find("--compile-memory"), std::string::npos)
      << failure(result)->message;
  EXPECT_EQ(backend.spawned(), 1u) << "running out of memory is not retried";
  // The next compile gets a new worker.
  expectObject(backend.compile(ADD, options("small.ll")));
  EXPECT_EQ(backend.spawned(), 2u);
}

}  // namespace
}  // namespace rjitd::service
