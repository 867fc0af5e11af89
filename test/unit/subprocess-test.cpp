// SPDX-License-Identifier: MIT
// process::Subprocess, the child-process runner of the benchmarks and the test harness: exit
// status and output, inherited descriptors, a bounded wait, SIGTERM then SIGKILL, and no child
// left behind by the destructor.
#include "subprocess.h"
#include "temp-dir.h"

#include <gtest/gtest.h>
#include <kj/debug.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <unistd.h>

namespace rjitd::process {
namespace {

using namespace std::chrono_literals;

TEST(Subprocess, RunsToCompletionWithItsOutput) {
  rjit::test::TempDir dir;
  auto result = runCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, environmentWith({}),
                           dir.file("cmd"), 60s);
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->status.exitedWith(3)) << result->status.describe();
  EXPECT_EQ(result->status.describe(), "exit 3");
  EXPECT_EQ(result->out, "out\n");
  EXPECT_EQ(result->err, "err\n");
}

TEST(Subprocess, EnvironmentIsExactlyWhatWasGiven) {
  rjit::test::TempDir dir;
  ::setenv("RJIT_SUBPROCESS_TEST_UNSET", "gone", 1);
  auto env =
      environmentWith({{"RJIT_SUBPROCESS_TEST_SET", "here"}}, {"RJIT_SUBPROCESS_TEST_UNSET"});
  auto result = runCommand(
      {"/bin/sh", "-c", "echo \"$RJIT_SUBPROCESS_TEST_SET/${RJIT_SUBPROCESS_TEST_UNSET-unset}\""},
      env, dir.file("cmd"), 60s);
  ::unsetenv("RJIT_SUBPROCESS_TEST_UNSET");
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->out, "here/unset\n");
}

TEST(Subprocess, AMissingProgramFailsToSpawn) {
  SpawnOptions options;
  options.argv = {"/nonexistent/program"};
  auto failure = kj::runCatchingExceptions([&]() { Subprocess::spawn(options); });
  KJ_IF_MAYBE (e, failure) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::FAILED);
  } else {
    ADD_FAILURE() << "spawning a missing program succeeded";
  }
}

TEST(Subprocess, InheritedDescriptorReachesTheChild) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  kj::AutoCloseFd readEnd(fds[0]), writeEnd(fds[1]);
  SpawnOptions options;
  options.argv = {"/bin/sh", "-c", "echo hi >&3"};
  options.env = environmentWith({});
  options.inheritFds = {{writeEnd.get(), 3}};
  auto child = Subprocess::spawn(options);
  writeEnd = nullptr;  // the child holds the only write end now: EOF once it exits
  auto status = child->wait(60s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->exitedWith(0)) << status->describe();
  char buffer[16];
  ssize_t n = ::read(readEnd.get(), buffer, sizeof buffer);
  EXPECT_EQ(std::string(buffer, n > 0 ? static_cast<size_t>(n) : 0), "hi\n");
}

TEST(Subprocess, TerminateEndsARunningChild) {
  SpawnOptions options;
  options.argv = {"/bin/sleep", "1000"};
  options.env = environmentWith({});
  auto child = Subprocess::spawn(options);
  EXPECT_FALSE(child->wait(0ms).has_value());  // still running
  bool killed = true;
  ExitStatus status = child->terminate(60s, &killed);
  EXPECT_FALSE(killed);  // sleep ends on SIGTERM
  EXPECT_FALSE(status.exited());
  EXPECT_TRUE(WIFSIGNALED(status.raw) && WTERMSIG(status.raw) == SIGTERM) << status.describe();
  ASSERT_TRUE(child->status().has_value());
}

TEST(Subprocess, DestructorKillsAndReapsARunningChild) {
  SpawnOptions options;
  options.argv = {"/bin/sleep", "1000"};
  options.env = environmentWith({});
  auto child = Subprocess::spawn(options);
  pid_t pid = child->pid();
  child.reset();
  // Reaped: the pid names no process (not even a zombie) any more.
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

}  // namespace
}  // namespace rjitd::process
