// SPDX-License-Identifier: MIT
// How rjitd names an executor's death (service/executor-process.h: classifyDeath and
// classifyRunEnd) from its waitpid() status, its status page and rjitd's own deadline kill.
#include "executor-process.h"
#include "status-page.h"

#include <cerrno>
#include <csignal>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <sys/wait.h>

namespace rjitd::service {
namespace {

using executor::StatusPage;

int exitedWith(int status) {
  return W_EXITCODE(status, 0);
}
int killedBy(int signal) {
  return W_EXITCODE(0, signal);
}

/// A page as an executor running user code leaves it.
StatusSnapshot inUserCode(int signal = 0) {
  StatusSnapshot page;
  page.valid = true;
  page.phase = StatusPage::UserCode;
  page.signal = signal;
  return page;
}

TEST(ExecuteDeathTest, OurDeadlineKillIsATimeout) {
  EXPECT_EQ(classifyDeath(killedBy(SIGKILL), inUserCode(), true, "spin").kind, ErrorKind::Timeout);
  EXPECT_EQ(classifyDeath(killedBy(SIGXCPU), inUserCode(), false, "spin").kind, ErrorKind::Timeout);
}

TEST(ExecuteDeathTest, ExitInsideAFunctionIsExitedWithItsStatus) {
  Failure f = classifyDeath(exitedWith(3), inUserCode(), false, "quit");
  EXPECT_EQ(f.kind, ErrorKind::Exited);
  EXPECT_EQ(f.exitStatus, 3);
}

TEST(ExecuteDeathTest, AFloodOfOutputIsOutputLimit) {
  EXPECT_EQ(classifyDeath(killedBy(SIGXFSZ), inUserCode(), false, "flood").kind,
            ErrorKind::OutputLimit);
}

TEST(ExecuteDeathTest, AForbiddenSystemCallIsASandboxViolation) {
  StatusSnapshot page = inUserCode(SIGSYS);
  page.syscall = SYS_socket;
  EXPECT_EQ(classifyDeath(killedBy(SIGSYS), page, false, "connect").kind,
            ErrorKind::SandboxViolation);
  EXPECT_EQ(syscallName(SYS_socket), "socket");
  EXPECT_EQ(syscallName(SYS_openat), "openat");
}

TEST(ExecuteDeathTest, MemoryExhaustionIsOutOfMemory) {
  StatusSnapshot flagged = inUserCode(SIGABRT);
  flagged.outOfMemory = true;
  EXPECT_EQ(classifyDeath(killedBy(SIGABRT), flagged, false, "grow").kind, ErrorKind::OutOfMemory);
  StatusSnapshot enomem = inUserCode(SIGSEGV);
  enomem.errnoAtSignal = ENOMEM;
  EXPECT_EQ(classifyDeath(killedBy(SIGSEGV), enomem, false, "grow").kind, ErrorKind::OutOfMemory);
}

TEST(ExecuteDeathTest, OtherSignalsAreACrashWithTheSignal) {
  StatusSnapshot page = inUserCode(SIGSEGV);
  page.faultAddress = 0;
  Failure segv = classifyDeath(killedBy(SIGSEGV), page, false, "poke");
  EXPECT_EQ(segv.kind, ErrorKind::Crashed);
  EXPECT_EQ(segv.signal, SIGSEGV);
  Failure abort = classifyDeath(killedBy(SIGABRT), inUserCode(SIGABRT), false, "poke");
  EXPECT_EQ(abort.kind, ErrorKind::Crashed);
  EXPECT_EQ(abort.signal, SIGABRT);
  EXPECT_EQ(signalName(SIGSEGV), "SIGSEGV");
  EXPECT_EQ(signalName(SIGABRT), "SIGABRT");
}

TEST(ExecuteDeathTest, ADeathBeforeTheSandboxIsInternal) {
  StatusSnapshot starting;
  starting.valid = true;
  starting.phase = StatusPage::Starting;
  EXPECT_EQ(classifyDeath(exitedWith(1), starting, false, "f").kind, ErrorKind::Internal);
  EXPECT_EQ(classifyDeath(killedBy(SIGSYS), starting, false, "f").kind, ErrorKind::Internal);
  StatusSnapshot never;  // the executor never wrote its page (it did not start at all)
  EXPECT_EQ(classifyDeath(exitedWith(127), never, false, "f").kind, ErrorKind::Internal);
}

TEST(ExecuteDeathTest, ARunEndsWithItsExitStatusOrItsOwnSignal) {
  auto exited = classifyRunEnd(exitedWith(7), inUserCode(), false, "main");
  ASSERT_TRUE(std::holds_alternative<RunEnd>(exited));
  EXPECT_EQ(std::get<RunEnd>(exited).exitStatus, 7);
  EXPECT_EQ(std::get<RunEnd>(exited).signal, 0);
  auto aborted = classifyRunEnd(killedBy(SIGABRT), inUserCode(SIGABRT), false, "main");
  ASSERT_TRUE(std::holds_alternative<RunEnd>(aborted));
  EXPECT_EQ(std::get<RunEnd>(aborted).signal, SIGABRT);
  EXPECT_EQ(std::get<RunEnd>(aborted).signalName, "SIGABRT");
}

TEST(ExecuteDeathTest, ARunOverItsLimitsIsAnError) {
  auto kindOf = [](int status, StatusSnapshot page, bool deadline) {
    auto end = classifyRunEnd(status, page, deadline, "main");
    EXPECT_TRUE(std::holds_alternative<Failure>(end));
    return std::holds_alternative<Failure>(end) ? std::get<Failure>(end).kind : ErrorKind::Internal;
  };
  EXPECT_EQ(kindOf(killedBy(SIGKILL), inUserCode(), true), ErrorKind::Timeout);
  EXPECT_EQ(kindOf(killedBy(SIGXFSZ), inUserCode(), false), ErrorKind::OutputLimit);
  StatusSnapshot sys = inUserCode(SIGSYS);
  sys.syscall = SYS_fork;
  EXPECT_EQ(kindOf(killedBy(SIGSYS), sys, false), ErrorKind::SandboxViolation);
  StatusSnapshot oom = inUserCode(SIGABRT);
  oom.outOfMemory = true;
  EXPECT_EQ(kindOf(killedBy(SIGABRT), oom, false), ErrorKind::OutOfMemory);
}

}  // namespace
}  // namespace rjitd::service
