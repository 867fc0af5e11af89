// SPDX-License-Identifier: MIT
// Single flight through a real rjitd: many clients asking for the same new module at the same
// moment cause one compile, and every client gets the same object. rjitd's test-only compile
// gate holds that compile until every request has reached rjitd, so the requests are certainly
// in flight together: none can be answered from the cache by a compile that already ended.
#include <elf.h>

#include <latch>
#include <thread>

#include "compile-gate.h"
#include "fixture.h"

namespace rjit::test {
namespace {

constexpr unsigned CLIENTS = 16;

class ConcurrencyTest : public DaemonTest {
protected:
  DaemonOptions daemonOptions() const override {
    DaemonOptions options = DaemonTest::daemonOptions();
    options.extraArgs = {"--test-compile-gate", gatePath()};
    return options;
  }

  std::string gatePath() const { return work.file("compile-gate.sock"); }
};

/// Waits until rjitd has counted `misses` more cache misses than `before` shows. A request
/// that misses the cache starts the compile or joins the one in flight in the same turn of
/// rjitd's event loop, and rjitd has no event for "a request joined"; so this polls the exact
/// figure, each check a round trip through that same loop (which paces it), bounded by the
/// safety bound. False, with a recorded failure, when the bound passes first.
bool waitMisses(Client& observer, const ServerStats& before, uint64_t misses) {
  uint64_t seen = 0;
  for (auto deadline = std::chrono::steady_clock::now() + SAFETY_BOUND;
       std::chrono::steady_clock::now() < deadline;) {
    seen = observer.stats().cacheMisses - before.cacheMisses;
    if (seen >= misses)
      return true;
  }
  ADD_FAILURE() << "rjitd counted " << seen << " cache misses, not " << misses;
  return false;
}

struct Outcome {
  std::optional<CompiledObject> object;
  std::string error;
};

/// Each of CLIENTS threads connects its own client, then all send `request` together.
std::vector<Outcome> compileTogether(const ClientOptions& options, const CompileRequest& request) {
  std::vector<Outcome> outcomes(CLIENTS);
  std::latch connected(CLIENTS);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < CLIENTS; ++i)
    threads.emplace_back([&options, &request, &connected, &outcome = outcomes[i]] {
      bool arrived = false;
      try {
        Client client(options);
        client.serverInfo();  // connect and hand-shake first, so the compiles start together
        arrived = true;
        connected.arrive_and_wait();
        outcome.object = client.compile(request);
      } catch (const Error& e) {
        outcome.error = std::string(errorKindName(e.kind())) + ": " + e.what();
        if (!arrived)
          connected.count_down();  // the others must not wait for this thread forever
      }
    });
  for (auto& thread : threads)
    thread.join();
  return outcomes;
}

/// Runs compileTogether() on a thread of its own while the test holds the compile at `gate`:
/// waits for the one compile to arrive, then for rjitd to count `misses` cache misses (every
/// request reached it and joined), then lets the compile go. Checks that no second compile
/// knocked at the gate meanwhile.
std::vector<Outcome> compileTogetherHeld(const ClientOptions& options,
                                         const CompileRequest& request, CompileGate& gate,
                                         Client& observer, const ServerStats& before,
                                         uint64_t misses) {
  std::vector<Outcome> outcomes;
  {
    std::jthread clients([&] { outcomes = compileTogether(options, request); });
    auto arrived = gate.waitArrival();
    EXPECT_EQ(arrived, request.moduleName);
    if (arrived) {
      EXPECT_TRUE(waitMisses(observer, before, misses));
      EXPECT_FALSE(gate.arrivalPending()) << "a second compile of the same module started";
    }
    gate.open();  // lets the compile go, and any (wrong) second one, so that the clients end
  }
  return outcomes;
}

TEST_P(ConcurrencyTest, IdenticalConcurrentRequestsCompileOnce) {
  auto gate = CompileGate::create(gatePath());
  ASSERT_NE(gate, nullptr);
  CompileRequest request;
  request.module = generatedModule(8);  // new to the daemon; its size does not matter
  request.moduleName = "generated.ll";
  request.optLevel = 2;
  auto options = clientOptions();
  options.hashFirstBytes = UINT64_MAX;  // every request carries the module

  Client observer(clientOptions());
  auto before = observer.stats();
  // One miss per request: the first starts the compile, the others join it.
  auto outcomes = compileTogetherHeld(options, request, *gate, observer, before, CLIENTS);
  auto after = observer.stats();

  const CompiledObject* reference = nullptr;
  unsigned compiledFor = 0;
  for (unsigned i = 0; i < CLIENTS; ++i) {
    SCOPED_TRACE("client " + std::to_string(i));
    ASSERT_TRUE(outcomes[i].object.has_value()) << outcomes[i].error;
    if (reference == nullptr)
      reference = &*outcomes[i].object;
    EXPECT_EQ(elfMachine(outcomes[i].object->object), EM_X86_64);
    EXPECT_EQ(outcomes[i].object->key, reference->key);
    EXPECT_TRUE(outcomes[i].object->object == reference->object) << "objects differ";
    compiledFor += outcomes[i].object->fromCache ? 0 : 1;
  }
  // One request ran the compile; the other 15 joined it (fromCache: no compile ran for them)
  // and none was a cache hit: all 16 were in flight together.
  EXPECT_EQ(compiledFor, 1u);
  EXPECT_EQ(after.compiles, before.compiles + 1);
  EXPECT_EQ(after.compileFailures, before.compileFailures);
  EXPECT_EQ(after.cacheMisses, before.cacheMisses + CLIENTS);
  EXPECT_EQ(after.cacheHits, before.cacheHits);
  EXPECT_EQ(after.cacheEntries, before.cacheEntries + 1);
}

TEST_P(ConcurrencyTest, IdenticalConcurrentRequestsCompileOnceHashFirst) {
  auto gate = CompileGate::create(gatePath());
  ASSERT_NE(gate, nullptr);
  CompileRequest request;
  request.module = generatedModule(8);
  request.moduleName = "generated.ll";
  request.optLevel = 1;
  auto options = clientOptions();
  options.hashFirstBytes = 0;  // all 16 look up first, miss, then send the module

  Client observer(clientOptions());
  auto before = observer.stats();
  // Two misses per request: its lookup, then its compile request (which joins).
  auto outcomes = compileTogetherHeld(options, request, *gate, observer, before, 2 * CLIENTS);
  auto after = observer.stats();

  unsigned compiledFor = 0;
  for (unsigned i = 0; i < CLIENTS; ++i) {
    SCOPED_TRACE("client " + std::to_string(i));
    ASSERT_TRUE(outcomes[i].object.has_value()) << outcomes[i].error;
    EXPECT_TRUE(outcomes[i].object->bodySent);
    EXPECT_TRUE(outcomes[i].object->object == outcomes[0].object->object) << "objects differ";
    compiledFor += outcomes[i].object->fromCache ? 0 : 1;
  }
  EXPECT_EQ(compiledFor, 1u);
  EXPECT_EQ(after.compiles, before.compiles + 1);
  EXPECT_EQ(after.lookups, before.lookups + CLIENTS);
  EXPECT_EQ(after.lookupHits, before.lookupHits);
  EXPECT_EQ(after.cacheMisses, before.cacheMisses + 2 * CLIENTS);
  EXPECT_EQ(after.cacheHits, before.cacheHits);
}

RJIT_INSTANTIATE_DAEMON_MODES(ConcurrencyTest);

}  // namespace
}  // namespace rjit::test
