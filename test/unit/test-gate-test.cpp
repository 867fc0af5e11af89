// SPDX-License-Identifier: MIT
// The client side of rjitd's test-only gates: what it writes, that it waits for the test, and
// that it never waits when nobody listens.
#include "test-gate.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <gtest/gtest.h>
#include <kj/io.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace rjitd::service {
namespace {

/// Bounds each wait on the other side; reaching it is a failure, never a timing.
constexpr std::chrono::seconds BOUND{60};

/// A fresh directory for the gate's socket, removed with everything in it at the end.
class GateDir {
public:
  GateDir() {
    char pattern[] = "/tmp/rjitd-test-gate-XXXXXX";
    if (::mkdtemp(pattern) != nullptr)
      path = pattern;
  }
  ~GateDir() {
    if (!path.empty()) {
      ::unlink(socket().c_str());
      ::rmdir(path.c_str());
    }
  }
  GateDir(const GateDir&) = delete;
  GateDir& operator=(const GateDir&) = delete;
  std::string socket() const { return path + "/gate.sock"; }
  std::string path;
};

kj::AutoCloseFd listenAt(const std::string& path) {
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0)
      << std::strerror(errno);
  EXPECT_EQ(::listen(fd.get(), 1), 0) << std::strerror(errno);
  return fd;
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(BOUND).count())) == 1;
}

TEST(TestGate, WritesTheModuleNameAndWaitsUntilTheTestLetsItGo) {
  GateDir dir;
  ASSERT_FALSE(dir.path.empty()) << std::strerror(errno);
  kj::AutoCloseFd listener = listenAt(dir.socket());
  auto waited =
      std::async(std::launch::async, [&] { waitAtTestGate("test gate", dir.socket(), "held.ll"); });

  ASSERT_TRUE(readable(listener.get())) << "nothing connected to the gate";
  kj::AutoCloseFd held(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(held.get(), 0) << std::strerror(errno);
  std::string line;
  for (char c = 0; c != '\n' && line.size() < 64;) {
    ASSERT_TRUE(readable(held.get())) << "no newline after " << line;
    ASSERT_EQ(::read(held.get(), &c, 1), 1);
    line += c;
  }
  EXPECT_EQ(line, "held.ll\n");
  // Held while the connection is open: it has written all it writes and waits for us.
  EXPECT_EQ(waited.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  held = kj::AutoCloseFd();  // lets it go
  EXPECT_EQ(waited.wait_for(BOUND), std::future_status::ready);
}

TEST(TestGate, GoesAtOnceWhenNobodyListens) {
  GateDir dir;
  ASSERT_FALSE(dir.path.empty()) << std::strerror(errno);
  // No socket at the path: connect() fails and the compile must not wait.
  waitAtTestGate("test gate", dir.socket(), "free.ll");
  waitAtTestGate("test gate", dir.path + "/" + std::string(200, 'x'), "long.ll");  // too long
}

}  // namespace
}  // namespace rjitd::service
