// SPDX-License-Identifier: MIT
// The admission queues (service/admission.h) on a real kj event loop, and CompileService's
// cancellation of compiles nobody waits for, observed through a fake compile backend.
#include "admission.h"
#include "compile-service.h"
#include "metrics.h"
#include "object-cache.h"
#include "worker-pool.h"

#include <chrono>
#include <condition_variable>
#include <future>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace rjitd::service {
namespace {

using Admitted = Admission::Admitted;

/// Safety bound of a wait for another thread (never reached when the code works).
constexpr auto SAFETY_BOUND = std::chrono::seconds(60);

struct Loop {
  kj::AsyncIoContext io = kj::setupAsyncIo();
};

Admission::Config config(unsigned workers, uint32_t maxQueued) {
  return {"compile", workers, maxQueued, std::chrono::milliseconds(1000)};
}

/// A waiter that records when it is granted: its turn in `order`, its slot kept in `slots`.
kj::Promise<void> recordGrant(kj::Promise<Admitted> admitted, std::string name,
                              std::vector<std::string>& order,
                              std::vector<Admission::Slot>& slots) {
  return admitted.then([name = kj::mv(name), &order, &slots](Admitted&& a) {
    if (auto* f = failureOf(a)) {
      order.push_back(name + ":" + errorKindName(f->kind));
      return;
    }
    order.push_back(name);
    slots.push_back(std::get<Admission::Slot>(kj::mv(a)));
  });
}

TEST(Admission, RunsAtOnceWhileWorkersAreFreeThenQueues) {
  Loop loop;
  Admission admission(config(2, 8), {"x86_64", "aarch64"});
  std::vector<std::string> order;
  std::vector<Admission::Slot> slots;
  auto a = recordGrant(admission.admit("x86_64", 1), "a", order, slots).eagerlyEvaluate(nullptr);
  auto b = recordGrant(admission.admit("x86_64", 2), "b", order, slots).eagerlyEvaluate(nullptr);
  auto c = recordGrant(admission.admit("x86_64", 3), "c", order, slots).eagerlyEvaluate(nullptr);
  loop.io.waitScope.poll();
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(admission.running(), 2u);
  EXPECT_EQ(admission.queued("x86_64"), 1u);
  slots.erase(slots.begin());  // a's work ends: c gets its slot
  loop.io.waitScope.poll();
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(admission.queued(), 0u);
}

TEST(Admission, FullQueueAnswersOverloadedWithARetryHint) {
  Loop loop;
  std::vector<std::pair<std::string, size_t>> depths;
  Admission admission(config(1, 2), {"x86_64"}, [&](const std::string& lane, size_t depth) {
    depths.emplace_back(lane, depth);
  });
  std::vector<std::string> order;
  std::vector<Admission::Slot> slots;
  std::vector<kj::Promise<void>> waiting;
  for (const char* name : {"run", "q1", "q2", "over"})
    waiting.push_back(
        recordGrant(admission.admit("x86_64", 7), name, order, slots).eagerlyEvaluate(nullptr));
  loop.io.waitScope.poll();
  EXPECT_EQ(order, (std::vector<std::string>{"run", "over:overloaded"}));
  auto refused = admission.refusal("x86_64", 7);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->kind, ErrorKind::Overloaded);
  EXPECT_GE(refused->retryAfterMillis, Admission::MIN_RETRY_MILLIS);
  EXPECT_LE(refused->retryAfterMillis, Admission::MAX_RETRY_MILLIS);
  EXPECT_NE(refused->message.find("--max-queued"), std::string::npos) << refused->message;
  // The other target's queue is its own.
  EXPECT_FALSE(admission.refusal("aarch64", 7).has_value());
  ASSERT_FALSE(depths.empty());
  EXPECT_EQ(depths.back(), std::make_pair(std::string("x86_64"), size_t{2}));
}

