// SPDX-License-Identifier: MIT
// Connections an adversarial or careless peer opens against a real rjitd: more than
// --max-connections (in total and per user), ones that never say hello, a message announced and
// never sent, peers outside --allow-users/--allow-groups, and the mode of the socket rjitd
// creates. Each waits for the close event itself (EOF on a raw socket), never for a time.
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <kj/common.h>
#include <kj/io.h>
#include <sstream>

#include "fixture.h"

namespace rjit::test {
namespace {

/// Bound for the polling loops below (each iteration is an HTTP scrape of rjitd's metrics);
/// reaching it is a failure, not a timing.
constexpr unsigned MAX_POLLS = 100'000;

/// A raw connection to a Unix socket whose reads give up after SAFETY_BOUND.
kj::AutoCloseFd rawConnection(const std::string& path) {
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_GE(fd.get(), 0) << std::strerror(errno);
  timeval bound{SAFETY_BOUND.count() / 1000, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  return fd;
}

/// Reads until rjitd closes the connection: true on end of stream (or a reset), false when
/// SAFETY_BOUND passes first. Whatever rjitd wrote before (an answer) is skipped.
bool waitClosed(int fd) {
  char buffer[4096];
  for (unsigned i = 0; i < MAX_POLLS; ++i) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
      return true;
    if (n < 0 && errno != EINTR)
      return false;  // EAGAIN: SO_RCVTIMEO passed
  }
  return false;
}

/// Is `fd` still open from rjitd's side (nothing to read, no end of stream)?
bool stillOpen(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
}

/// rjitd_connections_refused_total{reason="`reason`"} from the metrics endpoint on
/// 127.0.0.1:`port`, 0 when absent.
uint64_t refusedCount(uint16_t port, const std::string& reason) {
  kj::AutoCloseFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval bound{SAFETY_BOUND.count() / 1000, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "cannot reach the metrics endpoint: " << std::strerror(errno);
    return 0;
  }
  std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  EXPECT_EQ(::write(fd.get(), request.data(), request.size()),
            static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[65536];
  for (unsigned i = 0; i < MAX_POLLS; ++i) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n <= 0)
      break;
    response.append(buffer, static_cast<size_t>(n));
  }
  std::string series = "rjitd_connections_refused_total{reason=\"" + reason + "\"} ";
  size_t at = response.find(series);
  if (at == std::string::npos)
    return 0;
  return std::stoull(response.substr(at + series.size()));
}

/// Raises this process's soft limit on open files to its hard limit (for many raw connections).
void raiseOpenFileLimit() {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  limit.rlim_cur = limit.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0) << std::strerror(errno);
}

/// A uid this process does not run as (so rjitd, running as this process's user, is not it
/// either): nobody for root, root otherwise.
std::string otherUser() {
  return ::geteuid() == 0 ? "65534" : "0";
}

/// A gid that is neither this process's nor one of its supplementary groups.
std::string otherGroup() {
  std::vector<gid_t> mine(static_cast<size_t>(std::max(0, ::getgroups(0, nullptr))));
  mine.resize(
      static_cast<size_t>(std::max(0, ::getgroups(static_cast<int>(mine.size()), mine.data()))));
  mine.push_back(::getegid());
  for (gid_t candidate = 65534; candidate > 1000; --candidate) {
    if (std::find(mine.begin(), mine.end(), candidate) == mine.end())
      return std::to_string(candidate);
  }
  ADD_FAILURE() << "no gid outside this process's groups";
  return "65534";
}

class ConnectionsTest : public DaemonTest {
protected:
  /// A daemon with `args` and a metrics endpoint on `*metricsPort`.
  std::unique_ptr<DaemonProcess> startWith(std::vector<std::string> args,
                                           uint16_t* metricsPort = nullptr) const {
    DaemonOptions options = daemonOptions();
    if (metricsPort != nullptr) {
      *metricsPort = freeTcpPort();
      args.push_back("--metrics");
      args.push_back("127.0.0.1:" + std::to_string(*metricsPort));
    }
    for (auto& arg : args)
      options.extraArgs.push_back(arg);
    return startDaemon(options);
  }

  /// Polls the metrics endpoint until the refusals of `reason` reach `count` (bounded).
  static bool waitRefused(uint16_t port, const std::string& reason, uint64_t count) {
    for (unsigned i = 0; i < MAX_POLLS; ++i) {
      if (refusedCount(port, reason) >= count)
        return true;
    }
    return false;
  }
};

