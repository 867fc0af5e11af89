// SPDX-License-Identifier: MIT
// rjitd's bounds on what one request may cost, against a real rjitd: objects over
// --max-object-bytes, compiles past --compile-memory, a drain bounded by --drain-timeout, and
// compile workers that keep working when rjitd is PID 1 (a container).
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <future>
#include <kj/common.h>
#include <optional>
#include <vector>

#include "compile-gate.h"
#include "fixture.h"

namespace rjit::test {
namespace {

/// Upper bound for the polling loops below: each iteration is a round trip to rjitd, so the
/// loops end long before on a working daemon; reaching it is a failure.
constexpr unsigned MAX_POLLS = 100'000;

/// The reproduction of issue 12 item 4: 50 bytes of IR whose object holds `bytes` zeros.
std::string zeroArray(uint64_t bytes) {
  return withNonce("@g = constant [" + std::to_string(bytes) + " x i8] zeroinitializer\n");
}

CompileRequest request(std::string module, std::string name) {
  CompileRequest r;
  r.module = std::move(module);
  r.moduleName = std::move(name);
  r.optLevel = 0;
  return r;
}

class LimitsTest : public DaemonTest {};

TEST_P(LimitsTest, AnObjectOverMaxObjectBytesIsTooLargeAndNeverCached) {
  // Defaults: --max-object-bytes 64M; this object is 256 MiB.
  Client client(clientOptions());
  auto error = catchError([&] { client.compile(request(zeroArray(256ull << 20), "big.ll")); });
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), ErrorKind::TooLarge) << error->what();
  EXPECT_NE(std::string(error->what()).find("--max-object-bytes"), std::string::npos)
      << error->what();
  ServerStats stats = client.stats();
  EXPECT_EQ(stats.cacheEntries, 0u);
  EXPECT_EQ(stats.cacheBytes, 0u);
  expectServes(client);
}

TEST_P(LimitsTest, ACompilePastCompileMemoryIsTooLargeAndOthersAreServed) {
#if defined(__SANITIZE_ADDRESS__)
  // Sanitizer builds run compile workers without RLIMIT_AS (ASan's shadow memory needs
  // terabytes of address space), so the limit cannot be met there; the plain build tests it.
  GTEST_SKIP() << "sanitizer build: compile workers run without RLIMIT_AS";
#endif
  DaemonOptions options = daemonOptions();
  options.extraArgs = {"--compile-memory", "512M", "--max-object-bytes", "2G"};
  auto limited = startDaemon(options);
  ASSERT_NE(limited, nullptr);
  Client client(clientOptions(limited.get()));
  auto error = catchError([&] { client.compile(request(zeroArray(1ull << 30), "huge.ll")); });
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), ErrorKind::TooLarge) << error->what();
  EXPECT_NE(std::string(error->what()).find("--compile-memory"), std::string::npos)
      << error->what();
  Client other(clientOptions(limited.get()));
  expectServes(other);
  EXPECT_EQ(other.stats().cacheEntries, 1u) << "only the small object is cached";
}

RJIT_INSTANTIATE_DAEMON_MODES(LimitsTest);

// The drain (SIGTERM) is bounded: compiles still running when --drain-timeout passes are cut
// off and answered shutting-down, those queued behind them too, and rjitd exits. Standalone
// only: a client retries shutting-down on a new connection, which under socket activation
// would wait in systemd's queue for the next rjitd.
TEST(DrainTest, CompilesHeldPastTheDrainTimeoutAreAnsweredShuttingDown) {
  TempDir dir;
  auto gate = CompileGate::create(dir.file("worker-gate.sock"));
  ASSERT_NE(gate, nullptr);
  DaemonOptions options;
  options.extraArgs = {"--jobs", "1", "--drain-timeout", "300ms"};
  for (auto& arg : gate->workerDaemonArgs())
    options.extraArgs.push_back(arg);
  auto daemon = DaemonProcess::start(options);
  ASSERT_NE(daemon, nullptr);

  // One compile held in its worker, three queued behind it (one compile worker).
  constexpr unsigned CLIENTS = 4;
  std::vector<std::future<std::optional<Error>>> answers;
  for (unsigned i = 0; i < CLIENTS; ++i)
    answers.push_back(std::async(std::launch::async, [&daemon, i] {
      ClientOptions o;
      o.servers = {daemon->endpoint()};
      Client client(o);
      return catchError(
          [&] { client.compile(request(tinyModule(), "held" + std::to_string(i) + ".ll")); });
    }));
  KJ_DEFER(gate->open());  // before the futures wait, on every way out
  ASSERT_TRUE(gate->waitArrival().has_value());
  // Every client has its session (and sends its compile right after the handshake): a request
  // that arrives after SIGTERM is refused with shutting-down too, but a client that had not
  // connected yet would find no listener.
  {
    ClientOptions o;
    o.servers = {daemon->endpoint()};
    Client observer(o);
    unsigned polls = 0;
    while (observer.stats().sessions < CLIENTS + 1 && ++polls < MAX_POLLS) {
    }
    ASSERT_EQ(observer.stats().sessions, CLIENTS + 1);
  }

  ExitStatus status = daemon->stop();
  EXPECT_TRUE(status.exitedWith(0)) << status.describe() << "\n" << daemon->log();
  for (auto& answer : answers) {
    ASSERT_EQ(answer.wait_for(SAFETY_BOUND), std::future_status::ready);
    std::optional<Error> error = answer.get();
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->kind(), ErrorKind::ShuttingDown) << error->what();
  }
  EXPECT_NE(daemon->log().find("drain timeout (300 ms) passed"), std::string::npos)
      << daemon->log();
}

