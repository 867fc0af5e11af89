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
// Modules: kernels (bench/fastpath-kernels.c, 4 functions, no imports), sieve
// (test/data/sieve.c, 5 functions, libc imports) and stb (stb_image + bench/stb-driver.c,
// 38k lines of IR). The bench starts its own rjitd (--jobs 1, private socket) unless --server
// names a running one. Every loop is bounded in count, and the timed ones also in time.
#include "bench-common.h"
#include "lljit-compile.h"

#include <remotejit/client.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <spawn.h>
#include <sstream>
#include <string>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

namespace fs = std::filesystem;
using rjitbench::Clock;
using rjitbench::fixed;
using rjitbench::json;
using rjitbench::msSince;
using rjitbench::ratio;
using rjitbench::Series;
using rjitbench::Table;

// --- configuration -----------------------------------------------------------------------------

struct Config {
  std::string rjitd, server, jsonPath;
  std::string jitlinkProgram = "llvm-jitlink-19";
  std::string executor = "/usr/lib/llvm-19/bin/llvm-jitlink-executor";
  unsigned coldSmall = 5, coldLarge = 3;
  unsigned warmSmall = 500, warmLarge = 150;
  unsigned lljitSmall = 15, lljitLargeO0 = 7, lljitLargeO2 = 5;
  unsigned callRounds = 21;
  double callBatchMs = 30;
  std::vector<unsigned> callLevels = {2};
  unsigned rssRuns = 3;
  unsigned jitlinkRuns = 10;  ///< successful runs wanted per mode (at most 3x as many tries)
  unsigned jitlinkRssRuns = 3;
  double scale = 1.0;
  bool loads = true, calls = true, rss = true, jitlink = true;
};

unsigned scaled(unsigned n, double scale) {
  return std::max(1u, static_cast<unsigned>(n * scale + 0.5));
}

void progress(const std::string& what, unsigned done, unsigned total) {
  std::fprintf(stderr, "\r  %-50s %u/%u", what.c_str(), done, total);
  if (done == total)
    std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

// --- modules -----------------------------------------------------------------------------------

struct IrModule {
  std::string name;    ///< "kernels", "sieve", "stb"
  std::string what;    ///< for the legend
  fs::path path;       ///< the IR file (the RSS children read it)
  std::string text;    ///< textual IR
  std::string symbol;  ///< looked up after a load; the entry for the llvm-jitlink main
  int argument = 0;    ///< symbol(argument) is called in checks (if callable)
  bool callable = true;
  bool large = false;
  size_t lines = 0;
};

/// A comment line changes the module's bytes (and so its cache key), not the work.
std::string withNonce(const std::string& text, const std::string& run, uint64_t n) {
  std::string out = text;
  if (!out.empty() && out.back() != '\n')
    out += '\n';
  out += "; nonce " + run + "-" + std::to_string(n) + "\n";
  return out;
}

rjit::CompileRequest request(const IrModule& m, std::string bytes, unsigned level) {
  rjit::CompileRequest r;
  r.module = std::move(bytes);
  r.moduleName = m.name + ".ll";
  r.optLevel = level;
  r.format = rjit::IrFormat::Text;
  return r;
}

// --- this process and the daemon's ------------------------------------------------------------

long statusKb(pid_t pid, const std::string& field) {
  std::string value = rjitbench::firstLineWith("/proc/" + std::to_string(pid) + "/status", field);
  return value == "?" ? -1 : std::atol(value.c_str());
}

long fdCount(pid_t pid) {
  std::error_code error;
  long n = 0;
  for (fs::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", error), end;
       !error && it != end; it.increment(error))
    ++n;
  return error ? -1 : n;
}

/// Counts of what could leak across repeated loads: ours and (if we started it) rjitd's.
struct Footprint {
  long fds = -1, rssKb = -1, daemonFds = -1, daemonRssKb = -1;
  uint64_t loadedImages = 0, loadedImageBytes = 0;
};

Footprint footprint(rjit::Client& client, pid_t daemon) {
  Footprint f;
  // First a round trip: rjitd has then handled the release of the last unloaded image, which
  // travelled before it on the same connection.
  rjit::ServerStats stats = client.stats();
  f.loadedImages = stats.loadedImages;
  f.loadedImageBytes = stats.loadedImageBytes;
  f.fds = fdCount(getpid());
  f.rssKb = statusKb(getpid(), "VmRSS");
  if (daemon > 0) {
    f.daemonFds = fdCount(daemon);
    f.daemonRssKb = statusKb(daemon, "VmRSS");
  }
  return f;
}

json toJson(const Footprint& f) {
  return {{"fds", f.fds},
          {"rss_kb", f.rssKb},
          {"daemon_fds", f.daemonFds},
          {"daemon_rss_kb", f.daemonRssKb},
          {"server_loaded_images", f.loadedImages},
          {"server_loaded_image_bytes", f.loadedImageBytes}};
}

// --- child processes ---------------------------------------------------------------------------

/// A program run through rss-run: its output and rss-run's report.
struct ChildRun {
  bool reported = false;  ///< rss-run printed its line
  std::string status;     ///< "exit 42", "signal 11", "timeout"
  double wallMs = 0;
  long maxrssKb = -1;
  double userMs = 0, sysMs = 0;
  std::string out, err;  ///< the program's stdout and stderr (rss-run's line removed)
  /// From the program's "memory:" line (our children print one).
  long vmhwmKb = -1, rssAnonKb = -1, rssFileKb = -1;
  int llvmMapped = -1;
  std::optional<long long> result;  ///< from a "result: N" or "result N" line
};

bool parseReport(const std::string& line, ChildRun& run) {
  auto status = line.find("status=");
  auto wall = line.find(" wall_ms=");
  if (status == std::string::npos || wall == std::string::npos || wall < status)
    return false;
  run.status = line.substr(status + 7, wall - status - 7);
  double w = 0, u = 0, s = 0;
  long rss = -1;
  if (std::sscanf(line.c_str() + wall, " wall_ms=%lf maxrss_kb=%ld user_ms=%lf sys_ms=%lf", &w,
                  &rss, &u, &s) != 4)
    return false;
  run.wallMs = w;
  run.maxrssKb = rss;
  run.userMs = u;
  run.sysMs = s;
  return true;
}

/// Runs `command` under rss-run (timeout in seconds), stdout and stderr captured in `scratch`.
/// Extra environment entries ("NAME=value") are added to ours.
ChildRun runMeasured(const fs::path& rssRun, const std::vector<std::string>& command,
                     const fs::path& scratch, unsigned timeout,
                     const std::vector<std::string>& extraEnv = {}) {
  std::vector<std::string> args = {rssRun.string(), "--timeout", std::to_string(timeout), "--"};
  args.insert(args.end(), command.begin(), command.end());
  fs::path capture = scratch / "child";
  // Bounded by rss-run, which kills the program at `timeout`; the margin covers rss-run itself.
  std::optional<rjit::process::CommandResult> result =
      rjit::process::runCommand(args, rjitbench::childEnvironment(extraEnv), capture.string(),
                                std::chrono::seconds(timeout) + std::chrono::minutes(1));
  if (!result)
    throw std::runtime_error(rssRun.string() + " did not exit a minute past its timeout");
  ChildRun run;
  run.out = std::move(result->out);
  std::istringstream lines(result->err);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("rss-run: status=", 0) == 0)
      run.reported = parseReport(line, run);
    else
      run.err += line + "\n";
  }
  std::istringstream outLines(run.out);
  while (std::getline(outLines, line)) {
    long long value = 0;
    if (std::sscanf(line.c_str(), "result: %lld", &value) == 1 ||
        std::sscanf(line.c_str(), "result %lld", &value) == 1)
      run.result = value;
    long hwm = -1, rss = -1, anon = -1, file = -1;
    int mapped = -1;
    if (std::sscanf(line.c_str(),
                    "memory: vmhwm_kb=%ld vmrss_kb=%ld rssanon_kb=%ld rssfile_kb=%ld "
                    "llvm_mapped=%d",
                    &hwm, &rss, &anon, &file, &mapped) == 5) {
      run.vmhwmKb = hwm;
      run.rssAnonKb = anon;
      run.rssFileKb = file;
      run.llvmMapped = mapped;
    }
  }
  return run;
}

