// SPDX-License-Identifier: MIT
// End to end: the real rjitd with --metrics, driven through the client library, scraped by a
// real Prometheus server (Debian's `prometheus`) on loopback; the figures are read back through
// Prometheus's HTTP API and compared with what the test sent and with `rjit info --json`. Every
// query of the Grafana dashboard is evaluated by that Prometheus too.
#include "daemon-process.h"
#include "http-get.h"
#include "rjitd-config.h"
#include "temp-dir.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <gtest/gtest.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <remotejit/client.h>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace rjit::test {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* ADD = "define i32 @add(i32 %a, i32 %b) {\n"
                            "  %s = add i32 %a, %b\n"
                            "  ret i32 %s\n"
                            "}\n";
constexpr const char* MUL = "define i32 @mul(i32 %a, i32 %b) {\n"
                            "  %s = mul i32 %a, %b\n"
                            "  ret i32 %s\n"
                            "}\n";
constexpr const char* MALFORMED = "define i32 @f( {\n";
// An AArch64 intrinsic whose feature the request does not enable: LLVM ends the compile
// worker with a fatal error ("Cannot select"), so rjitd replaces the worker.
constexpr const char* CRC = "declare i32 @llvm.aarch64.crc32b(i32, i32)\n"
                            "define i32 @f(i32 %a, i32 %b) {\n"
                            "  %c = call i32 @llvm.aarch64.crc32b(i32 %a, i32 %b)\n"
                            "  ret i32 %c\n"
                            "}\n";

/// Pace for polling loops: the scrape interval is 1 s, so checking a few times per interval is
/// plenty. Only the bounded loops use it; what they wait for ends them.
constexpr std::chrono::milliseconds POLL{100};

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// A Prometheus server on 127.0.0.1 with its storage in a private directory, scraping one
/// target every second. Killed by ChildProcess's destructor if the test ends early.
class PrometheusServer final {
public:
  static std::unique_ptr<PrometheusServer> start(uint16_t scrapePort) {
    auto server = std::make_unique<PrometheusServer>();
    server->port = freeTcpPort();
    if (server->port == 0)
      return nullptr;
    std::ofstream config(server->dir.file("prometheus.yml"));
    config << "global:\n"
              "  scrape_interval: 1s\n"
              "  evaluation_interval: 1s\n"
              "scrape_configs:\n"
              "  - job_name: rjitd\n"
              "    scrape_interval: 1s\n"
              "    scrape_timeout: 1s\n"
              "    static_configs:\n"
              "      - targets: ['127.0.0.1:"
           << scrapePort << "']\n";
    config.close();
    SpawnOptions options;
    options.argv = {PROMETHEUS_BIN, "--config.file=" + server->dir.file("prometheus.yml"),
                    "--storage.tsdb.path=" + server->dir.file("data"),
                    "--web.listen-address=127.0.0.1:" + std::to_string(server->port)};
    options.env = environmentWith({});
    options.stdoutPath = options.stderrPath = server->dir.file("prometheus.log");
    server->child = ChildProcess::spawn(options);
    if (server->child == nullptr || !server->waitReady())
      return nullptr;
    return server;
  }

  ~PrometheusServer() {
    if (child != nullptr && !child->status()) {
      child->signal(SIGTERM);
      child->wait();
    }
    if (::testing::Test::HasFailure())
      std::cerr << "--- prometheus log ---\n" << log() << "--- end ---\n";
  }

  std::string log() const { return readFile(dir.file("prometheus.log")); }

  /// The `data.result` of an instant query; nullopt (with the reason in `error`) when the query
  /// fails.
  std::optional<json> query(const std::string& promql, std::string* error = nullptr) const {
    auto response = httpGet(port, "/api/v1/query?query=" + urlEncode(promql), error);
    if (!response)
      return std::nullopt;
    json body = json::parse(response->body, nullptr, false);
    if (response->status != 200 || body.is_discarded() || body.value("status", "") != "success") {
      if (error != nullptr)
        *error = "HTTP " + std::to_string(response->status) + ": " + response->body;
      return std::nullopt;
    }
    return body.at("data").at("result");
  }

