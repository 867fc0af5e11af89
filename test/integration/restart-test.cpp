// SPDX-License-Identifier: MIT
// Restarts without failed requests: the harness holds rjitd's listening socket as systemd does
// for rjitd.socket and restarts rjitd several times under a bounded load of clients; every
// request succeeds with a valid object, including those that arrive while no rjitd runs and
// one that is held in flight (at rjitd's test-only compile gate) when SIGTERM arrives.
#include <elf.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <future>
#include <iostream>
#include <mutex>
#include <thread>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "compile-gate.h"
#include "fixture.h"
#include "rjit.capnp.h"

namespace rjit::test {
namespace {

constexpr unsigned THREADS = 4;
constexpr unsigned RESTARTS = 3;
/// Load requests completed before the first restart, and between two restarts.
constexpr uint64_t REQUESTS_BETWEEN_RESTARTS = 40;
/// Requests each load thread still makes once the restarts are over: the last rjitd serves too.
constexpr unsigned REQUESTS_AFTER_RESTARTS = 10;
/// Every FRESH_CLIENT_EVERY-th request of a thread goes through a new Client (its own connect
/// and handshake), the others through the thread's long-lived Client.
constexpr unsigned FRESH_CLIENT_EVERY = 4;
/// Bounds each load thread's loop. The restarts end the load long before (a few thousand
/// requests per thread here); reaching it is reported as a failure.
constexpr unsigned MAX_REQUESTS_PER_THREAD = 100'000;

struct Module {
  std::string name;
  std::string ir;
  unsigned optLevel;
  std::string symbol;  ///< a function the object must define
};

/// A few distinct modules: text and bitcode, tiny and larger, cached after their first compile
/// by each rjitd (every restart starts with an empty cache, so some requests compile).
std::vector<Module> loadModules() {
  return {
      {"answer.ll", tinyModule(), 0, "answer"},
      {"sieve.ll", readFile(genPath("sieve.ll")), 2, "main"},
      {"mathprog.bc", readFile(genPath("mathprog.bc")), 1, "main"},
      {"generated.ll", generatedModule(8), 2, "f7"},
  };
}

CompileRequest requestFor(const Module& module) {
  CompileRequest request;
  request.module = module.ir;
  request.moduleName = module.name;
  request.optLevel = module.optLevel;
  return request;
}

/// What is wrong with `object` as the answer for `module`; "" when it is a valid object.
std::string problemWith(const CompiledObject& object, const Module& module) {
  if (elfMachine(object.object) != EM_X86_64)
    return module.name + ": not an x86_64 relocatable object";
  if (object.key.size() != 64)
    return module.name + ": key of " + std::to_string(object.key.size()) + " hex digits";
  bool defined = std::any_of(object.defines.begin(), object.defines.end(), [&](const Symbol& s) {
    return s.name == module.symbol && s.kind == Symbol::Kind::Function;
  });
  if (!defined)
    return module.name + ": the object does not define " + module.symbol;
  return "";
}

ClientOptions optionsFor(const DaemonProcess& daemon) {
  ClientOptions options;
  options.servers = {daemon.endpoint()};
  options.clientName = "restart-test";
  return options;
}

/// THREADS client threads compiling loadModules() in turn until finish(), each request
/// checked; failures are collected, not asserted, so that the coordinating thread decides.
class Load final {
public:
  Load(ClientOptions options, std::vector<Module> modules)
      : options(std::move(options)), modules(std::move(modules)) {
    for (unsigned t = 0; t < THREADS; ++t)
      threads.emplace_back([this, t] { run(t); });
  }
  ~Load() {
    stopNow = true;  // an early end (a failed assertion): stop after the current request
    join();
  }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  /// Waits until `n` requests have completed; false (with a recorded failure) if the load ended
  /// or the safety bound passed first.
  bool waitCompleted(uint64_t n) {
    std::unique_lock lock(mutex);
    bool reached =
        progress.wait_for(lock, SAFETY_BOUND, [&] { return completed >= n || running == 0; });
    if (!reached || completed < n) {
      ADD_FAILURE() << "the load completed " << completed << " requests, not " << n;
      return false;
    }
    return true;
  }