TEST_P(ConnectionsTest, OverTheConnectionLimitIsOverloadedAndFreedOnClose) {
  raiseOpenFileLimit();
  uint16_t metrics = 0;
  constexpr size_t LIMIT = 50;
  constexpr size_t IDLE = 2000;
  auto started = startWith(
      {"--max-connections", std::to_string(LIMIT), "--handshake-timeout", "10m"}, &metrics);
  ASSERT_NE(started, nullptr);
  std::vector<kj::AutoCloseFd> idle;
  for (size_t i = 0; i < IDLE; ++i)
    idle.push_back(rawConnection(started->socketPath()));
  ASSERT_TRUE(started->waitReady());
  // rjitd accepts in arrival order: once it has refused all the idle ones past the limit, the
  // next connection is the client's.
  ASSERT_TRUE(waitRefused(metrics, "limit", IDLE - LIMIT));

  ClientOptions options = clientOptions(started.get());
  // Shorter than the one-second retry hint: the client answers with the refusal itself.
  options.timeout = std::chrono::milliseconds(900);
  {
    Client refused(options);
    auto error = catchError([&]() { refused.stats(); });
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->kind(), ErrorKind::Overloaded) << error->what();
  }
  EXPECT_EQ(refusedCount(metrics, "limit"), IDLE - LIMIT + 1);

  // Once the idle peers hang up (and rjitd has closed their connections), a client is served.
  for (auto& fd : idle) {
    ::shutdown(fd.get(), SHUT_WR);
    ASSERT_TRUE(waitClosed(fd.get()));
  }
  idle.clear();
  Client client(clientOptions(started.get()));
  expectServes(client);
}

TEST_P(ConnectionsTest, OverThePerUserLimitIsOverloaded) {
  auto started = startWith({"--max-connections-per-user", "2", "--handshake-timeout", "10m"});
  ASSERT_NE(started, nullptr);
  Client first(clientOptions(started.get()));
  first.stats();
  kj::AutoCloseFd second = rawConnection(started->socketPath());
  ClientOptions options = clientOptions(started.get());
  options.timeout = std::chrono::milliseconds(900);
  // The raw connection may not be accepted yet when the third arrives; rjitd accepts in order.
  Client third(options);
  auto error = catchError([&]() { third.stats(); });
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), ErrorKind::Overloaded) << error->what();
  // The first client's connection is untouched.
  first.stats();
}

TEST_P(ConnectionsTest, OverThePerAddressLimitOnTcpIsOverloaded) {
  DaemonOptions options = daemonOptions();
  options.tcpPort = freeTcpPort();
  options.extraArgs.insert(options.extraArgs.end(),
                           {"--max-connections-per-user", "1", "--handshake-timeout", "10m"});
  auto started = startDaemon(options);
  ASSERT_NE(started, nullptr);
  ClientOptions first = clientOptions(started.get());
  first.servers = {started->tcpEndpoint()};
  Client holder(first);
  holder.stats();  // 127.0.0.1 holds its one connection
  ClientOptions second = first;
  second.timeout = std::chrono::milliseconds(900);
  Client refused(second);
  auto error = catchError([&]() { refused.stats(); });
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), ErrorKind::Overloaded) << error->what();
  // A Unix-socket peer is another peer: it is served.
  Client local(clientOptions(started.get()));
  expectServes(local);
}

TEST_P(ConnectionsTest, ConnectionWithoutHelloIsClosedAtTheHandshakeDeadline) {
  uint16_t metrics = 0;
  auto started = startWith({"--handshake-timeout", "200ms"}, &metrics);
  ASSERT_NE(started, nullptr);
  Client client(clientOptions(started.get()));
  client.stats();  // said hello (a socket-activated rjitd starts now)
  kj::AutoCloseFd silent = rawConnection(started->socketPath());
  ASSERT_TRUE(waitClosed(silent.get()));
  // The client's deadline, which began earlier, has passed too; having said hello, it stays.
  client.stats();
  EXPECT_EQ(refusedCount(metrics, "handshake-timeout"), 1u);
}

