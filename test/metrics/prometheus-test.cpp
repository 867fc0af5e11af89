// SPDX-License-Identifier: MIT
// End to end: the real rjitd with --metrics, driven through the client library, scraped by a
// real Prometheus server (Debian's `prometheus`) on loopback; the figures are read back through
// Prometheus's HTTP API and compared with what the test sent and with `rjit info --json`. Every
// query of the Grafana dashboard is evaluated by that Prometheus too. Prometheus scrapes
// rjitd through a relay of the test's, so that each scrape is an event the test waits on.
#include "daemon-process.h"
#include "http-get.h"
#include "rjitd-config.h"
#include "temp-dir.h"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <gtest/gtest.h>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <poll.h>
#include <regex>
#include <remotejit/client.h>
#include <set>
#include <sstream>
#include <string>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace rjit::test {
namespace {

using nlohmann::json;

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

/// Most scrapes a wait lets pass before it gives up (a bound on the loop besides SAFETY_BOUND;
/// scrapes come every second, so SAFETY_BOUND ends it first).
constexpr unsigned MAX_SCRAPES_WAITED = 120;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Prometheus's scrape target: a relay on 127.0.0.1 that answers each scrape with what rjitd's
/// /metrics serves at that moment (status and body as they are), and counts the scrapes. Prometheus
/// offers no event for "a sample has been stored"; a scrape is the event that changes what it
/// holds, and it commits one scrape's samples before it starts the next, so the tests wait on
/// scrapes instead of pacing their polls by the clock.
class ScrapeRelay final {
public:
  /// nullptr, with a recorded failure, when it cannot listen.
  static std::unique_ptr<ScrapeRelay> start(uint16_t metricsPort) {
    auto relay = std::make_unique<ScrapeRelay>(metricsPort);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (relay->listener.get() < 0 || relay->stop.get() < 0 ||
        ::bind(relay->listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(relay->listener.get(), 16) != 0 ||
        ::getsockname(relay->listener.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ADD_FAILURE() << "scrape relay: " << std::strerror(errno);
      return nullptr;
    }
    relay->port = ntohs(address.sin_port);
    relay->thread = std::thread([r = relay.get()] { r->serve(); });
    return relay;
  }

  explicit ScrapeRelay(uint16_t metricsPort)
      : metricsPort(metricsPort), listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)),
        stop(::eventfd(0, EFD_CLOEXEC)) {}

  ~ScrapeRelay() {
    if (thread.joinable()) {
      uint64_t one = 1;
      EXPECT_EQ(::write(stop.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
      thread.join();
    }
  }
  ScrapeRelay(const ScrapeRelay&) = delete;
  ScrapeRelay& operator=(const ScrapeRelay&) = delete;

  /// Scrapes begun so far.
  uint64_t scrapes() const {
    std::lock_guard lock(mutex);
    return begun;
  }

  /// Waits (bounded by SAFETY_BOUND) until a scrape after the `seen`-th has begun; false, with a
  /// recorded failure, when none does (or the relay failed).
  bool waitScrapeAfter(uint64_t seen) const {
    std::unique_lock lock(mutex);
    if (!changed.wait_for(lock, SAFETY_BOUND, [&] { return begun > seen || failed; }) || failed) {
      ADD_FAILURE() << "no scrape within the safety bound" << (failed ? " (relay failed)" : "");
      return false;
    }
    return true;
  }

  uint16_t port = 0;

private:
  void serve() {
    for (;;) {
      pollfd fds[2] = {{listener.get(), POLLIN, 0}, {stop.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR)
          continue;
        return fail();
      }
      if (fds[1].revents != 0)
        return;
      kj::AutoCloseFd connection(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (connection.get() < 0)
        return fail();
      {
        std::lock_guard lock(mutex);
        ++begun;
      }
      changed.notify_all();
      answer(connection.get());
    }
  }

  /// Reads the request head (a GET has no body) and answers with rjitd's /metrics, closing the
  /// connection after it. Every socket operation is bounded.
  void answer(int fd) {
    std::string head;
    char buffer[4096];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(SAFETY_BOUND.count())) != 1)
        return;
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n <= 0)
        return;
      head.append(buffer, static_cast<size_t>(n));
    }
    auto metrics = httpGet(metricsPort, "/metrics");
    int status = metrics ? metrics->status : 502;
    std::string body = metrics ? metrics->body : std::string();
    std::string response = "HTTP/1.1 " + std::to_string(status) +
                           " Relayed\r\nContent-Type: text/plain; version=0.0.4\r\n"
                           "Content-Length: " +
                           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    for (size_t sent = 0; sent < response.size();) {
      ssize_t n = ::send(fd, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (n <= 0)
        return;  // Prometheus gave up on this scrape; the next one comes
      sent += static_cast<size_t>(n);
    }
  }

