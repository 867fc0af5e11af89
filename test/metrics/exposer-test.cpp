// SPDX-License-Identifier: MIT
// The /metrics endpoint against slow and half-open HTTP clients on real loopback sockets: they
// neither block a scrape by a real HTTP client (curl) nor stay open past the header timeout or
// the connection cap.
#include "exposer.h"
#include "metrics.h"
#include "object-cache.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <vector>

namespace rjitd::metrics {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

/// Half a GET: the request line and one header, never the blank line that ends the header.
constexpr std::string_view HALF_REQUEST = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n";
/// The bound on every wait in this file: far above what any answer takes on a loaded machine.
constexpr int WAIT_MS = 30'000;

/// A blocking loopback TCP connection to `port`, optionally after sending `prefix`.
kj::AutoCloseFd connectTo(uint16_t port, std::string_view prefix) {
  kj::AutoCloseFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  KJ_ASSERT(fd.get() >= 0, errno);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  KJ_SYSCALL(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)));
  if (!prefix.empty()) {
    KJ_ASSERT(::send(fd, prefix.data(), prefix.size(), MSG_NOSIGNAL) ==
              static_cast<ssize_t>(prefix.size()));
  }
  return fd;
}

/// Whether the server closed `fd`: reads (bounded by WAIT_MS per read) until end of stream; a
/// reply before it (kj answers a timed-out request 408) is allowed.
bool closedByServer(int fd) {
  char buffer[4096];
  for (int reads = 0; reads < 64; ++reads) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, WAIT_MS) != 1)
      return false;
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
      return true;
    if (n < 0)
      return false;
  }
  return false;
}

/// Whether `fd` is still open with nothing received (checked without waiting).
bool stillOpen(int fd) {
  char c;
  return ::recv(fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/// GET http://127.0.0.1:PORT/metrics with curl, bounded by curl's own --max-time. The body, or
/// nullopt with curl's complaint in `error`.
std::optional<std::string> curlScrape(uint16_t port, std::string* error) {
  std::string command = std::string(CURL_BIN) + " -sS --fail --max-time " +
                        std::to_string(WAIT_MS / 1000) +
                        " http://127.0.0.1:" + std::to_string(port) + "/metrics 2>&1";
  if (std::string(CURL_BIN).empty()) {
    *error = "curl not found at configure time (apt-get install curl)";
    return std::nullopt;
  }
  FILE* pipe = ::popen(command.c_str(), "re");
  if (pipe == nullptr) {
    *error = "popen failed";
    return std::nullopt;
  }
  std::string output;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;)
    output.append(buffer, n);
  int status = ::pclose(pipe);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *error = "curl failed (status " + std::to_string(status) + "): " + output;
    return std::nullopt;
  }
  return output;
}

class ExposerTest : public ::testing::Test {
protected:
  ExposerTest() { metrics.requestDone(Method::Hello, NO_TARGET, std::nullopt, milliseconds(1)); }

  HttpAddress loopback() const {
    HttpAddress a;
    a.host = "127.0.0.1";
    return a;
  }

  void expectScrapeAnswers(uint16_t port) {
    std::string error;
    auto body = curlScrape(port, &error);
    ASSERT_TRUE(body) << error;
    EXPECT_THAT(*body,
                HasSubstr(R"(rjitd_requests_total{method="hello",result="ok",target="none"} 1)"));
  }

  cache::ObjectCache objects{1 << 20};
  Metrics metrics{{"1.2.3", "19.1.7", {"x86_64"}}, objects};
};

// Issue 12, item 6: 200 half-sent requests blocked civetweb's two threads, and scrapes with them.
TEST_F(ExposerTest, HalfOpenClientsDoNotBlockAScrape) {
  // A header timeout far beyond the test, so the slow clients are still there when curl asks.
  auto exposer = Exposer::create(metrics, loopback(), {256, milliseconds(600'000)});
  uint16_t port = exposer->address().port;
  std::vector<kj::AutoCloseFd> slow;
  for (int i = 0; i < 200; ++i)
    slow.push_back(connectTo(port, HALF_REQUEST));
  for (int i = 0; i < 20; ++i)
    slow.push_back(connectTo(port, ""));

  expectScrapeAnswers(port);
  // The kernel hands connections to accept() in order, so the endpoint had accepted every slow
  // one before curl's: they were all open (and are) while it answered.
  for (size_t i = 0; i < slow.size(); ++i)
    EXPECT_TRUE(stillOpen(slow[i])) << "slow connection " << i << " was closed";
}

TEST_F(ExposerTest, TheHeaderTimeoutClosesSlowClients) {
  auto exposer = Exposer::create(metrics, loopback(), {256, milliseconds(100)});
  uint16_t port = exposer->address().port;
  std::vector<kj::AutoCloseFd> slow;
  for (int i = 0; i < 20; ++i)
    slow.push_back(connectTo(port, i % 2 == 0 ? HALF_REQUEST : ""));
  for (size_t i = 0; i < slow.size(); ++i)
    EXPECT_TRUE(closedByServer(slow[i])) << "slow connection " << i << " stayed open";
  expectScrapeAnswers(port);
}

TEST_F(ExposerTest, PastTheCapTheOldestConnectionIsClosed) {
  auto exposer = Exposer::create(metrics, loopback(), {4, milliseconds(600'000)});
  uint16_t port = exposer->address().port;
  std::vector<kj::AutoCloseFd> slow;
  for (int i = 0; i < 4; ++i)
    slow.push_back(connectTo(port, HALF_REQUEST));
  // The fifth connection (curl's) closes the oldest and is answered.
  expectScrapeAnswers(port);
  EXPECT_TRUE(closedByServer(slow[0]));
  for (size_t i = 1; i < slow.size(); ++i)
    EXPECT_TRUE(stillOpen(slow[i])) << "connection " << i << " was closed";
}

TEST_F(ExposerTest, AnswersOtherPathsNotFound) {
  auto exposer = Exposer::create(metrics, loopback());
  auto get = connectTo(exposer->address().port,
                       "GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string reply;
  char buffer[4096];
  for (int reads = 0; reads < 64; ++reads) {
    pollfd p{get.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, WAIT_MS), 1);
    ssize_t n = ::recv(get, buffer, sizeof(buffer), 0);
    if (n <= 0)
      break;
    reply.append(buffer, n);
    if (reply.find("\r\n\r\n") != std::string::npos)
      break;  // the status and headers are in: that is all this test reads
  }
  EXPECT_THAT(reply, ::testing::StartsWith("HTTP/1.1 404"));
}

}  // namespace
}  // namespace rjitd::metrics