TEST(Admission, ClientsTakeTurnsSoOneRequestIsNotStarvedByMany) {
  Loop loop;
  Admission admission(config(1, 64), {"x86_64"});
  std::vector<std::string> order;
  std::vector<Admission::Slot> slots;
  std::vector<kj::Promise<void>> waiting;
  // Client 1 asks for 20 compiles, then client 2 for one.
  for (int i = 0; i < 20; ++i)
    waiting.push_back(
        recordGrant(admission.admit("x86_64", 1), "a" + std::to_string(i), order, slots)
            .eagerlyEvaluate(nullptr));
  waiting.push_back(
      recordGrant(admission.admit("x86_64", 2), "b", order, slots).eagerlyEvaluate(nullptr));
  loop.io.waitScope.poll();
  for (int turn = 0; turn < 3; ++turn) {
    slots.clear();
    loop.io.waitScope.poll();
  }
  // a0 ran at once; then a1 (client 1 was first in the round), then b, then client 1 again.
  EXPECT_EQ(order, (std::vector<std::string>{"a0", "a1", "b", "a2"}));
}

TEST(Admission, AFullQueueStillTakesAFairerClaim) {
  Loop loop;
  Admission admission(config(1, 3), {"x86_64"});
  std::vector<std::string> order;
  std::vector<Admission::Slot> slots;
  std::vector<kj::Promise<void>> waiting;
  for (const char* name : {"a0", "a1", "a2", "a3"})
    waiting.push_back(
        recordGrant(admission.admit("x86_64", 1), name, order, slots).eagerlyEvaluate(nullptr));
  EXPECT_FALSE(admission.refusal("x86_64", 2).has_value());
  waiting.push_back(
      recordGrant(admission.admit("x86_64", 2), "b", order, slots).eagerlyEvaluate(nullptr));
  loop.io.waitScope.poll();
  // Client 1's newest place went to client 2, whose request is queued.
  EXPECT_THAT(order, ::testing::UnorderedElementsAre("a0", "a3:overloaded"));
  EXPECT_EQ(admission.queued("x86_64"), 3u);
  // Client 1 with two of three places cannot push client 2 out.
  EXPECT_TRUE(admission.refusal("x86_64", 1).has_value());
}

TEST(Admission, ADroppedWaiterLeavesTheQueue) {
  Loop loop;
  int cancelled = 0;
  Admission admission(config(1, 8), {"x86_64"}, nullptr, [&]() { ++cancelled; });
  std::vector<std::string> order;
  std::vector<Admission::Slot> slots;
  auto a = recordGrant(admission.admit("x86_64", 1), "a", order, slots).eagerlyEvaluate(nullptr);
  auto b = kj::heap(
      recordGrant(admission.admit("x86_64", 2), "b", order, slots).eagerlyEvaluate(nullptr));
  auto c = recordGrant(admission.admit("x86_64", 3), "c", order, slots).eagerlyEvaluate(nullptr);
  loop.io.waitScope.poll();
  EXPECT_EQ(admission.queued(), 2u);
  b = nullptr;  // b's caller went away
  EXPECT_EQ(admission.queued(), 1u);
  EXPECT_EQ(cancelled, 1);
  slots.clear();
  loop.io.waitScope.poll();
  EXPECT_EQ(order, (std::vector<std::string>{"a", "c"}));
}

TEST(Admission, AbandonQueuedAnswersEveryWaiterAndLetsRunningWorkGoOn) {
  Loop loop;
  Admission admission(config(1, 8), {"x86_64", "aarch64"});
  std::vector<std::string> order;
  std::vector<Admission::Slot> slots;
  std::vector<kj::Promise<void>> waiting;
  const std::vector<std::pair<std::string, std::string>> requests = {
      {"run", "x86_64"}, {"q1", "x86_64"}, {"q2", "aarch64"}};
  for (const auto& [name, lane] : requests)
    waiting.push_back(
        recordGrant(admission.admit(lane, 1), name, order, slots).eagerlyEvaluate(nullptr));
  loop.io.waitScope.poll();
  EXPECT_EQ(admission.abandonQueued(Failure{ErrorKind::ShuttingDown, "bye", {}}), 2u);
  loop.io.waitScope.poll();
  EXPECT_EQ(order, (std::vector<std::string>{"run", "q1:shutting-down", "q2:shutting-down"}));
  EXPECT_EQ(admission.running(), 1u);
  EXPECT_EQ(admission.queued(), 0u);
}