std::string firstLine(const std::string& text) {
  auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

/// The wall time of an `llvm-jitlink --show-times` timer line, in ms (the last "N.NNNN (" on
/// the line: LLVM leaves out the columns whose total is zero), or -1.
double timerWallMs(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(name) == std::string::npos)
      continue;
    double last = -1;
    std::istringstream words(line);
    std::string word, previous;
    while (words >> word) {
      if (word.rfind("(", 0) == 0 && !previous.empty())
        last = std::atof(previous.c_str());
      previous = word;
    }
    return last < 0 ? -1 : last * 1000.0;
  }
  return -1;
}

/// What llvm-jitlink wrote to stderr besides its --show-times report: its errors, first line.
std::string errorLines(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find_first_not_of(" \t") == std::string::npos || line.rfind("===", 0) == 0 ||
        line.find("timers for llvm-jitlink") != std::string::npos ||
        line.find("Total Execution Time") != std::string::npos ||
        line.find("---Wall Time---") != std::string::npos ||
        line.find("time to ") != std::string::npos || line.find("  Total") != std::string::npos)
      continue;
    // Printable ASCII only: llvm-jitlink sometimes prints garbage bytes in its error messages.
    for (char& c : line)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)
        c = '?';
    return line;
  }
  return "";
}

bool findInPath(const std::string& program) {
  if (program.find('/') != std::string::npos)
    return access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && access((fs::path(dir) / program).c_str(), X_OK) == 0)
      return true;
  return false;
}

// --- 1. load latency ---------------------------------------------------------------------------

struct LoadResult {
  std::string module;
  unsigned level = 0;
  Series cold, coldCompile;       ///< request to callable pointer; compile time rjitd reports
  Series warm, warmLink, unload;  ///< ms; warmLink is the link time rjitd reports
  Series compileHit;              ///< compile() hit, object in hand (no link, no map)
  Series lljit;                   ///< in-process LLJIT: create, parse, optimize, codegen, link
  unsigned unexpected = 0;        ///< a cold load from the cache or a warm one that compiled
  uint64_t objectBytes = 0, imageBytes = 0;
  Footprint before, after;  ///< around the warm loop
  std::string check;
};

// --- 2. calls ----------------------------------------------------------------------------------

using IntFn = int (*)(int);
using BufferFn = int (*)(const unsigned char*, int);

constexpr int CHECKSUM_BYTES = 4096;

/// The timed loops. noinline, and called with either pointer, so that both variants run the
/// very same machine code around the call. The argument cycles through 1..limit.
__attribute__((noinline)) uint64_t loopInt(IntFn f, uint64_t calls, int limit) {
  uint64_t sum = 0;
  int x = 1;
  for (uint64_t i = 0; i < calls; ++i) {
    sum += static_cast<unsigned>(f(x));
    if (++x > limit)
      x = 1;
  }
  return sum;
}

__attribute__((noinline)) uint64_t loopBuffer(BufferFn f, uint64_t calls,
                                              const unsigned char* data) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < calls; ++i)
    sum += static_cast<unsigned>(f(data, CHECKSUM_BYTES - static_cast<int>(i & 15)));
  return sum;
}

struct Kernel {
  std::string name;    ///< the function
  std::string module;  ///< "kernels" or "stb"
  std::string what;
  bool buffer = false;  ///< int(const unsigned char*, int); else int(int)
  int limit = 1;        ///< int(int): arguments cycle through 1..limit
};

const std::vector<Kernel>& kernels() {
  static const std::vector<Kernel> list = {
      {"fp_mix", "kernels", "a few integer ops: mostly the call itself", false, 1 << 20},
      {"fp_collatz", "kernels", "loop, data-dependent trip count (~100)", false, 100000},
      {"fp_checksum", "kernels", "vectorizable loop over a 4 KiB buffer", true, 0},
      {"fp_sort", "kernels", "heap sort of 512 ints on the stack", false, 1 << 20},
      {"stb_bench_decode", "stb", "stb_image: decode a 64x48 BMP (malloc, free)", false, 1 << 20},
  };
  return list;
}

struct CallResult {
  std::string kernel, module, what;
  unsigned level = 0;
  uint64_t callsPerBatch = 0;
  Series fastNs, lljitNs;        ///< ns per call: the best batch of each round
  Series fastAllNs, lljitAllNs;  ///< ns per call: every batch
  Series pairRatio;              ///< per round: fast best / LLJIT best
  bool identical = true;         ///< every pair computed the same sum
  /// The functions' addresses modulo the page size: code placement (alignment relative to
  /// cache lines and fetch blocks) is one thing that can differ between the two.
  uint64_t fastOffset = 0, lljitOffset = 0;
};

// --- 3. RSS ------------------------------------------------------------------------------------

struct RssRow {
  std::string side;    ///< "client" or "LLVM"
  std::string what;    ///< "baseline", "kernels -O2", ...
  std::string module;  ///< "" for a baseline
  unsigned level = 2;
  Series vmhwmKb, maxrssKb, wallMs;
  Series anonKb, fileKb;  ///< RSS at exit: private anonymous memory, file pages
  unsigned failures = 0;
  int llvmMapped = -1;
  std::string resultCheck = "-";
  std::string error;
};

// --- 4. llvm-jitlink ---------------------------------------------------------------------------

struct JitlinkRow {
  std::string module, mode;
  unsigned attempts = 0, successes = 0;
  unsigned ranThenFailed = 0;  ///< printed the right result, then exited with an error
  /// No (right) result and an error exit. The code may still have run: the executor's stdout
  /// is not a terminal, so printf's buffer is lost if the executor does not exit normally.
  unsigned failedBefore = 0;
  unsigned crashedOrTimedOut = 0;
  unsigned successWithErrorText = 0;  ///< exit 42 and right result, but an error on stderr
  std::map<std::string, unsigned> errors;
  Series wallMs, linkMs, maxrssKb, executorMaxrssKb;
};

// --- the bench ---------------------------------------------------------------------------------

class Bench {
public:
  Bench(const Config& config, std::string address, pid_t daemonPid, const rjit::ServerInfo& info,
        fs::path self, fs::path scratch)
      : config_(config), address_(std::move(address)), daemonPid_(daemonPid),
        self_(std::move(self)), scratch_(std::move(scratch)) {
    triple_ = info.defaultTriple;
    for (const rjit::TargetInfo& t : info.targets)
      if (t.triple == triple_)
        cpu_ = t.defaultCpu;
    utsname names{};
    uname(&names);
    if (cpu_.empty() || triple_.rfind(names.machine, 0) != 0)
      throw std::runtime_error("rjitd's default target " + triple_ + " is not this host (" +
                               names.machine + ")");
    std::random_device random;
    run_ = std::to_string(random()) + "-" + std::to_string(getpid());
    client_.emplace(clientOptions("fastpath-bench"));
  }

  const std::string& triple() const { return triple_; }
  const std::string& cpu() const { return cpu_; }
  rjit::Client& client() { return *client_; }