  /// The value of a query whose result is one sample; nullopt when it has no sample (yet).
  std::optional<double> value(const std::string& promql) const {
    auto result = query(promql);
    if (!result || !result->is_array() || result->size() != 1)
      return std::nullopt;
    return std::stod((*result)[0].at("value")[1].get<std::string>());
  }

  /// Waits (bounded) until `promql` has a value `accept` takes; returns the last value seen.
  std::optional<double> waitFor(const std::string& promql,
                                const std::function<bool(double)>& accept) const {
    std::optional<double> v;
    for (auto deadline = Clock::now() + SAFETY_BOUND; Clock::now() < deadline;) {
      v = value(promql);
      if (v && accept(*v))
        return v;
      std::this_thread::sleep_for(POLL);
    }
    ADD_FAILURE() << "no acceptable value for " << promql
                  << " within the safety bound; last: " << (v ? std::to_string(*v) : "no sample");
    return v;
  }

  TempDir dir;
  uint16_t port = 0;
  std::unique_ptr<ChildProcess> child;

private:
  bool waitReady() {
    std::string error;
    for (auto deadline = Clock::now() + SAFETY_BOUND; Clock::now() < deadline;) {
      if (child->wait(std::chrono::milliseconds(0))) {
        ADD_FAILURE() << "prometheus exited (" << child->status()->describe() << "):\n" << log();
        return false;
      }
      auto ready = httpGet(port, "/-/ready", &error);
      if (ready && ready->status == 200)
        return true;
      std::this_thread::sleep_for(POLL);
    }
    ADD_FAILURE() << "prometheus not ready within the safety bound (" << error << "):\n" << log();
    return false;
  }
};

/// The value of one series in a text exposition ("name{labels} value"), or nullopt.
std::optional<double> exposed(const std::string& exposition, const std::string& series) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(series + " "))
      return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

class PrometheusTest : public ::testing::Test {
protected:
  void SetUp() override {
    metricsPort = freeTcpPort();
    ASSERT_NE(metricsPort, 0);
    DaemonOptions options;
    options.extraArgs = {"--metrics", "127.0.0.1:" + std::to_string(metricsPort)};
    options.logLevel = "info";
    daemon = DaemonProcess::start(options);
    ASSERT_NE(daemon, nullptr);
    prometheus = PrometheusServer::start(metricsPort);
    ASSERT_NE(prometheus, nullptr);
    // Traffic starts once Prometheus scrapes rjitd, so rate() sees it rise from zero.
    auto up = prometheus->waitFor(R"(up{job="rjitd"})", [](double v) { return v == 1; });
    ASSERT_TRUE(up && *up == 1) << daemon->log();
  }

  void TearDown() override {
    prometheus.reset();
    if (daemon != nullptr) {
      EXPECT_TRUE(daemon->stop().exitedWith(0)) << daemon->log();
    }
  }

  ClientOptions clientOptions() const {
    ClientOptions o;
    o.servers = {daemon->endpoint()};
    o.clientName = "prometheus-test";
    return o;
  }

  static CompileRequest request(std::string module, std::string name, std::string target = "") {
    CompileRequest r;
    r.module = std::move(module);
    r.moduleName = std::move(name);
    r.target = std::move(target);
    r.optLevel = 2;
    return r;
  }

  static std::optional<ErrorKind> errorOf(Client& client, const CompileRequest& r) {
    try {
      client.compile(r);
      return std::nullopt;
    } catch (const Error& e) {
      return e.kind();
    }
  }

  TempDir work;
  uint16_t metricsPort = 0;
  std::unique_ptr<DaemonProcess> daemon;
  std::unique_ptr<PrometheusServer> prometheus;
};

