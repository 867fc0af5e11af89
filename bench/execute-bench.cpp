// SPDX-License-Identifier: MIT
// execute-bench: remote execute through a real rjitd and its executors. A scalar call
// add(i64,i64) against a bare stats() round trip on the same connection; a 64 MiB array argument
// through the shared segment (Unix) against copied over TCP; an executor's cold start (spawn,
// sandbox, load, first call) against a warm call; calls per second with 1 and 8 clients. All of
// it for the executor of one target (--target; default: this host's), so that an aarch64
// executor under qemu compares with the x86_64 one. Prints figures; asserts nothing
// (docs/BENCHMARKS.md says how to read them).
#include "bench-common.h"

#include "targets.h"

#include <remotejit/client.h>

#include <CLI/CLI.hpp>
#include <kj/io.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <latch>
#include <thread>

namespace {

using rjitbench::Clock;
using rjitbench::fixed;
using rjitbench::freeTcpPort;
using rjitbench::msSince;
using rjitbench::Series;
using rjitbench::Table;

struct Config {
  std::string rjitd;                   ///< default: service/rjitd of this build directory
  std::vector<std::string> rjitdArgs;  ///< appended to rjitd's command line
  std::string target;                  ///< the executors' target; "" = this host's
  unsigned calls = 2000;               ///< scalar round trips, and calls per client for calls/s
  unsigned big = 8;                    ///< 64 MiB calls per variant
  unsigned cold = 10;                  ///< cold starts
};

constexpr uint64_t BIG = 64ull << 20;

/// An rjitd for this run on a private Unix socket and a loopback TCP port (bench-common's
/// Daemon serves Unix only; the copied-buffer figure needs TCP).
class ExecuteDaemon {
public:
  /// False, with the reason on stderr, when rjitd cannot be started.
  bool start(const std::filesystem::path& binary, const std::vector<std::string>& extraArgs) {
    char pattern[] = "/tmp/rjit-execute-bench.XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
      std::perror("mkdtemp");
      return false;
    }
    dir_ = pattern;
    uint16_t port = freeTcpPort();
    if (port == 0) {
      std::fprintf(stderr, "no free TCP port on 127.0.0.1\n");
      return false;
    }
    unix_ = "unix:" + (dir_ / "rjitd.sock").string();
    tcp_ = "tcp:127.0.0.1:" + std::to_string(port);
    rjitd::process::SpawnOptions options;
    // Its own disk tier in the bench's directory: never the user's (or root's /var/cache/rjitd).
    options.argv = {binary.string(), "--listen",    unix_,
                    "--listen",      tcp_,          "--log-level",
                    "warning",       "--cache-dir", (dir_ / "cache").string()};
    options.argv.insert(options.argv.end(), extraArgs.begin(), extraArgs.end());
    options.env = rjitbench::childEnvironment();
    options.stdoutPath = (dir_ / "rjitd.log").string();
    options.stderrPath = options.stdoutPath;
    child_ = rjitd::process::Subprocess::spawn(options);
    std::fprintf(stderr, "started %s on %s and %s\n", binary.c_str(), unix_.c_str(), tcp_.c_str());
    return true;
  }

  ~ExecuteDaemon() {
    if (child_ != nullptr) {
      bool killed = false;
      child_->terminate(std::chrono::seconds(10), &killed);
    }
    std::error_code ignored;
    if (!dir_.empty())
      std::filesystem::remove_all(dir_, ignored);
  }

  const std::string& unixAddress() const { return unix_; }
  const std::string& tcpAddress() const { return tcp_; }

private:
  std::filesystem::path dir_;
  std::string unix_, tcp_;
  std::unique_ptr<rjitd::process::Subprocess> child_;
};

rjit::ClientOptions clientOptions(const std::string& address) {
  rjit::ClientOptions options;
  options.servers = {address};
  options.clientName = "execute-bench";
  return options;
}

/// A client with an executor for `request.target` and the benchmark module loaded in it (warm:
/// one call made).
struct Session {
  std::unique_ptr<rjit::Client> client;
  std::optional<rjit::RemoteExecutor> executor;
  std::optional<rjit::RemoteModule> module;