TEST(Admission, RunHoldingKeepsTheSlotUntilTheWorkerIsDone) {
  Loop loop;
  WorkerPool pool("test-admit", 1);
  Admission admission(config(1, 8), {"x86_64"});
  std::promise<void> go;
  std::shared_future<void> released = go.get_future().share();
  auto first = admission.admit("x86_64", 1).wait(loop.io.waitScope);
  ASSERT_EQ(failureOf(first), nullptr);
  auto running = kj::heap(
      admission.runHolding<int>(pool, std::get<Admission::Slot>(kj::mv(first)), [released]() {
        released.wait();
        return 1;
      }));
  auto next = admission.admit("x86_64", 2);
  running = nullptr;  // the caller goes away; its work still occupies the worker
  loop.io.waitScope.poll();
  EXPECT_EQ(admission.running(), 1u);
  EXPECT_EQ(admission.queued(), 1u);
  go.set_value();
  auto second = next.wait(loop.io.waitScope);  // granted once the worker has finished
  EXPECT_EQ(failureOf(second), nullptr);
}

/// A compile backend that holds each compile until the test lets it go, and records whether
/// the compile had been cancelled by then.
class HeldBackend final : public CompileBackend {
public:
  compiler::CompileResult compile(std::string_view module, const compiler::CompileOptions&,
                                  CompileCancel* cancel) override {
    std::unique_lock lock(mutex);
    entered.push_back(std::string(module));
    changed.notify_all();
    changed.wait_for(lock, SAFETY_BOUND, [&]() { return open; });
    cancelledSeen.push_back(cancel != nullptr && cancel->cancelled());
    return Failure{ErrorKind::Internal, "held backend compiles nothing", {}};
  }
  /// Waits (bounded) until `n` compiles have entered.
  bool waitEntered(size_t n) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, SAFETY_BOUND, [&]() { return entered.size() >= n; });
  }
  void release() {
    std::lock_guard lock(mutex);
    open = true;
    changed.notify_all();
  }
  std::vector<std::string> seen() {
    std::lock_guard lock(mutex);
    return entered;
  }

  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::string> entered;
  std::vector<bool> cancelledSeen;
  bool open = false;
};

struct ServiceEnv {
  explicit ServiceEnv(const ServiceConfig& config = serviceConfig())
      : service(config, objects, backend, compilePool, hashPool, metrics) {}
  static ServiceConfig serviceConfig() {
    ServiceConfig c;
    c.compilerIdentity = "rjitd/test llvm/test";
    c.maxQueued = 4;
    return c;
  }
  CompileJob job(std::string module, uint64_t client) {
    CompileJob j;
    j.module = std::move(module);
    j.moduleName = "m.ll";
    j.client = client;
    return j;
  }
  kj::AsyncIoContext io = kj::setupAsyncIo();
  cache::ObjectCache objects{64 << 20};
  metrics::Metrics metrics{{"test", "test", {"x86_64", "aarch64"}}, objects};
  HeldBackend backend;
  WorkerPool compilePool{"test-compile", 1};
  WorkerPool hashPool{"test-hash", 1};
  CompileService service;
};

