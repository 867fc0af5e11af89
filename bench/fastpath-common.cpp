// SPDX-License-Identifier: MIT
// What the sections of fastpath-bench share (see fastpath.h).
#include "fastpath.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <stdexcept>
#include <sys/utsname.h>
#include <unistd.h>

namespace fastpath {

namespace {

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

}  // namespace

unsigned scaled(unsigned n, double scale) {
  return std::max(1u, static_cast<unsigned>(n * scale + 0.5));
}

void progress(const std::string& what, unsigned done, unsigned total) {
  std::fprintf(stderr, "\r  %-50s %u/%u", what.c_str(), done, total);
  if (done == total)
    std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

rjit::CompileRequest request(const IrModule& m, std::string bytes, unsigned level) {
  return rjitbench::textRequest(m.name, std::move(bytes), level);
}

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

ChildRun runMeasured(const fs::path& rssRun, const std::vector<std::string>& command,
                     const fs::path& scratch, unsigned timeout,
                     const std::vector<std::string>& extraEnv) {
  std::vector<std::string> args = {rssRun.string(), "--timeout", std::to_string(timeout), "--"};
  args.insert(args.end(), command.begin(), command.end());
  fs::path capture = scratch / "child";
  // Bounded by rss-run, which kills the program at `timeout`; the margin covers rss-run itself.
  std::optional<rjitd::process::CommandResult> result =
      rjitd::process::runCommand(args, rjitbench::childEnvironment(extraEnv), capture.string(),
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

// --- the bench context -------------------------------------------------------------------------

Bench::Bench(const Config& config, std::string address, pid_t daemonPid,
             const rjit::ServerInfo& info, fs::path self, fs::path scratch)
    : config_(config), address_(std::move(address)), daemonPid_(daemonPid), self_(std::move(self)),
      scratch_(std::move(scratch)) {
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

rjit::ClientOptions Bench::clientOptions(const std::string& name) const {
  rjit::ClientOptions o;
  o.servers = {address_};
  o.timeout = std::chrono::milliseconds(300000);
  o.clientName = name;
  // hashFirstBytes: the library default (64 KiB, or RJIT_HASH_FIRST_BYTES), as an
  // application gets it; the stb module is therefore looked up by key first.
  return o;
}

rjitbench::LljitOptions Bench::lljitOptions(const IrModule& m, unsigned level) const {
  return {triple_, cpu_, level, m.symbol};
}

std::string Bench::freshBytes(const IrModule& m) {
  return withNonce(m.text, run_, nonce_++);
}

const std::string& Bench::warmBytes(const IrModule& m, unsigned level) {
  std::string key = m.name + "-O" + std::to_string(level);
  auto it = warmText_.find(key);
  if (it == warmText_.end())
    it = warmText_.emplace(key, withNonce(m.text, run_, nonce_++)).first;
  return it->second;
}

void Bench::expect(const IrModule& m, unsigned level) {
  if (expected_.count(m.name) != 0)
    return;
  rjit::Module module = client_->load(request(m, warmBytes(m, level), level));
  expected_[m.name] = module.lookup<int(int)>(m.symbol)(m.argument);
}

std::optional<long long> Bench::expected(const std::string& module) const {
  auto it = expected_.find(module);
  if (it == expected_.end())
    return std::nullopt;
  return it->second;
}

void Bench::prewarm(const IrModule& m, unsigned level) {
  client_->load(request(m, m.text, level)).unload();
}

// --- report helpers ----------------------------------------------------------------------------

std::string us(double ms) {
  return fixed(ms * 1000, 0);
}

std::string mib(double kb) {
  return fixed(kb / 1024.0, 1);
}

}  // namespace fastpath