  Session(const std::string& address, const rjit::CompileRequest& request) {
    client = std::make_unique<rjit::Client>(clientOptions(address));
    executor.emplace(client->executor(request.target));
    module.emplace(executor->load(request));
    module->call<int64_t>("add", int64_t{1}, int64_t{2});
  }
  ~Session() {
    module.reset();
    executor.reset();
  }
};

double micros(const Series& s) {
  return s.median() * 1000;
}

/// add(i64,i64) and stats() alternately on one connection.
void scalarRoundTrip(const Config& config, const std::string& address,
                     const rjit::CompileRequest& request) {
  Session s(address, request);
  Series call, stats;
  for (unsigned i = 0; i < config.calls / 10; ++i) {  // warm both paths
    s.module->call<int64_t>("add", int64_t{i}, int64_t{1});
    s.client->stats();
  }
  for (unsigned i = 0; i < config.calls; ++i) {
    auto start = Clock::now();
    int64_t sum = s.module->call<int64_t>("add", int64_t{i}, int64_t{1});
    call.add(msSince(start));
    if (sum != static_cast<int64_t>(i) + 1)
      std::fprintf(stderr, "add(%u, 1) returned %lld\n", i, static_cast<long long>(sum));
    start = Clock::now();
    s.client->stats();
    stats.add(msSince(start));
  }
  Table table({"round trip (Unix)", "median us", "p99 us", "min us"});
  for (auto [name, series] : {std::pair{"call add(i64,i64)", &call}, {"stats()", &stats}})
    table.add({name, fixed(micros(*series), 1), fixed(series->percentile(99) * 1000, 1),
               fixed(series->min() * 1000, 1)});
  std::cout << "\n1. Scalar call vs a bare stats() round trip (" << config.calls << " each)\n";
  table.print(std::cout);
  std::cout << "call / stats: " << fixed(rjitbench::pairedRatio(call, stats), 2)
            << "x (goal <= 2x)\n";
}

/// A 64 MiB in-buffer through the shared segment (Unix) and copied (TCP), alternately: ends_u8
/// reads two bytes of it (the crossing alone), sum_u8 every byte.
void bigBuffer(const Config& config, const ExecuteDaemon& daemon,
               const rjit::CompileRequest& request) {
  Session shared(daemon.unixAddress(), request);
  Session copied(daemon.tcpAddress(), request);
  rjit::Buffer inShared = shared.executor->buffer(rjit::ElementType::U8, BIG, rjit::Direction::In);
  rjit::Buffer inCopied = copied.executor->buffer(rjit::ElementType::U8, BIG, rjit::Direction::In);
  std::memset(inShared.data(), 1, BIG);
  std::memset(inCopied.data(), 1, BIG);
  Table table({"64 MiB in-buffer", "median ms", "min ms", "MiB/s"});
  auto rate = [](const Series& s) { return fixed(64.0 / (s.median() / 1000), 0); };
  std::vector<std::string> ratios;
  for (auto [symbol, expected] : {std::pair{"ends_u8", uint64_t{2}}, {"sum_u8", BIG}}) {
    Series sharedMs, copiedMs;
    for (unsigned i = 0; i < config.big + 1; ++i) {  // the first of each is a warm-up
      auto start = Clock::now();
      uint64_t a = shared.module->call<uint64_t>(symbol, inShared, BIG);
      double sharedTime = msSince(start);
      start = Clock::now();
      uint64_t b = copied.module->call<uint64_t>(symbol, inCopied, BIG);
      double copiedTime = msSince(start);
      if (a != expected || b != expected)
        std::fprintf(stderr, "%s returned %llu and %llu, not %llu\n", symbol,
                     static_cast<unsigned long long>(a), static_cast<unsigned long long>(b),
                     static_cast<unsigned long long>(expected));
      if (i > 0) {
        sharedMs.add(sharedTime);
        copiedMs.add(copiedTime);
      }
    }
    table.add({std::string(symbol) + ", shared segment (Unix)" +
                   (inShared.shared() ? "" : " [NOT shared]"),
               fixed(sharedMs.median(), 2), fixed(sharedMs.min(), 2), rate(sharedMs)});
    table.add({std::string(symbol) + ", copied (TCP)" + (inCopied.shared() ? " [shared?]" : ""),
               fixed(copiedMs.median(), 2), fixed(copiedMs.min(), 2), rate(copiedMs)});
    ratios.push_back(std::string(symbol) + ": copied / shared " +
                     fixed(rjitbench::pairedRatio(copiedMs, sharedMs), 1) + "x");
  }
  std::cout << "\n2. A 64 MiB array argument (" << config.big << " calls each)\n";
  table.print(std::cout);
  for (const auto& line : ratios)
    std::cout << line << "\n";
  std::cout << "(goal >= 10x)\n";
}

