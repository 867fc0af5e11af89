// SPDX-License-Identifier: MIT
// Faults an adversarial user or the system can cause, against a real rjitd: running out of file
// descriptors, compile workers killed from outside, and control characters in client-chosen
// strings that reach the log. Each ends with rjitd serving normally (the fixture checks).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <kj/common.h>
#include <optional>
#include <sstream>

#include "compile-gate.h"
#include "fixture.h"

namespace rjit::test {
namespace {

/// Upper bound for the polling loops below: each iteration is a round trip to rjitd or a read
/// of /proc, so the loops end long before on a working daemon; reaching it is a failure.
constexpr unsigned MAX_POLLS = 1'000'000;

class FaultsTest : public DaemonTest {
protected:
  /// One compile worker: the tests find it as rjitd's only child process.
  DaemonOptions daemonOptions() const override {
    DaemonOptions options = DaemonTest::daemonOptions();
    options.extraArgs = {"--jobs", "1"};
    return options;
  }

  /// rjitd's child processes: its compile workers (of the fixture's daemon, or of `other`).
  std::vector<pid_t> workers(const DaemonProcess* other = nullptr) const {
    std::vector<pid_t> pids;
    std::error_code ec;
    const DaemonProcess& of = other != nullptr ? *other : *daemon;
    std::string tasks = "/proc/" + std::to_string(of.pid()) + "/task";
    for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
      std::ifstream children(task.path() / "children");
      pid_t pid;
      while (children >> pid)
        pids.push_back(pid);
    }
    return pids;
  }

  /// A daemon with one compile worker whose compiles wait at `gate` inside the worker, after it
  /// has read the request: a test kills the worker mid-compile, whatever the machine's speed.
  std::unique_ptr<DaemonProcess> startWorkerGated(const CompileGate& gate) const {
    DaemonOptions options = daemonOptions();
    for (auto& arg : gate.workerDaemonArgs())
      options.extraArgs.push_back(arg);
    return startDaemon(options);
  }

  /// The count of `(method, result)` in rjitd's request counters.
  static uint64_t requestCount(const ServerStats& stats, const std::string& method,
                               const std::string& result) {
    for (const auto& count : stats.requestCounts) {
      if (count.method == method && count.result == result)
        return count.count;
    }
    return 0;
  }

  static uint64_t errorCount(const ServerStats& stats, const std::string& kind) {
    for (const auto& count : stats.errorCounts) {
      if (count.kind == kind)
        return count.count;
    }
    return 0;
  }

  /// Compiles a fresh module and expects an object.
  void expectCompiles(Client& client, const std::string& module, unsigned optLevel = 1) {
    CompileRequest request;
    request.module = module;
    request.moduleName = "innocent.ll";
    request.optLevel = optLevel;
    try {
      EXPECT_FALSE(client.compile(request).object.empty());
    } catch (const Error& e) {
      ADD_FAILURE() << "compile failed (" << errorKindName(e.kind()) << "): " << e.what();
    }
  }
};

/// The state letter of process `pid` from /proc/PID/stat ('R', 'S', 'Z', ...); 0 once gone.
char processState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t end = stat.rfind(')');  // after the command name, which may hold spaces
  return end == std::string::npos || end + 2 >= stat.size() ? 0 : stat[end + 2];
}

size_t openFds(pid_t pid) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

