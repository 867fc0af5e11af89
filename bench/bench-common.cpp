// SPDX-License-Identifier: MIT
// See bench-common.h.
#include "bench-common.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <kj/io.h>
#include <netinet/in.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <thread>
#include <unistd.h>

namespace rjitbench {

namespace fs = std::filesystem;

// --- statistics ------------------------------------------------------------------------------

double Series::median() const {
  if (ms.empty())
    return 0;
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  size_t n = sorted.size();
  return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

double Series::percentile(double p) const {
  if (ms.empty())
    return 0;
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(rank, sorted.size() - 1)];
}

json Series::toJson() const {
  return {{"n", count()},
          {"median_ms", median()},
          {"min_ms", min()},
          {"p10_ms", percentile(10)},
          {"p90_ms", percentile(90)},
          {"max_ms", percentile(100)}};
}

double ratio(double a, double b) {
  return b > 0 ? a / b : 0;
}

double pairedRatio(const Series& a, const Series& b) {
  Series r;
  for (size_t i = 0; i < std::min(a.count(), b.count()); ++i)
    r.add(ratio(a.ms[i], b.ms[i]));
  return r.median();
}

std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

std::string medMin(const Series& s, int decimals) {
  if (s.empty())
    return "-";
  return fixed(s.median(), decimals) + " (" + fixed(s.min(), decimals) + ")";
}

void Table::print(std::ostream& os) const {
  std::vector<size_t> width;
  for (const auto& row : rows_)
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i)
        width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  for (size_t r = 0; r < rows_.size(); ++r) {
    std::string line;
    for (size_t i = 0; i < rows_[r].size(); ++i) {
      const std::string& cell = rows_[r][i];
      std::string pad(width[i] - cell.size(), ' ');
      line += i == 0 ? cell + pad : "  " + pad + cell;
    }
    os << line << '\n';
    if (r == 0) {
      size_t total = 0;
      for (size_t w : width)
        total += w + 2;
      os << std::string(total - 2, '-') << '\n';
    }
  }
}

rjit::CompileRequest textRequest(const std::string& name, std::string bytes, unsigned level) {
  rjit::CompileRequest r;
  r.module = std::move(bytes);
  r.moduleName = name + ".ll";
  r.optLevel = level;
  r.format = rjit::IrFormat::Text;
  return r;
}

std::string withNonce(const std::string& text, const std::string& run, uint64_t n) {
  std::string out = text;
  if (!out.empty() && out.back() != '\n')
    out += '\n';
  out += "; nonce " + run + "-" + std::to_string(n) + "\n";
  return out;
}

// --- files, machine ----------------------------------------------------------------------------

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("cannot read " + path.string() + ": " + std::strerror(errno));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

fs::path selfDirectory() {
  std::error_code error;
  fs::path exe = fs::read_symlink("/proc/self/exe", error);
  if (error)
    throw std::runtime_error("cannot resolve /proc/self/exe: " + error.message());
  return exe.parent_path();
}

std::string firstLineWith(const std::string& file, const std::string& prefix) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0) {
      auto colon = line.find(':');
      std::string value = colon == std::string::npos ? line : line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  return "?";
}

json machineInfo() {
  utsname names{};
  uname(&names);
  return {{"cpu", firstLineWith("/proc/cpuinfo", "model name")},
          {"cpus", std::thread::hardware_concurrency()},
          {"memory", firstLineWith("/proc/meminfo", "MemTotal")},
          {"kernel", std::string(names.sysname) + " " + names.release},
          {"arch", names.machine}};
}

std::pair<uint64_t, uint64_t> cpuTicks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  uint64_t total = 0, steal = 0, value = 0;
  for (int field = 0; field < 8 && in >> value; ++field) {
    total += value;  // user nice system idle iowait irq softirq steal
    if (field == 7)
      steal = value;
  }
  return {total, steal};
}

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

void RunConditions::warnIfBusy() const {
  if (std::stod(loadBefore) > 0.5 * std::thread::hardware_concurrency())
    std::fprintf(stderr,
                 "warning: load average %s on %u CPUs: other work is running and will skew "
                 "the timings\n",
                 loadBefore.c_str(), std::thread::hardware_concurrency());
}

void RunConditions::finish() {
  wallSeconds = msSince(start) / 1000.0;
  loadAfter = loadAverage();
  auto after = cpuTicks();
  stealPercent = 100.0 * ratio(static_cast<double>(after.second - ticks.second),
                               static_cast<double>(after.first - ticks.first));
}

