// SPDX-License-Identifier: MIT
// What the sections of fastpath-bench share: the configuration, the modules, the child runs
// through rss-run, the bench context (client, nonces, expected results, problems) and each
// section's results with its measure/print/json functions (fastpath-loads.cpp,
// fastpath-calls.cpp, fastpath-rss.cpp, fastpath-jitlink.cpp; fastpath-bench.cpp runs them).
#pragma once

#include "bench-common.h"
#include "lljit-compile.h"

#include <remotejit/client.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <sys/types.h>
#include <vector>

namespace fastpath {

namespace fs = std::filesystem;
using rjitbench::Clock;
using rjitbench::fixed;
using rjitbench::json;
using rjitbench::msSince;
using rjitbench::ratio;
using rjitbench::Series;
using rjitbench::Table;
using rjitbench::withNonce;

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

/// `n` times `scale`, rounded, at least 1.
unsigned scaled(unsigned n, double scale);

/// A progress line on stderr, rewritten in place; a newline once `done == total`.
void progress(const std::string& what, unsigned done, unsigned total);

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

rjit::CompileRequest request(const IrModule& m, std::string bytes, unsigned level);

// --- this process and the daemon's ------------------------------------------------------------

/// Counts of what could leak across repeated loads: ours and (if we started it) rjitd's.
struct Footprint {
  long fds = -1, rssKb = -1, daemonFds = -1, daemonRssKb = -1;
  uint64_t loadedImages = 0, loadedImageBytes = 0;
};

Footprint footprint(rjit::Client& client, pid_t daemon);
json toJson(const Footprint& f);

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

/// Reads rss-run's "status=... wall_ms=..." line into `run`; false if it is not one.
bool parseReport(const std::string& line, ChildRun& run);

/// Runs `command` under rss-run (timeout in seconds), stdout and stderr captured in `scratch`.
/// Extra environment entries ("NAME=value") are added to ours.
ChildRun runMeasured(const fs::path& rssRun, const std::vector<std::string>& command,
                     const fs::path& scratch, unsigned timeout,
                     const std::vector<std::string>& extraEnv = {});

std::string firstLine(const std::string& text);

// --- the bench context -------------------------------------------------------------------------

/// What the sections share for one run: the configuration, the client, this run's nonces, the
/// results each callable module must give and the problems found.
class Bench {
public:
  /// Throws std::runtime_error when rjitd's default target is not this host.
  Bench(const Config& config, std::string address, pid_t daemonPid, const rjit::ServerInfo& info,
        fs::path self, fs::path scratch);

  const Config& config() const { return config_; }
  const std::string& address() const { return address_; }
  pid_t daemonPid() const { return daemonPid_; }
  /// The directory of the bench and its helpers; the scratch directory of this run.
  const fs::path& self() const { return self_; }
  const fs::path& scratch() const { return scratch_; }
  const std::string& triple() const { return triple_; }
  const std::string& cpu() const { return cpu_; }
  /// Unique to this run: part of every nonce.
  const std::string& runId() const { return run_; }
  rjit::Client& client() { return *client_; }

  rjit::ClientOptions clientOptions(const std::string& name) const;
  rjitbench::LljitOptions lljitOptions(const IrModule& m, unsigned level) const;

  /// The module's text with a nonce never used before in this run: a cache miss.
  std::string freshBytes(const IrModule& m);
  /// The module bytes the warm loads, calls and llvm-jitlink use for (module, level): unique
  /// to this run, so that its first load is cold.
  const std::string& warmBytes(const IrModule& m, unsigned level);

  /// Records what m.symbol(m.argument) returns through the fast path, if not known yet.
  void expect(const IrModule& m, unsigned level);
  void setExpected(const std::string& module, long long value) { expected_[module] = value; }
  /// What the module's symbol returned through the fast path, if known.
  std::optional<long long> expected(const std::string& module) const;

  /// Loads the module's IR file as it is (no nonce), as the child processes do, so that their
  /// loads are cache hits.
  void prewarm(const IrModule& m, unsigned level);

  void problem(std::string what) { problems_.push_back(std::move(what)); }
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

// --- report helpers ----------------------------------------------------------------------------

std::string us(double ms);
std::string mib(double kb);

// --- 1. load latency (fastpath-loads.cpp) -------------------------------------------------------

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

/// What one imported symbol costs a warm load (see measureImportCost).
struct ImportCost {
  Series none, one, linkNone, linkOne;
};

/// Section 1 and its references.
struct LoadSection {
  double firstLoadMs = 0;  ///< rjitd's first request (worker start, LLVM initialization)
  std::vector<LoadResult> rows;
  Series roundTrips;  ///< stats() round trips
  ImportCost imports;
};

/// One untimed cold load of a throwaway module: rjitd's first request also starts its compile
/// worker and initializes LLVM there, a one-time cost that is not a cold load's. Returns ms.
double warmUp(Bench& bench, const IrModule& m);
/// Cold, warm and LLJIT loads of every module at -O0 and -O2, round trips, import cost.
void measureLoads(Bench& bench, const std::vector<IrModule>& modules, LoadSection& section);
void printLoads(const LoadSection& section, std::ostream& os);
void loadsToJson(const LoadSection& section, json& out);

// --- 2. call speed (fastpath-calls.cpp) ---------------------------------------------------------

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

std::vector<CallResult> measureCalls(Bench& bench, const std::vector<IrModule>& modules,
                                     unsigned level);
void printCalls(const std::vector<CallResult>& calls, std::ostream& os);
void callsToJson(const std::vector<CallResult>& calls, json& out);

// --- 3. peak RSS (fastpath-rss.cpp) -------------------------------------------------------------

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

std::vector<RssRow> measureRss(Bench& bench, const std::vector<IrModule>& modules);
void printRss(const std::vector<RssRow>& rss, std::ostream& os);
void rssToJson(const std::vector<RssRow>& rss, json& out);

// --- 4. llvm-jitlink (fastpath-jitlink.cpp) -----------------------------------------------------

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

struct JitlinkSection {
  std::vector<JitlinkRow> rows;
  std::string note;  ///< why the section was skipped, if it was
};

/// llvm-jitlink in its three modes and a one-shot rjitd client, for every callable module at
/// -O2; skipped (with a note) when llvm-jitlink or its executor is missing.
JitlinkSection measureJitlink(Bench& bench, const std::vector<IrModule>& modules);
void printJitlink(const JitlinkSection& section, std::ostream& os);
void jitlinkToJson(const JitlinkSection& section, json& out);

}  // namespace fastpath
