// SPDX-License-Identifier: MIT
// rjit-bench: what rjitd costs and what it saves, measured side by side in one run as ratios
// (MISSION.md, "How we know it is good"; results in docs/BENCHMARKS.md).
//
//  1. Cold compile (every iteration a cache miss: a "; nonce" comment line makes each
//     iteration's module bytes, and so its cache key, unique without changing the work):
//     through rjitd (request to object in hand) vs. the same pipeline in-process
//     (rjitd::compiler::compile with the same options) vs. an in-process LLVM ORC LLJIT compile
//     (parse, the same O-level pipeline, lookup), at -O0 and -O2. The three run interleaved,
//     in rotating order, so that drift of a shared machine hits them alike.
//  2. Cache hit: the same request repeated through rjitd, with the module sent every time and
//     with hash-first (lookup by key, no body), vs. the in-process -O2 compile.
//  3. For a small module (test/data/sieve.c, 5 functions) and a large one (stb_image, about 38k
//     lines of IR).
//
// The bench starts its own rjitd (--jobs 1, private socket in a temp dir) unless --server names
// a running one.
#include "bench-common.h"
#include "cache-key.h"
#include "compiler.h"
#include "lljit-compile.h"
#include "targets.h"

#include <remotejit/client.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

namespace fs = std::filesystem;
using rjitbench::Clock;
using rjitbench::cpuTicks;
using rjitbench::Daemon;
using rjitbench::fixed;
using rjitbench::json;
using rjitbench::loadAverage;
using rjitbench::machineInfo;
using rjitbench::medMin;
using rjitbench::msSince;
using rjitbench::pairedRatio;
using rjitbench::ratio;
using rjitbench::readFile;
using rjitbench::selfDirectory;
using rjitbench::Series;
using rjitbench::Table;
using rjitbench::waitUntilServing;
using rjitbench::withNonce;

// --- workloads ---------------------------------------------------------------------------------

struct Module {
  std::string name;    ///< "small", "large"
  std::string what;    ///< for the table's legend
  std::string text;    ///< textual IR
  std::string symbol;  ///< looked up by LLJIT
  size_t lines = 0;
};

Module loadModule(const std::string& name, const std::string& what, const fs::path& path,
                  const std::string& symbol) {
  Module m{name, what, readFile(path), symbol, 0};
  m.lines = static_cast<size_t>(std::count(m.text.begin(), m.text.end(), '\n'));
  return m;
}

struct Config {
  std::string rjitd;
  std::string server;
  std::string jsonPath;
  std::string smallIr, largeIr;
  unsigned coldSmall = 40, coldLargeO0 = 21, coldLargeO2 = 11;
  unsigned warmSmall = 2000, warmLarge = 300, statsCalls = 2000;
  double scale = 1.0;
  bool lljit = true;
};

unsigned scaled(unsigned n, double scale) {
  return std::max(1u, static_cast<unsigned>(n * scale + 0.5));
}

struct ColdResult {
  std::string module;
  unsigned level = 0;
  Series rjitd, inProcess, lljit, serverCompile;
  Series overhead;          ///< per request: rjitd latency minus the compile time rjitd reports
  unsigned unexpected = 0;  ///< rjitd answers that were cache hits (should be none)
};

struct WarmResult {
  std::string module, path;
  Series ms;
  double inProcessO2Ms = 0;  ///< median in-process -O2 compile of the same module
  unsigned unexpected = 0;   ///< answers that were compiles, or hash-first sends with a body
};

class Bench {
public:
  Bench(const Config& config, const std::string& address)
      : config_(config), triple_(rjitd::compiler::defaultTriple()) {
    const rjitd::TargetName* target = rjitd::resolveTarget(rjitd::knownTargets(), triple_, "");
    if (target == nullptr)
      throw std::runtime_error("rjitd does not know the host triple " + triple_);
    cpu_ = target->defaultCpu;
    std::random_device random;
    run_ = std::to_string(random()) + "-" + std::to_string(getpid());

    rjit::ClientOptions base;
    base.servers = {address};
    base.timeout = std::chrono::milliseconds(300000);
    base.clientName = "rjit-bench";
    // Cold compiles use the library's default hash-first threshold (RJIT_HASH_FIRST_BYTES or
    // 64 KiB): what an application gets. The large module therefore goes lookup (miss), then
    // compile with the body.
    coldClient_.emplace(base);
    rjit::ClientOptions body = base;
    body.hashFirstBytes = std::numeric_limits<uint64_t>::max();
    bodyClient_.emplace(body);
    rjit::ClientOptions hashFirst = base;
    hashFirst.hashFirstBytes = 0;
    hashClient_.emplace(hashFirst);
  }