  /// Restart bookkeeping, to count requests that spanned a whole restart.
  void restartBegins() { ++restartsBegun; }
  void restartDone() { ++restartsDone; }

  /// Lets every thread make REQUESTS_AFTER_RESTARTS more requests, then waits for them.
  void finish() {
    restartsOver = true;
    join();
  }

  uint64_t requests() const { return completed; }
  uint64_t spanningRestart() const { return spanning; }
  uint64_t freshClients() const { return fresh; }
  std::vector<std::string> failures() const {
    std::lock_guard lock(mutex);
    return failed;
  }

private:
  void run(unsigned t) {
    Client own(options);
    unsigned after = 0;
    for (unsigned i = 0; i < MAX_REQUESTS_PER_THREAD && !stopNow; ++i) {
      if (restartsOver && after++ == REQUESTS_AFTER_RESTARTS) {
        ended();
        return;
      }
      const Module& module = modules[(t + i) % modules.size()];
      unsigned begunBefore = restartsBegun;
      std::string problem;
      try {
        if (i % FRESH_CLIENT_EVERY == FRESH_CLIENT_EVERY - 1) {
          Client client(options);
          problem = problemWith(client.compile(requestFor(module)), module);
          ++fresh;
        } else {
          problem = problemWith(own.compile(requestFor(module)), module);
        }
      } catch (const Error& e) {
        problem = module.name + ": " + errorKindName(e.kind()) + ": " + e.what();
      }
      if (restartsDone > begunBefore)
        ++spanning;  // started before a restart began, answered after its rjitd was ready
      std::lock_guard lock(mutex);
      if (!problem.empty())
        failed.push_back("thread " + std::to_string(t) + ", request " + std::to_string(i) + ": " +
                         problem);
      ++completed;
      progress.notify_all();
    }
    if (!stopNow) {
      std::lock_guard lock(mutex);
      failed.push_back("thread " + std::to_string(t) +
                       " reached MAX_REQUESTS_PER_THREAD before "
                       "the restarts were over");
    }
    ended();
  }

  void ended() {
    std::lock_guard lock(mutex);
    --running;
    progress.notify_all();
  }

  void join() {
    for (auto& thread : threads)
      if (thread.joinable())
        thread.join();
  }