  void fail() {
    {
      std::lock_guard lock(mutex);
      failed = true;
    }
    changed.notify_all();
  }

  const uint16_t metricsPort;
  kj::AutoCloseFd listener;
  kj::AutoCloseFd stop;  ///< an eventfd: readable once the destructor asks the thread to end
  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  uint64_t begun = 0;   // guarded by mutex
  bool failed = false;  // guarded by mutex
  std::thread thread;   // last: it uses everything above
};

/// A Prometheus server on 127.0.0.1 with its storage in a private directory, scraping one
/// target (`relay`, which outlives the server) every second. Killed by ChildProcess's
/// destructor if the test ends early.
class PrometheusServer final {
public:
  static std::unique_ptr<PrometheusServer> start(const ScrapeRelay& relay) {
    auto server = std::make_unique<PrometheusServer>(relay);
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
           << relay.port << "']\n";
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

  explicit PrometheusServer(const ScrapeRelay& relay) : relay(relay) {}

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
  /// Checks once, then once more after each scrape that begins (by then the scrape before it
  /// is stored).
  std::optional<double> waitFor(const std::string& promql,
                                const std::function<bool(double)>& accept) const {
    std::optional<double> v;
    for (unsigned waited = 0; waited < MAX_SCRAPES_WAITED; ++waited) {
      uint64_t seen = relay.scrapes();
      v = value(promql);
      if (v && accept(*v))
        return v;
      if (!relay.waitScrapeAfter(seen))
        break;
    }
    ADD_FAILURE() << "no acceptable value for " << promql
                  << " within the bound; last: " << (v ? std::to_string(*v) : "no sample");
    return v;
  }

  TempDir dir;
  uint16_t port = 0;
  std::unique_ptr<ChildProcess> child;

private:
  /// Ready once its HTTP API answers /-/ready with 200. Checked once, then after each scrape
  /// (a scrape shows Prometheus running; readiness has no event of its own).
  bool waitReady() {
    std::string error;
    for (unsigned waited = 0; waited < MAX_SCRAPES_WAITED; ++waited) {
      if (child->wait(std::chrono::milliseconds(0))) {
        ADD_FAILURE() << "prometheus exited (" << child->status()->describe() << "):\n" << log();
        return false;
      }
      uint64_t seen = relay.scrapes();
      auto ready = httpGet(port, "/-/ready", &error);
      if (ready && ready->status == 200)
        return true;
      if (!relay.waitScrapeAfter(seen))
        break;
    }
    ADD_FAILURE() << "prometheus not ready within the bound (" << error << "):\n" << log();
    return false;
  }

  const ScrapeRelay& relay;
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
    // A missing Prometheus fails the test, naming it, rather than letting it vanish.
    ASSERT_STRNE(PROMETHEUS_BIN, "")
        << "prometheus is not installed (apt-get install prometheus); this test needs it";
    metricsPort = freeTcpPort();
    ASSERT_NE(metricsPort, 0);
    DaemonOptions options;
    options.extraArgs = {"--metrics", "127.0.0.1:" + std::to_string(metricsPort)};
    options.logLevel = "info";
    daemon = DaemonProcess::start(options);
    ASSERT_NE(daemon, nullptr);
    relay = ScrapeRelay::start(metricsPort);
    ASSERT_NE(relay, nullptr);
    prometheus = PrometheusServer::start(*relay);
    ASSERT_NE(prometheus, nullptr);
    // Traffic starts once Prometheus scrapes rjitd, so rate() sees it rise from zero.
    auto up = prometheus->waitFor(R"(up{job="rjitd"})", [](double v) { return v == 1; });
    ASSERT_TRUE(up && *up == 1) << daemon->log();
  }

