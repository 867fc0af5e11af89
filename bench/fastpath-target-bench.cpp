// SPDX-License-Identifier: MIT
// fastpath-target-bench: the fast path (Client::load) for the architecture this bench was built
// for, without LLVM in the bench, so that a cross build has it too (docs/BENCHMARKS.md,
// "AArch64 under qemu"). The aarch64 build runs under qemu-user against the x86_64 rjitd; the
// same figures from the native build are the yardstick, and the ratios between the two runs are
// what the section reports:
//
//  1. Warm load latency of the kernels module (bench/fastpath-kernels.c, compiled to IR for this
//     target) at -O0 and -O2: load + lookup, then unload, with a stats() round trip on the same
//     connection interleaved as the floor any request pays.
//  2. Call speed of the four kernels through the fast-path pointer (rjitd's -O2 code) and
//     through the same kernels compiled into this bench by the build's C compiler
//     (gcc -O2, or aarch64-linux-gnu-gcc -O2 in the cross build), in alternating batches
//     (call-pair.h). Under qemu both sides pay the emulation; the C build's ratio between the
//     two runs is the emulation's cost alone.
//
// The bench starts its own rjitd (--jobs 1, private socket; --rjitd names the binary) unless
// --server names a running one. Every loop is bounded in count and in time.
#include "bench-common.h"
#include "call-pair.h"

#include <remotejit/client.h>

#include <CLI/CLI.hpp>
#include <kj/debug.h>

#include <sys/utsname.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <random>

// The kernels as the build's C compiler built them (fastpath-kernels.c is part of this program).
extern "C" {
int fp_mix(int x);
int fp_collatz(int n);
int fp_checksum(const unsigned char* data, int length);
int fp_sort(int seed);
}

