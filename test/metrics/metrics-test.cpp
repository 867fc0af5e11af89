// SPDX-License-Identifier: MIT
// The metrics library with its real collaborators: the object cache it reads at scrape time,
// and the HTTP endpoint on a real loopback socket.
#include "exposer.h"
#include "http-get.h"
#include "metrics.h"
#include "object-cache.h"

#include <algorithm>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <kj/exception.h>
#include <memory>
#include <sstream>
#include <string>

namespace rjitd::metrics {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

std::shared_ptr<const CompiledObject> object(size_t bytes) {
  auto o = std::make_shared<CompiledObject>();
  o->triple = "x86_64-unknown-linux-gnu";
  o->object.assign(bytes, 'x');
  return o;
}

cache::Key key(uint8_t n) {
  cache::Key k{};
  k[0] = n;
  return k;
}

/// The sample line for `series` ("name{labels}"), or "" when the exposition has none.
std::string sample(const std::string& exposition, const std::string& series) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(series + " "))
      return line;
  }
  return "";
}

class MetricsTest : public ::testing::Test {
protected:
  cache::ObjectCache objects{1 << 20};
  Metrics metrics{{"1.2.3", "19.1.7", {"x86_64", "aarch64"}}, objects};
};

TEST_F(MetricsTest, BuildInfoNamesTheVersions) {
  EXPECT_EQ(
      sample(metrics.exposition(), R"(rjitd_build_info{llvm_version="19.1.7",version="1.2.3"})"),
      R"(rjitd_build_info{llvm_version="19.1.7",version="1.2.3"} 1)");
}

TEST_F(MetricsTest, ServedTargetsStartAtZero) {
  std::string text = metrics.exposition();
  for (const char* series :
       {R"(rjitd_requests_total{method="compile",result="ok",target="aarch64"})",
        R"(rjitd_requests_total{method="load",result="ok",target="aarch64"})",
        R"(rjitd_requests_total{method="load",result="ok",target="x86_64"})",
        R"(rjitd_requests_total{method="hello",result="ok",target="none"})",
        R"(rjitd_compiles_total{result="ok",target="aarch64"})",
        R"(rjitd_compile_duration_seconds_count{opt_level="3",target="x86_64"})",
        R"(rjitd_request_duration_seconds_count{method="compile",target="aarch64"})",
        R"(rjitd_links_total{result="ok",target="aarch64"})",
        R"(rjitd_link_duration_seconds_count{target="aarch64"})",
        R"(rjitd_executes_total{result="ok",target="aarch64"})",
        R"(rjitd_cache_lookups_total{result="hit",target="aarch64",tier="memory"})",
        R"(rjitd_cache_lookups_total{result="miss",target="x86_64",tier="memory"})",
        R"(rjitd_cache_lookups_total{result="miss",target="none",tier="memory"})",
        R"(rjitd_hash_first_lookups_total{result="hit",target="aarch64"})",
        R"(rjitd_hash_first_lookups_total{result="miss",target="none"})"})
    EXPECT_EQ(sample(text, series), std::string(series) + " 0") << text;
}

TEST_F(MetricsTest, ExecuteFiguresAreReadFromTheirFamilies) {
  std::string text = metrics.exposition();
  for (const char* series :
       {R"(rjitd_executes_total{result="ok",target="x86_64"})",
        R"(rjitd_execute_duration_seconds_count{target="x86_64"})", R"(rjitd_executors)"})
    EXPECT_EQ(sample(text, series), std::string(series) + " 0") << text;
  metrics.executorStarted();
  metrics.executorStarted();
  metrics.executorEnded();
  metrics.executeDone("x86_64", std::nullopt, milliseconds(1));
  metrics.executeDone("x86_64", ErrorKind::Crashed, milliseconds(1));
  metrics.executeDone("x86_64", ErrorKind::Crashed, milliseconds(1));
  metrics.executorRestarted(ErrorKind::Crashed);
  metrics.executorRestarted(ErrorKind::Timeout);
  Totals t = metrics.totals();
  EXPECT_EQ(t.executes, 3u);
  EXPECT_EQ(t.executeFailures, 2u);
  EXPECT_EQ(t.executors, 1u);
  EXPECT_EQ(t.executorRestarts, 2u);
  uint64_t crashed = 0;
  for (const auto& c : t.executeCounts)
    if (c.method == "x86_64" && c.result == "crashed")
      crashed = c.count;
  EXPECT_EQ(crashed, 2u);
  text = metrics.exposition();
  EXPECT_EQ(sample(text, R"(rjitd_executor_restarts_total{reason="timeout"})"),
            R"(rjitd_executor_restarts_total{reason="timeout"} 1)");
}