  void TearDown() override {
    prometheus.reset();
    relay.reset();
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
  std::unique_ptr<ScrapeRelay> relay;
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
  EXPECT_EQ(p.value(R"(sum(rjitd_requests_total{method="compile",result="ok"}))"), 3);
  EXPECT_EQ(p.value(R"(sum(rjitd_requests_total{method="compile",result="invalid-module"}))"), 2);
  EXPECT_EQ(
      p.value(R"(rjitd_requests_total{method="compile",result="invalid-module",target="aarch64"})"),
      1);
  EXPECT_EQ(p.value(R"(sum(rjitd_requests_total{method="lookup",result="ok"}))"), 1);
  EXPECT_EQ(p.value(R"(rjitd_requests_total{method="lookup",result="ok",target="x86_64"})"), 1);
  EXPECT_EQ(p.value(R"(rjitd_requests_total{method="lookup",result="not-found",target="none"})"),
            1);
  EXPECT_EQ(p.value(R"(rjitd_errors_total{kind="invalid-module"})"), 2);
  EXPECT_EQ(p.value(R"(sum(rjitd_cache_lookups_total{tier="memory",result="hit"}))"), 2);
  EXPECT_EQ(p.value(R"(sum(rjitd_cache_lookups_total{tier="memory",result="miss"}))"), 5);
  // The misses: add, bad and mul's compile for x86_64, crc for aarch64, mul's lookup by key
  // (which names no target).
  EXPECT_EQ(p.value(R"(rjitd_cache_lookups_total{tier="memory",result="miss",target="x86_64"})"),
            3);
  EXPECT_EQ(p.value(R"(rjitd_cache_lookups_total{tier="memory",result="miss",target="aarch64"})"),
            1);
  EXPECT_EQ(p.value(R"(rjitd_cache_lookups_total{tier="memory",result="miss",target="none"})"), 1);
  EXPECT_EQ(p.value(R"(rjitd_hash_first_lookups_total{result="hit",target="x86_64"})"), 1);
  EXPECT_EQ(p.value(R"(rjitd_hash_first_lookups_total{result="miss",target="none"})"), 1);
  EXPECT_EQ(p.value(R"(sum(rjitd_compiles_total))"), 4);
  EXPECT_EQ(p.value(R"(rjitd_compiles_total{target="x86_64",result="ok"})"), 2);
  EXPECT_EQ(p.value(R"(rjitd_compiles_total{target="aarch64",result="invalid-module"})"), 1);
  EXPECT_EQ(p.value(R"(sum(rjitd_compile_duration_seconds_count{target="x86_64"}))"), 3);
  EXPECT_EQ(p.value(R"(rjitd_compile_duration_seconds_count{target="aarch64",opt_level="2"})"), 1);
  EXPECT_EQ(p.value(R"(sum(rjitd_request_duration_seconds_count{method="compile"}))"), 5);
  EXPECT_EQ(p.value(R"(sum(rjitd_request_duration_seconds_count{method="lookup"}))"), 2);
  EXPECT_EQ(p.value("rjitd_compile_worker_restarts_total"), 1);
  EXPECT_EQ(p.value("rjitd_module_bytes_received_total"), static_cast<double>(moduleBytes));
  EXPECT_EQ(p.value(R"(rjitd_cache_entries{tier="memory"})"), 2);
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
       R"(rjitd_cache_entries{tier="memory"})"},
      {"cache bytes", stats["cache"]["bytes"], R"(rjitd_cache_bytes{tier="memory"})",
       R"(rjitd_cache_bytes{tier="memory"})"},
      {"cache budget", stats["cache"]["budget_bytes"], R"(rjitd_cache_budget_bytes{tier="memory"})",
       R"(rjitd_cache_budget_bytes{tier="memory"})"},
      {"cache hits", stats["cache"]["hits"], nullptr,
       R"(sum(rjitd_cache_lookups_total{tier="memory",result="hit"}))"},
      {"cache misses", stats["cache"]["misses"], nullptr,
       R"(sum(rjitd_cache_lookups_total{tier="memory",result="miss"}))"},
      {"cache evictions", stats["cache"]["evictions"],
       R"(rjitd_cache_evictions_total{tier="memory"})",
       R"(rjitd_cache_evictions_total{tier="memory"})"},
      {"requests", stats["requests"], nullptr,
       R"(sum(rjitd_requests_total{method=~"compile|lookup"}))"},
      {"lookups", stats["lookups"], nullptr, "sum(rjitd_hash_first_lookups_total)"},
      {"lookup hits", stats["lookup_hits"], nullptr,
       R"(sum(rjitd_hash_first_lookups_total{result="hit"}))"},
      {"module bytes", stats["module_bytes_received"], "rjitd_module_bytes_received_total",
       "rjitd_module_bytes_received_total"},
      {"compile requests ok", stats["requests_by_method"]["compile"]["ok"],
       R"(rjitd_requests_total{method="compile",result="ok",target="x86_64"})",
       R"(sum(rjitd_requests_total{method="compile",result="ok"}))"},
      {"compile requests invalid-module", stats["requests_by_method"]["compile"]["invalid-module"],
       R"(rjitd_requests_total{method="compile",result="invalid-module",target="x86_64"})",
       R"(sum(rjitd_requests_total{method="compile",result="invalid-module"}))"},
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
      {"x86_64 cache lookups", stats["per_target"]["x86_64"]["cache"]["lookups"], nullptr,
       R"(sum(rjitd_cache_lookups_total{tier="memory",target="x86_64"}))"},
      {"x86_64 cache hits", stats["per_target"]["x86_64"]["cache"]["hits"],
       R"(rjitd_cache_lookups_total{result="hit",target="x86_64",tier="memory"})",
       R"(sum(rjitd_cache_lookups_total{tier="memory",result="hit",target="x86_64"}))"},
      {"x86_64 compiles", stats["per_target"]["x86_64"]["compiles"]["total"], nullptr,
       R"(sum(rjitd_compiles_total{target="x86_64"}))"},
      {"x86_64 loads", stats["per_target"]["x86_64"]["loads"]["total"],
       R"(rjitd_requests_total{method="load",result="ok",target="x86_64"})",
       R"(sum(rjitd_requests_total{method="load",target="x86_64"}))"},
      {"x86_64 links", stats["per_target"]["x86_64"]["links"]["total"],
       R"(rjitd_links_total{result="ok",target="x86_64"})",
       R"(sum(rjitd_links_total{target="x86_64"}))"},
      {"aarch64 cache lookups", stats["per_target"]["aarch64"]["cache"]["lookups"], nullptr,
       R"(sum(rjitd_cache_lookups_total{tier="memory",target="aarch64"}))"},
      {"aarch64 compiles", stats["per_target"]["aarch64"]["compiles"]["total"], nullptr,
       R"(sum(rjitd_compiles_total{target="aarch64"}))"},
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

TEST_F(PrometheusTest, PerTargetPanelsShowBothTargets) {
  // Every dashboard query filtered by $target must return a series for each served target,
  // with traffic for both: x86_64 compiles and a load, aarch64 a compile, then a cache hit.
  json dashboard = json::parse(readFile(RJIT_DASHBOARD));
  std::vector<std::pair<std::string, std::string>> exprs;  // (panel, expr)
  for (const json& panel : dashboard.at("panels"))
    for (const json& target : panel.value("targets", json::array())) {
      std::string expr = target.at("expr").get<std::string>();
      if (expr.find(R"(target=~"$target")") != std::string::npos)
        exprs.emplace_back(panel.value("title", ""), expr);
    }
  ASSERT_GE(exprs.size(), 10u);
  auto expand = [](std::string expr) {
    expr = std::regex_replace(expr, std::regex(R"(\$__rate_interval)"), "1m");
    return std::regex_replace(expr, std::regex(R"(\$(instance|target))"), ".*");
  };
  Client client(clientOptions());
  client.compile(request(ADD, "add.ll"));
  Module loaded = client.load(request(MUL, "mul.ll"));
  EXPECT_EQ(loaded.lookup<int(int, int)>("mul")(6, 7), 42);
  EXPECT_FALSE(client.compile(request(ADD, "add.ll", "aarch64")).fromCache);
  EXPECT_TRUE(client.compile(request(ADD, "add.ll", "aarch64")).fromCache);
  prometheus->waitFor(R"(sum(rjitd_cache_lookups_total{tier="memory",target="aarch64"}))",
                      [](double v) { return v == 2; });

  // The served targets' series exist from rjitd's start, so each query has both as soon as
  // rate() has two samples; a query is checked once, then after each scrape (bounded).
  auto targetsOf = [](const json& result) {
    std::set<std::string> out;
    for (const json& series : result)
      out.insert(series.at("metric").value("target", ""));
    return out;
  };
  for (const auto& [panel, expr] : exprs) {
    std::set<std::string> seen;
    for (unsigned waited = 0; waited < MAX_SCRAPES_WAITED; ++waited) {
      uint64_t scrapes = relay->scrapes();
      std::string error;
      auto result = prometheus->query(expand(expr), &error);
      ASSERT_TRUE(result) << "panel '" << panel << "': " << expand(expr) << ": " << error;
      seen = targetsOf(*result);
      if (seen.count("x86_64") != 0 && seen.count("aarch64") != 0)
        break;
      if (!relay->waitScrapeAfter(scrapes))
        break;
    }
    EXPECT_EQ(seen.count("x86_64"), 1u) << "panel '" << panel << "': " << expand(expr);
    EXPECT_EQ(seen.count("aarch64"), 1u) << "panel '" << panel << "': " << expand(expr);
  }

  // The figures, as the per-target panels compute them (hits in any tier over the memory tier's
  // lookups, which every request makes once): aarch64's lookups were a miss and a hit; x86_64's
  // a miss each (one compile, one load).
  auto& p = *prometheus;
  auto ratio = [&p](const std::string& target, double expected) {
    return p.waitFor(
        R"(sum(increase(rjitd_cache_lookups_total{result="hit",target=")" + target +
            R"("}[10m])) / sum(increase(rjitd_cache_lookups_total{tier="memory",target=")" +
            target + R"("}[10m])))",
        [expected](double v) { return std::abs(v - expected) < 1e-9; });
  };
  auto arm = ratio("aarch64", 0.5);
  EXPECT_TRUE(arm && std::abs(*arm - 0.5) < 1e-9) << (arm ? *arm : -1);
  auto x86 = ratio("x86_64", 0);
  EXPECT_TRUE(x86 && *x86 == 0) << (x86 ? *x86 : -1);
  EXPECT_EQ(p.value(R"(sum(rjitd_requests_total{method="load",target="x86_64"}))"), 1);
  EXPECT_EQ(p.value(R"(sum(rjitd_requests_total{method="load",target="aarch64"}))"), 0);
  EXPECT_EQ(p.value(R"(sum(rjitd_compiles_total{target="aarch64"}))"), 1);
  EXPECT_EQ(p.value(R"(sum(rjitd_links_total{target="x86_64"}))"), 1);
}

}  // namespace
}  // namespace rjit::test