  const ClientOptions options;
  const std::vector<Module> modules;
  std::atomic<bool> restartsOver = false;
  std::atomic<bool> stopNow = false;
  std::atomic<unsigned> restartsBegun = 0;
  std::atomic<unsigned> restartsDone = 0;
  std::atomic<uint64_t> spanning = 0;
  std::atomic<uint64_t> fresh = 0;
  mutable std::mutex mutex;
  std::condition_variable progress;
  uint64_t completed = 0;            // guarded by mutex
  unsigned running = THREADS;        // guarded by mutex
  std::vector<std::string> failed;   // guarded by mutex
  std::vector<std::thread> threads;  // last: the threads use everything above
};

/// Connects to rjitd's Unix socket. On a Unix stream socket connect() returns once the
/// connection waits in the listener's queue, so while no rjitd runs, on return it certainly
/// waits in the held socket's queue: the event the test needs, which the client library (it
/// connects on its own thread, when a call needs it) does not show.
kj::AutoCloseFd connectQueued(const std::string& path) {
  sockaddr_un address{};
  if (path.size() >= sizeof(address.sun_path)) {
    ADD_FAILURE() << "socket path too long: " << path;
    return kj::AutoCloseFd();
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0 ||
      ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    return kj::AutoCloseFd();
  }
  return fd;
}

/// Compiles `module` over `fd` speaking rjitd's protocol directly, on the calling thread (each
/// call its own event loop). What is wrong with the answer; "" when it is a valid object.
std::string rawCompileProblem(const kj::AutoCloseFd& fd, const Module& module) {
  std::string problem;
  auto io = kj::setupAsyncIo();
  auto& waitScope = io.waitScope;
  auto bound = SAFETY_BOUND.count() * kj::MILLISECONDS;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                 auto stream = io.lowLevelProvider->wrapSocketFd(
                     fd.get(), kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
                 capnp::TwoPartyClient rpc(*stream);
                 auto bootstrap = rpc.bootstrap().castAs<rjitd::proto::Rjitd>();
                 auto hello = bootstrap.helloRequest();
                 hello.initClient().setProtocolVersion(rjitd::proto::PROTOCOL_VERSION);
                 hello.getClient().setClientName("restart-test-raw");
                 auto compile = hello.send().getSession().compileRequest();
                 auto request = compile.initRequest();
                 request.setModuleName(module.name);
                 request.setOptLevel(module.optLevel);
                 request.setFormat(rjitd::proto::IrFormat::TEXT);
                 request.setModule(kj::arrayPtr(
                     reinterpret_cast<const capnp::byte*>(module.ir.data()), module.ir.size()));
                 auto response =
                     io.provider->getTimer().timeoutAfter(bound, compile.send()).wait(waitScope);
                 auto outcome = response.getOutcome();
                 if (!outcome.isOk()) {
                   problem = module.name + ": answered with error kind " +
                             std::to_string(static_cast<int>(outcome.getError().getKind())) + ": " +
                             outcome.getError().getMessage().cStr();
                   return;
                 }
                 auto object = outcome.getOk();
                 auto bytes = object.getObject();
                 CompiledObject converted;
                 converted.object.assign(reinterpret_cast<const char*>(bytes.begin()),
                                         bytes.size());
                 converted.key = std::string(2 * object.getKey().size(), '0');  // size only
                 for (auto symbol : object.getDefines())
                   converted.defines.push_back(
                       {symbol.getName().cStr(),
                        symbol.getKind() == rjitd::proto::Symbol::Kind::FUNCTION
                            ? Symbol::Kind::Function
                            : Symbol::Kind::Other});
                 problem = problemWith(converted, module);
               })) {
    problem = module.name + ": " + exception->getDescription().cStr();
  }
  return problem;
}

void expectValid(std::future<CompiledObject>& future, const Module& module, const char* what) {
  try {
    std::string problem = problemWith(future.get(), module);
    EXPECT_TRUE(problem.empty()) << what << ": " << problem;
  } catch (const Error& e) {
    ADD_FAILURE() << what << " failed: " << errorKindName(e.kind()) << ": " << e.what();
  }
}