TEST_F(PrometheusTest, PrometheusScrapesWhatRjitdDid) {
  // Traffic: 5 compile requests and 2 hash-first lookups. (An unknown target never reaches
  // rjitd: the client library knows the served targets from the handshake.)
  Client client(clientOptions());
  std::string llvmVersion = client.serverInfo().llvmVersion;
  uint64_t moduleBytes = 0;
  auto send = [&](Client& c, const CompileRequest& r) {
    moduleBytes += r.module.size();
    return errorOf(c, r);
  };
  EXPECT_EQ(send(client, request(ADD, "add.ll")), std::nullopt);  // compiled
  EXPECT_EQ(send(client, request(ADD, "add.ll")), std::nullopt);  // cache hit
  EXPECT_EQ(send(client, request(MALFORMED, "bad.ll")), ErrorKind::InvalidModule);
  EXPECT_EQ(send(client, request(CRC, "crc.ll", "aarch64")), ErrorKind::InvalidModule);
  ClientOptions hashFirst = clientOptions();
  hashFirst.hashFirstBytes = 1;  // every module is looked up by key first
  Client lookupClient(hashFirst);
  CompileRequest mul = request(MUL, "mul.ll");
  auto first = lookupClient.compile(mul);  // lookup misses, the module follows
  EXPECT_FALSE(first.fromCache);
  EXPECT_TRUE(first.bodySent);
  moduleBytes += mul.module.size();
  auto second = lookupClient.compile(mul);  // lookup hits
  EXPECT_TRUE(second.fromCache);
  EXPECT_FALSE(second.bodySent);

  // The last thing done was the second lookup: once Prometheus has it, it has everything.
  auto is = [](double expected) { return [expected](double v) { return v == expected; }; };
  prometheus->waitFor(R"(sum(rjitd_requests_total{method="lookup"}))", is(2));
  auto& p = *prometheus;
  EXPECT_EQ(p.value(R"(sum(rjitd_requests_total{method="compile"}))"), 5);
  EXPECT_EQ(p.value(R"(rjitd_requests_total{method="compile",result="ok"})"), 3);
  EXPECT_EQ(p.value(R"(rjitd_requests_total{method="compile",result="invalid-module"})"), 2);
  EXPECT_EQ(p.value(R"(rjitd_requests_total{method="lookup",result="ok"})"), 1);
  EXPECT_EQ(p.value(R"(rjitd_requests_total{method="lookup",result="not-found"})"), 1);
  EXPECT_EQ(p.value(R"(rjitd_errors_total{kind="invalid-module"})"), 2);
  EXPECT_EQ(p.value(R"(rjitd_cache_lookups_total{tier="memory",result="hit"})"), 2);
  EXPECT_EQ(p.value(R"(rjitd_cache_lookups_total{tier="memory",result="miss"})"), 5);
  EXPECT_EQ(p.value(R"(rjitd_hash_first_lookups_total{result="hit"})"), 1);
  EXPECT_EQ(p.value(R"(sum(rjitd_compiles_total))"), 4);
  EXPECT_EQ(p.value(R"(rjitd_compiles_total{target="x86_64",result="ok"})"), 2);
  EXPECT_EQ(p.value(R"(rjitd_compiles_total{target="aarch64",result="invalid-module"})"), 1);
  EXPECT_EQ(p.value(R"(sum(rjitd_compile_duration_seconds_count{target="x86_64"}))"), 3);
  EXPECT_EQ(p.value(R"(rjitd_compile_duration_seconds_count{target="aarch64",opt_level="2"})"), 1);
  EXPECT_EQ(p.value(R"(sum(rjitd_request_duration_seconds_count{method="compile"}))"), 5);
  EXPECT_EQ(p.value(R"(sum(rjitd_request_duration_seconds_count{method="lookup"}))"), 2);
  EXPECT_EQ(p.value("rjitd_compile_worker_restarts_total"), 1);
  EXPECT_EQ(p.value("rjitd_module_bytes_received_total"), static_cast<double>(moduleBytes));
  EXPECT_EQ(p.value("rjitd_cache_entries"), 2);
  EXPECT_EQ(p.value("rjitd_compiles_in_flight"), 0);
  EXPECT_EQ(p.value("rjitd_client_sessions"), 2);  // both clients are still connected
  EXPECT_EQ(p.value("rjitd_connections"), 2);
  EXPECT_EQ(p.value("rjitd_build_info{version=\"" RJITD_VERSION "\",llvm_version=\"" + llvmVersion +
                    "\"}"),
            1);

  // Latency percentiles, as the dashboard computes them, once rate() covers the traffic.
  auto p50 = p.waitFor("histogram_quantile(0.5, sum by (le) (rate("
                       "rjitd_compile_duration_seconds_bucket{target=\"x86_64\"}[1m])))",
                       [](double v) { return std::isfinite(v) && v > 0; });
  EXPECT_TRUE(p50 && *p50 <= 60) << (p50 ? *p50 : -1);
}