TEST_P(ConnectionsTest, StalledMessageIsClosedAfterTheReadTimeoutWhileOthersAreServed) {
  uint16_t metrics = 0;
  auto started = startWith({"--read-timeout", "300ms", "--handshake-timeout", "10m"}, &metrics);
  ASSERT_NE(started, nullptr);
  kj::AutoCloseFd idle = rawConnection(started->socketPath());
  kj::AutoCloseFd stalled = rawConnection(started->socketPath());
  // A Cap'n Proto frame header: one segment of 65 MiB, then nothing.
  uint32_t header[2] = {0, (65u << 20) / 8};
  ASSERT_EQ(::write(stalled.get(), header, sizeof header), static_cast<ssize_t>(sizeof header));
  Client client(clientOptions(started.get()));
  expectServes(client);
  ASSERT_TRUE(waitClosed(stalled.get()));
  EXPECT_EQ(refusedCount(metrics, "read-timeout"), 1u);
  // A connection idle between messages (here: before its first) is not read-timed-out.
  EXPECT_TRUE(stillOpen(idle.get()));
  expectServes(client);
}

TEST_P(ConnectionsTest, PeerNotAllowedIsPermissionDenied) {
  uint16_t metrics = 0;
  auto started =
      startWith({"--allow-users", otherUser(), "--allow-groups", otherGroup()}, &metrics);
  ASSERT_NE(started, nullptr);
  Client client(clientOptions(started.get()));
  auto error = catchError([&]() { client.stats(); });
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), ErrorKind::PermissionDenied) << error->what();
  EXPECT_EQ(refusedCount(metrics, "permission"), 1u);
}

TEST_P(ConnectionsTest, PeerInAnAllowedGroupIsServed) {
  auto started =
      startWith({"--allow-users", otherUser(), "--allow-groups", std::to_string(::getegid())});
  ASSERT_NE(started, nullptr);
  Client client(clientOptions(started.get()));
  expectServes(client);
}

RJIT_INSTANTIATE_DAEMON_MODES(ConnectionsTest);

/// Sets the umask for a scope.
class ScopedUmask final {
public:
  explicit ScopedUmask(mode_t mask) : old(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

private:
  mode_t old;
};

mode_t socketMode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << std::strerror(errno);
  return st.st_mode & 07777;
}

// Standalone only: a socket-activated rjitd's socket is systemd's (SocketMode= in rjitd.socket).
TEST(SocketModeTest, SocketHasTheDefaultModeUnderUmask000) {
  ScopedUmask open(0);
  auto started = DaemonProcess::start();
  ASSERT_NE(started, nullptr);
  EXPECT_EQ(socketMode(started->socketPath()), 0660u);
}

TEST(SocketModeTest, SocketHasTheGivenMode) {
  ScopedUmask open(0);
  DaemonOptions options;
  options.extraArgs = {"--socket-mode", "0600"};
  auto started = DaemonProcess::start(options);
  ASSERT_NE(started, nullptr);
  EXPECT_EQ(socketMode(started->socketPath()), 0600u);
}

TEST(SocketModeTest, MalformedModeExitsWith2) {
  const char* rjitd = std::getenv("RJITD_BIN");
  ASSERT_NE(rjitd, nullptr);
  TempDir dir;
  for (const char* bad : {"999", "0660x", "1777", ""}) {
    CommandResult result = runCommand(
        dir, {rjitd, "--listen", "unix:" + dir.file("rjitd.sock"), "--socket-mode", bad});
    EXPECT_TRUE(result.status.exitedWith(2)) << bad << ": " << result.status.describe();
    EXPECT_NE(result.err.find("--socket-mode"), std::string::npos) << result.err;
  }
}

TEST(DurationOptionsTest, EveryDurationOptionRefusesABadValueWithExit2) {
  const char* rjitd = std::getenv("RJITD_BIN");
  ASSERT_NE(rjitd, nullptr);
  TempDir dir;
  for (const char* option :
       {"--handshake-timeout", "--read-timeout", "--execute-timeout", "--drain-timeout",
        "--shared-cache-timeout", "--shared-cache-lease-ttl"}) {
    for (const char* bad : {"0", "soon", "5h", "-1s", ""}) {
      CommandResult result =
          runCommand(dir, {rjitd, "--listen", "unix:" + dir.file("rjitd.sock"), option, bad});
      EXPECT_TRUE(result.status.exitedWith(2))
          << option << " " << bad << ": " << result.status.describe();
      EXPECT_NE(result.err.find(std::string(option) + ": expected a positive duration"),
                std::string::npos)
          << option << " " << bad << ": " << result.err;
    }
  }
}

}  // namespace
}  // namespace rjit::test
