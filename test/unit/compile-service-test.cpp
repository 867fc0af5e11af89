// SPDX-License-Identifier: MIT
// CompileService with its real collaborators: the LLVM compiler, the object cache and worker
// threads, driven by a real kj event loop.
#include "cache-key.h"
#include "compile-service.h"
#include "metrics.h"
#include "object-cache.h"
#include "worker-pool.h"

#include <cstdlib>
#include <gtest/gtest.h>
#include <kj/async-io.h>

namespace rjitd::service {
namespace {

constexpr const char* kAdd = R"(
define i32 @add(i32 %a, i32 %b) {
  %s = add i32 %a, %b
  ret i32 %s
}
)";

class CompileServiceTest : public ::testing::Test {
protected:
  explicit CompileServiceTest(ServiceConfig config = {}) : config(withIdentity(config)) {}

  static ServiceConfig withIdentity(ServiceConfig c) {
    c.compilerIdentity = "rjitd/test llvm/test";
    return c;
  }

  CompileJob job(std::string module, unsigned opt = 2, std::string target = "") {
    CompileJob j;
    j.module = std::move(module);
    j.moduleName = "test.ll";
    j.optLevel = opt;
    j.target = std::move(target);
    return j;
  }

  ServeResult run(CompileJob j) {
    return env->service.compile(std::move(j)).wait(env->io.waitScope);
  }

  static const Served& served(const ServeResult& r) {
    if (auto* f = std::get_if<Failure>(&r))
      ADD_FAILURE() << "unexpected failure: " << f->message;
    return std::get<Served>(r);
  }
  static Failure failed(const ServeResult& r) {  // by value: callers pass temporaries
    EXPECT_TRUE(std::holds_alternative<Failure>(r)) << "expected a failure";
    return std::get<Failure>(r);
  }

  // Held through a pointer: kj types have noexcept(false) destructors, which a gtest fixture
  // (noexcept destructor) cannot have as direct members.
  struct Env {
    explicit Env(const ServiceConfig& config)
        : service(config, objects, backend, compilePool, hashPool, metrics) {}
    kj::AsyncIoContext io = kj::setupAsyncIo();
    cache::ObjectCache objects{64 << 20};
    metrics::Metrics metrics{{"test", "test", {"x86_64", "aarch64"}}, objects};
    InProcessBackend backend;
    WorkerPool compilePool{"test-compile", 2};
    WorkerPool hashPool{"test-hash", 1};
    CompileService service;
  };
  ServiceConfig config;
  std::unique_ptr<Env> env = std::make_unique<Env>(config);
  CompileService& service = env->service;
  kj::AsyncIoContext& io = env->io;