TEST_F(PrometheusTest, RjitInfoShowsTheScrapedFigures) {
  Client client(clientOptions());
  client.compile(request(ADD, "add.ll"));
  client.compile(request(ADD, "add.ll"));
  EXPECT_EQ(errorOf(client, request(MALFORMED, "bad.ll")), ErrorKind::InvalidModule);
  Module loaded = client.load(request(MUL, "mul.ll"));  // the fast path's figures
  EXPECT_EQ(loaded.lookup<int(int, int)>("mul")(6, 7), 42);
  prometheus->waitFor(R"(sum(rjitd_requests_total{method="load"}))",
                      [](double v) { return v == 1; });

  const char* rjit = std::getenv("RJIT_BIN");
  ASSERT_NE(rjit, nullptr) << "RJIT_BIN is not set";
  CommandResult info = runCommand(work, {rjit, "info", "--json", "--server", daemon->endpoint()});
  ASSERT_TRUE(info.status.exitedWith(0)) << info.err;
  json stats = json::parse(info.out);
  // rjit info itself only says hello and asks for stats: no figure below moves. So the endpoint
  // now serves the same figures, and Prometheus's latest scrape holds them too.
  std::string error;
  auto scrape = httpGet(metricsPort, "/metrics", &error);
  ASSERT_TRUE(scrape) << error;
  const std::string& text = scrape->body;
  struct Figure {
    const char* what;
    json shown;
    const char* series;  // as exposed by rjitd
    const char* promql;  // as queried from Prometheus
  };
  std::vector<Figure> figures = {
      {"compiles", stats["compiles"]["total"], nullptr, "sum(rjitd_compiles_total)"},
      {"compile failures", stats["compiles"]["failures"], nullptr,
       R"(sum(rjitd_compiles_total{result!="ok"}))"},
      {"compiles in flight", stats["compiles"]["in_flight"], "rjitd_compiles_in_flight",
       "rjitd_compiles_in_flight"},
      {"cache entries", stats["cache"]["entries"], R"(rjitd_cache_entries{tier="memory"})",
       "rjitd_cache_entries"},
      {"cache bytes", stats["cache"]["bytes"], R"(rjitd_cache_bytes{tier="memory"})",
       "rjitd_cache_bytes"},
      {"cache budget", stats["cache"]["budget_bytes"], R"(rjitd_cache_budget_bytes{tier="memory"})",
       "rjitd_cache_budget_bytes"},
      {"cache hits", stats["cache"]["hits"],
       R"(rjitd_cache_lookups_total{result="hit",tier="memory"})",
       R"(rjitd_cache_lookups_total{result="hit"})"},
      {"cache misses", stats["cache"]["misses"],
       R"(rjitd_cache_lookups_total{result="miss",tier="memory"})",
       R"(rjitd_cache_lookups_total{result="miss"})"},
      {"cache evictions", stats["cache"]["evictions"],
       R"(rjitd_cache_evictions_total{tier="memory"})", "rjitd_cache_evictions_total"},
      {"requests", stats["requests"], nullptr,
       R"(sum(rjitd_requests_total{method=~"compile|lookup"}))"},
      {"lookups", stats["lookups"], nullptr, "sum(rjitd_hash_first_lookups_total)"},
      {"lookup hits", stats["lookup_hits"], R"(rjitd_hash_first_lookups_total{result="hit"})",
       R"(rjitd_hash_first_lookups_total{result="hit"})"},
      {"module bytes", stats["module_bytes_received"], "rjitd_module_bytes_received_total",
       "rjitd_module_bytes_received_total"},
      {"compile requests ok", stats["requests_by_method"]["compile"]["ok"],
       R"(rjitd_requests_total{method="compile",result="ok"})",
       R"(rjitd_requests_total{method="compile",result="ok"})"},
      {"compile requests invalid-module", stats["requests_by_method"]["compile"]["invalid-module"],
       R"(rjitd_requests_total{method="compile",result="invalid-module"})",
       R"(rjitd_requests_total{method="compile",result="invalid-module"})"},
      {"errors invalid-module", stats["errors"]["invalid-module"],
       R"(rjitd_errors_total{kind="invalid-module"})",
       R"(rjitd_errors_total{kind="invalid-module"})"},
      {"compile worker restarts", stats["compile_worker_restarts"],
       "rjitd_compile_worker_restarts_total", "rjitd_compile_worker_restarts_total"},
      {"loads", stats["fast_path"]["loads"], nullptr,
       R"(sum(rjitd_requests_total{method="load"}))"},
      {"links", stats["fast_path"]["links"], nullptr, "sum(rjitd_links_total)"},
      {"loaded modules", stats["fast_path"]["loaded_modules"], "rjitd_loaded_images",
       "rjitd_loaded_images"},
      {"loaded bytes", stats["fast_path"]["loaded_bytes"], "rjitd_loaded_image_bytes",
       "rjitd_loaded_image_bytes"},
      {"symbol questions", stats["fast_path"]["symbol_questions"], "rjitd_symbol_questions_total",
       "rjitd_symbol_questions_total"},
  };
  for (const Figure& f : figures) {
    ASSERT_TRUE(f.shown.is_number()) << f.what << " missing from rjit info --json:\n" << info.out;
    double shown = f.shown.get<double>();
    if (f.series != nullptr) {
      EXPECT_EQ(exposed(text, f.series), shown) << f.what << " (/metrics: " << f.series << ")";
    }
    EXPECT_EQ(prometheus->value(f.promql), shown) << f.what << " (Prometheus: " << f.promql << ")";
  }
  EXPECT_EQ(stats["compiles"]["total"], 3);
  EXPECT_EQ(stats["cache"]["hits"], 1);
  EXPECT_EQ(stats["errors"]["invalid-module"], 1);
  EXPECT_EQ(stats["fast_path"]["loaded_modules"], 1);
  EXPECT_GT(stats["fast_path"]["loaded_bytes"].get<double>(), 0);
}