/// A datagram socket at `path` for rjitd's sd_notify messages.
kj::AutoCloseFd notifySocket(const std::string& path) {
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  EXPECT_GE(fd.get(), 0) << std::strerror(errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  return fd;
}

// In a container rjitd can be PID 1, and then getppid() is 1 for its compile workers from the
// start: a worker that took that as "rjitd died" exited before its first compile.
TEST(Pid1Test, CompileWorkersServeWhenRjitdIsPid1) {
  // Some containers forbid new PID namespaces (no CAP_SYS_ADMIN, no user namespaces): there
  // rjitd cannot be made PID 1 by a test, which says so rather than fail.
  std::string probe = "/usr/bin/unshare --pid --fork";
  if (::geteuid() != 0)
    probe += " --map-root-user";
  if (std::system((probe + " /bin/true >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "this machine does not allow a new PID namespace (" << probe << ")";
  TempDir dir;
  std::string socket = dir.file("rjitd.sock");
  kj::AutoCloseFd notify = notifySocket(dir.file("notify.sock"));
  // A new PID namespace whose first process (PID 1) is rjitd; --kill-child takes it (and with
  // it the namespace) down with unshare. A user namespace only when not root: creating a PID
  // namespace needs CAP_SYS_ADMIN, which an unprivileged user gets in its own user namespace.
  std::vector<std::string> argv = {"/usr/bin/unshare", "--pid", "--kill-child"};
  if (::geteuid() != 0)
    argv.push_back("--map-root-user");
  for (std::string arg :
       {std::string(std::getenv("RJITD_BIN")), std::string("--listen"), "unix:" + socket,
        std::string("--jobs"), std::string("1"), std::string("--cache-dir"), dir.file("cache")})
    argv.push_back(arg);
  SpawnOptions spawn;
  spawn.argv = argv;
  spawn.env = environmentWith({{"NOTIFY_SOCKET", dir.file("notify.sock")}});
  spawn.stderrPath = dir.file("rjitd.log");
  auto rjitd = ChildProcess::spawn(spawn);
  ASSERT_NE(rjitd, nullptr);

  // Ready once it sends READY=1 (or never, if unshare or rjitd fails: then it exits).
  bool ready = false;
  for (unsigned messages = 0; !ready && messages < 100; ++messages) {
    pollfd fds[2] = {{notify.get(), POLLIN, 0}, {rjitd->exitFd(), POLLIN, 0}};
    ASSERT_GT(::poll(fds, 2, static_cast<int>(SAFETY_BOUND.count())), 0)
        << "rjitd never became ready\n"
        << readFile(dir.file("rjitd.log"));
    ASSERT_EQ(fds[1].revents, 0) << "unshare or rjitd exited\n" << readFile(dir.file("rjitd.log"));
    char buffer[4096];
    ssize_t n = ::recv(notify.get(), buffer, sizeof buffer, 0);
    ASSERT_GT(n, 0);
    ready = std::string_view(buffer, static_cast<size_t>(n)).find("READY=1") != std::string::npos;
  }
  ASSERT_TRUE(ready);

  ClientOptions options;
  options.servers = {"unix:" + socket};
  Client client(options);
  try {
    EXPECT_FALSE(client.compile(request(tinyModule(), "answer.ll")).object.empty());
  } catch (const Error& e) {
    ADD_FAILURE() << errorKindName(e.kind()) << ": " << e.what() << "\n"
                  << readFile(dir.file("rjitd.log"));
  }
  EXPECT_EQ(client.stats().compileWorkerRestarts, 0u);
}

}  // namespace
}  // namespace rjit::test