  const std::string& triple() const { return triple_; }
  const std::string& cpu() const { return cpu_; }

  rjit::CompileRequest request(const Module& m, std::string bytes, unsigned level) const {
    return rjitbench::textRequest(m.name, std::move(bytes), level);
  }

  rjitd::compiler::CompileOptions inProcessOptions(const Module& m, unsigned level) const {
    rjitd::compiler::CompileOptions o;
    o.triple = triple_;
    o.optLevel = level;
    o.format = rjitd::compiler::IrFormat::Text;
    o.moduleName = m.name + ".ll";
    return o;
  }

  rjitbench::LljitOptions lljitOptions(const Module& m, unsigned level) const {
    return {triple_, cpu_, level, m.symbol};
  }

  /// Untimed checks before measuring: rjitd and the in-process compile produce the same object
  /// bytes; the large module runs correctly under LLJIT.
  void check(const Module& m, unsigned level, std::vector<std::string>& notes) {
    std::string bytes = withNonce(m.text, run_, nonce_++);
    rjit::CompiledObject remote = coldClient_->compile(request(m, bytes, level));
    rjitd::compiler::CompileResult local =
        rjitd::compiler::compile(bytes, inProcessOptions(m, level));
    if (auto* failure = std::get_if<rjitd::Failure>(&local))
      throw std::runtime_error("in-process compile of " + m.name + " failed: " + failure->message);
    const auto& object = std::get<rjitd::CompiledObject>(local);
    bool same = object.object == remote.object;
    std::string line = m.name + " -O" + std::to_string(level) + ": rjitd object " +
                       std::to_string(remote.object.size()) + " bytes, in-process " +
                       std::to_string(object.object.size()) + " bytes, " +
                       (same ? "identical" : "DIFFERENT");
    if (config_.lljit) {
      if (m.symbol == "stb_bench_decode") {
        int result = rjitbench::lljitRun(bytes, lljitOptions(m, level), 1);
        line += "; LLJIT " + m.symbol + "(1) = " + std::to_string(result);
      } else {
        rjitbench::lljitCompile(bytes, lljitOptions(m, level));
      }
    }
    notes.push_back(line);
  }

  ColdResult cold(const Module& m, unsigned level, unsigned iterations) {
    ColdResult result;
    result.module = m.name;
    result.level = level;
    unsigned variants = config_.lljit ? 3 : 2;
    for (unsigned i = 0; i < iterations; ++i) {
      std::string bytes = withNonce(m.text, run_, nonce_++);
      for (unsigned k = 0; k < variants; ++k) {
        switch ((i + k) % variants) {
        case 0: {
          rjit::CompileRequest r = request(m, bytes, level);
          auto start = Clock::now();
          rjit::CompiledObject object = coldClient_->compile(r);
          double total = msSince(start);
          double server = static_cast<double>(object.compileMicros) / 1000.0;
          result.rjitd.add(total);
          result.serverCompile.add(server);
          result.overhead.add(total - server);
          if (object.fromCache)
            ++result.unexpected;
          break;
        }
        case 1: {
          auto options = inProcessOptions(m, level);
          auto start = Clock::now();
          rjitd::compiler::CompileResult object = rjitd::compiler::compile(bytes, options);
          result.inProcess.add(msSince(start));
          if (auto* failure = std::get_if<rjitd::Failure>(&object))
            throw std::runtime_error("in-process compile failed: " + failure->message);
          break;
        }
        default: {
          rjitbench::LljitTimes times = rjitbench::lljitCompile(bytes, lljitOptions(m, level));
          result.lljit.add(times.totalMs);
          break;
        }
        }
      }
      progress(m.name + " -O" + std::to_string(level) + " cold", i + 1, iterations);
    }
    return result;
  }

  WarmResult warm(const Module& m, bool hashFirst, unsigned iterations, double inProcessO2Ms) {
    WarmResult result;
    result.module = m.name;
    result.path = hashFirst ? "hit, hash-first (no body)" : "hit, module sent";
    result.inProcessO2Ms = inProcessO2Ms;
    rjit::Client& client = hashFirst ? *hashClient_ : *bodyClient_;
    // One module per path, compiled once (untimed) so that every timed request is a hit.
    rjit::CompileRequest r = request(m, withNonce(m.text, run_, nonce_++), 2);
    client.compile(r);
    for (unsigned i = 0; i < iterations; ++i) {
      auto start = Clock::now();
      rjit::CompiledObject object = client.compile(r);
      result.ms.add(msSince(start));
      if (!object.fromCache || (hashFirst && object.bodySent))
        ++result.unexpected;
      if (iterations >= 10 && (i + 1) % (iterations / 10) == 0)
        progress(m.name + " " + result.path, i + 1, iterations);
    }
    return result;
  }