  rjit::ClientOptions clientOptions(const std::string& name) const {
    rjit::ClientOptions o;
    o.servers = {address_};
    o.timeout = std::chrono::milliseconds(300000);
    o.clientName = name;
    // hashFirstBytes: the library default (64 KiB, or RJIT_HASH_FIRST_BYTES), as an
    // application gets it; the stb module is therefore looked up by key first.
    return o;
  }

  rjitbench::LljitOptions lljitOptions(const IrModule& m, unsigned level) const {
    return {triple_, cpu_, level, m.symbol};
  }

  /// The module bytes the warm loads, calls and llvm-jitlink use for (module, level): unique
  /// to this run, so that its first load is cold.
  const std::string& warmBytes(const IrModule& m, unsigned level) {
    std::string key = m.name + "-O" + std::to_string(level);
    auto it = warmText_.find(key);
    if (it == warmText_.end())
      it = warmText_.emplace(key, withNonce(m.text, run_, nonce_++)).first;
    return it->second;
  }

  // --- 1 ---

  LoadResult loads(const IrModule& m, unsigned level) {
    LoadResult r;
    r.module = m.name;
    r.level = level;
    std::string label = m.name + " -O" + std::to_string(level);
    unsigned nLljit =
        m.large ? (level == 0 ? config_.lljitLargeO0 : config_.lljitLargeO2) : config_.lljitSmall;
    nLljit = scaled(nLljit, config_.scale);
    for (unsigned i = 0; i < nLljit; ++i) {
      std::string bytes = withNonce(m.text, run_, nonce_++);
      r.lljit.add(rjitbench::lljitCompile(bytes, lljitOptions(m, level)).totalMs);
      progress(label + " LLJIT compile", i + 1, nLljit);
    }

    unsigned nCold = scaled(m.large ? config_.coldLarge : config_.coldSmall, config_.scale);
    for (unsigned i = 0; i < nCold; ++i) {
      // The last cold load is the warm module's first load.
      std::string bytes = i + 1 == nCold ? warmBytes(m, level) : withNonce(m.text, run_, nonce_++);
      rjit::CompileRequest req = request(m, bytes, level);
      auto start = Clock::now();
      rjit::Module module = client_->load(req);
      void* p = module.address(m.symbol);
      double ms = msSince(start);
      if (p == nullptr)
        throw std::runtime_error(m.name + ": " + m.symbol + " not found after a load");
      r.cold.add(ms);
      r.coldCompile.add(static_cast<double>(module.object().compileMicros) / 1000.0);
      if (module.object().fromCache)
        ++r.unexpected;
      r.imageBytes = module.size();
      module.unload();
      progress(label + " cold load", i + 1, nCold);
    }

    rjit::CompileRequest req = request(m, warmBytes(m, level), level);
    for (unsigned i = 0; i < 3; ++i)  // warm-up, untimed
      client_->load(req).unload();
    r.before = footprint(*client_, daemonPid_);
    unsigned nWarm = scaled(m.large ? config_.warmLarge : config_.warmSmall, config_.scale);
    auto deadline =
        Clock::now() + std::chrono::seconds(static_cast<long>(120 * config_.scale) + 30);
    for (unsigned i = 0; i < nWarm && Clock::now() < deadline; ++i) {
      auto start = Clock::now();
      rjit::Module module = client_->load(req);
      void* p = module.address(m.symbol);
      r.warm.add(msSince(start));
      if (p == nullptr)
        throw std::runtime_error(m.name + ": " + m.symbol + " not found after a load");
      r.warmLink.add(static_cast<double>(module.linkMicros()) / 1000.0);
      if (!module.object().fromCache)
        ++r.unexpected;
      auto unloadStart = Clock::now();
      module.unload();
      r.unload.add(msSince(unloadStart));
      // Interleaved reference: a compile() hit of the same request, object in hand.
      auto hitStart = Clock::now();
      rjit::CompiledObject object = client_->compile(req);
      r.compileHit.add(msSince(hitStart));
      if (!object.fromCache)
        ++r.unexpected;
      r.objectBytes = object.object.size();
      if (nWarm >= 10 && (i + 1) % (nWarm / 10) == 0)
        progress(label + " warm load", i + 1, nWarm);
    }
    r.after = footprint(*client_, daemonPid_);

    // Correctness: the fast path and LLJIT compute the same (not timed).
    if (m.callable) {
      rjit::Module module = client_->load(req);
      int fast = module.lookup<int(int)>(m.symbol)(m.argument);
      rjitbench::LljitModule jit(req.module, lljitOptions(m, level));
      int local = reinterpret_cast<IntFn>(jit.address(m.symbol))(m.argument);
      r.check = m.symbol + "(" + std::to_string(m.argument) + ") = " + std::to_string(fast) +
                " fast path, " + std::to_string(local) +
                " LLJIT: " + (fast == local ? "same" : "DIFFERENT");
      if (fast != local)
        problems_.push_back(label + ": " + r.check);
      expected_[m.name] = fast;
    } else {
      r.check = m.symbol + " looked up (not called: it prints)";
    }
    if (r.after.fds > r.before.fds || r.after.loadedImages > r.before.loadedImages ||
        r.after.daemonFds > r.before.daemonFds)
      problems_.push_back(
          label + ": after " + std::to_string(r.warm.count()) + " load/unload cycles: fds " +
          std::to_string(r.before.fds) + " -> " + std::to_string(r.after.fds) + ", rjitd fds " +
          std::to_string(r.before.daemonFds) + " -> " + std::to_string(r.after.daemonFds) +
          ", loaded images " + std::to_string(r.before.loadedImages) + " -> " +
          std::to_string(r.after.loadedImages));
    return r;
  }

  // --- 2 ---