TEST_F(PrometheusTest, EveryDashboardQueryEvaluates) {
  json dashboard = json::parse(readFile(RJIT_DASHBOARD));
  std::vector<std::pair<std::string, std::string>> exprs;  // (panel, expr)
  for (const json& panel : dashboard.at("panels"))
    for (const json& target : panel.value("targets", json::array()))
      exprs.emplace_back(panel.value("title", ""), target.at("expr").get<std::string>());
  ASSERT_FALSE(exprs.empty());
  // Grafana's variables, as Grafana would expand them with "All" selected.
  auto expand = [](std::string expr) {
    expr = std::regex_replace(expr, std::regex(R"(\$__rate_interval)"), "1m");
    return std::regex_replace(expr, std::regex(R"(\$(instance|target))"), ".*");
  };
  Client client(clientOptions());
  client.compile(request(ADD, "add.ll"));
  prometheus->waitFor(R"(sum(rjitd_requests_total{method="compile"}))",
                      [](double v) { return v == 1; });
  for (const auto& [panel, expr] : exprs) {
    std::string error;
    auto result = prometheus->query(expand(expr), &error);
    EXPECT_TRUE(result) << "panel '" << panel << "': " << expand(expr) << ": " << error;
  }
  // The build panel names this rjitd.
  auto build = prometheus->query(expand(R"(rjitd_build_info{instance=~"$instance"})"));
  ASSERT_TRUE(build && build->size() == 1);
  EXPECT_EQ((*build)[0].at("metric").value("version", ""), RJITD_VERSION);
}

}  // namespace
}  // namespace rjit::test