  /// A stats() round trip, for reference. Not a bare floor: the server sums its metrics
  /// families for every call (a lookup hit of the small module is cheaper).
  Series statsRoundTrip(unsigned iterations) {
    Series s;
    bodyClient_->stats();
    for (unsigned i = 0; i < iterations; ++i) {
      auto start = Clock::now();
      bodyClient_->stats();
      s.add(msSince(start));
    }
    return s;
  }

  rjit::ServerStats stats() { return bodyClient_->stats(); }

  /// What a hash-first request costs the client before it sends anything: the cache key
  /// (SHA-256 over the module), computed here with the same code the client library uses.
  Series keyTime(const Module& m, unsigned iterations, const rjit::ServerInfo& info) {
    Series s;
    std::string identity = rjitd::cache::compilerIdentity(info.rjitdVersion, info.llvmVersion);
    for (unsigned i = 0; i < iterations; ++i) {
      auto start = Clock::now();
      // computeKey lives in another library (no LTO): the call cannot be optimized away.
      rjitd::cache::computeKey({m.text, triple_, cpu_, "", 2, identity});
      s.add(msSince(start));
    }
    return s;
  }

private:
  static void progress(const std::string& what, unsigned done, unsigned total) {
    std::fprintf(stderr, "\r  %-45s %u/%u", what.c_str(), done, total);
    if (done == total)
      std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

  const Config& config_;
  std::string triple_, cpu_, run_;
  uint64_t nonce_ = 0;
  std::optional<rjit::Client> coldClient_, bodyClient_, hashClient_;
};

// --- report ------------------------------------------------------------------------------------

int run(const Config& config) {
  fs::path self = selfDirectory();
  std::string smallPath =
      config.smallIr.empty() ? (self / "sieve-bench.ll").string() : config.smallIr;
  std::string largePath =
      config.largeIr.empty() ? (self / "stb-bench.ll").string() : config.largeIr;
  std::vector<Module> modules = {
      loadModule("small", "test/data/sieve.c (5 functions)", smallPath, "main"),
      loadModule("large", "stb_image 2.27 + bench/stb-driver.c", largePath, "stb_bench_decode"),
  };

  std::optional<Daemon> daemon;
  std::string address = rjitbench::serverAddress(config.server, config.rjitd, self, daemon);
  rjit::ServerInfo info = waitUntilServing(address, daemon ? &*daemon : nullptr);

  Bench bench(config, address);
  json out;
  out["machine"] = machineInfo();
  out["server"] = {{"address", address},
                   {"started_by_bench", daemon.has_value()},
                   {"rjitd", info.rjitdVersion},
                   {"llvm", info.llvmVersion},
                   {"protocol", info.protocolVersion}};
  out["target"] = {{"triple", bench.triple()}, {"cpu", bench.cpu()}};
  for (const Module& m : modules)
    out["modules"][m.name] = {{"what", m.what}, {"bytes", m.text.size()}, {"lines", m.lines}};

  rjitbench::RunConditions conditions;
  conditions.warnIfBusy();
  std::vector<std::string> notes;
  std::fprintf(stderr, "checking...\n");
  for (const Module& m : modules)
    for (unsigned level : {0u, 2u})
      bench.check(m, level, notes);

  std::vector<ColdResult> cold;
  for (const Module& m : modules)
    for (unsigned level : {0u, 2u}) {
      unsigned n = m.name == "small" ? config.coldSmall
                                     : (level == 0 ? config.coldLargeO0 : config.coldLargeO2);
      cold.push_back(bench.cold(m, level, scaled(n, config.scale)));
    }

  auto inProcessO2 = [&](const std::string& module) {
    for (const ColdResult& c : cold)
      if (c.module == module && c.level == 2)
        return c.inProcess.median();
    return 0.0;
  };
  std::vector<WarmResult> warm;
  for (const Module& m : modules)
    for (bool hashFirst : {false, true}) {
      unsigned n = m.name == "small" ? config.warmSmall : config.warmLarge;
      warm.push_back(bench.warm(m, hashFirst, scaled(n, config.scale), inProcessO2(m.name)));
    }
  Series floor = bench.statsRoundTrip(scaled(config.statsCalls, config.scale));
  std::vector<std::pair<std::string, Series>> keys;
  for (const Module& m : modules)
    keys.emplace_back(
        m.name,
        bench.keyTime(m,
                      scaled(m.name == "small" ? config.warmSmall : config.warmLarge, config.scale),
                      info));
  rjit::ServerStats stats = bench.stats();
  conditions.finish();

  // --- print ---
  json machine = out["machine"];
  std::cout << "rjit-bench: rjitd " << info.rjitdVersion << ", LLVM " << info.llvmVersion << ", "
            << address << (daemon ? " (started by the bench, --jobs 1)" : "") << "\n"
            << "machine: " << machine["cpu"].get<std::string>() << ", "
            << machine["cpus"].get<unsigned>() << " CPUs, " << machine["memory"].get<std::string>()
            << ", " << machine["kernel"].get<std::string>() << "\n"
            << "target: " << bench.triple() << ", CPU " << bench.cpu() << "\n";
  for (const Module& m : modules)
    std::cout << "module " << m.name << ": " << m.what << ", " << m.lines << " lines of IR, "
              << m.text.size() / 1024 << " KiB\n";
  for (const std::string& note : notes)
    std::cout << "check: " << note << "\n";

  std::cout << "\nCold compile, every iteration a cache miss; ms, median (min)\n"
               "  rjitd = request to object in hand through rjitd; in-process = "
               "rjitd::compiler::compile;\n"
               "  LLJIT = in-process ORC LLJIT: parse, verify, same pipeline, lookup; "
               "server = compile time rjitd reports;\n"
               "  overhead = per request, rjitd minus server: RPC, hashing, hand-offs to the "
               "compile worker and back;\n"
               "  overhead/in-process = median overhead / median in-process compile\n\n";
  Table coldTable({"module", "opt", "N", "rjitd", "in-process", "LLJIT", "server", "overhead",
                   "overhead/in-process", "rjitd/in-process", "rjitd/LLJIT", "in-process/LLJIT"});
  for (const ColdResult& c : cold) {
    coldTable.add(
        {c.module, "-O" + std::to_string(c.level), std::to_string(c.rjitd.count()),
         medMin(c.rjitd, 2), medMin(c.inProcess, 2), medMin(c.lljit, 2), medMin(c.serverCompile, 2),
         medMin(c.overhead, 2),
         fixed(100.0 * ratio(c.overhead.median(), c.inProcess.median()), 1) + " %",
         fixed(ratio(c.rjitd.median(), c.inProcess.median()), 3) + " (" +
             fixed(ratio(c.rjitd.min(), c.inProcess.min()), 3) + ")",
         c.lljit.empty() ? "-"
                         : fixed(ratio(c.rjitd.median(), c.lljit.median()), 3) + " (" +
                               fixed(ratio(c.rjitd.min(), c.lljit.min()), 3) + ")",
         c.lljit.empty() ? "-" : fixed(ratio(c.inProcess.median(), c.lljit.median()), 3)});
  }
  coldTable.print(std::cout);
  std::cout << "  (ratios: of medians, of minimums in parentheses)\n";

  std::cout << "\nCache hit, the same -O2 request repeated through rjitd; request to object in "
               "hand; us, median (min)\n\n";
  Table warmTable({"module", "path", "N", "latency us", "in-process -O2 ms", "speed-up"});
  for (const WarmResult& w : warm)
    warmTable.add({w.module, w.path, std::to_string(w.ms.count()),
                   fixed(w.ms.median() * 1000, 1) + " (" + fixed(w.ms.min() * 1000, 1) + ")",
                   fixed(w.inProcessO2Ms, 1),
                   fixed(ratio(w.inProcessO2Ms, w.ms.median()), 0) + "x"});
  warmTable.add({"-", "stats() round trip (reference)", std::to_string(floor.count()),
                 fixed(floor.median() * 1000, 1) + " (" + fixed(floor.min() * 1000, 1) + ")", "",
                 ""});
  for (const auto& [name, series] : keys)
    warmTable.add({name, "(client-side cache key, SHA-256, no I/O)", std::to_string(series.count()),
                   fixed(series.median() * 1000, 1) + " (" + fixed(series.min() * 1000, 1) + ")",
                   "", ""});
  warmTable.print(std::cout);
  std::cout << "  (speed-up = median in-process -O2 compile / median cache-hit latency)\n";

  unsigned unexpected = 0;
  for (const ColdResult& c : cold)
    unexpected += c.unexpected;
  for (const WarmResult& w : warm)
    unexpected += w.unexpected;
  std::cout << "\nserver: " << stats.compiles << " compiles, " << stats.cacheHits << " hits, "
            << stats.cacheMisses << " misses, " << stats.lookups << " lookups (" << stats.lookupHits
            << " hits), " << stats.cacheEntries << " cached objects (" << stats.cacheBytes / 1024
            << " KiB)\n";
  if (unexpected != 0)
    std::cout << "WARNING: " << unexpected
              << " answers were not what the measurement assumed (a cold request served from "
                 "the cache, a hit that compiled, or a hash-first hit that sent the body)\n";
  std::cout << conditions.describe() << "\n";

  // --- json ---
  for (const ColdResult& c : cold)
    out["cold"].push_back(
        {{"module", c.module},
         {"opt_level", c.level},
         {"rjitd", c.rjitd.toJson()},
         {"in_process", c.inProcess.toJson()},
         {"lljit", c.lljit.empty() ? json() : c.lljit.toJson()},
         {"server_compile", c.serverCompile.toJson()},
         {"overhead", c.overhead.toJson()},
         {"ratio_rjitd_in_process", ratio(c.rjitd.median(), c.inProcess.median())},
         {"ratio_rjitd_in_process_of_minimums", ratio(c.rjitd.min(), c.inProcess.min())},
         {"ratio_rjitd_in_process_paired", pairedRatio(c.rjitd, c.inProcess)},
         {"overhead_over_in_process", ratio(c.overhead.median(), c.inProcess.median())},
         {"ratio_rjitd_lljit", ratio(c.rjitd.median(), c.lljit.median())},
         {"ratio_rjitd_lljit_paired", pairedRatio(c.rjitd, c.lljit)},
         {"unexpected_cache_hits", c.unexpected}});
  for (const WarmResult& w : warm)
    out["warm"].push_back({{"module", w.module},
                           {"path", w.path},
                           {"latency", w.ms.toJson()},
                           {"in_process_o2_median_ms", w.inProcessO2Ms},
                           {"speedup_vs_in_process_o2", ratio(w.inProcessO2Ms, w.ms.median())},
                           {"unexpected", w.unexpected}});
  out["stats_round_trip"] = floor.toJson();
  for (const auto& [name, series] : keys)
    out["client_key_sha256"][name] = series.toJson();
  out["checks"] = notes;
  conditions.toJson(out);

  if (daemon) {
    std::string how = daemon->stop();
    std::cout << "rjitd stopped with SIGTERM: " << how << "\n";
    out["server"]["stop"] = how;
    if (how != "exit 0")
      std::cerr << "rjitd log:\n" << daemon->logText();
  }
  if (!config.jsonPath.empty()) {
    std::ofstream file(config.jsonPath);
    file << out.dump(2) << "\n";
    if (!file)
      throw std::runtime_error("cannot write " + config.jsonPath);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  Config config;
  CLI::App app{"rjit-bench: cold compile through rjitd vs. in-process, and cache-hit latency"};
  app.add_option("--rjitd", config.rjitd,
                 "rjitd binary to start (default: <builddir>/service/rjitd next to this bench)");
  app.add_option("--server", config.server,
                 "use a running rjitd at this address (unix:/PATH, tcp:HOST:PORT) instead");
  app.add_option("--json", config.jsonPath, "also write the results as JSON to this file");
  app.add_option("--small-ir", config.smallIr, "small module (default: sieve-bench.ll here)");
  app.add_option("--large-ir", config.largeIr, "large module (default: stb-bench.ll here)");
  app.add_option("--cold-small", config.coldSmall, "iterations, small module cold (each level)")
      ->capture_default_str();
  app.add_option("--cold-large-o0", config.coldLargeO0, "iterations, large module cold -O0")
      ->capture_default_str();
  app.add_option("--cold-large-o2", config.coldLargeO2, "iterations, large module cold -O2")
      ->capture_default_str();
  app.add_option("--warm-small", config.warmSmall, "iterations, small module cache hits")
      ->capture_default_str();
  app.add_option("--warm-large", config.warmLarge, "iterations, large module cache hits")
      ->capture_default_str();
  app.add_option("--stats-calls", config.statsCalls, "iterations of the stats() round trip")
      ->capture_default_str();
  app.add_option("--scale", config.scale,
                 "multiply every iteration count (e.g. 0.2 for a quick run)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bool noLljit = false;
  app.add_flag("--no-lljit", noLljit, "skip the in-process ORC LLJIT comparison");
  CLI11_PARSE(app, argc, argv);
  config.lljit = !noLljit;
  try {
    return run(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
}