  std::vector<CallResult> calls(const std::vector<IrModule>& modules, unsigned level) {
    // A client of its own: its session holds these modules while the calls run.
    rjit::Client client(clientOptions("fastpath-bench-calls"));
    std::map<std::string, rjit::Module> fast;
    std::map<std::string, rjitbench::LljitModule> local;
    for (const IrModule& m : modules) {
      if (m.name != "kernels" && m.name != "stb")
        continue;
      rjit::CompileRequest req = request(m, warmBytes(m, level), level);
      fast.emplace(m.name, client.load(req));
      local.emplace(m.name, rjitbench::LljitModule(req.module, lljitOptions(m, level)));
    }
    std::vector<unsigned char> buffer(CHECKSUM_BYTES);
    uint32_t x = 12345;
    for (auto& b : buffer) {
      x = x * 1103515245u + 12345u;
      b = static_cast<unsigned char>(x >> 16);
    }

    std::vector<CallResult> results;
    for (const Kernel& k : kernels()) {
      if (fast.count(k.module) == 0)
        continue;
      CallResult r;
      r.kernel = k.name;
      r.module = k.module;
      r.what = k.what;
      r.level = level;
      void* a = fast.at(k.module).address(k.name);
      void* b = local.at(k.module).address(k.name);
      if (a == nullptr || b == nullptr)
        throw std::runtime_error(k.name + " not found");
      r.fastOffset = reinterpret_cast<uintptr_t>(a) % 4096;
      r.lljitOffset = reinterpret_cast<uintptr_t>(b) % 4096;
      auto batch = [&](void* f, uint64_t n) {
        return k.buffer ? loopBuffer(reinterpret_cast<BufferFn>(f), n, buffer.data())
                        : loopInt(reinterpret_cast<IntFn>(f), n, k.limit);
      };
      // Calibrate on the LLJIT pointer: batches of about callBatchMs.
      uint64_t n = 16;
      double target = std::max(1.0, config_.callBatchMs * std::min(1.0, config_.scale));
      for (int round = 0; round < 30; ++round) {
        auto start = Clock::now();
        batch(b, n);
        double ms = msSince(start);
        if (ms >= target / 4 || n >= (uint64_t{1} << 32))
          break;
        n = ms <= 0 ? n * 8 : std::min(n * 8, static_cast<uint64_t>(n * target / ms) + 1);
      }
      {
        auto start = Clock::now();
        batch(b, n);
        double ms = std::max(msSince(start), 1e-3);
        n = std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(n) * target / ms));
      }
      r.callsPerBatch = n;
      batch(a, n);  // warm-up of the fast-path code
      // Rounds of six batches, A B B A A B (odd rounds B A A B B A): each variant's best of
      // three in a round is its time for that round (a batch that another process preempted
      // is never the best), and the round's ratio compares the two bests.
      unsigned rounds = scaled(config_.callRounds, std::min(1.0, config_.scale));
      auto deadline = Clock::now() +
                      std::chrono::milliseconds(static_cast<long>(rounds * target * 6 * 3) + 10000);
      static constexpr int ORDER[6] = {0, 1, 1, 0, 0, 1};
      for (unsigned round = 0; round < rounds && Clock::now() < deadline; ++round) {
        double best[2] = {std::numeric_limits<double>::max(), std::numeric_limits<double>::max()};
        uint64_t sums[2] = {0, 0};
        for (int j = 0; j < 6; ++j) {
          int which = round % 2 == 0 ? ORDER[j] : 1 - ORDER[j];
          auto start = Clock::now();
          uint64_t sum = batch(which == 0 ? a : b, n);
          double ms = msSince(start);
          best[which] = std::min(best[which], ms);
          (which == 0 ? r.fastAllNs : r.lljitAllNs).add(ms * 1e6 / static_cast<double>(n));
          if (sums[which] != 0 && sums[which] != sum)
            r.identical = false;  // the same code on the same inputs
          sums[which] = sum;
        }
        r.fastNs.add(best[0] * 1e6 / static_cast<double>(n));
        r.lljitNs.add(best[1] * 1e6 / static_cast<double>(n));
        r.pairRatio.add(ratio(best[0], best[1]));
        if (sums[0] != sums[1])
          r.identical = false;
        progress(k.name + " -O" + std::to_string(level) + " calls", round + 1, rounds);
      }
      if (!r.identical)
        problems_.push_back(k.name + " -O" + std::to_string(level) +
                            ": the fast path and LLJIT computed different sums");
      results.push_back(std::move(r));
    }
    return results;
  }

  // --- 3 ---

  std::vector<RssRow> rss(const std::vector<IrModule>& modules) {
    struct Plan {
      std::string side, what;
      const IrModule* module;
      unsigned level;
      std::vector<std::string> env = {};
    };
    const IrModule* kernelsModule = nullptr;
    const IrModule* stbModule = nullptr;
    for (const IrModule& m : modules) {
      if (m.name == "kernels")
        kernelsModule = &m;
      if (m.name == "stb")
        stbModule = &m;
    }
    std::vector<Plan> plans = {
        {"client", "baseline: connected, nothing loaded", nullptr, 2},
        {"client", "kernels -O2, loaded and called", kernelsModule, 2},
        {"client", "stb -O2, loaded and called", stbModule, 2},
        // Without hash-first the client computes no SHA-256 but sends the module in a message.
        {"client",
         "stb -O2, module sent (no hash-first)",
         stbModule,
         2,
         {"RJIT_HASH_FIRST_BYTES=1000000000000"}},
        {"LLVM", "baseline: started, nothing compiled", nullptr, 2},
        {"LLVM", "kernels -O2, JIT-compiled and called", kernelsModule, 2},
        {"LLVM", "stb -O2, JIT-compiled and called", stbModule, 2},
        {"LLVM", "stb -O0, JIT-compiled and called", stbModule, 0},
    };
    fs::path clientExe = self_ / "fastpath-client-rss", lljitExe = self_ / "fastpath-lljit-rss";
    for (const Plan& plan : plans)
      if (plan.side == "client" && plan.module != nullptr)
        prewarm(*plan.module, plan.level);
    std::vector<RssRow> rows;
    unsigned runs = scaled(config_.rssRuns, std::min(1.0, config_.scale));
    for (const Plan& plan : plans) {
      RssRow row;
      row.side = plan.side;
      row.what = plan.what;
      row.module = plan.module != nullptr ? plan.module->name : "";
      row.level = plan.level;
      std::vector<std::string> command;
      if (plan.side == "client") {
        command = {clientExe.string(), "--server", address_};
      } else {
        command = {lljitExe.string()};
      }
      if (plan.module != nullptr) {
        // The same IR file the benchmark loads (the client child's load is a cache hit only
        // if its bytes match an earlier request; either way its memory is what we measure).
        command.insert(command.end(),
                       {"--ir", plan.module->path.string(), "--symbol", plan.module->symbol,
                        "--arg", std::to_string(plan.module->argument), "--opt",
                        std::to_string(plan.level), "--calls", "100"});
        if (plan.side == "LLVM")
          command.insert(command.end(), {"--triple", triple_, "--cpu", cpu_});
      }
      for (unsigned i = 0; i < runs; ++i) {
        ChildRun run = runMeasured(self_ / "rss-run", command, scratch_, 300, plan.env);
        bool ok = run.reported && run.status == "exit 0" && run.vmhwmKb > 0;
        if (!ok) {
          ++row.failures;
          row.error = run.status + ": " + firstLine(run.err);
          continue;
        }
        row.vmhwmKb.add(static_cast<double>(run.vmhwmKb));
        row.maxrssKb.add(static_cast<double>(run.maxrssKb));
        row.wallMs.add(run.wallMs);
        row.anonKb.add(static_cast<double>(run.rssAnonKb));
        row.fileKb.add(static_cast<double>(run.rssFileKb));
        row.llvmMapped = std::max(row.llvmMapped, run.llvmMapped);
        if (plan.module != nullptr && run.result) {
          auto it = expected_.find(plan.module->name);
          if (it != expected_.end())
            row.resultCheck = *run.result == it->second ? "right" : "WRONG";
          else
            row.resultCheck = std::to_string(*run.result);
        }
        progress(plan.side + ": " + plan.what, i + 1, runs);
      }
      if (plan.side == "client" && row.llvmMapped != 0)
        problems_.push_back("the client-only child has libLLVM mapped (llvm_mapped=" +
                            std::to_string(row.llvmMapped) + ")");
      if (row.resultCheck == "WRONG" || row.failures > 0)
        problems_.push_back("RSS child '" + plan.side + ": " + plan.what +
                            "': " + std::to_string(row.failures) + " failed runs, result " +
                            row.resultCheck + (row.error.empty() ? "" : "; " + row.error));
      rows.push_back(std::move(row));
    }
    return rows;
  }

  // --- 4 ---

  /// Writes the module's object (as rjitd compiled it for the warm loads) and a `main` that
  /// prints `result N` for symbol(argument) and returns 42.
  std::pair<fs::path, fs::path> jitlinkObjects(const IrModule& m, unsigned level) {
    rjit::CompiledObject object = client_->compile(request(m, warmBytes(m, level), level));
    fs::path objectPath = scratch_ / (m.name + "-O" + std::to_string(level) + ".o");
    std::ofstream(objectPath, std::ios::binary) << object.object;
    std::string mainIr = "declare i32 @printf(ptr, ...)\n"
                         "declare i32 @" +
                         m.symbol +
                         "(i32)\n"
                         "@fmt = private unnamed_addr constant [11 x i8] c\"result %d\\0A\\00\"\n"
                         "define i32 @main() {\n"
                         "  %r = call i32 @" +
                         m.symbol + "(i32 " + std::to_string(m.argument) +
                         ")\n"
                         "  %p = call i32 (ptr, ...) @printf(ptr @fmt, i32 %r)\n"
                         "  ret i32 42\n"
                         "}\n";
    IrModule driver{"main-" + m.name, "", {}, mainIr, "main", 0, false, false, 0};
    rjit::CompiledObject mainObject = client_->compile(request(driver, mainIr, 2));
    fs::path mainPath = scratch_ / ("main-" + m.name + ".o");
    std::ofstream(mainPath, std::ios::binary) << mainObject.object;
    if (!fs::exists(objectPath) || fs::file_size(objectPath) != object.object.size() ||
        !fs::exists(mainPath) || fs::file_size(mainPath) != mainObject.object.size())
      throw std::runtime_error("cannot write the objects for llvm-jitlink to " + scratch_.string());
    return {mainPath, objectPath};
  }

  std::vector<JitlinkRow> jitlink(const IrModule& m, unsigned level) {
    auto [mainPath, objectPath] = jitlinkObjects(m, level);
    long long expected = expected_.count(m.name) ? expected_.at(m.name) : 0;
    struct Mode {
      std::string name;
      std::vector<std::string> flags;
      bool oop;
    };
    std::vector<Mode> modes = {
        {"in-process", {}, false},
        {"-oop-executor", {"-oop-executor=" + config_.executor}, true},
        {"-oop-executor --use-shared-memory",
         {"-oop-executor=" + config_.executor, "--use-shared-memory"},
         true},
    };
    std::vector<JitlinkRow> rows;
    unsigned want = scaled(config_.jitlinkRuns, std::min(1.0, config_.scale));
    for (const Mode& mode : modes) {
      JitlinkRow row;
      row.module = m.name;
      row.mode = mode.name;
      std::vector<std::string> command = {config_.jitlinkProgram, "--show-times"};
      command.insert(command.end(), mode.flags.begin(), mode.flags.end());
      command.insert(command.end(), {mainPath.string(), objectPath.string()});
      for (unsigned attempt = 0; attempt < 3 * want && row.successes < want; ++attempt) {
        ChildRun run = runMeasured(self_ / "rss-run", command, scratch_, 30);
        ++row.attempts;
        bool rightResult = run.result && *run.result == expected;
        std::string error = errorLines(run.err);
        bool errorText = !error.empty();
        // "Resource tracker 0x55... became defunct": the address differs in every run.
        auto hex = error.find("0x");
        if (hex != std::string::npos) {
          auto end = error.find(' ', hex);
          error.replace(hex, end == std::string::npos ? std::string::npos : end - hex, "0x...");
        }
        bool ok = run.reported && run.status == "exit 42" && rightResult;
        if (!ok || errorText)
          ++row.errors[(ok ? std::string("exit 42, right result")
                           : "failed (" + (run.reported ? run.status : "no report") + ")") +
                       ", stderr: \"" + error + "\""];
        if (run.reported && run.status == "exit 42" && rightResult) {
          ++row.successes;
          if (errorText)
            ++row.successWithErrorText;
          row.wallMs.add(run.wallMs);
          row.maxrssKb.add(static_cast<double>(run.maxrssKb));
          double link = timerWallMs(run.err + run.out, "time to link object files");
          if (link >= 0)
            row.linkMs.add(link);
        } else if (!run.reported || run.status == "timeout" || run.status.rfind("signal", 0) == 0) {
          ++row.crashedOrTimedOut;
        } else if (rightResult) {
          ++row.ranThenFailed;
        } else {
          ++row.failedBefore;
        }
        progress(m.name + " llvm-jitlink " + mode.name, row.successes, want);
      }
      if (row.successes < want)
        std::fprintf(stderr, "\n");
      if (mode.oop) {
        // The executor's peak RSS: rss-run wraps it (wrapper mode) and appends its line to a
        // file. Separate runs, so that the timed ones above have no wrapper in the way.
        fs::path report = scratch_ / "executor-rss.txt";
        std::vector<std::string> wrapped = {config_.jitlinkProgram};
        for (const std::string& flag : mode.flags)
          wrapped.push_back(flag.rfind("-oop-executor=", 0) == 0
                                ? "-oop-executor=" + (self_ / "rss-run").string()
                                : flag);
        wrapped.insert(wrapped.end(), {mainPath.string(), objectPath.string()});
        unsigned rssRuns = scaled(config_.jitlinkRssRuns, std::min(1.0, config_.scale));
        for (unsigned i = 0; i < 3 * rssRuns && row.executorMaxrssKb.count() < rssRuns; ++i) {
          std::error_code ignored;
          fs::remove(report, ignored);
          ChildRun run = runMeasured(
              self_ / "rss-run", wrapped, scratch_, 30,
              {"RSS_RUN_WRAP_EXEC=" + config_.executor, "RSS_RUN_WRAP_REPORT=" + report.string()});
          if (!run.result || *run.result != expected)
            continue;  // only executors that ran the code
          std::ifstream in(report);
          std::string line;
          ChildRun executor;
          if (std::getline(in, line) && parseReport(line, executor))
            row.executorMaxrssKb.add(static_cast<double>(executor.maxrssKb));
        }
      }
      rows.push_back(std::move(row));
    }
    // The rjitd equivalent of a one-shot tool run: a fresh client process that loads the
    // module (warm cache) and calls it.
    JitlinkRow client;
    client.module = m.name;
    client.mode = "rjitd fast path: one client process (warm)";
    std::vector<std::string> command = {(self_ / "fastpath-client-rss").string(),
                                        "--server",
                                        address_,
                                        "--ir",
                                        m.path.string(),
                                        "--symbol",
                                        m.symbol,
                                        "--arg",
                                        std::to_string(m.argument),
                                        "--opt",
                                        std::to_string(level)};
    prewarm(m, level);  // the child reads the IR file as it is, without this run's nonce
    for (unsigned attempt = 0; attempt < want; ++attempt) {
      ChildRun run = runMeasured(self_ / "rss-run", command, scratch_, 60);
      ++client.attempts;
      if (run.reported && run.status == "exit 0" && run.result && *run.result == expected) {
        ++client.successes;
        client.wallMs.add(run.wallMs);
        client.maxrssKb.add(static_cast<double>(run.maxrssKb));
      } else {
        ++client.failedBefore;
        ++client.errors[run.status + ": " + firstLine(run.err)];
      }
      progress(m.name + " one-shot client", attempt + 1, want);
    }
    if (client.successes < client.attempts)
      problems_.push_back(m.name + ": " + std::to_string(client.attempts - client.successes) +
                          " one-shot client runs failed");
    rows.push_back(std::move(client));
    return rows;
  }

  /// Records what m.symbol(m.argument) returns through the fast path, if not known yet.
  void expect(const IrModule& m, unsigned level) {
    if (expected_.count(m.name) != 0)
      return;
    rjit::Module module = client_->load(request(m, warmBytes(m, level), level));
    expected_[m.name] = module.lookup<int(int)>(m.symbol)(m.argument);
  }

  /// Loads the module's IR file as it is (no nonce), as the child processes do, so that their
  /// loads are cache hits.
  void prewarm(const IrModule& m, unsigned level) {
    client_->load(request(m, m.text, level)).unload();
  }

  /// One untimed cold load of a throwaway module: rjitd's first request also starts its compile
  /// worker and initializes LLVM there, a one-time cost that is not a cold load's. Returns ms.
  double warmUp(const IrModule& m) {
    auto start = Clock::now();
    client_->load(request(m, withNonce(m.text, run_ + "-warm-up", 0), 0)).unload();
    return msSince(start);
  }

  /// What one imported symbol costs a warm load: kernels as it is (no imports) and kernels with
  /// one more function that calls getpid() (which LLVM cannot fold away), loaded alternately.
  struct ImportCost {
    Series none, one, linkNone, linkOne;
  };
  ImportCost importCost(const IrModule& m, unsigned n) {
    ImportCost c;
    std::string plain = withNonce(m.text, run_ + "-imports", 0);
    std::string withImport = withNonce(m.text + "\ndeclare i32 @getpid()\n"
                                                "define i32 @fp_import(i32 %x) {\n"
                                                "  %p = call i32 @getpid()\n"
                                                "  %r = add i32 %p, %x\n"
                                                "  ret i32 %r\n"
                                                "}\n",
                                       run_ + "-imports", 1);
    rjit::CompileRequest a = request(m, plain, 2), b = request(m, withImport, 2);
    for (int i = 0; i < 3; ++i) {  // compile, then warm up
      client_->load(a).unload();
      client_->load(b).unload();
    }
    for (unsigned i = 0; i < n; ++i)
      for (unsigned k = 0; k < 2; ++k) {
        bool first = (i + k) % 2 == 0;  // a b, b a, ...
        auto start = Clock::now();
        rjit::Module module = client_->load(first ? a : b);
        void* p = module.address(m.symbol);
        double ms = msSince(start);
        if (p == nullptr)
          throw std::runtime_error("import cost: " + m.symbol + " not found");
        (first ? c.none : c.one).add(ms);
        (first ? c.linkNone : c.linkOne).add(static_cast<double>(module.linkMicros()) / 1000.0);
        module.unload();
      }
    return c;
  }

  /// A stats() round trip: one bare RPC over the same socket, for reference.
  Series roundTrips(unsigned n) {
    Series s;
    client_->stats();
    for (unsigned i = 0; i < n; ++i) {
      auto start = Clock::now();
      client_->stats();
      s.add(msSince(start));
    }
    return s;
  }

  long long expected(const std::string& module) const {
    auto it = expected_.find(module);
    return it == expected_.end() ? -1 : it->second;
  }

  const std::vector<std::string>& problems() const { return problems_; }