/// A new client, executor, load and first call (the object is in rjitd's cache after the first
/// iteration, so this is spawn + sandbox + load + call) vs a warm call.
void coldStart(const Config& config, const std::string& address,
               const rjit::CompileRequest& request) {
  { Session warmCache(address, request); }
  Series cold, load, firstCall, warm;
  for (unsigned i = 0; i < config.cold; ++i) {
    rjit::Client client(clientOptions(address));
    client.serverInfo();  // connected: the connection is not part of the executor's start
    auto start = Clock::now();
    rjit::RemoteExecutor executor = client.executor(request.target);
    rjit::RemoteModule module = executor.load(request);
    load.add(msSince(start));
    auto callStart = Clock::now();
    module.call<int64_t>("add", int64_t{1}, int64_t{2});
    firstCall.add(msSince(callStart));
    cold.add(msSince(start));
    callStart = Clock::now();
    module.call<int64_t>("add", int64_t{1}, int64_t{2});
    warm.add(msSince(callStart));
  }
  Table table({"executor start", "median ms", "min ms", "max ms"});
  table.add({"executor() + load (spawn, sandbox, load)", fixed(load.median(), 2),
             fixed(load.min(), 2), fixed(load.max(), 2)});
  table.add({"first call", fixed(firstCall.median(), 3), fixed(firstCall.min(), 3),
             fixed(firstCall.max(), 3)});
  table.add(
      {"cold: all of it", fixed(cold.median(), 2), fixed(cold.min(), 2), fixed(cold.max(), 2)});
  table.add({"warm call", fixed(warm.median(), 3), fixed(warm.min(), 3), fixed(warm.max(), 3)});
  std::cout << "\n3. Executor cold start vs a warm call (" << config.cold << " starts)\n";
  table.print(std::cout);
  std::cout << "cold / warm: " << fixed(rjitbench::pairedRatio(cold, warm), 0) << "x\n";
}

/// `clients` clients (one thread each, own connection and executor) making `calls` calls each
/// at once; calls per second over all of them.
double callsPerSecond(unsigned clients, unsigned calls, const std::string& address,
                      const rjit::CompileRequest& request) {
  std::vector<std::unique_ptr<Session>> sessions;
  for (unsigned c = 0; c < clients; ++c)
    sessions.push_back(std::make_unique<Session>(address, request));
  std::latch start(clients + 1);
  std::atomic<unsigned> failures{0};
  std::vector<std::thread> threads;
  for (unsigned c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      start.arrive_and_wait();
      for (unsigned i = 0; i < calls; ++i)
        if (sessions[c]->module->call<int64_t>("add", int64_t{c}, int64_t{i}) != c + i)
          ++failures;
    });
  start.arrive_and_wait();
  auto begin = Clock::now();
  for (auto& thread : threads)
    thread.join();
  double seconds = msSince(begin) / 1000;
  if (failures > 0)
    std::fprintf(stderr, "%u calls returned a wrong sum\n", failures.load());
  return clients * calls / seconds;
}

void throughput(const Config& config, const std::string& address,
                const rjit::CompileRequest& request) {
  Table table({"clients", "calls/s", "per client"});
  for (unsigned clients : {1u, 8u}) {
    double rate = callsPerSecond(clients, config.calls, address, request);
    table.add({std::to_string(clients), fixed(rate, 0), fixed(rate / clients, 0)});
  }
  std::cout << "\n4. Calls per second, add(i64,i64), " << config.calls << " calls per client\n";
  table.print(std::cout);
}