TEST(CompileCancellation, TheLastWaiterGoingAwayCancelsTheRunningCompile) {
  auto env = std::make_unique<ServiceEnv>();
  auto first = kj::heap(env->service.compile(env->job("running", 1)).eagerlyEvaluate(nullptr));
  auto joined = kj::heap(env->service.compile(env->job("running", 2)).eagerlyEvaluate(nullptr));
  env->io.waitScope.poll();
  ASSERT_TRUE(env->backend.waitEntered(1));
  EXPECT_EQ(env->service.inFlightCount(), 1u);
  first = nullptr;  // one of two waiters goes: the shared compile goes on
  EXPECT_EQ(env->service.inFlightCount(), 1u);
  joined = nullptr;  // the last one goes: called off
  EXPECT_EQ(env->service.inFlightCount(), 0u);
  env->backend.release();
  // A compile afterwards waits for the worker the cancelled one still holds, then runs.
  auto next = env->service.compile(env->job("next", 3)).wait(env->io.waitScope);
  EXPECT_EQ(env->backend.seen(), (std::vector<std::string>{"running", "next"}));
  {
    std::lock_guard lock(env->backend.mutex);
    ASSERT_EQ(env->backend.cancelledSeen.size(), 2u);
    EXPECT_TRUE(env->backend.cancelledSeen[0]);
    EXPECT_FALSE(env->backend.cancelledSeen[1]);
  }
  // The cancelled compile is no compile: neither counted nor a failure of its module.
  metrics::Totals totals = env->metrics.totals();
  EXPECT_EQ(totals.compiles, 1u);
  EXPECT_EQ(totals.compilesInFlight, 0u);
  EXPECT_NE(env->metrics.exposition().find("rjitd_cancelled_total{kind=\"compile\"} 1"),
            std::string::npos);
}

TEST(CompileCancellation, AQueuedCompileNobodyWaitsForNeverRuns) {
  auto env = std::make_unique<ServiceEnv>();
  auto running = env->service.compile(env->job("running", 1)).eagerlyEvaluate(nullptr);
  env->io.waitScope.poll();
  ASSERT_TRUE(env->backend.waitEntered(1));
  auto queued = kj::heap(env->service.compile(env->job("queued", 2)).eagerlyEvaluate(nullptr));
  env->io.waitScope.poll();
  EXPECT_EQ(env->service.queued(), 1u);
  queued = nullptr;
  EXPECT_EQ(env->service.queued(), 0u);
  env->backend.release();
  running.wait(env->io.waitScope);
  auto after = env->service.compile(env->job("after", 3)).wait(env->io.waitScope);
  EXPECT_EQ(env->backend.seen(), (std::vector<std::string>{"running", "after"}));
}

TEST(CompileCancellation, AbandonQueuedAnswersShuttingDown) {
  auto env = std::make_unique<ServiceEnv>();
  auto running = env->service.compile(env->job("running", 1)).eagerlyEvaluate(nullptr);
  env->io.waitScope.poll();
  ASSERT_TRUE(env->backend.waitEntered(1));
  auto queued = env->service.compile(env->job("queued", 2));
  env->io.waitScope.poll();
  EXPECT_EQ(env->service.abandonQueued(), 1u);
  ServeResult answer = queued.wait(env->io.waitScope);
  ASSERT_NE(failureOf(answer), nullptr);
  EXPECT_EQ(failureOf(answer)->kind, ErrorKind::ShuttingDown);
  env->backend.release();
  running.wait(env->io.waitScope);
  EXPECT_EQ(env->backend.seen(), (std::vector<std::string>{"running"}));
}

TEST(CompileCancellation, AFullQueueAnswersOverloaded) {
  auto env = std::make_unique<ServiceEnv>();
  std::vector<kj::Promise<ServeResult>> waiting;
  for (int i = 0; i < 5; ++i)  // one runs, four (--max-queued) wait
    waiting.push_back(
        env->service.compile(env->job("m" + std::to_string(i), 1)).eagerlyEvaluate(nullptr));
  env->io.waitScope.poll();
  ServeResult over = env->service.compile(env->job("over", 1)).wait(env->io.waitScope);
  ASSERT_NE(failureOf(over), nullptr);
  EXPECT_EQ(failureOf(over)->kind, ErrorKind::Overloaded);
  EXPECT_GT(failureOf(over)->retryAfterMillis, 0u);
  env->backend.release();
  for (auto& w : waiting)
    w.wait(env->io.waitScope);
}

