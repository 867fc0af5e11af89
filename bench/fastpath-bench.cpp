// SPDX-License-Identifier: MIT
// fastpath-bench: rjitd's same-host fast path (Client::load: rjitd compiles the module or finds
// it in its cache, links it for this process's address space and hands it over as a sealed
// memfd) side by side with the plain alternatives, in one run, as ratios (MISSION.md, "How we
// know it is good"; results and the command in docs/BENCHMARKS.md):
//
//  1. Load latency, request to callable pointer (Client::load + Module::lookup): cold (compile
//     included; every iteration a cache miss) and warm (cached; load, lookup, unload, repeated)
//     vs. compiling the same IR in-process with LLVM ORC LLJIT at the same level (-O0, -O2).
//     With a compile() cache hit (object in hand, nothing linked) for reference.
//  2. Call speed: compute kernels called in a tight loop through the fast-path pointer and
//     through the LLJIT-compiled pointer of the same IR at the same level; A/B/B/A... batches,
//     the ratio of each adjacent pair, and its spread.
//  3. Peak RSS: a client process that links only libremotejit-client (fastpath-client-rss)
//     loads the module through rjitd and calls it; a process that embeds LLVM
//     (fastpath-lljit-rss) JITs the same module and calls it. Both are started through
//     rss-run, so that their peak RSS is their own (see rss-run.c).
//  4. LLVM's own tools on the same object: the object rjitd compiled plus a small `main`
//     (also compiled by rjitd) run by `llvm-jitlink-19` in-process, with `-oop-executor` and
//     with `-oop-executor --use-shared-memory`. That tool fails on some runs here (teardown
//     races, notes/toolchain-probe.md section 4): failures are retried, counted and reported,
//     never fatal.
//
// Each section is a file of its own (fastpath-loads.cpp, fastpath-calls.cpp, fastpath-rss.cpp,
// fastpath-jitlink.cpp; what they share in fastpath.h); this file runs them and prints.
//
// Modules: kernels (bench/fastpath-kernels.c, 4 functions, no imports), sieve
// (test/data/sieve.c, 5 functions, libc imports) and stb (stb_image + bench/stb-driver.c,
// 38k lines of IR). The bench starts its own rjitd (--jobs 1, private socket) unless --server
// names a running one. Every loop is bounded in count, and the timed ones also in time.
#include "fastpath.h"