/// This process's architecture as uname(2) names it ("aarch64" under qemu-aarch64 too).
std::string hostMachine() {
  struct utsname names {};
  uname(&names);
  return names.machine;
}

/// The target `spec` names (short name, alias or triple; "" = this host's), or nullptr.
const rjitd::TargetName* targetNamed(const std::string& spec) {
  std::string hostTriple;
  for (const rjitd::TargetName& t : rjitd::knownTargets())
    if (t.name == hostMachine())
      hostTriple = t.triple;
  return rjitd::resolveTarget(rjitd::knownTargets(), spec, hostTriple);
}

int run(const Config& config) {
  auto self = rjitbench::selfDirectory();
  std::filesystem::path rjitd = config.rjitd.empty() ? self.parent_path() / "service" / "rjitd"
                                                     : std::filesystem::path(config.rjitd);
  const rjitd::TargetName* target = targetNamed(config.target);
  if (target == nullptr) {
    std::fprintf(stderr, "unknown target %s: known are %s\n", config.target.c_str(),
                 rjitd::describeTargets(rjitd::knownTargets()).c_str());
    return 1;
  }
  // The module compiled for the target (bench/meson.build): the IR names its triple, which
  // must agree with the request's target.
  std::filesystem::path modulePath =
      self / (target->name == hostMachine() ? std::string("execute-typed.ll")
                                            : "execute-typed-" + target->name + ".ll");
  if (!std::filesystem::exists(modulePath)) {
    std::fprintf(stderr, "%s is missing (ninja -C BUILDDIR bench/%s)\n", modulePath.c_str(),
                 modulePath.filename().c_str());
    return 1;
  }
  rjit::CompileRequest request =
      rjitbench::textRequest("execute-typed", rjitbench::readFile(modulePath), 2);
  request.target = target->name;

  ExecuteDaemon daemon;
  if (!daemon.start(rjitd, config.rjitdArgs))
    return 1;
  rjitbench::RunConditions conditions;
  try {
    rjitbench::waitUntilServing(daemon.unixAddress(), nullptr);
    conditions.warnIfBusy();
    std::cout << "execute-bench: executors for " << target->triple << "; "
              << rjitbench::machineInfo().dump() << "\n";
    std::cout << "load average before: " << conditions.loadBefore << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "execute-bench: rjitd does not serve: %s\n", e.what());
    return 1;
  }
  // A section that fails is reported and the others still run.
  bool failed = false;
  auto section = [&failed](const char* name, auto&& measure) {
    try {
      measure();
    } catch (const rjit::Error& e) {
      std::cout << name << " failed: " << rjit::errorKindName(e.kind()) << ": " << e.what() << "\n";
      failed = true;
    }
  };
  section("1. scalar call", [&] { scalarRoundTrip(config, daemon.unixAddress(), request); });
  section("2. 64 MiB buffer", [&] { bigBuffer(config, daemon, request); });
  section("3. cold start", [&] { coldStart(config, daemon.unixAddress(), request); });
  section("4. calls/s", [&] { throughput(config, daemon.unixAddress(), request); });
  conditions.finish();
  std::cout << "\n" << conditions.describe() << "\n";
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"execute-bench: remote execute through rjitd's executors (see docs/BENCHMARKS.md)"};
  app.add_option("--rjitd", config.rjitd, "rjitd binary (default: this build's service/rjitd)");
  app.add_option("--rjitd-arg", config.rjitdArgs,
                 "an argument for rjitd (repeatable), e.g. --rjitd-arg=--executor-memory=2G");
  app.add_option("--target", config.target,
                 "the executors' target: x86_64, aarch64, an alias or a triple (default: this "
                 "host's; rjitd must serve it, e.g. --rjitd-arg for its aarch64 executor)");
  app.add_option("--calls", config.calls, "scalar round trips, and calls per client for calls/s")
      ->check(CLI::PositiveNumber);
  app.add_option("--big", config.big, "64 MiB calls per variant")->check(CLI::PositiveNumber);
  app.add_option("--cold", config.cold, "executor cold starts")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  return run(config);
}