/// A raw connection to rjitd's Unix socket that sends nothing.
kj::AutoCloseFd idleConnection(const std::string& path) {
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_GE(fd.get(), 0) << std::strerror(errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  return fd;
}

TEST_P(FaultsTest, ListenerSurvivesRunningOutOfFileDescriptors) {
  Client observer(clientOptions());
  observer.stats();  // connected; a socket-activated rjitd has started
  ASSERT_TRUE(daemon->waitReady());
  // Leave rjitd room for a few more connections only. prlimit(2) from outside sets the hard
  // limit too, so the soft limit rjitd raised at start comes down with it.
  pid_t pid = daemon->pid();
  constexpr size_t ROOM = 4;
  rlim_t limit = openFds(pid) + ROOM;
  rlimit low{limit, limit};
  ASSERT_EQ(::prlimit(pid, RLIMIT_NOFILE, &low, nullptr), 0) << std::strerror(errno);

  // More idle connections than rjitd has descriptors for: the rest wait in the queue and each
  // accept attempt fails with EMFILE. Wait until rjitd has failed (and so retried) twice.
  std::vector<kj::AutoCloseFd> idle;
  for (size_t i = 0; i < ROOM * 4; ++i)
    idle.push_back(idleConnection(daemon->socketPath()));
  bool retried = false;
  for (unsigned i = 0; i < MAX_POLLS && !retried; ++i) {
    ASSERT_EQ(daemon->log().find("stopped accepting"), std::string::npos) << daemon->log();
    retried = errorCount(observer.stats(), "accept") >= 2;
  }
  ASSERT_TRUE(retried) << "rjitd never failed to accept twice";

  // Once the idle clients are gone, a new client is served.
  idle.clear();
  ClientOptions options = clientOptions();
  options.timeout = SAFETY_BOUND;
  Client client(options);
  expectCompiles(client, tinyModule());
  EXPECT_EQ(daemon->log().find("stopped accepting"), std::string::npos);
}

TEST_P(FaultsTest, RaisesItsOpenFileLimitToTheHardLimit) {
  rlimit mine{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &mine), 0) << std::strerror(errno);
  constexpr rlim_t LOW = 256;  // above what this test process has open
  if (mine.rlim_max <= LOW)
    GTEST_SKIP() << "the hard limit on open files is only " << mine.rlim_max;
  // rjitd inherits the soft limit of the process that starts it (systemd's default is 1024).
  rlimit low{LOW, mine.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0) << std::strerror(errno);
  auto started = startDaemon(daemonOptions());
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &mine), 0) << std::strerror(errno);
  ASSERT_NE(started, nullptr);
  Client client(clientOptions(started.get()));
  client.stats();  // a socket-activated rjitd starts now
  ASSERT_TRUE(started->waitReady());

  std::ifstream limits("/proc/" + std::to_string(started->pid()) + "/limits");
  std::string line;
  std::optional<std::pair<std::string, std::string>> openFiles;
  while (std::getline(limits, line)) {
    std::istringstream fields(line);
    std::string max, open, files, soft, hard;
    if (fields >> max >> open >> files >> soft >> hard && open == "open" && files == "files")
      openFiles.emplace(soft, hard);
  }
  ASSERT_TRUE(openFiles.has_value());
  EXPECT_EQ(openFiles->first, openFiles->second) << "soft and hard limit on open files";
  EXPECT_NE(openFiles->first, std::to_string(LOW));
}

TEST_P(FaultsTest, WorkerKilledWhileIdleIsReplacedNotBlamed) {
  Client client(clientOptions());
  expectCompiles(client, tinyModule());
  auto before = workers();
  ASSERT_EQ(before.size(), 1u);
  ASSERT_EQ(::kill(before[0], SIGKILL), 0);
  // rjitd reaps its workers only when it looks at them: until then the killed one stays a
  // zombie, with its socket closed.
  unsigned polls = 0;
  while (processState(before[0]) != 'Z' && ++polls < MAX_POLLS) {
  }
  ASSERT_EQ(processState(before[0]), 'Z');

  expectCompiles(client, tinyModule());
  auto stats = client.stats();
  EXPECT_EQ(requestCount(stats, "compile", "invalid-module"), 0u);
  EXPECT_EQ(requestCount(stats, "compile", "ok"), 2u);
  EXPECT_EQ(stats.compileWorkerRestarts, 1u);
  auto after = workers();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_NE(after[0], before[0]);
}

