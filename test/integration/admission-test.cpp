// SPDX-License-Identifier: MIT
// Admission control through a real rjitd (issue 12, item 2): bounded compile queues answer
// `overloaded`, clients take turns, compiles nobody waits for are dropped (and a shared one goes
// on while a waiter remains), and a drain answers queued compiles with shutting-down. rjitd's
// test-only compile gate holds compiles, and reports each module name as its compile arrives, so
// every order below is observed, never timed.
#include <csignal>
#include <elf.h>
#include <thread>

#include "compile-gate.h"
#include "fixture.h"

namespace rjit::test {
namespace {

/// Polls `observer`'s Session.stats until `pred` holds: each check a round trip through rjitd's
/// event loop (which paces it), bounded. False, with a recorded failure, past the bound.
template <typename Pred> bool waitStats(Client& observer, Pred&& pred, const char* what) {
  constexpr unsigned MAX_ROUND_TRIPS = 100'000;
  for (unsigned i = 0; i < MAX_ROUND_TRIPS; ++i)
    if (pred(observer.stats()))
      return true;
  ADD_FAILURE() << "rjitd never reached: " << what;
  return false;
}

CompileRequest requestFor(std::string name) {
  CompileRequest request;
  request.module = tinyModule();
  request.moduleName = std::move(name);
  request.optLevel = 0;
  return request;
}

/// A module of `padding` bytes more than tinyModule() (a comment), which compiles as fast;
/// `name` is in it, so that no two such modules share a compile.
CompileRequest largeRequestFor(std::string name, size_t padding) {
  CompileRequest request = requestFor(name);
  request.module += "\n; " + name + " " + std::string(padding, 'x') + "\n";
  return request;
}

/// A compile on a thread of its own; its outcome once joined. Destroyed unjoined (a test that
/// failed early), it opens `gate` first, so that a held compile cannot keep it waiting.
class Background final {
public:
  Background(CompileGate& gate, Client& client, CompileRequest request)
      : gate(gate), thread([this, &client, request = std::move(request)] {
          try {
            object = client.compile(request);
          } catch (const Error& e) {
            error = e.kind();
          }
        }) {}
  ~Background() {
    if (thread.joinable())
      gate.open();
    join();
  }
  void join() {
    if (thread.joinable())
      thread.join();
  }
  std::optional<CompiledObject> object;
  std::optional<ErrorKind> error;

private:
  CompileGate& gate;
  std::thread thread;
};

class AdmissionTest : public DaemonTest {
protected:
  std::string gatePath() const { return work.file("compile-gate.sock"); }
  /// A daemon of the test's mode whose compiles wait at the gate, with `args` added.
  std::unique_ptr<DaemonProcess> startWith(std::vector<std::string> args) const {
    DaemonOptions options;
    options.extraArgs = {"--test-compile-gate", gatePath()};
    options.extraArgs.insert(options.extraArgs.end(), args.begin(), args.end());
    return startDaemon(std::move(options));
  }
  ClientOptions optionsFor(const DaemonProcess& d) const { return clientOptions(&d); }