  /// What the service recorded (it keeps no counters of its own).
  metrics::Totals counters() const { return env->metrics.totals(); }
};

TEST_F(CompileServiceTest, SecondRequestIsACacheHit) {
  auto first = run(job(kAdd));
  ASSERT_FALSE(served(first).fromCache);
  EXPECT_FALSE(served(first).object->object.empty());
  auto second = run(job(kAdd));
  EXPECT_TRUE(served(second).fromCache);
  EXPECT_EQ(served(first).key, served(second).key);
  EXPECT_EQ(counters().compiles, 1u);
  EXPECT_EQ(service.cacheStats().hits, 1u);
}

TEST_F(CompileServiceTest, KeyIsTheSharedKeyOverCanonicalParameters) {
  // Clients compute this same key for hash-first lookups (src/cache/cache-key.h).
  auto r = run(job(kAdd, 2, "x86_64"));
  cache::Key expected = cache::computeKey(
      {kAdd, "x86_64-unknown-linux-gnu", "x86-64", "", 2, config.compilerIdentity});
  EXPECT_EQ(served(r).key, expected);
  // Another spelling of the same target is the same request.
  auto alias = run(job(kAdd, 2, "x86_64-pc-linux-gnu"));
  EXPECT_TRUE(served(alias).fromCache);
  auto other = run(job(kAdd, 1, "x86_64"));
  EXPECT_FALSE(served(other).fromCache);
  EXPECT_EQ(counters().compiles, 2u);
}

TEST_F(CompileServiceTest, IdenticalConcurrentRequestsCompileOnce) {
  std::vector<kj::Promise<ServeResult>> pending;
  for (int i = 0; i < 8; ++i)
    pending.push_back(service.compile(job(kAdd, 3)));
  int compiledHere = 0;
  const CompiledObject* object = nullptr;
  for (auto& p : pending) {
    auto r = p.wait(io.waitScope);
    const Served& s = served(r);
    compiledHere += s.fromCache ? 0 : 1;
    if (object == nullptr)
      object = s.object.get();
    EXPECT_EQ(object, s.object.get());  // every waiter gets the one result
  }
  EXPECT_EQ(compiledHere, 1);
  EXPECT_EQ(counters().compiles, 1u);
  EXPECT_EQ(counters().compilesInFlight, 0u);
}

TEST_F(CompileServiceTest, InvalidRequestsAreFailuresNotExceptions) {
  EXPECT_EQ(failed(run(job(kAdd, 4))).kind, ErrorKind::InvalidRequest);
  EXPECT_EQ(failed(run(job(""))).kind, ErrorKind::InvalidRequest);
  Failure unknown = failed(run(job(kAdd, 2, "sparc")));
  EXPECT_EQ(unknown.kind, ErrorKind::UnknownTarget);
  EXPECT_NE(unknown.message.find("x86_64"), std::string::npos) << unknown.message;
  EXPECT_EQ(counters().compiles, 0u);
}

TEST_F(CompileServiceTest, MalformedModuleFailsAndIsNotCached) {
  const std::string bad = "define i32 @f( {\n";
  auto r1 = run(job(bad));
  EXPECT_EQ(failed(r1).kind, ErrorKind::InvalidModule);
  auto r2 = run(job(bad));
  EXPECT_EQ(failed(r2).kind, ErrorKind::InvalidModule);
  EXPECT_EQ(counters().compiles, 2u);
  EXPECT_EQ(counters().compileFailures, 2u);
  EXPECT_EQ(service.cacheStats().entries, 0u);
  // The service keeps serving good requests.
  EXPECT_FALSE(served(run(job(kAdd))).fromCache);
}

TEST_F(CompileServiceTest, CompilesAreTimedByTargetAndLevel) {
  EXPECT_FALSE(served(run(job(kAdd, 1, "x86_64"))).fromCache);
  EXPECT_TRUE(served(run(job(kAdd, 1, "x86_64"))).fromCache);  // a hit runs no compile
  EXPECT_EQ(failed(run(job("define i32 @f( {\n", 0, "aarch64"))).kind, ErrorKind::InvalidModule);
  std::string text = env->metrics.exposition();
  EXPECT_NE(text.find(R"(rjitd_compile_duration_seconds_count{opt_level="1",target="x86_64"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(rjitd_compiles_total{result="invalid-module",target="aarch64"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(rjitd_cache_lookups_total{result="hit",target="x86_64",tier="memory"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find(R"(rjitd_cache_lookups_total{result="miss",target="aarch64",tier="memory"} 1)"),
      std::string::npos)
      << text;
  EXPECT_EQ(counters().compiles, 2u);
  EXPECT_EQ(counters().compileFailures, 1u);
  EXPECT_EQ(counters().compilesInFlight, 0u);
}

TEST_F(CompileServiceTest, LookupFindsOnlyWhatWasCompiled) {
  auto r = run(job(kAdd));
  auto lookup = [&](const cache::Key& key, std::string_view target = metrics::NO_TARGET) {
    return service.lookup(key, target).wait(env->io.waitScope);
  };
  auto hit = lookup(served(r).key);
  EXPECT_TRUE(served(hit).fromCache);
  EXPECT_EQ(served(hit).object, served(r).object);
  cache::Key other{};
  EXPECT_EQ(failed(lookup(other)).kind, ErrorKind::NotFound);
  EXPECT_EQ(failed(lookup(other, "aarch64")).kind, ErrorKind::NotFound);
  EXPECT_EQ(counters().lookups, 3u);
  EXPECT_EQ(counters().lookupHits, 1u);
  // A hit is counted under the found object's target; a miss under the one the request named.
  std::string text = env->metrics.exposition();
  for (const char* series :
       {R"(rjitd_hash_first_lookups_total{result="hit",target="x86_64"} 1)",
        R"(rjitd_hash_first_lookups_total{result="miss",target="none"} 1)",
        R"(rjitd_hash_first_lookups_total{result="miss",target="aarch64"} 1)",
        R"(rjitd_cache_lookups_total{result="miss",target="none",tier="memory"} 1)"})
    EXPECT_NE(text.find(series), std::string::npos) << series << "\n" << text;
}

class SmallLimitsTest : public CompileServiceTest {
protected:
  SmallLimitsTest() : CompileServiceTest(ServiceConfig{64, 0, ""}) {}
};

TEST_F(SmallLimitsTest, OversizedModuleIsRefused) {
  std::string big(kAdd);
  big += std::string(100, ';');
  Failure f = failed(run(job(big)));
  EXPECT_EQ(f.kind, ErrorKind::TooLarge);
  EXPECT_NE(f.message.find("--max-module-bytes"), std::string::npos) << f.message;
}

class OffloadedHashTest : public CompileServiceTest {
protected:
  OffloadedHashTest() : CompileServiceTest(ServiceConfig{1 << 20, 0, ""}) {}
};

TEST_F(OffloadedHashTest, HashOnWorkerGivesTheSameKey) {
  auto r = run(job(kAdd, 0));
  cache::Key expected = cache::computeKey(
      {kAdd, "x86_64-unknown-linux-gnu", "x86-64", "", 0, config.compilerIdentity});
  EXPECT_EQ(served(r).key, expected);
}

// The daemon's real backend: compiles in `rjitd --compile-worker` processes, so that an
// input LLVM cannot survive ends a worker, not the daemon.
class ProcessBackendTest : public ::testing::Test {
protected:
  cache::ObjectCache objects{1 << 20};
  metrics::Metrics metrics{{"test", "test", {"aarch64"}}, objects};

  static std::string rjitd() {
    const char* bin = std::getenv("RJITD_BIN");
    return bin != nullptr ? bin : "";
  }
  compiler::CompileOptions options(std::string features = "") {
    compiler::CompileOptions o;
    o.triple = "aarch64-unknown-linux-gnu";
    o.cpu = "generic";
    o.features = std::move(features);
    o.moduleName = "crc.ll";
    return o;
  }
};

// An AArch64 intrinsic whose feature the request does not enable: LLVM's instruction
// selector ends the process with a fatal error ("Cannot select").
constexpr const char* kCrc = R"(declare i32 @llvm.aarch64.crc32b(i32, i32)
define i32 @f(i32 %a, i32 %b) {
  %c = call i32 @llvm.aarch64.crc32b(i32 %a, i32 %b)
  ret i32 %c
}
)";

TEST_F(ProcessBackendTest, CompilesInAWorkerAndReusesIt) {
  ASSERT_FALSE(rjitd().empty()) << "RJITD_BIN is not set";
  ProcessBackend backend(rjitd(), std::chrono::seconds(60), metrics);
  for (int i = 0; i < 3; ++i) {
    auto result = backend.compile(kAdd, options());
    ASSERT_TRUE(std::holds_alternative<CompiledObject>(result))
        << std::get<Failure>(result).message;
    EXPECT_FALSE(std::get<CompiledObject>(result).object.empty());
  }
  EXPECT_EQ(backend.spawned(), 1u);
  EXPECT_EQ(metrics.totals().compileWorkerRestarts, 0u);
}

TEST_F(ProcessBackendTest, LlvmFatalErrorFailsOnlyThatRequest) {
  ASSERT_FALSE(rjitd().empty()) << "RJITD_BIN is not set";
  ProcessBackend backend(rjitd(), std::chrono::seconds(60), metrics);
  auto bad = backend.compile(kCrc, options());
  ASSERT_TRUE(std::holds_alternative<Failure>(bad));
  EXPECT_EQ(std::get<Failure>(bad).kind, ErrorKind::InvalidModule);
  EXPECT_NE(std::get<Failure>(bad).message.find("crc.ll"), std::string::npos)
      << std::get<Failure>(bad).message;
  // The next request gets a fresh worker and succeeds.
  auto good = backend.compile(kCrc, options("+crc"));
  ASSERT_TRUE(std::holds_alternative<CompiledObject>(good)) << std::get<Failure>(good).message;
  EXPECT_EQ(backend.spawned(), 2u);
  EXPECT_EQ(metrics.totals().compileWorkerRestarts, 1u);
}

}  // namespace
}  // namespace rjitd::service