TEST_P(FaultsTest, ServesAndStopsWhileItsNotifySocketIsFull) {
  // A supervisor that set NOTIFY_SOCKET and stopped reading after READY=1 (as this harness
  // does): once its queue is full, rjitd's status updates and its STOPPING=1 find no room.
  // sd_notify() waited for room on the event loop's thread, so rjitd stopped answering and
  // ignored SIGTERM.
  Client client(clientOptions());
  client.stats();  // connected; a socket-activated rjitd has started
  ASSERT_TRUE(daemon->waitReady());
  kj::AutoCloseFd sender(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  ASSERT_GE(sender.get(), 0) << std::strerror(errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = daemon->notifySocketPath();
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  // The queue holds net.unix.max_dgram_qlen datagrams (10 by default): fill it until it is full.
  bool full = false;
  for (unsigned i = 0; i < MAX_POLLS && !full; ++i) {
    if (::sendto(sender.get(), "X=1", 3, MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
                 sizeof addr) < 0) {
      ASSERT_EQ(errno, EAGAIN) << std::strerror(errno);
      full = true;
    }
  }
  ASSERT_TRUE(full) << "the notify socket's queue never filled";

  expectServes(client);
  auto status = daemon->stop();
  EXPECT_TRUE(status.exitedWith(0)) << "rjitd after SIGTERM: " << status.describe();
}

TEST_P(FaultsTest, WorkerKilledMidCompileIsRetriedOnANewWorker) {
  auto gate = CompileGate::create(work.file("worker-gate.sock"));
  ASSERT_NE(gate, nullptr);
  auto gated = startWorkerGated(*gate);
  ASSERT_NE(gated, nullptr);
  Client client(clientOptions(gated.get()));
  Client observer(clientOptions(gated.get()));
  auto compiled = std::async(std::launch::async, [&] { expectCompiles(client, tinyModule()); });
  // Before `compiled` waits for the compile, on every way out of the test.
  KJ_DEFER(gate->open());

  // The worker holds the request it has read: killed now, it dies mid-compile.
  ASSERT_EQ(gate->waitArrival(), "innocent.ll");
  auto killed = workers(gated.get());
  ASSERT_EQ(killed.size(), 1u);
  ASSERT_EQ(::kill(killed[0], SIGKILL), 0);
  gate->releaseHeld();
  // The retry arrives from a new worker, which the gate lets compile.
  ASSERT_EQ(gate->waitArrival(), "innocent.ll");
  auto retried = workers(gated.get());
  ASSERT_EQ(retried.size(), 1u);
  EXPECT_NE(retried[0], killed[0]);
  gate->open();
  compiled.get();

  auto stats = observer.stats();
  EXPECT_EQ(requestCount(stats, "compile", "invalid-module"), 0u);
  EXPECT_EQ(requestCount(stats, "compile", "ok"), 1u);
  EXPECT_EQ(stats.compileWorkerRestarts, 1u);
}

TEST_P(FaultsTest, WorkerKilledTwiceMidCompileAnswersOverloaded) {
  auto gate = CompileGate::create(work.file("worker-gate.sock"));
  ASSERT_NE(gate, nullptr);
  auto gated = startWorkerGated(*gate);
  ASSERT_NE(gated, nullptr);
  Client client(clientOptions(gated.get()));
  CompileRequest request;
  request.module = tinyModule();
  request.moduleName = "killed.ll";
  auto compiled =
      std::async(std::launch::async, [&] { return catchError([&] { client.compile(request); }); });
  KJ_DEFER(gate->open());

  // Kill the worker mid-compile, then the retry's new worker too: the host is taking workers
  // away, which says nothing about the module.
  pid_t previous = 0;
  for (int kills = 0; kills < 2; ++kills) {
    ASSERT_EQ(gate->waitArrival(), "killed.ll");
    auto held = workers(gated.get());
    ASSERT_EQ(held.size(), 1u);
    EXPECT_NE(held[0], previous);
    ASSERT_EQ(::kill(held[0], SIGKILL), 0);
    gate->releaseHeld();
    previous = held[0];
  }
  auto error = compiled.get();
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), ErrorKind::Overloaded) << error->what();

  auto stats = client.stats();
  EXPECT_EQ(requestCount(stats, "compile", "invalid-module"), 0u);
  EXPECT_EQ(requestCount(stats, "compile", "overloaded"), 1u);
  EXPECT_EQ(stats.compileWorkerRestarts, 2u);
  // The module was never blamed: with the gate open it compiles on a third worker.
  gate->open();
  expectServes(client);
}