TEST_F(MetricsTest, TotalsAreReadFromTheFamilies) {
  metrics.requestDone(Method::Compile, "x86_64", std::nullopt, milliseconds(2));
  metrics.requestDone(Method::Compile, "x86_64", ErrorKind::InvalidModule, milliseconds(1));
  metrics.requestDone(Method::Compile, UNKNOWN_TARGET, ErrorKind::UnknownTarget, milliseconds(1));
  metrics.requestDone(Method::Lookup, NO_TARGET, ErrorKind::NotFound, milliseconds(1));
  metrics.requestDone(Method::Hello, NO_TARGET, std::nullopt, milliseconds(1));
  metrics.requestDone(Method::Stats, NO_TARGET, std::nullopt, milliseconds(1));
  metrics.moduleReceived(100);
  metrics.moduleReceived(23);
  metrics.compileStarted();
  metrics.compileStarted();
  EXPECT_EQ(metrics.totals().compilesInFlight, 2u);
  metrics.compileDone("x86_64", 2, std::nullopt, milliseconds(30));
  metrics.compileDone("aarch64", 0, ErrorKind::InvalidModule, milliseconds(3));
  metrics.hashFirstLookup("x86_64", true);
  metrics.hashFirstLookup("aarch64", false);
  metrics.hashFirstLookup(NO_TARGET, false);
  metrics.sessionOpened();
  metrics.sessionOpened();
  metrics.sessionClosed();
  metrics.connectionOpened();
  metrics.compileWorkerLost();

  Totals t = metrics.totals();
  EXPECT_EQ(t.requests, 4u);  // compile and lookup only
  EXPECT_EQ(t.compiles, 2u);
  EXPECT_EQ(t.compileFailures, 1u);
  EXPECT_EQ(t.compilesInFlight, 0u);
  EXPECT_EQ(t.moduleBytesReceived, 123u);
  EXPECT_EQ(t.lookups, 3u);
  EXPECT_EQ(t.lookupHits, 1u);
  EXPECT_EQ(t.sessions, 1u);
  EXPECT_EQ(t.connections, 1u);
  EXPECT_EQ(t.compileWorkerRestarts, 1u);

  std::string text = metrics.exposition();
  EXPECT_EQ(sample(text, R"(rjitd_errors_total{kind="invalid-module"})"),
            R"(rjitd_errors_total{kind="invalid-module"} 1)");
  EXPECT_EQ(sample(text, R"(rjitd_requests_total{method="compile",result="unknown-target",)"
                         R"(target="unknown"})"),
            R"(rjitd_requests_total{method="compile",result="unknown-target",target="unknown"} 1)");
  EXPECT_EQ(sample(text, R"(rjitd_hash_first_lookups_total{result="miss",target="aarch64"})"),
            R"(rjitd_hash_first_lookups_total{result="miss",target="aarch64"} 1)");
  EXPECT_EQ(sample(text, R"(rjitd_compile_duration_seconds_count{opt_level="0",target="aarch64"})"),
            R"(rjitd_compile_duration_seconds_count{opt_level="0",target="aarch64"} 1)");
}

TEST_F(MetricsTest, DaemonErrorsAreCountedByKind) {
  metrics.daemonError(DaemonError::Connection);
  metrics.daemonError(DaemonError::Connection);
  metrics.daemonError(DaemonError::Accept);
  std::string text = metrics.exposition();
  EXPECT_EQ(sample(text, R"(rjitd_errors_total{kind="connection"})"),
            R"(rjitd_errors_total{kind="connection"} 2)");
  EXPECT_EQ(sample(text, R"(rjitd_errors_total{kind="accept"})"),
            R"(rjitd_errors_total{kind="accept"} 1)");
  EXPECT_EQ(metrics.totals().requests, 0u);  // not requests
}

TEST_F(MetricsTest, DurationsUseBucketsFrom100MicrosecondsTo60Seconds) {
  metrics.requestDone(Method::Compile, "x86_64", std::nullopt, std::chrono::microseconds(50));
  metrics.requestDone(Method::Compile, "x86_64", std::nullopt, std::chrono::seconds(45));
  std::string text = metrics.exposition();
  const std::string prefix =
      R"(rjitd_request_duration_seconds_bucket{method="compile",target="x86_64",le=)";
  EXPECT_EQ(sample(text, prefix + R"("0.0001"})"), prefix + R"("0.0001"} 1)");
  EXPECT_EQ(sample(text, prefix + R"("30"})"), prefix + R"("30"} 1)");
  EXPECT_EQ(sample(text, prefix + R"("60"})"), prefix + R"("60"} 2)");
  EXPECT_EQ(sample(text, prefix + R"("+Inf"})"), prefix + R"("+Inf"} 2)");
  EXPECT_EQ(durationBuckets().front(), 0.0001);
  EXPECT_EQ(durationBuckets().back(), 60.0);
}