private:
  const Config& config_;
  std::string address_;
  pid_t daemonPid_;
  fs::path self_, scratch_;
  std::string triple_, cpu_, run_;
  uint64_t nonce_ = 0;
  std::optional<rjit::Client> client_;
  std::map<std::string, std::string> warmText_;
  std::map<std::string, long long> expected_;
  std::vector<std::string> problems_;
};

// --- report ------------------------------------------------------------------------------------

std::string us(double ms) {
  return fixed(ms * 1000, 0);
}

std::string mib(double kb) {
  return fixed(kb / 1024.0, 1);
}

std::string spreadRatio(const Series& s) {
  return fixed(s.median(), 3) + " [" + fixed(s.min(), 3) + ", " + fixed(s.max(), 3) + "]";
}

int run(const Config& config) {
  fs::path self = rjitbench::selfDirectory();
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
  std::vector<IrModule> modules = {
      loadIr("kernels", "bench/fastpath-kernels.c: 4 functions, no imports", "fastpath-kernels.ll",
             "fp_sort", 7, true, false),
      loadIr("sieve", "test/data/sieve.c: 5 functions, libc imports", "sieve-bench.ll", "main", 0,
             false, false),
      loadIr("stb", "stb_image 2.27 + bench/stb-driver.c", "stb-bench.ll", "stb_bench_decode", 1,
             true, true),
  };

  std::string pattern = (fs::temp_directory_path() / "fastpath-bench.XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  fs::path scratch = pattern;
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } cleanup{scratch};

  std::optional<rjitbench::Daemon> daemon;
  std::string address = config.server;
  if (address.empty()) {
    fs::path binary =
        config.rjitd.empty() ? (self.parent_path() / "service" / "rjitd") : fs::path(config.rjitd);
    daemon.emplace(binary);
    address = daemon->address();
    std::fprintf(stderr, "started %s on %s (--jobs 1)\n", binary.c_str(), address.c_str());
  }
  rjit::ServerInfo info = rjitbench::waitUntilServing(address, daemon ? &*daemon : nullptr);
  Bench bench(config, address, daemon ? daemon->pid() : -1, info, self, scratch);

  json out;
  out["machine"] = rjitbench::machineInfo();
  out["server"] = {{"address", address},
                   {"started_by_bench", daemon.has_value()},
                   {"rjitd", info.rjitdVersion},
                   {"llvm", info.llvmVersion}};
  out["target"] = {{"triple", bench.triple()}, {"cpu", bench.cpu()}};
  for (const IrModule& m : modules)
    out["modules"][m.name] = {{"what", m.what}, {"bytes", m.text.size()}, {"lines", m.lines}};

  std::string loadBefore = rjitbench::loadAverage();
  if (std::stod(loadBefore) > 0.5 * std::thread::hardware_concurrency())
    std::fprintf(stderr,
                 "warning: load average %s on %u CPUs: other work is running and will skew "
                 "the timings\n",
                 loadBefore.c_str(), std::thread::hardware_concurrency());
  auto wallStart = Clock::now();
  auto ticksBefore = rjitbench::cpuTicks();

  double firstLoadMs = bench.warmUp(modules.front());
  std::vector<LoadResult> loads;
  Series rtt;
  Bench::ImportCost imports;
  if (config.loads) {
    for (const IrModule& m : modules)
      for (unsigned level : {0u, 2u})
        loads.push_back(bench.loads(m, level));
    rtt = bench.roundTrips(scaled(config.warmSmall, config.scale));
    imports = bench.importCost(modules.front(), scaled(config.warmSmall, config.scale));
  }
  for (const IrModule& m : modules)
    if (m.callable)
      bench.expect(m, 2);  // the result the other sections check (known after the loads)
  std::vector<CallResult> calls;
  if (config.calls)
    for (unsigned level : config.callLevels) {
      auto results = bench.calls(modules, level);
      calls.insert(calls.end(), results.begin(), results.end());
    }
  std::vector<RssRow> rss;
  if (config.rss)
    rss = bench.rss(modules);
  std::vector<JitlinkRow> jitlink;
  std::string jitlinkNote;
  if (config.jitlink) {
    if (!findInPath(config.jitlinkProgram) || access(config.executor.c_str(), X_OK) != 0) {
      jitlinkNote = "skipped: " + config.jitlinkProgram + " or " + config.executor + " not found";
    } else {
      for (const IrModule& m : modules)
        if (m.callable) {
          auto rows = bench.jitlink(m, 2);
          jitlink.insert(jitlink.end(), rows.begin(), rows.end());
        }
    }
  }
  rjit::ServerStats stats = bench.client().stats();
  double wallSeconds = msSince(wallStart) / 1000.0;
  std::string loadAfter = rjitbench::loadAverage();
  auto ticksAfter = rjitbench::cpuTicks();
  double stealPercent = 100.0 * ratio(static_cast<double>(ticksAfter.second - ticksBefore.second),
                                      static_cast<double>(ticksAfter.first - ticksBefore.first));

  // --- print ---
  json machine = out["machine"];
  std::cout << "fastpath-bench: rjitd " << info.rjitdVersion << ", LLVM " << info.llvmVersion
            << ", " << address << (daemon ? " (started by the bench, --jobs 1)" : "") << "\n"
            << "machine: " << machine["cpu"].get<std::string>() << ", "
            << machine["cpus"].get<unsigned>() << " CPUs, " << machine["memory"].get<std::string>()
            << ", " << machine["kernel"].get<std::string>() << "\n"
            << "target: " << bench.triple() << ", CPU " << bench.cpu() << "\n";
  for (const IrModule& m : modules)
    std::cout << "module " << m.name << ": " << m.what << ", " << m.lines << " lines of IR, "
              << m.text.size() / 1024 << " KiB\n";

  if (!loads.empty()) {
    std::cout
        << "\n1. Load latency, request to callable pointer (Client::load + lookup)\n"
           "   cold = first load of new bytes, compile included; warm = cached: load, lookup "
           "(then unload, untimed);\n"
           "   link = rjitd's link time for the warm load (inside warm); hit = compile() cache "
           "hit, object in hand;\n"
           "   LLJIT = in-process ORC LLJIT at the same level: create, parse, optimize, "
           "codegen, link, lookup\n"
           "   times: ms for cold and LLJIT, us for warm; median (p90) [min]\n\n";
    Table table({"module", "opt", "N cold", "cold ms", "N warm", "warm us", "link us", "unload us",
                 "hit us", "LLJIT ms", "LLJIT/warm", "cold/LLJIT", "object", "image"});
    for (const LoadResult& r : loads) {
      table.add(
          {r.module, "-O" + std::to_string(r.level), std::to_string(r.cold.count()),
           fixed(r.cold.median(), 2), std::to_string(r.warm.count()),
           us(r.warm.median()) + " (" + us(r.warm.percentile(90)) + ") [" + us(r.warm.min()) + "]",
           us(r.warmLink.median()), us(r.unload.median()), us(r.compileHit.median()),
           fixed(r.lljit.median(), 2) + " [" + fixed(r.lljit.min(), 2) + "]",
           fixed(ratio(r.lljit.median(), r.warm.median()), 0) + "x",
           fixed(ratio(r.cold.median(), r.lljit.median()), 3),
           fixed(static_cast<double>(r.objectBytes) / 1024, 1) + " KiB",
           std::to_string(r.imageBytes / 1024) + " KiB"});
    }
    table.print(std::cout);
    std::cout << "   (LLJIT/warm = median LLJIT compile / median warm load: the speed-up; "
                 "cold/LLJIT = median cold load / median LLJIT compile)\n"
              << "   first request after rjitd started (an untimed cold load of kernels -O0 "
                 "with another nonce, not in the table): "
              << fixed(firstLoadMs, 1) << " ms\n"
              << "   reference: a stats() round trip over the same socket, N=" << rtt.count()
              << ": " << us(rtt.median()) << " (" << us(rtt.percentile(90)) << ") ["
              << us(rtt.min()) << "] us\n"
              << "   one imported symbol: warm loads of kernels -O2 without imports and with one "
                 "more function that calls getpid(), alternated, N="
              << imports.none.count() << " each: " << us(imports.none.median()) << " ("
              << us(imports.none.percentile(90)) << ") [" << us(imports.none.min()) << "] vs "
              << us(imports.one.median()) << " (" << us(imports.one.percentile(90)) << ") ["
              << us(imports.one.min()) << "] us, +"
              << us(imports.one.median() - imports.none.median()) << " us median; rjitd's link "
              << us(imports.linkNone.median()) << " vs " << us(imports.linkOne.median()) << " us\n";
    for (const LoadResult& r : loads)
      std::cout << "   check " << r.module << " -O" << r.level << ": " << r.check
                << "; after the warm loop: our fds " << r.before.fds << "->" << r.after.fds
                << ", RSS " << r.before.rssKb << "->" << r.after.rssKb << " KiB, rjitd fds "
                << r.before.daemonFds << "->" << r.after.daemonFds << ", rjitd RSS "
                << r.before.daemonRssKb << "->" << r.after.daemonRssKb << " KiB, loaded images "
                << r.before.loadedImages << "->" << r.after.loadedImages
                << (r.unexpected ? ", UNEXPECTED cache use" : "") << "\n";
  }

  if (!calls.empty()) {
    std::cout << "\n2. Call speed: the same IR at the same level, called in a tight loop through "
                 "the fast-path pointer (A) and the LLJIT pointer (B)\n"
                 "   rounds of six batches A B B A A B / B A A B B A; per round, each side's best "
                 "batch; ns/call: median over rounds;\n"
                 "   fast/LLJIT: the per-round ratio of bests, median [min, max] over rounds; "
                 "all batches: ratio of the medians of every batch\n\n";
    Table table({"function", "opt", "work", "calls/batch", "rounds", "fast ns/call",
                 "LLJIT ns/call", "fast/LLJIT", "all batches", "same sums",
                 "addr%4096 fast/LLJIT"});
    for (const CallResult& r : calls)
      table.add({r.kernel, "-O" + std::to_string(r.level), r.what, std::to_string(r.callsPerBatch),
                 std::to_string(r.pairRatio.count()), fixed(r.fastNs.median(), 2),
                 fixed(r.lljitNs.median(), 2), spreadRatio(r.pairRatio),
                 fixed(ratio(r.fastAllNs.median(), r.lljitAllNs.median()), 3),
                 r.identical ? "yes" : "NO",
                 std::to_string(r.fastOffset) + "/" + std::to_string(r.lljitOffset)});
    table.print(std::cout);
  }

  if (!rss.empty()) {
    std::cout << "\n3. Peak RSS of a client process (started through rss-run), median of runs\n"
                 "   VmHWM = the child's own peak RSS (/proc/self/status); maxrss = wait4's "
                 "ru_maxrss;\n"
                 "   anon, file = its RSS at exit split into private anonymous memory and file "
                 "pages (shared libraries)\n\n";
    Table table({"side", "process", "runs", "VmHWM MiB", "maxrss MiB", "anon MiB", "file MiB",
                 "wall ms", "libLLVM mapped", "result"});
    for (const RssRow& r : rss)
      table.add({r.side, r.what,
                 std::to_string(r.vmhwmKb.count()) +
                     (r.failures ? " (+" + std::to_string(r.failures) + " failed)" : ""),
                 mib(r.vmhwmKb.median()), mib(r.maxrssKb.median()), mib(r.anonKb.median()),
                 mib(r.fileKb.median()), fixed(r.wallMs.median(), 1),
                 r.llvmMapped < 0 ? "?" : (r.llvmMapped ? "yes" : "no"), r.resultCheck});
    table.print(std::cout);
    for (const RssRow& c : rss) {
      if (c.side != "client")
        continue;
      for (const RssRow& l : rss)
        if (l.side == "LLVM" && l.module == c.module && l.level == c.level) {
          double client = c.vmhwmKb.median(), llvm = l.vmhwmKb.median();
          std::cout << "   peak RSS client/LLVM, " << c.what << ": "
                    << fixed(ratio(client, llvm), 3) << " (1/" << fixed(ratio(llvm, client), 1)
                    << "); private anon at exit "
                    << fixed(ratio(c.anonKb.median(), l.anonKb.median()), 3) << "\n";
          break;
        }
    }
  }

  if (!jitlink.empty() || !jitlinkNote.empty()) {
    std::cout << "\n4. LLVM's llvm-jitlink-19 on the object rjitd compiled (-O2) plus a main, "
                 "one process per run\n"
                 "   wall = the whole tool run (process start to exit); link = its "
                 "--show-times 'time to link object files';\n"
                 "   RSS = the tool process (ru_maxrss) and, out of process, the executor that "
                 "runs the code\n\n";
    if (!jitlinkNote.empty())
      std::cout << "   " << jitlinkNote << "\n";
    Table table({"module", "mode", "ok/tries", "fail, result printed", "fail, no result",
                 "crash/timeout", "ok, error printed", "wall ms", "link ms", "RSS MiB",
                 "executor RSS MiB"});
    for (const JitlinkRow& r : jitlink)
      table.add({r.module, r.mode, std::to_string(r.successes) + "/" + std::to_string(r.attempts),
                 std::to_string(r.ranThenFailed), std::to_string(r.failedBefore),
                 std::to_string(r.crashedOrTimedOut), std::to_string(r.successWithErrorText),
                 r.wallMs.empty() ? "-" : rjitbench::medMin(r.wallMs, 1),
                 r.linkMs.empty() ? "-" : rjitbench::medMin(r.linkMs, 2),
                 r.maxrssKb.empty() ? "-" : mib(r.maxrssKb.median()),
                 r.executorMaxrssKb.empty() ? "-" : mib(r.executorMaxrssKb.median())});
    table.print(std::cout);
    std::cout << "   (wall and link: median (min) of the successful runs; success = exit 42 and "
                 "the right result printed;\n"
                 "    'fail, no result' runs may still have run the code: printf's buffer is "
                 "lost when the executor does not exit normally)\n";
    for (const JitlinkRow& r : jitlink)
      for (const auto& [error, count] : r.errors)
        std::cout << "   " << r.module << ", " << r.mode << ": " << count << "x " << error << "\n";
  }

  std::cout << "\nserver: " << stats.compiles << " compiles, " << stats.cacheHits << " hits, "
            << stats.loads << " loads, " << stats.links << " links (" << stats.linkFailures
            << " failed), " << stats.loadedImages << " images still loaded ("
            << stats.loadedImageBytes / 1024 << " KiB)\n";
  std::vector<std::string> problems = bench.problems();
  for (const LoadResult& r : loads)
    if (r.unexpected != 0)
      problems.push_back(r.module + " -O" + std::to_string(r.level) + ": " +
                         std::to_string(r.unexpected) +
                         " loads were not what the measurement assumed (a cold load served "
                         "from the cache, or a warm one that compiled)");
  for (const std::string& p : problems)
    std::cout << "PROBLEM: " << p << "\n";
  std::cout << "measured in " << fixed(wallSeconds, 1) << " s; load average " << loadBefore
            << " before, " << loadAfter << " after; CPU steal " << fixed(stealPercent, 1) << "%\n";

  // --- json ---
  for (const LoadResult& r : loads)
    out["loads"].push_back({{"module", r.module},
                            {"opt_level", r.level},
                            {"cold", r.cold.toJson()},
                            {"cold_server_compile", r.coldCompile.toJson()},
                            {"warm", r.warm.toJson()},
                            {"warm_link", r.warmLink.toJson()},
                            {"unload", r.unload.toJson()},
                            {"compile_hit", r.compileHit.toJson()},
                            {"lljit", r.lljit.toJson()},
                            {"speedup_lljit_over_warm", ratio(r.lljit.median(), r.warm.median())},
                            {"object_bytes", r.objectBytes},
                            {"image_bytes", r.imageBytes},
                            {"before_warm", toJson(r.before)},
                            {"after_warm", toJson(r.after)},
                            {"check", r.check},
                            {"unexpected", r.unexpected}});
  for (const CallResult& r : calls)
    out["calls"].push_back(
        {{"function", r.kernel},
         {"module", r.module},
         {"opt_level", r.level},
         {"calls_per_batch", r.callsPerBatch},
         {"fast_best_ns_per_call", r.fastNs.ms},
         {"lljit_best_ns_per_call", r.lljitNs.ms},
         {"fast_all_ns_per_call", r.fastAllNs.ms},
         {"lljit_all_ns_per_call", r.lljitAllNs.ms},
         {"round_ratios", r.pairRatio.ms},
         {"ratio_median", r.pairRatio.median()},
         {"ratio_of_all_batch_medians", ratio(r.fastAllNs.median(), r.lljitAllNs.median())},
         {"address_mod_4096", {r.fastOffset, r.lljitOffset}},
         {"identical_sums", r.identical}});
  for (const RssRow& r : rss)
    out["rss"].push_back({{"side", r.side},
                          {"what", r.what},
                          {"module", r.module},
                          {"opt_level", r.level},
                          {"vmhwm_kb", r.vmhwmKb.ms},
                          {"maxrss_kb", r.maxrssKb.ms},
                          {"rss_anon_kb_at_exit", r.anonKb.ms},
                          {"rss_file_kb_at_exit", r.fileKb.ms},
                          {"wall_ms", r.wallMs.ms},
                          {"failures", r.failures},
                          {"llvm_mapped", r.llvmMapped},
                          {"result", r.resultCheck}});
  for (const JitlinkRow& r : jitlink) {
    json errors = json::object();
    for (const auto& [error, count] : r.errors)
      errors[error] = count;
    out["jitlink"].push_back({{"module", r.module},
                              {"mode", r.mode},
                              {"attempts", r.attempts},
                              {"successes", r.successes},
                              {"ran_then_failed", r.ranThenFailed},
                              {"failed_before", r.failedBefore},
                              {"crashed_or_timed_out", r.crashedOrTimedOut},
                              {"success_with_error_text", r.successWithErrorText},
                              {"errors", errors},
                              {"wall", r.wallMs.toJson()},
                              {"link", r.linkMs.toJson()},
                              {"maxrss_kb", r.maxrssKb.ms},
                              {"executor_maxrss_kb", r.executorMaxrssKb.ms}});
  }
  out["stats_round_trip"] = rtt.toJson();
  out["first_load_ms"] = firstLoadMs;
  out["import_cost"] = {{"no_imports", imports.none.toJson()},
                        {"one_import", imports.one.toJson()},
                        {"link_no_imports", imports.linkNone.toJson()},
                        {"link_one_import", imports.linkOne.toJson()}};
  out["problems"] = problems;
  out["wall_seconds"] = wallSeconds;
  out["load_average"] = {{"before", loadBefore}, {"after", loadAfter}};
  out["cpu_steal_percent"] = stealPercent;

  // A loaded module outlives its Client and rjitd (client.h promises it): load one, drop the
  // client, stop rjitd, then call and unload it.
  std::optional<rjit::Module> survivor;
  std::string survivorCheck;
  if (daemon) {
    const IrModule& small = modules.front();  // kernels
    rjit::Client client(bench.clientOptions("fastpath-bench-survivor"));
    survivor.emplace(client.load(request(small, small.text, 2)));
  }
  if (daemon) {
    std::string how = daemon->stop();
    std::cout << "rjitd stopped with SIGTERM: " << how << "\n";
    int value = survivor->lookup<int(int)>("fp_sort")(7);
    auto start = Clock::now();
    survivor->unload();
    survivorCheck = "a module loaded before rjitd stopped: fp_sort(7) = " + std::to_string(value) +
                    (value == bench.expected("kernels") ? " (right)" : " (WRONG)") +
                    " after rjitd exited; unload took " + fixed(msSince(start), 2) + " ms";
    std::cout << "check: " << survivorCheck << "\n";
    out["survivor_check"] = survivorCheck;
    out["server"]["stop"] = how;
    if (how != "exit 0")
      std::cerr << "rjitd log:\n" << daemon->logText();
  }
  if (!config.jsonPath.empty()) {
    std::ofstream file(config.jsonPath);
    file << out.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    if (!file)
      throw std::runtime_error("cannot write " + config.jsonPath);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  Config config;
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
    return run(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
}
