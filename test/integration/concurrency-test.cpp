// SPDX-License-Identifier: MIT
// Single flight through a real rjitd: many clients asking for the same new module at the same
// moment cause one compile, and every client gets the same object.
#include <elf.h>

#include <latch>
#include <thread>

#include "fixture.h"

namespace rjit::test {
namespace {

class ConcurrencyTest : public DaemonTest {};

constexpr unsigned CLIENTS = 16;

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

TEST_P(ConcurrencyTest, IdenticalConcurrentRequestsCompileOnce) {
  CompileRequest request;
  request.module = generatedModule(60);  // new to the daemon, and slow enough to overlap
  request.moduleName = "generated.ll";
  request.optLevel = 2;

  Client observer(clientOptions());
  auto before = observer.stats();
  auto outcomes = compileTogether(clientOptions(), request);
  auto after = observer.stats();

  const CompiledObject* reference = nullptr;
  for (unsigned i = 0; i < CLIENTS; ++i) {
    SCOPED_TRACE("client " + std::to_string(i));
    ASSERT_TRUE(outcomes[i].object.has_value()) << outcomes[i].error;
    if (reference == nullptr)
      reference = &*outcomes[i].object;
    EXPECT_EQ(elfMachine(outcomes[i].object->object), EM_X86_64);
    EXPECT_EQ(outcomes[i].object->key, reference->key);
    EXPECT_TRUE(outcomes[i].object->object == reference->object) << "objects differ";
  }
  EXPECT_EQ(after.compiles, before.compiles + 1);
  EXPECT_EQ(after.compileFailures, before.compileFailures);
  EXPECT_EQ(after.cacheEntries, before.cacheEntries + 1);
}

TEST_P(ConcurrencyTest, IdenticalConcurrentRequestsCompileOnceHashFirst) {
  CompileRequest request;
  request.module = generatedModule(60);
  request.moduleName = "generated.ll";
  request.optLevel = 1;
  auto options = clientOptions();
  options.hashFirstBytes = 0;  // all 16 look up first, miss, then send the module

  Client observer(clientOptions());
  auto before = observer.stats();
  auto outcomes = compileTogether(options, request);
  auto after = observer.stats();

  for (unsigned i = 0; i < CLIENTS; ++i) {
    SCOPED_TRACE("client " + std::to_string(i));
    ASSERT_TRUE(outcomes[i].object.has_value()) << outcomes[i].error;
    EXPECT_TRUE(outcomes[i].object->object == outcomes[0].object->object) << "objects differ";
  }
  EXPECT_EQ(after.compiles, before.compiles + 1);
}

RJIT_INSTANTIATE_DAEMON_MODES(ConcurrencyTest);

}  // namespace
}  // namespace rjit::test