TEST_F(MetricsTest, CacheSizesAreReadWhenScraped) {
  ASSERT_TRUE(objects.put(key(1), object(1000)));
  cache::CacheStats s = objects.stats();
  std::string text = metrics.exposition();
  EXPECT_EQ(sample(text, R"(rjitd_cache_entries{tier="memory"})"),
            R"(rjitd_cache_entries{tier="memory"} 1)");
  EXPECT_EQ(sample(text, R"(rjitd_cache_bytes{tier="memory"})"),
            R"(rjitd_cache_bytes{tier="memory"} )" + std::to_string(s.bytes));
  EXPECT_EQ(sample(text, R"(rjitd_cache_budget_bytes{tier="memory"})"),
            R"(rjitd_cache_budget_bytes{tier="memory"} 1048576)");
  EXPECT_EQ(sample(text, R"(rjitd_cache_evictions_total{tier="memory"})"),
            R"(rjitd_cache_evictions_total{tier="memory"} 0)");
  EXPECT_THAT(text, HasSubstr("# TYPE rjitd_cache_entries gauge"));
}

TEST_F(MetricsTest, CacheLookupsAreCountedPerTierAndTarget) {
  metrics.cacheLookup(CacheTier::Memory, "x86_64", true);
  metrics.cacheLookup(CacheTier::Memory, "x86_64", false);
  metrics.cacheLookup(CacheTier::Memory, "aarch64", true);
  metrics.cacheLookup(CacheTier::Memory, NO_TARGET, false);
  std::string text = metrics.exposition();
  EXPECT_EQ(
      sample(text, R"(rjitd_cache_lookups_total{result="hit",target="x86_64",tier="memory"})"),
      R"(rjitd_cache_lookups_total{result="hit",target="x86_64",tier="memory"} 1)");
  EXPECT_EQ(sample(text, R"(rjitd_cache_lookups_total{result="miss",target="none",tier="memory"})"),
            R"(rjitd_cache_lookups_total{result="miss",target="none",tier="memory"} 1)");
  EXPECT_THAT(text, HasSubstr("# TYPE rjitd_cache_lookups_total counter"));
  Totals t = metrics.totals();
  EXPECT_EQ(t.cacheHits, 2u);
  EXPECT_EQ(t.cacheMisses, 2u);
}

TEST_F(MetricsTest, PerTargetTotalsListEveryServedTarget) {
  EXPECT_EQ(metrics.totals().targets.size(), 2u);  // zeros before any request
  metrics.cacheLookup(CacheTier::Memory, "aarch64", false);
  metrics.compileStarted();
  metrics.compileDone("aarch64", 2, std::nullopt, milliseconds(40));
  metrics.requestDone(Method::Compile, "aarch64", std::nullopt, milliseconds(41));
  metrics.cacheLookup(CacheTier::Memory, "x86_64", true);
  metrics.cacheLookup(CacheTier::Memory, "x86_64", false);
  metrics.linkDone("x86_64", std::nullopt, milliseconds(4));
  metrics.linkDone("x86_64", ErrorKind::LinkFailed, milliseconds(2));
  metrics.requestDone(Method::Load, "x86_64", std::nullopt, milliseconds(6));
  metrics.requestDone(Method::Load, "x86_64", ErrorKind::LinkFailed, milliseconds(4));
  metrics.executeDone("x86_64", ErrorKind::Crashed, milliseconds(8));
  metrics.requestDone(Method::Load, UNKNOWN_TARGET, ErrorKind::UnknownTarget, milliseconds(1));

  Totals t = metrics.totals();
  ASSERT_EQ(t.targets.size(), 2u);
  const Totals::TargetTotals& x86 = t.targets[0];
  const Totals::TargetTotals& arm = t.targets[1];
  EXPECT_EQ(x86.target, "x86_64");
  EXPECT_EQ(arm.target, "aarch64");
  EXPECT_EQ(arm.cacheLookups, 1u);
  EXPECT_EQ(arm.cacheHits, 0u);
  EXPECT_EQ(arm.compiles, 1u);
  EXPECT_EQ(arm.compileFailures, 0u);
  EXPECT_DOUBLE_EQ(arm.compileSeconds, 0.040);
  EXPECT_EQ(arm.loads, 0u);
  EXPECT_EQ(x86.cacheLookups, 2u);
  EXPECT_EQ(x86.cacheHits, 1u);
  EXPECT_EQ(x86.compiles, 0u);
  EXPECT_EQ(x86.loads, 2u);  // the unknown target's load is nobody's
  EXPECT_EQ(x86.loadFailures, 1u);
  EXPECT_DOUBLE_EQ(x86.loadSeconds, 0.010);
  EXPECT_EQ(x86.links, 2u);
  EXPECT_EQ(x86.linkFailures, 1u);
  EXPECT_DOUBLE_EQ(x86.linkSeconds, 0.006);
  EXPECT_EQ(x86.executes, 1u);
  EXPECT_EQ(x86.executeFailures, 1u);
  EXPECT_DOUBLE_EQ(x86.executeSeconds, 0.008);
  // The (method, result) counts are summed over targets.
  uint64_t loadsOk = 0;
  for (const auto& r : t.requestCounts)
    if (r.method == "load" && r.result == "ok")
      loadsOk += r.count;
  EXPECT_EQ(loadsOk, 1u);
}