TEST(RestartTest, RequestsDuringRestartsAllSucceed) {
  TempDir work;
  auto gate = CompileGate::create(work.file("compile-gate.sock"), "held.ll");
  ASSERT_NE(gate, nullptr);
  DaemonOptions daemonOptions;
  daemonOptions.mode = DaemonMode::HeldSocket;
  daemonOptions.extraArgs = gate->daemonArgs();
  daemonOptions.logLevel = "info";  // debug would log every connection of the load
  auto daemon = DaemonProcess::start(daemonOptions);
  ASSERT_NE(daemon, nullptr);
  ClientOptions options = optionsFor(*daemon);

  Load load(options, loadModules());
  Client heldClient(options);
  for (unsigned r = 1; r <= RESTARTS; ++r) {
    SCOPED_TRACE("restart " + std::to_string(r));
    ASSERT_TRUE(load.waitCompleted(r * REQUESTS_BETWEEN_RESTARTS));

    // A compile in flight when SIGTERM arrives: the gate holds it (and only it: the load's
    // compiles pass) until rjitd drains, which lets it finish and answers it.
    Module held{"held.ll", generatedModule(8), 2, "f7"};
    auto inFlight = heldClient.compileAsync(requestFor(held));
    ASSERT_EQ(gate->waitArrival(), held.name);

    load.restartBegins();
    ASSERT_EQ(::kill(daemon->pid(), SIGTERM), 0);
    ASSERT_TRUE(daemon->waitStopping());
    gate->releaseHeld();
    ExitStatus status = daemon->stop();
    EXPECT_TRUE(status.exitedWith(0)) << "rjitd after SIGTERM: " << status.describe();

    // A connection made while no rjitd runs waits in the held socket's queue (as do the
    // load's); the next rjitd accepts it and answers the request sent on it. connectQueued()
    // returns once it is queued, so it certainly predates the next rjitd.
    Module late{"late.ll", tinyModule(), 1, "answer"};
    kj::AutoCloseFd queued = connectQueued(daemon->socketPath());
    ASSERT_GE(queued.get(), 0);
    auto arrived = std::async(std::launch::async,
                              [&queued, &late] { return rawCompileProblem(queued, late); });

    ASSERT_TRUE(daemon->startAgain());
    load.restartDone();
    expectValid(inFlight, held, "the compile in flight at SIGTERM");
    ASSERT_EQ(arrived.wait_for(SAFETY_BOUND), std::future_status::ready);
    std::string problem = arrived.get();
    EXPECT_TRUE(problem.empty()) << "the request made while rjitd was down: " << problem;
  }
  load.finish();

  std::vector<std::string> failures = load.failures();
  if (!failures.empty())
    ADD_FAILURE() << failures.size() << " of " << load.requests()
                  << " requests failed; the first: " << failures.front();
  // For the log: how much of the load met the restarts (the late requests above are the part
  // that is certain to).
  std::cout << "[ restart  ] " << load.requests() << " requests (" << load.freshClients()
            << " on fresh clients), " << load.spanningRestart()
            << " of them across a whole restart, " << RESTARTS << " restarts, " << failures.size()
            << " failed\n";
  RecordProperty("requests", std::to_string(load.requests()));
  RecordProperty("spanning_restart", std::to_string(load.spanningRestart()));

  ExitStatus status = daemon->stop();
  EXPECT_TRUE(status.exitedWith(0)) << "rjitd after SIGTERM: " << status.describe();
}

TEST(RestartTest, AStandaloneRestartIsRiddenOverWithinTheConnectWait) {
  // A standalone rjitd (no socket held for it) is stopped; a request made while none runs finds
  // its socket missing, and is served by the next rjitd on that path once it listens (the
  // client tries again within ClientOptions::connectWait, the deadline bounding it too).
  TempDir work;
  std::string path = work.file("fixed.sock");
  DaemonOptions daemonOptions;
  daemonOptions.extraArgs = {"--listen", "unix:" + path, "--cache-dir", work.file("cache")};
  auto first = DaemonProcess::start(daemonOptions);
  ASSERT_NE(first, nullptr);
  ClientOptions options;
  options.servers = {"unix:" + path};
  options.clientName = "restart-test";
  options.connectWait = std::chrono::milliseconds(60000);  // the test's bound, never reached
  Module late{"late.ll", tinyModule(), 1, "answer"};
  {
    Client client(options);
    std::string problem = problemWith(client.compile(requestFor(late)), late);
    EXPECT_TRUE(problem.empty()) << problem;
  }
  ExitStatus status = first->stop();
  EXPECT_TRUE(status.exitedWith(0)) << status.describe();
  ASSERT_NE(::access(path.c_str(), F_OK), 0) << "rjitd left its socket behind";

  // The request starts while no rjitd runs; its first connect fails unless the next rjitd
  // (started right after) wins the race, which is then only a weaker test (the connector's
  // unit test checks the retry itself deterministically). Without the wait the request fails.
  Client client(options);
  auto request =
      std::async(std::launch::async, [&client, &late] { return client.compile(requestFor(late)); });
  auto second = DaemonProcess::start(daemonOptions);
  ASSERT_NE(second, nullptr);
  ASSERT_EQ(request.wait_for(SAFETY_BOUND), std::future_status::ready);
  expectValid(request, late, "the request made while rjitd was down");

  // Without the wait, the same request fails at once, naming the address.
  ClientOptions impatient = options;
  impatient.connectWait = std::chrono::milliseconds(0);
  status = second->stop();
  EXPECT_TRUE(status.exitedWith(0)) << status.describe();
  try {
    Client(impatient).compile(requestFor(late));
    ADD_FAILURE() << "compiled with no rjitd running";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Connection) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rjit::test
