// SPDX-License-Identifier: MIT
// rjitd's bounds on what one request may cost, against a real rjitd: objects over
// --max-object-bytes, compiles past --compile-memory, a drain bounded by --drain-timeout, and
// compile workers that keep working when rjitd is PID 1 (a container).
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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

}  // namespace
}  // namespace rjit::test