  /// `rjit compile FILE` as a process of its own (a client the test can kill).
  std::unique_ptr<ChildProcess> spawnCompile(const DaemonProcess& d, const std::string& file) {
    const char* rjit = std::getenv("RJIT_BIN");
    EXPECT_NE(rjit, nullptr) << "RJIT_BIN is not set (run under meson test)";
    if (rjit == nullptr)
      return nullptr;
    SpawnOptions spawn;
    spawn.argv = {rjit, "--server", d.endpoint(), "compile", file, "-O0", "-o", file + ".o"};
    spawn.env = environmentWith({});
    return ChildProcess::spawn(spawn);
  }
};

TEST_P(AdmissionTest, FullQueueAnswersOverloadedForCompilesAndLoads) {
  auto gate = CompileGate::create(gatePath());
  ASSERT_NE(gate, nullptr);
  auto d = startWith({"--jobs", "1", "--max-queued", "2"});
  ASSERT_NE(d, nullptr);
  Client observer(optionsFor(*d));
  Client a(optionsFor(*d)), b(optionsFor(*d)), c(optionsFor(*d));
  // The refused client's deadline is shorter than the hint (3 queued places x 1 s at the
  // least), so the library answers at once instead of waiting out the hint.
  ClientOptions lateOptions = optionsFor(*d);
  lateOptions.timeout = std::chrono::milliseconds(2000);
  Client late(lateOptions);
  Background running(*gate, a, requestFor("running.ll"));
  ASSERT_EQ(gate->waitArrival(), "running.ll");
  Background q1(*gate, b, requestFor("q1.ll"));
  Background q2(*gate, c, requestFor("q2.ll"));
  ASSERT_TRUE(waitStats(
      observer, [](const ServerStats& s) { return s.compilesInFlight == 3; }, "3 compiles"));
  // One runs, two wait: the x86_64 queue is full, and a client holding none of its places
  // cannot push out one of the others' single places.
  auto refused = catchError([&] { late.compile(requestFor("late.ll")); });
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->kind(), ErrorKind::Overloaded);
  EXPECT_GT(refused->retryAfter().count(), 0);
  // A load compiles through the same queue.
  auto refusedLoad = catchError([&] { late.load(requestFor("late-load.ll")); });
  ASSERT_TRUE(refusedLoad);
  EXPECT_EQ(refusedLoad->kind(), ErrorKind::Overloaded);
  gate->open();
  running.join();
  q1.join();
  q2.join();
  EXPECT_TRUE(running.object && q1.object && q2.object);
  auto stats = observer.stats();
  EXPECT_EQ(stats.compiles, 3u);  // the refused ones never compiled
  expectServes(late);
}

TEST_P(AdmissionTest, ModulesBeyondTheHeldBytesBudgetAreOverloadedUntilHeldOnesEnd) {
  // Modules above the hash offload size (256 KiB): two fit in --max-held-request-bytes and stay
  // held (one compiling at the gate, one waiting for the one compile worker), a third does not.
  constexpr size_t PADDING = 400 << 10;
  auto gate = CompileGate::create(gatePath());
  ASSERT_NE(gate, nullptr);
  auto d = startWith({"--jobs", "1", "--max-held-request-bytes", "1M"});
  ASSERT_NE(d, nullptr);
  Client observer(optionsFor(*d));
  Client a(optionsFor(*d)), b(optionsFor(*d));
  // Shorter than the hint (two compiles ahead x 1 s at the least): answered at once.
  ClientOptions lateOptions = optionsFor(*d);
  lateOptions.timeout = std::chrono::milliseconds(1000);
  Client late(lateOptions);
  Background running(*gate, a, largeRequestFor("running.ll", PADDING));
  ASSERT_EQ(gate->waitArrival(), "running.ll");
  Background queued(*gate, b, largeRequestFor("queued.ll", PADDING));
  ASSERT_TRUE(waitStats(
      observer, [](const ServerStats& s) { return s.compilesInFlight == 2; }, "2 compiles"));
  auto refused = catchError([&] { late.compile(largeRequestFor("late.ll", PADDING)); });
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->kind(), ErrorKind::Overloaded);
  EXPECT_GT(refused->retryAfter().count(), 0);
  // A load's module is held the same way.
  auto refusedLoad = catchError([&] { late.load(largeRequestFor("late-load.ll", PADDING)); });
  ASSERT_TRUE(refusedLoad);
  EXPECT_EQ(refusedLoad->kind(), ErrorKind::Overloaded);
  gate->open();
  running.join();
  queued.join();
  EXPECT_TRUE(running.object && queued.object);
  // The held modules were returned before their answers were sent: the refused one is served.
  Client after(optionsFor(*d));
  EXPECT_NO_THROW(after.compile(largeRequestFor("late.ll", PADDING)));
  auto stats = observer.stats();
  EXPECT_EQ(stats.compiles, 3u);  // the refused ones never compiled
}

TEST_P(AdmissionTest, AClientWithOneRequestIsNotStarvedByOneWithMany) {
  auto gate = CompileGate::create(gatePath());
  ASSERT_NE(gate, nullptr);
  auto d = startWith({"--jobs", "1"});
  ASSERT_NE(d, nullptr);
  Client observer(optionsFor(*d));
  Client greedy(optionsFor(*d)), modest(optionsFor(*d));
  std::vector<std::unique_ptr<Background>> many;
  many.push_back(std::make_unique<Background>(*gate, greedy, requestFor("a0.ll")));
  ASSERT_EQ(gate->waitArrival(), "a0.ll");
  constexpr unsigned MORE = 6;
  for (unsigned i = 1; i <= MORE; ++i)
    many.push_back(
        std::make_unique<Background>(*gate, greedy, requestFor("a" + std::to_string(i) + ".ll")));
  ASSERT_TRUE(waitStats(
      observer, [](const ServerStats& s) { return s.compilesInFlight == 1 + MORE; },
      "the greedy client's compiles queued"));
  Background one(*gate, modest, requestFor("b.ll"));
  ASSERT_TRUE(waitStats(
      observer, [](const ServerStats& s) { return s.compilesInFlight == 2 + MORE; },
      "the modest client's compile queued"));
  // One compile at a time: the greedy client's next turn, then the modest client's, whose one
  // request waited behind one of the six, not all six (first in, first out would run it last).
  std::vector<std::string> order;
  for (int turn = 0; turn < 2; ++turn) {
    gate->releaseHeld();
    auto next = gate->waitArrival();
    ASSERT_TRUE(next);
    order.push_back(*next);
  }
  EXPECT_EQ(order[0].front(), 'a') << order[0];
  EXPECT_EQ(order[1], "b.ll");
  gate->open();
  for (auto& m : many)
    m->join();
  one.join();
  EXPECT_TRUE(one.object.has_value());
  for (auto& m : many)
    EXPECT_TRUE(m->object.has_value());
}