TEST(HeldBytes, ChargesWhatFitsAndCopiesShareOneCharge) {
  std::vector<int64_t> deltas;
  HeldBytes budget(100, [&deltas](int64_t delta) { deltas.push_back(delta); });
  auto a = budget.charge(60);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(budget.charge(41), nullptr);  // 101 > 100: refused, nothing charged
  auto b = budget.charge(40);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(budget.held(), 100u);
  auto copy = a;  // a copied CompileJob: the same module charge
  a = nullptr;
  EXPECT_EQ(budget.held(), 100u);
  copy = nullptr;
  EXPECT_EQ(budget.held(), 40u);
  b = nullptr;
  EXPECT_EQ(budget.held(), 0u);
  EXPECT_EQ(deltas, (std::vector<int64_t>{60, 40, -60, -40}));
}

TEST(HeldBytes, AModuleLargerThanTheBudgetPassesOnlyWhenNothingElseIsHeld) {
  HeldBytes budget(100);
  auto big = budget.charge(500);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(budget.charge(1), nullptr);
  big = nullptr;
  auto small = budget.charge(1);
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(budget.charge(500), nullptr);
}

TEST(HeldBytes, AChargeOutlivesItsBudgetAndIsReturnedOnAnotherThread) {
  HeldBytes::Charge charge;
  int64_t total = 0;
  {
    HeldBytes budget(100, [&total](int64_t delta) { total += delta; });
    charge = budget.charge(10);
    ASSERT_NE(charge, nullptr);
  }
  // As a worker thread's job does when it lets go of the last owner of a module.
  std::thread([charge = std::move(charge)]() mutable { charge = nullptr; }).join();
  EXPECT_EQ(total, 0);
}

/// Occupies a pool's thread until opened (at the latest when destroyed), so that work the
/// service sends there stays queued behind it.
class PoolBlocker final {
public:
  explicit PoolBlocker(WorkerPool& pool)
      : done(pool.run<int>([released = go.get_future().share()]() {
          released.wait_for(SAFETY_BOUND);
          return 0;
        })) {}
  ~PoolBlocker() { open(); }
  void open() {
    if (!opened)
      go.set_value();
    opened = true;
  }

private:
  std::promise<void> go;
  bool opened = false;
  kj::Promise<int> done;
};

ServiceConfig hashEverything(uint32_t maxQueued) {
  ServiceConfig c = ServiceEnv::serviceConfig();
  c.hashOffloadBytes = 1;  // every module goes through the hash queue
  c.maxQueued = maxQueued;
  return c;
}