namespace {

using rjitbench::Clock;
using rjitbench::fixed;
using rjitbench::json;
using rjitbench::msSince;
using rjitbench::Series;
using rjitbench::Table;

struct Config {
  std::string rjitd, server, jsonPath;
  unsigned warm = 500;  ///< warm loads per level
  std::vector<unsigned> levels = {0, 2};
  unsigned callRounds = 21;
  double callBatchMs = 30;
};

/// The C build of each kernel, by name.
const std::map<std::string, void*>& nativeKernels() {
  static const std::map<std::string, void*> kernels = {
      {"fp_mix", reinterpret_cast<void*>(&fp_mix)},
      {"fp_collatz", reinterpret_cast<void*>(&fp_collatz)},
      {"fp_checksum", reinterpret_cast<void*>(&fp_checksum)},
      {"fp_sort", reinterpret_cast<void*>(&fp_sort)},
  };
  return kernels;
}

struct WarmResult {
  unsigned level = 0;
  Series load, unload, roundTrip;  ///< ms
  unsigned unexpected = 0;         ///< warm loads that compiled
  int check = 0;                   ///< fp_sort(7) through the fast path
};

/// One cold load (the module's first), three untimed warm ones, then `config.warm` timed warm
/// loads, each followed by its unload and a stats() round trip. Bounded: 120 s per level.
WarmResult measureWarm(rjit::Client& client, const std::string& bytes, unsigned level,
                       const Config& config) {
  WarmResult r;
  r.level = level;
  rjit::CompileRequest request = rjitbench::textRequest("kernels", bytes, level);
  {
    rjit::Module first = client.load(request);
    r.check = first.lookup<int(int)>("fp_sort")(7);
  }
  for (unsigned i = 0; i < 3; ++i)
    client.load(request).unload();
  auto deadline = Clock::now() + std::chrono::seconds(120);
  for (unsigned i = 0; i < config.warm && Clock::now() < deadline; ++i) {
    auto start = Clock::now();
    rjit::Module module = client.load(request);
    void* p = module.address("fp_sort");
    r.load.add(msSince(start));
    KJ_REQUIRE(p != nullptr, "fp_sort not found after a load");
    if (!module.object().fromCache)
      ++r.unexpected;
    start = Clock::now();
    module.unload();
    r.unload.add(msSince(start));
    start = Clock::now();
    client.stats();
    r.roundTrip.add(msSince(start));
  }
  return r;
}

struct CallResult {
  rjitbench::CallKernel kernel;
  rjitbench::PairTiming timing;  ///< A: the fast path (rjitd -O2), B: the C build
};

std::vector<CallResult> measureCalls(rjit::Client& client, const std::string& bytes,
                                     const Config& config) {
  rjit::Module module = client.load(rjitbench::textRequest("kernels", bytes, 2));
  std::vector<CallResult> results;
  for (const rjitbench::CallKernel& k : rjitbench::callKernels()) {
    if (k.module != "kernels")
      continue;
    void* fast = module.address(k.name);
    KJ_REQUIRE(fast != nullptr, "not found after a load", k.name);
    CallResult r{k, rjitbench::timePair(k, fast, nativeKernels().at(k.name), config.callRounds,
                                        config.callBatchMs, [&](unsigned done, unsigned total) {
                                          std::fprintf(stderr, "\r%s calls: %u/%u%s",
                                                       k.name.c_str(), done, total,
                                                       done == total ? "\n" : "");
                                        })};
    results.push_back(std::move(r));
  }
  return results;
}

std::string spread(const Series& s, int decimals) {
  return fixed(s.median(), decimals) + " [" + fixed(s.min(), decimals) + ", " +
         fixed(s.max(), decimals) + "]";
}

void print(const std::vector<WarmResult>& warm, const std::vector<CallResult>& calls,
           std::ostream& os) {
  os << "\n1. Warm load of the kernels module: load + lookup, then unload; a stats() round trip "
        "on the same connection for reference\n   us: median (p90) [min]\n\n";
  Table loads(
      {"opt", "loads", "warm load us", "unload us", "stats() us", "load/stats()", "compiled"});
  auto us = [](const Series& s) {
    return fixed(s.median() * 1000, 0) + " (" + fixed(s.percentile(90) * 1000, 0) + ") [" +
           fixed(s.min() * 1000, 0) + "]";
  };
  for (const WarmResult& r : warm)
    loads.add({"-O" + std::to_string(r.level), std::to_string(r.load.count()), us(r.load),
               us(r.unload), us(r.roundTrip),
               fixed(rjitbench::pairedRatio(r.load, r.roundTrip), 1) + "x",
               std::to_string(r.unexpected)});
  loads.print(os);
  os << "\n2. Call speed: the fast-path pointer (rjitd, -O2) and the C compiler's build of the "
        "same kernels (this bench, -O2)\n   ns/call: median over rounds of each side's best "
        "batch; fast/C: per-round ratio, median [min, max]\n\n";
  Table table({"function", "work", "calls/batch", "rounds", "fast ns/call", "C ns/call", "fast/C",
               "same sums"});
  for (const CallResult& r : calls)
    table.add({r.kernel.name, r.kernel.what, std::to_string(r.timing.callsPerBatch),
               std::to_string(r.timing.pairRatio.count()), fixed(r.timing.aNs.median(), 2),
               fixed(r.timing.bNs.median(), 2), spread(r.timing.pairRatio, 3),
               r.timing.identical ? "yes" : "NO"});
  table.print(os);
}

json toJson(const std::vector<WarmResult>& warm, const std::vector<CallResult>& calls) {
  json out;
  for (const WarmResult& r : warm)
    out["warm_loads"].push_back({{"opt_level", r.level},
                                 {"load_ms", r.load.toJson()},
                                 {"unload_ms", r.unload.toJson()},
                                 {"stats_round_trip_ms", r.roundTrip.toJson()},
                                 {"compiled", r.unexpected},
                                 {"fp_sort_7", r.check}});
  for (const CallResult& r : calls)
    out["calls"].push_back({{"function", r.kernel.name},
                            {"calls_per_batch", r.timing.callsPerBatch},
                            {"fast_best_ns_per_call", r.timing.aNs.ms},
                            {"c_best_ns_per_call", r.timing.bNs.ms},
                            {"ratio_median", r.timing.pairRatio.median()},
                            {"identical_sums", r.timing.identical}});
  return out;
}

int run(const Config& config) {
  std::filesystem::path self = rjitbench::selfDirectory();
  std::filesystem::path modulePath = self / "fastpath-kernels.ll";
  KJ_REQUIRE(std::filesystem::exists(modulePath),
             "the kernels' IR is missing (ninja -C BUILDDIR bench/fastpath-kernels.ll)",
             modulePath.string());
  std::string text = rjitbench::readFile(modulePath);

  std::optional<rjitbench::Daemon> daemon;
  std::string address = rjitbench::serverAddress(config.server, config.rjitd, self, daemon);
  rjit::ServerInfo info = rjitbench::waitUntilServing(address, daemon ? &*daemon : nullptr);
  rjit::ClientOptions options;
  options.servers = {address};
  options.timeout = std::chrono::milliseconds(300000);
  options.clientName = "fastpath-target-bench";
  rjit::Client client(options);

  // A nonce unique to this run: the module's first load compiles, every later one is warm.
  std::random_device random;
  std::string run = std::to_string(random()) + "-" + std::to_string(getpid());
  rjitbench::RunConditions conditions;
  conditions.warnIfBusy();
  std::vector<WarmResult> warm;
  std::vector<CallResult> calls;
  for (unsigned level : config.levels) {
    warm.push_back(measureWarm(client, rjitbench::withNonce(text, run, level), level, config));
    std::fprintf(stderr, "-O%u warm loads: %zu\n", level, warm.back().load.count());
  }
  calls = measureCalls(client, rjitbench::withNonce(text, run, 100), config);
  conditions.finish();

  struct utsname names {};
  uname(&names);
  json machine = rjitbench::machineInfo();
  int expected = fp_sort(7);
  std::cout << "fastpath-target-bench: this bench runs as " << names.machine << ", rjitd "
            << info.rjitdVersion << " (default target " << info.defaultTriple << ") at " << address
            << "\nmachine: " << machine.dump() << "\n";
  print(warm, calls, std::cout);
  bool right = true;
  for (const WarmResult& r : warm)
    right = right && r.check == expected;
  for (const CallResult& r : calls)
    right = right && r.timing.identical;
  std::cout << "\ncheck: fp_sort(7) = " << expected << " from the C build; the fast path "
            << (right ? "agrees at every level and every call sum matched" : "DIFFERS") << "\n"
            << conditions.describe() << "\n";

  if (!config.jsonPath.empty()) {
    json out = toJson(warm, calls);
    out["machine"] = machine;
    out["bench_architecture"] = names.machine;
    out["server"] = {{"address", address}, {"default_triple", info.defaultTriple}};
    conditions.toJson(out);
    std::ofstream file(config.jsonPath);
    file << out.dump(2) << "\n";
    KJ_REQUIRE(file.good(), "cannot write the JSON", config.jsonPath);
  }
  return right ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  Config config;
  CLI::App app{"fastpath-target-bench: warm load latency and call speed of the fast path for "
               "this bench's architecture (LLVM-free; see docs/BENCHMARKS.md)"};
  app.add_option("--rjitd", config.rjitd,
                 "rjitd binary to start (default: <builddir>/service/rjitd next to this bench; "
                 "a cross build has none: give the native build's)");
  app.add_option("--server", config.server, "use a running rjitd at this unix:/PATH instead");
  app.add_option("--json", config.jsonPath, "also write the results as JSON to this file");
  app.add_option("--warm", config.warm, "warm loads per level")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--levels", config.levels, "optimization levels for the warm loads")
      ->capture_default_str();
  app.add_option("--call-rounds", config.callRounds, "rounds of six batches per function")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--call-batch-ms", config.callBatchMs, "target length of one batch of calls")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  // The bench's own checks are kj exceptions; the client library's errors and bench-common's
  // are std::exceptions. Either ends the run with its message.
  try {
    return run(config);
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.getDescription().cStr());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
  }
  return 1;
}
