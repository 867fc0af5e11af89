// SPDX-License-Identifier: MIT
// How the compile backend tells a worker killed from outside (retried, never the module's
// fault) from one that crashed by its own doing (the module is reported invalid).
#include "compile-backend.h"

#include <csignal>
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace rjitd::service