TEST_P(AdmissionTest, CompilesOfVanishedClientsAreDroppedAndAGoodCompileDoesNotWait) {
  // The reproduction: 16 clients send modules and go away while their compiles are held
  // (two running, fourteen queued); then a good compile must not wait for any of them.
  auto gate = CompileGate::create(gatePath());
  ASSERT_NE(gate, nullptr);
  auto d = startWith({"--jobs", "2"});
  ASSERT_NE(d, nullptr);
  Client observer(optionsFor(*d));
  constexpr unsigned CLIENTS = 16;
  std::vector<std::unique_ptr<ChildProcess>> clients;
  for (unsigned i = 0; i < CLIENTS; ++i) {
    std::string file = work.file("vanish" + std::to_string(i) + ".ll");
    writeFile(file, tinyModule());
    clients.push_back(spawnCompile(*d, file));
    ASSERT_NE(clients.back(), nullptr);
  }
  ASSERT_TRUE(gate->waitArrival());
  ASSERT_TRUE(gate->waitArrival());
  ASSERT_TRUE(waitStats(
      observer, [](const ServerStats& s) { return s.compilesInFlight == CLIENTS; },
      "16 compiles in flight"));
  for (auto& child : clients) {
    child->signal(SIGKILL);
    ASSERT_TRUE(child->wait());
  }
  // rjitd notices each client gone and calls its compile off, queued or running.
  ASSERT_TRUE(waitStats(
      observer, [](const ServerStats& s) { return s.compilesInFlight == 0; },
      "every abandoned compile called off"));
  Background good(*gate, observer, requestFor("good.ll"));
  ASSERT_TRUE(waitStats(
      observer, [](const ServerStats& s) { return s.compilesInFlight == 1; }, "good queued"));
  gate->releaseHeld();  // the two that were running end (they were called off)
  EXPECT_EQ(gate->waitArrival(), "good.ll");  // none of the fourteen queued ever starts
  gate->open();
  good.join();
  EXPECT_TRUE(good.object.has_value());
  auto stats = observer.stats();
  EXPECT_EQ(stats.compiles, 1u);
  EXPECT_EQ(stats.compileFailures, 0u);
}

TEST_P(AdmissionTest, ASharedCompileGoesOnWhileOneWaiterRemains) {
  auto gate = CompileGate::create(gatePath());
  ASSERT_NE(gate, nullptr);
  auto d = startWith({});
  ASSERT_NE(d, nullptr);
  Client observer(optionsFor(*d));
  std::string file = work.file("shared.ll");
  writeFile(file, tinyModule());
  auto before = observer.stats();
  auto leaving = spawnCompile(*d, file);
  auto staying = spawnCompile(*d, file);
  ASSERT_TRUE(leaving && staying);
  EXPECT_EQ(gate->waitArrival(), file);
  ASSERT_TRUE(waitStats(
      observer, [&](const ServerStats& s) { return s.cacheMisses == before.cacheMisses + 2; },
      "both requests joined the one compile"));
  uint32_t connections = observer.stats().connections;
  leaving->signal(SIGKILL);
  ASSERT_TRUE(leaving->wait());
  ASSERT_TRUE(waitStats(
      observer, [&](const ServerStats& s) { return s.connections == connections - 1; },
      "the killed client's connection closed"));
  EXPECT_EQ(observer.stats().compilesInFlight, 1u);  // still wanted: not called off
  gate->open();
  auto status = staying->wait();
  ASSERT_TRUE(status);
  EXPECT_TRUE(status->exitedWith(0)) << status->describe();
  EXPECT_EQ(elfMachine(readFile(file + ".o")), EM_X86_64);
  auto stats = observer.stats();
  EXPECT_EQ(stats.compiles, before.compiles + 1);
  EXPECT_FALSE(gate->arrivalPending());
}

TEST_P(AdmissionTest, DrainAnswersQueuedCompilesShuttingDown) {
  auto gate = CompileGate::create(gatePath());
  ASSERT_NE(gate, nullptr);
  auto d = startWith({"--jobs", "1"});
  ASSERT_NE(d, nullptr);
  Client observer(optionsFor(*d));
  Client a(optionsFor(*d)), b(optionsFor(*d));
  Background running(*gate, a, requestFor("running.ll"));
  ASSERT_EQ(gate->waitArrival(), "running.ll");
  Background q1(*gate, b, requestFor("q1.ll"));
  Background q2(*gate, b, requestFor("q2.ll"));
  ASSERT_TRUE(waitStats(
      observer, [](const ServerStats& s) { return s.compilesInFlight == 3; }, "3 compiles"));
  ASSERT_EQ(::kill(d->pid(), SIGTERM), 0);
  ASSERT_TRUE(d->waitStopping());
  q1.join();
  q2.join();
  EXPECT_EQ(q1.error, ErrorKind::ShuttingDown);
  EXPECT_EQ(q2.error, ErrorKind::ShuttingDown);
  EXPECT_FALSE(gate->arrivalPending());
  gate->open();  // the running compile finishes and is answered
  running.join();
  EXPECT_TRUE(running.object.has_value());
  auto status = d->stop();
  EXPECT_TRUE(status.exitedWith(0)) << status.describe();
}

RJIT_INSTANTIATE_DAEMON_MODES(AdmissionTest);

}  // namespace
}  // namespace rjit::test