TEST_F(MetricsTest, SeriesStayBoundedWhateverTheTargetsAsked) {
  // Call sites label with served targets, NO_TARGET or UNKNOWN_TARGET only; so the families'
  // series are fixed by the served targets: more requests add none.
  auto round = [this]() {
    metrics.requestDone(Method::Load, UNKNOWN_TARGET, ErrorKind::UnknownTarget, milliseconds(1));
    metrics.cacheLookup(CacheTier::Memory, "aarch64", true);
    metrics.cacheLookup(CacheTier::Memory, NO_TARGET, false);
    metrics.hashFirstLookup(NO_TARGET, false);
  };
  auto lines = [this]() {
    std::string text = metrics.exposition();
    return std::count(text.begin(), text.end(), '\n');
  };
  round();
  auto once = lines();
  for (int i = 0; i < 100; ++i)
    round();
  EXPECT_EQ(lines(), once);
}

HttpAddress parsed(std::string_view text) {
  auto result = parseHttpAddress(text);
  if (auto* error = std::get_if<std::string>(&result)) {
    ADD_FAILURE() << text << ": " << *error;
    return {};
  }
  return std::get<HttpAddress>(result);
}

TEST(HttpAddressTest, ParsesHostsAndPorts) {
  HttpAddress v4 = parsed("127.0.0.1:9464");
  EXPECT_EQ(v4.host, "127.0.0.1");
  EXPECT_EQ(v4.port, 9464);
  EXPECT_TRUE(v4.loopback());
  EXPECT_EQ(v4.text(), "127.0.0.1:9464");
  HttpAddress v6 = parsed("[::1]:0");
  EXPECT_TRUE(v6.ipv6);
  EXPECT_TRUE(v6.loopback());
  EXPECT_EQ(v6.text(), "[::1]:0");
  EXPECT_EQ(parsed("localhost:80").text(), "127.0.0.1:80");
  EXPECT_FALSE(parsed("0.0.0.0:9464").loopback());
  EXPECT_FALSE(parsed("192.168.1.2:9464").loopback());
  EXPECT_FALSE(parsed("[::]:9464").loopback());
}

TEST(HttpAddressTest, RefusesMalformedAddresses) {
  for (const char* bad : {"9464", ":9464", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:x",
                          "example.org:9464", "[::1:9464", "[zz]:1", "[]:1"}) {
    auto result = parseHttpAddress(bad);
    ASSERT_TRUE(std::holds_alternative<std::string>(result)) << "accepted " << bad;
    EXPECT_NE(std::get<std::string>(result).find(std::string("'") + bad + "'"), std::string::npos)
        << std::get<std::string>(result);
  }
}

TEST_F(MetricsTest, ExposerServesTheExpositionOverHttp) {
  auto exposer = Exposer::create(metrics, parsed("127.0.0.1:0"));
  ASSERT_NE(exposer->address().port, 0);
  metrics.requestDone(Method::Hello, NO_TARGET, std::nullopt, milliseconds(1));
  std::string error;
  auto response = rjit::test::httpGet(exposer->address().port, "/metrics", &error);
  ASSERT_TRUE(response) << error;
  EXPECT_EQ(response->status, 200);
  EXPECT_THAT(response->body,
              HasSubstr(R"(rjitd_requests_total{method="hello",result="ok",target="none"} 1)"));
  EXPECT_THAT(response->body, HasSubstr(R"(rjitd_cache_entries{tier="memory"} 0)"));
}

TEST_F(MetricsTest, ExposerRefusesAnAddressInUse) {
  auto first = Exposer::create(metrics, parsed("127.0.0.1:0"));
  std::string taken = "127.0.0.1:" + std::to_string(first->address().port);
  auto e = kj::runCatchingExceptions([&]() { Exposer::create(metrics, parsed(taken)); });
  KJ_IF_MAYBE (exception, e) {
    EXPECT_EQ(exception->getType(), kj::Exception::Type::FAILED);
    EXPECT_THAT(std::string(exception->getDescription().cStr()), HasSubstr(taken));
  } else {
    ADD_FAILURE() << "a second exposer bound " << taken;
  }
}

}  // namespace
}  // namespace rjitd::metrics