std::string RunConditions::describe() const {
  return "measured in " + fixed(wallSeconds, 1) + " s; load average " + loadBefore + " before, " +
         loadAfter + " after; CPU steal " + fixed(stealPercent, 1) + "%";
}

void RunConditions::toJson(json& out) const {
  out["wall_seconds"] = wallSeconds;
  out["load_average"] = {{"before", loadBefore}, {"after", loadAfter}};
  out["cpu_steal_percent"] = stealPercent;
}

uint16_t freeTcpPort() {
  kj::AutoCloseFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  if (fd == nullptr || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length) != 0)
    return 0;
  return ntohs(addr.sin_port);
}

// --- child processes -------------------------------------------------------------------------

std::vector<std::string> childEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> env = rjitd::process::environmentWith(
      {}, {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"});
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// --- the daemon --------------------------------------------------------------------------------

Daemon::Daemon(const fs::path& binary, const std::vector<std::string>& extraArgs) {
  if (!fs::exists(binary))
    throw std::runtime_error("rjitd not found at " + binary.string() +
                             " (build it: ninja -C BUILDDIR service/rjitd, or pass --rjitd)");
  std::string pattern = (fs::temp_directory_path() / "rjit-bench.XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  dir_ = pattern;
  socket_ = (dir_ / "rjitd.sock").string();
  log_ = dir_ / "rjitd.log";

  rjitd::process::SpawnOptions options;
  options.argv = {binary.string(), "--listen", "unix:" + socket_, "--jobs", "1",
                  "--log-level",   "warning"};
  // A disk cache of its own in the temp dir unless the caller names one: rjitd's default
  // (~/.cache/rjitd) would fill the user's real cache and carry objects from run to run.
  if (std::find(extraArgs.begin(), extraArgs.end(), "--cache-dir") == extraArgs.end())
    options.argv.insert(options.argv.end(), {"--cache-dir", (dir_ / "cache").string()});
  options.argv.insert(options.argv.end(), extraArgs.begin(), extraArgs.end());
  options.env = childEnvironment();
  options.stdoutPath = log_.string();
  options.stderrPath = log_.string();
  child_ = rjitd::process::Subprocess::spawn(options);
}

Daemon::~Daemon() {
  if (pid() > 0)
    stop();
  std::error_code ignored;
  if (!keepDir_)
    fs::remove_all(dir_, ignored);
}

std::string Daemon::exitedEarly() {
  if (pid() <= 0)
    return "not running";
  if (auto status = child_->wait(std::chrono::milliseconds(0)))
    return status->describe();
  return "";
}

std::string Daemon::stop() {
  if (pid() <= 0)
    return "not running";
  bool killed = false;
  rjitd::process::ExitStatus status = child_->terminate(std::chrono::seconds(10), &killed);
  if (killed) {
    keepDir_ = true;
    return "did not exit within 10 s of SIGTERM; killed (log kept in " + log_.string() + ")";
  }
  return status.describe();
}

std::string Daemon::logText() const {
  try {
    return readFile(log_);
  } catch (const std::exception&) {
    return {};
  }
}

std::string serverAddress(const std::string& server, const std::string& rjitd, const fs::path& self,
                          std::optional<Daemon>& daemon) {
  if (!server.empty())
    return server;
  fs::path binary = rjitd.empty() ? (self.parent_path() / "service" / "rjitd") : fs::path(rjitd);
  daemon.emplace(binary);
  std::fprintf(stderr, "started %s on %s (--jobs 1)\n", binary.c_str(), daemon->address().c_str());
  return daemon->address();
}

rjit::ServerInfo waitUntilServing(const std::string& address, Daemon* daemon) {
  auto deadline = Clock::now() + std::chrono::seconds(20);
  std::string last;
  while (Clock::now() < deadline) {
    if (daemon != nullptr) {
      std::string exited = daemon->exitedEarly();
      if (!exited.empty())
        throw std::runtime_error("rjitd exited before serving (" + exited + "):\n" +
                                 daemon->logText());
    }
    try {
      rjit::ClientOptions options;
      options.servers = {address};
      options.timeout = std::chrono::milliseconds(2000);
      options.clientName = "rjit-bench";
      rjit::Client probe(options);
      return probe.serverInfo();
    } catch (const rjit::Error& e) {
      last = e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  throw std::runtime_error("rjitd at " + address + " did not answer within 20 s: " + last);
}

}  // namespace rjitbench