#include <remotejit/client.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace fastpath {
namespace {

/// The benchmark modules, read from the bench's directory (bench/meson.build builds them).
std::vector<IrModule> readModules(const fs::path& self) {
  for (const char* helper : {"rss-run", "fastpath-client-rss", "fastpath-lljit-rss"})
    if (!fs::exists(self / helper))
      throw std::runtime_error(std::string(helper) + " not found next to the bench in " +
                               self.string() + " (ninja -C BUILDDIR fastpath-bench-all)");
  auto loadIr = [&](std::string name, std::string what, std::string file, std::string symbol,
                    int argument, bool callable, bool large) {
    IrModule m{std::move(name), std::move(what), self / file, {}, std::move(symbol),
               argument,        callable,        large,       0};
    m.text = rjitbench::readFile(m.path);
    m.lines = static_cast<size_t>(std::count(m.text.begin(), m.text.end(), '\n'));
    return m;
  };
  return {
      loadIr("kernels", "bench/fastpath-kernels.c: 4 functions, no imports", "fastpath-kernels.ll",
             "fp_sort", 7, true, false),
      loadIr("sieve", "test/data/sieve.c: 5 functions, libc imports", "sieve-bench.ll", "main", 0,
             false, false),
      loadIr("stb", "stb_image 2.27 + bench/stb-driver.c", "stb-bench.ll", "stb_bench_decode", 1,
             true, true),
  };
}

/// A private temporary directory for objects and child output, removed at destruction.
class ScratchDir {
public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "fastpath-bench.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }

private:
  fs::path path_;
};

/// Every section's results.
struct Sections {
  LoadSection loads;
  std::vector<CallResult> calls;
  std::vector<RssRow> rss;
  JitlinkSection jitlink;
};

Sections measure(Bench& bench, const std::vector<IrModule>& modules) {
  const Config& config = bench.config();
  Sections s;
  s.loads.firstLoadMs = warmUp(bench, modules.front());
  if (config.loads)
    measureLoads(bench, modules, s.loads);
  for (const IrModule& m : modules)
    if (m.callable)
      bench.expect(m, 2);  // the result the other sections check (known after the loads)
  if (config.calls)
    for (unsigned level : config.callLevels) {
      auto results = measureCalls(bench, modules, level);
      s.calls.insert(s.calls.end(), results.begin(), results.end());
    }
  if (config.rss)
    s.rss = measureRss(bench, modules);
  if (config.jitlink)
    s.jitlink = measureJitlink(bench, modules);
  return s;
}

void printHeader(const json& machine, const rjit::ServerInfo& info, const Bench& bench,
                 bool startedDaemon, const std::vector<IrModule>& modules, std::ostream& os) {
  os << "fastpath-bench: rjitd " << info.rjitdVersion << ", LLVM " << info.llvmVersion << ", "
     << bench.address() << (startedDaemon ? " (started by the bench, --jobs 1)" : "") << "\n"
     << "machine: " << machine["cpu"].get<std::string>() << ", " << machine["cpus"].get<unsigned>()
     << " CPUs, " << machine["memory"].get<std::string>() << ", "
     << machine["kernel"].get<std::string>() << "\n"
     << "target: " << bench.triple() << ", CPU " << bench.cpu() << "\n";
  for (const IrModule& m : modules)
    os << "module " << m.name << ": " << m.what << ", " << m.lines << " lines of IR, "
       << m.text.size() / 1024 << " KiB\n";
}

/// The bench's problems and the loads that were not what the measurement assumed.
std::vector<std::string> problems(const Bench& bench, const LoadSection& loads) {
  std::vector<std::string> problems = bench.problems();
  for (const LoadResult& r : loads.rows)
    if (r.unexpected != 0)
      problems.push_back(r.module + " -O" + std::to_string(r.level) + ": " +
                         std::to_string(r.unexpected) +
                         " loads were not what the measurement assumed (a cold load served "
                         "from the cache, or a warm one that compiled)");
  return problems;
}

void printSummary(const rjit::ServerStats& stats, const std::vector<std::string>& problems,
                  const rjitbench::RunConditions& conditions, std::ostream& os) {
  os << "\nserver: " << stats.compiles << " compiles, " << stats.cacheHits << " hits, "
     << stats.loads << " loads, " << stats.links << " links (" << stats.linkFailures << " failed), "
     << stats.loadedImages << " images still loaded (" << stats.loadedImageBytes / 1024
     << " KiB)\n";
  for (const std::string& p : problems)
    os << "PROBLEM: " << p << "\n";
  os << conditions.describe() << "\n";
}

/// A loaded module outlives its Client and rjitd (client.h promises it): load one, drop the
/// client, stop rjitd, then call and unload it.
void checkSurvivor(Bench& bench, rjitbench::Daemon& daemon, const IrModule& kernels, json& out) {
  std::optional<rjit::Module> survivor;
  {
    rjit::Client client(bench.clientOptions("fastpath-bench-survivor"));
    survivor.emplace(client.load(request(kernels, kernels.text, 2)));
  }
  std::string how = daemon.stop();
  std::cout << "rjitd stopped with SIGTERM: " << how << "\n";
  int value = survivor->lookup<int(int)>("fp_sort")(7);
  auto start = Clock::now();
  survivor->unload();
  std::string check =
      "a module loaded before rjitd stopped: fp_sort(7) = " + std::to_string(value) +
      (value == bench.expected("kernels").value_or(-1) ? " (right)" : " (WRONG)") +
      " after rjitd exited; unload took " + fixed(msSince(start), 2) + " ms";
  std::cout << "check: " << check << "\n";
  out["survivor_check"] = check;
  out["server"]["stop"] = how;
  if (how != "exit 0")
    std::cerr << "rjitd log:\n" << daemon.logText();
}

int run(const Config& config) {
  fs::path self = rjitbench::selfDirectory();
  std::vector<IrModule> modules = readModules(self);
  ScratchDir scratch;

  std::optional<rjitbench::Daemon> daemon;
  std::string address = rjitbench::serverAddress(config.server, config.rjitd, self, daemon);
  rjit::ServerInfo info = rjitbench::waitUntilServing(address, daemon ? &*daemon : nullptr);
  Bench bench(config, address, daemon ? daemon->pid() : -1, info, self, scratch.path());

  json out;
  out["machine"] = rjitbench::machineInfo();
  out["server"] = {{"address", address},
                   {"started_by_bench", daemon.has_value()},
                   {"rjitd", info.rjitdVersion},
                   {"llvm", info.llvmVersion}};
  out["target"] = {{"triple", bench.triple()}, {"cpu", bench.cpu()}};
  for (const IrModule& m : modules)
    out["modules"][m.name] = {{"what", m.what}, {"bytes", m.text.size()}, {"lines", m.lines}};

  rjitbench::RunConditions conditions;
  conditions.warnIfBusy();
  Sections sections = measure(bench, modules);
  rjit::ServerStats stats = bench.client().stats();
  conditions.finish();

  printHeader(out["machine"], info, bench, daemon.has_value(), modules, std::cout);
  printLoads(sections.loads, std::cout);
  printCalls(sections.calls, std::cout);
  printRss(sections.rss, std::cout);
  printJitlink(sections.jitlink, std::cout);
  std::vector<std::string> found = problems(bench, sections.loads);
  printSummary(stats, found, conditions, std::cout);

  loadsToJson(sections.loads, out);
  callsToJson(sections.calls, out);
  rssToJson(sections.rss, out);
  jitlinkToJson(sections.jitlink, out);
  out["problems"] = found;
  conditions.toJson(out);

  if (daemon)
    checkSurvivor(bench, *daemon, modules.front(), out);
  if (!config.jsonPath.empty()) {
    std::ofstream file(config.jsonPath);
    file << out.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    if (!file)
      throw std::runtime_error("cannot write " + config.jsonPath);
  }
  return 0;
}

}  // namespace
}  // namespace fastpath

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  fastpath::Config config;
  CLI::App app{"fastpath-bench: rjitd's same-host fast path vs. in-process LLJIT and "
               "llvm-jitlink: load latency, call speed, peak memory"};
  app.add_option("--rjitd", config.rjitd,
                 "rjitd binary to start (default: <builddir>/service/rjitd next to this bench)");
  app.add_option("--server", config.server,
                 "use a running rjitd at this unix:/PATH instead (the fast path needs a Unix "
                 "socket to pass the memfd)");
  app.add_option("--json", config.jsonPath, "also write the results as JSON to this file");
  app.add_option("--llvm-jitlink", config.jitlinkProgram, "llvm-jitlink program")
      ->capture_default_str();
  app.add_option("--executor", config.executor, "llvm-jitlink-executor program")
      ->capture_default_str();
  app.add_option("--cold-small", config.coldSmall, "cold loads per level, small modules")
      ->capture_default_str();
  app.add_option("--cold-large", config.coldLarge, "cold loads per level, stb")
      ->capture_default_str();
  app.add_option("--warm-small", config.warmSmall, "warm loads per level, small modules")
      ->capture_default_str();
  app.add_option("--warm-large", config.warmLarge, "warm loads per level, stb")
      ->capture_default_str();
  app.add_option("--lljit-small", config.lljitSmall, "LLJIT compiles per level, small modules")
      ->capture_default_str();
  app.add_option("--lljit-large-o0", config.lljitLargeO0, "LLJIT compiles of stb at -O0")
      ->capture_default_str();
  app.add_option("--lljit-large-o2", config.lljitLargeO2, "LLJIT compiles of stb at -O2")
      ->capture_default_str();
  app.add_option("--call-rounds", config.callRounds,
                 "rounds of six batches (A B B A A B) per function")
      ->capture_default_str();
  app.add_option("--call-batch-ms", config.callBatchMs, "target length of one batch of calls")
      ->capture_default_str();
  app.add_option("--call-levels", config.callLevels, "optimization levels for the call speed")
      ->capture_default_str();
  app.add_option("--rss-runs", config.rssRuns, "runs of each peak-memory child")
      ->capture_default_str();
  app.add_option("--jitlink-runs", config.jitlinkRuns,
                 "successful llvm-jitlink runs wanted per mode (at most 3x as many tries)")
      ->capture_default_str();
  app.add_option("--jitlink-rss-runs", config.jitlinkRssRuns,
                 "llvm-jitlink runs with the executor wrapped to measure its memory")
      ->capture_default_str();
  app.add_option("--scale", config.scale,
                 "multiply every iteration count (e.g. 0.2 for a quick run)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bool noLoads = false, noCalls = false, noRss = false, noJitlink = false;
  app.add_flag("--no-loads", noLoads, "skip the load latency (1)");
  app.add_flag("--no-calls", noCalls, "skip the call speed (2)");
  app.add_flag("--no-rss", noRss, "skip the peak memory (3)");
  app.add_flag("--no-jitlink", noJitlink, "skip llvm-jitlink (4)");
  CLI11_PARSE(app, argc, argv);
  config.loads = !noLoads;
  config.calls = !noCalls;
  config.rss = !noRss;
  config.jitlink = !noJitlink;
  try {
    return fastpath::run(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
}
