// SPDX-License-Identifier: MIT
// What the benchmark programs share (rjit-bench, fastpath-bench): statistics, plain-text
// tables, the machine's description and load, and an rjitd started for the run on a private
// socket. LLVM-free.
#pragma once

#include <remotejit/client.h>

#include "subprocess.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace rjitbench {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

inline double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// --- statistics ------------------------------------------------------------------------------

/// A series of measurements (milliseconds unless a caller says otherwise).
struct Series {
  std::vector<double> ms;

  void add(double value) { ms.push_back(value); }
  bool empty() const { return ms.empty(); }
  size_t count() const { return ms.size(); }
  double median() const;
  double min() const { return ms.empty() ? 0 : *std::min_element(ms.begin(), ms.end()); }
  double max() const { return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end()); }
  /// Nearest-rank percentile, p in [0, 100].
  double percentile(double p) const;
  json toJson() const;
};

double ratio(double a, double b);

/// Median of the per-iteration ratios a[i]/b[i] (the variants ran back to back in iteration i,
/// so this cancels drift that is slower than one iteration).
double pairedRatio(const Series& a, const Series& b);

std::string fixed(double value, int decimals);

/// "12.3 (11.9)": median and, in parentheses, minimum.
std::string medMin(const Series& s, int decimals);

/// A plain text table: columns padded to their widest cell, first column left-aligned.
class Table {
public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& os) const;

private:
  std::vector<std::vector<std::string>> rows_;
};

/// A request for textual IR `bytes` named "<name>.ll" at -O`level`, as the benchmarks send.
rjit::CompileRequest textRequest(const std::string& name, std::string bytes, unsigned level);

/// A comment line changes the module's bytes (and so its cache key), not the work.
std::string withNonce(const std::string& text, const std::string& run, uint64_t n);

// --- files, machine ----------------------------------------------------------------------------

std::string readFile(const std::filesystem::path& path);

/// The directory of the running executable (the build directory's bench/).
std::filesystem::path selfDirectory();

/// The value after the colon of the first line of `file` that starts with `prefix`, or "?".
std::string firstLineWith(const std::string& file, const std::string& prefix);

/// CPU model, CPU count, memory, kernel, architecture.
json machineInfo();

/// Total and stolen CPU time so far (/proc/stat, in clock ticks): on a virtual machine the
/// hypervisor's other guests take "steal" time, which no priority inside the guest recovers.
std::pair<uint64_t, uint64_t> cpuTicks();

/// The 1-, 5- and 15-minute load averages: other work on a shared machine skews the timings.
std::string loadAverage();

/// What else the machine did while a bench measured: wall time, load average, CPU steal.
/// Constructed when the measurement starts; finish() when it ends.
struct RunConditions {
  Clock::time_point start = Clock::now();
  std::pair<uint64_t, uint64_t> ticks = cpuTicks();
  std::string loadBefore = loadAverage(), loadAfter;
  double wallSeconds = 0, stealPercent = 0;

  /// Warns on stderr when other work is running already.
  void warnIfBusy() const;
  void finish();
  /// "measured in 12.3 s; load average 0.1 0.2 0.3 before, ... after; CPU steal 0.0%"
  std::string describe() const;
  /// wall_seconds, load_average, cpu_steal_percent.
  void toJson(json& out) const;
};

/// A TCP port on 127.0.0.1 that was free a moment ago (rjitd cannot report one it picked); 0
/// when none could be had.
uint16_t freeTcpPort();

// --- child processes -------------------------------------------------------------------------

/// This process's environment without systemd's LISTEN_* and NOTIFY_SOCKET (a bench child is
/// not the service they were meant for), plus `extra` ("NAME=value").
std::vector<std::string> childEnvironment(const std::vector<std::string>& extra = {});

// --- the daemon --------------------------------------------------------------------------------

/// An rjitd started for this run: private socket in a temp directory, one compile worker,
/// a --cache-dir in that directory unless `extraArgs` (appended to its command line) names
/// one. Stopped with SIGTERM (then SIGKILL after 10 s) at stop() or destruction.
class Daemon {
public:
  explicit Daemon(const std::filesystem::path& binary,
                  const std::vector<std::string>& extraArgs = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  std::string address() const { return "unix:" + socket_; }
  /// The daemon's process id while it runs, else -1.
  pid_t pid() const { return child_->status() ? -1 : child_->pid(); }
  /// The private temporary directory the socket lives in (removed at destruction).
  const std::filesystem::path& directory() const { return dir_; }

  /// Exit status text if the daemon has already exited ("" while it runs).
  std::string exitedEarly();

  /// SIGTERM, wait; returns how it exited ("exit 0" is the graceful drain).
  std::string stop();

  std::string logText() const;

private:
  std::filesystem::path dir_, log_;
  std::string socket_;
  bool keepDir_ = false;
  std::unique_ptr<rjitd::process::Subprocess> child_;
};

/// The rjitd a bench run uses: `server` when given, else one it starts in `daemon` from
/// `rjitd` (default: service/rjitd of the build directory whose bench/ is `self`), announced on
/// stderr. Returns its address.
std::string serverAddress(const std::string& server, const std::string& rjitd,
                          const std::filesystem::path& self, std::optional<Daemon>& daemon);

/// Retries serverInfo() until the server answers (bounded: 20 s).
rjit::ServerInfo waitUntilServing(const std::string& address, Daemon* daemon);

}  // namespace rjitbench