TEST_P(FaultsTest, ClientStringsCannotForgeLogLines) {
  const std::string forged = "<3>rjitd: forged";
  ClientOptions options = clientOptions();
  options.clientName = "client\n" + forged + " client line\x1b[2J";
  Client client(options);
  // The module name is logged when the compile starts, the quoted IR line when it fails.
  CompileRequest request;
  request.moduleName = "x.ll\n" + forged + " error\r\x1b[31m";
  request.module = "define i32 @f(i32 %x) {\n"
                   "  %y = add i32 %x, %nosuchvalue ; \x1b]0;title\x07\n" +
                   forged + " IR line\n" +
                   "  ret i32 %y\n"
                   "}\n";
  auto error = catchError([&] { client.compile(request); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::InvalidModule);

  std::string log = daemon->log();
  // Each was logged, escaped on one line.
  EXPECT_NE(log.find("x.ll\\n<3>rjitd: forged error\\r\\x1b[31m"), std::string::npos) << log;
  EXPECT_NE(log.find("client\\n<3>rjitd: forged client line\\x1b[2J"), std::string::npos) << log;
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    EXPECT_NE(line.rfind(forged, 0), 0u) << "a client forged this log line: " << line;
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << "a raw ESC in: " << line;
    EXPECT_EQ(line.find('\r'), std::string::npos) << "a raw CR in: " << line;
  }
}

/// Waits until rjitd's log contains `text`: woken by inotify on each write to the log file (no
/// polling on a clock), bounded by SAFETY_BOUND per write.
bool waitForLogLine(const DaemonProcess& daemon, const std::string& text) {
  kj::AutoCloseFd watch(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (watch.get() < 0 || ::inotify_add_watch(watch.get(), daemon.logPath().c_str(), IN_MODIFY) < 0)
    return false;
  for (int writes = 0; writes < 10000; ++writes) {
    if (daemon.log().find(text) != std::string::npos)
      return true;
    pollfd p{watch.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(SAFETY_BOUND.count())) != 1)
      return false;
    char events[4096];
    while (::read(watch.get(), events, sizeof(events)) > 0) {
    }
  }
  return false;
}

TEST_P(FaultsTest, WhatAWorkerPrintsOnStderrIsLoggedEscaped) {
  // LLVM in a compile worker may print to stderr, quoting what a module chose. The worker's
  // stderr is a pipe into rjitd's log: write to it from outside as LLVM would.
  Client client(clientOptions());
  expectCompiles(client, tinyModule());  // a worker exists from now on
  auto pids = workers();
  ASSERT_EQ(pids.size(), 1u);
  std::string path = "/proc/" + std::to_string(pids[0]) + "/fd/2";
  kj::AutoCloseFd stderrOfWorker(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_GE(stderrOfWorker.get(), 0) << path << ": " << std::strerror(errno);
  const std::string forged = "<3>rjitd: forged by a worker";
  const std::string raw = "llvm says\n" + forged + "\x1b[31m\n";
  ASSERT_EQ(::write(stderrOfWorker.get(), raw.data(), raw.size()),
            static_cast<ssize_t>(raw.size()));
  ASSERT_TRUE(waitForLogLine(*daemon, "compile worker stderr: " + forged + "\\x1b[31m"))
      << daemon->log();
  std::istringstream lines(daemon->log());
  std::string line;
  while (std::getline(lines, line)) {
    EXPECT_NE(line.rfind(forged, 0), 0u) << "a worker's output forged this log line: " << line;
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << "a raw ESC in: " << line;
  }
}

RJIT_INSTANTIATE_DAEMON_MODES(FaultsTest);

}  // namespace
}  // namespace rjit::test