TEST(HashAdmission, ACancelledRequestLeavesTheHashQueueAndFreesItsModule) {
  auto env = std::make_unique<ServiceEnv>(hashEverything(4));
  PoolBlocker blocker(env->hashPool);
  std::string kept(1000, 'a'), dropped(2000, 'b');
  // `kept` takes the one hash slot (its hash waits in the pool behind the blocker), `dropped`
  // waits for the slot in the hash queue.
  auto first = kj::heap(env->service.compile(env->job(kept, 1)).eagerlyEvaluate(nullptr));
  auto second = kj::heap(env->service.compile(env->job(dropped, 2)).eagerlyEvaluate(nullptr));
  env->io.waitScope.poll();
  EXPECT_EQ(env->service.hashQueued(), 1u);
  EXPECT_EQ(env->service.heldRequestBytes(), 3000u);
  second = nullptr;  // its caller went away: it leaves the queue and its module is freed
  EXPECT_EQ(env->service.hashQueued(), 0u);
  EXPECT_EQ(env->service.heldRequestBytes(), 1000u);
  std::string text = env->metrics.exposition();
  EXPECT_NE(text.find("rjitd_cancelled_total{kind=\"hash\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("rjitd_request_bytes_held 1000"), std::string::npos) << text;
  blocker.open();
  env->backend.release();
  auto result = first->wait(env->io.waitScope);  // the held backend fails every compile
  EXPECT_EQ(env->backend.seen(), std::vector<std::string>{kept});
  // The worker let go of the module before the answer reached the loop.
  EXPECT_EQ(env->service.heldRequestBytes(), 0u);
  EXPECT_NE(env->metrics.exposition().find("rjitd_request_bytes_held 0"), std::string::npos);
}

TEST(HashAdmission, TheHashQueueIsBoundedAndFairAcrossClients) {
  auto env = std::make_unique<ServiceEnv>(hashEverything(2));
  env->backend.release();  // compiles end at once; the hash queue is what is held
  PoolBlocker blocker(env->hashPool);
  auto running = env->service.compile(env->job("a0", 1)).eagerlyEvaluate(nullptr);
  auto a1 = env->service.compile(env->job("a1", 1)).eagerlyEvaluate(nullptr);
  auto a2 = env->service.compile(env->job("a2", 1)).eagerlyEvaluate(nullptr);
  env->io.waitScope.poll();
  EXPECT_EQ(env->service.hashQueued(), 2u);
  // Full: the greedy client's next request is refused at once, with a hint.
  auto refused = env->service.compile(env->job("a3", 1)).wait(env->io.waitScope);
  ASSERT_NE(failureOf(refused), nullptr);
  EXPECT_EQ(failureOf(refused)->kind, ErrorKind::Overloaded);
  EXPECT_GT(failureOf(refused)->retryAfterMillis, 0u);
  // Another client's single request gets in: the greedy client's newest waiter gives way.
  auto other = env->service.compile(env->job("b", 2)).eagerlyEvaluate(nullptr);
  auto pushedOut = a2.wait(env->io.waitScope);
  ASSERT_NE(failureOf(pushedOut), nullptr);
  EXPECT_EQ(failureOf(pushedOut)->kind, ErrorKind::Overloaded);
  EXPECT_EQ(env->service.hashQueued(), 2u);
  blocker.open();
  running.wait(env->io.waitScope);
  a1.wait(env->io.waitScope);
  other.wait(env->io.waitScope);
  EXPECT_EQ(env->backend.seen(), (std::vector<std::string>{"a0", "a1", "b"}));
  EXPECT_EQ(env->service.heldRequestBytes(), 0u);
}

TEST(HeldRequestBytes, AModuleThatDoesNotFitIsOverloadedAndServedOnceOthersEnd) {
  ServiceConfig c = ServiceEnv::serviceConfig();
  c.maxHeldRequestBytes = 2500;
  auto env = std::make_unique<ServiceEnv>(c);
  std::string x(1000, 'x'), y(1000, 'y'), z(1000, 'z');
  auto running = env->service.compile(env->job(x, 1)).eagerlyEvaluate(nullptr);
  env->io.waitScope.poll();
  ASSERT_TRUE(env->backend.waitEntered(1));
  auto queued = env->service.compile(env->job(y, 2)).eagerlyEvaluate(nullptr);
  env->io.waitScope.poll();
  EXPECT_EQ(env->service.heldRequestBytes(), 2000u);
  auto refused = env->service.compile(env->job(z, 3)).wait(env->io.waitScope);
  ASSERT_NE(failureOf(refused), nullptr);
  EXPECT_EQ(failureOf(refused)->kind, ErrorKind::Overloaded);
  EXPECT_GE(failureOf(refused)->retryAfterMillis, Admission::MIN_RETRY_MILLIS);
  // A request that joins a compile in flight keeps no module of its own: not refused.
  auto joined = env->service.compile(env->job(x, 4)).eagerlyEvaluate(nullptr);
  env->io.waitScope.poll();
  EXPECT_EQ(env->service.inFlightCount(), 2u);
  EXPECT_EQ(env->service.heldRequestBytes(), 2000u);
  env->backend.release();
  running.wait(env->io.waitScope);
  queued.wait(env->io.waitScope);
  joined.wait(env->io.waitScope);
  EXPECT_EQ(env->service.heldRequestBytes(), 0u);
  auto later = env->service.compile(env->job(z, 3)).wait(env->io.waitScope);
  ASSERT_NE(failureOf(later), nullptr);  // the held backend fails every compile ...
  EXPECT_EQ(failureOf(later)->kind, ErrorKind::Internal);  // ... but it ran
  EXPECT_EQ(env->backend.seen(), (std::vector<std::string>{x, y, z}));
}

}  // namespace
}  // namespace rjitd::service
