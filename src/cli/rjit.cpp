// SPDX-License-Identifier: MIT
// rjit: the command-line client of rjitd (compile a module through the server, show what the
// server is and how it is doing). Everything it does goes through libremotejit-client.
#include "remotejit/client.h"
#include "rjitd-config.h"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace {

/// A failure of the CLI itself (a file it cannot read or write); printed like an rjit::Error.
class CliError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct GlobalArgs {
  std::string server;
  int64_t timeoutMs = 0;
};

struct CompileArgs {
  std::string file;
  std::string out;
  std::string target;
  std::string cpu;
  std::string features;
  unsigned optLevel = 2;
  std::string format = "auto";
  std::optional<uint64_t> hashFirstBytes;
  bool verbose = false;
};

struct InfoArgs {
  bool json = false;
};

std::string errnoText(int error) {
  return std::system_category().message(error);
}

rjit::ClientOptions clientOptions(const GlobalArgs& global) {
  rjit::ClientOptions options;
  if (!global.server.empty())
    options.servers.push_back(global.server);
  options.timeout = std::chrono::milliseconds(global.timeoutMs);
  options.clientName = "rjit/" RJITD_VERSION;
  return options;
}

std::string readFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw CliError("cannot read " + path + ": " + errnoText(errno));
  std::string data;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
    data.reserve(static_cast<size_t>(st.st_size));
  char buffer[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int error = errno;
      ::close(fd);
      throw CliError("cannot read " + path + ": " + errnoText(error));
    }
    if (n == 0)
      break;
    data.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

/// Writes OUT.tmp.PID and renames it over OUT: readers see the old file or the whole new one,
/// never a partial object, and a failed write leaves OUT as it was.
void writeAtomically(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0)
    throw CliError("cannot write " + path + ": " + errnoText(errno));
  auto fail = [&](int error) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw CliError("cannot write " + path + ": " + errnoText(error));
  };
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      fail(errno);
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    int error = errno;
    ::unlink(tmp.c_str());
    throw CliError("cannot write " + path + ": " + errnoText(error));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int error = errno;
    ::unlink(tmp.c_str());
    throw CliError("cannot write " + path + ": " + errnoText(error));
  }
}

const char* severityName(rjit::Diagnostic::Severity severity) {
  switch (severity) {
  case rjit::Diagnostic::Severity::Error: return "error";
  case rjit::Diagnostic::Severity::Warning: return "warning";
  case rjit::Diagnostic::Severity::Note: return "note";
  }
  return "note";
}

/// "FILE:LINE:COL: warning: message", as compilers print it (the position only as far as known).
std::string formatDiagnostic(const std::string& file, const rjit::Diagnostic& d) {
  std::string where = file;
  if (d.line != 0) {
    where += ":" + std::to_string(d.line);
    if (d.column != 0)
      where += ":" + std::to_string(d.column);
  }
  return where + ": " + severityName(d.severity) + ": " + d.message;
}

void printDiagnostic(const std::string& file, const rjit::Diagnostic& d) {
  std::cerr << formatDiagnostic(file, d) << "\n";
}

std::string formatMillis(uint64_t micros) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f", static_cast<double>(micros) / 1000.0);
  return buffer;
}

rjit::IrFormat parseFormat(const std::string& format) {
  if (format == "text")
    return rjit::IrFormat::Text;
  if (format == "bitcode")
    return rjit::IrFormat::Bitcode;
  return rjit::IrFormat::Auto;
}

int runCompile(const GlobalArgs& global, const CompileArgs& args) {
  rjit::CompileRequest request;
  request.module = readFile(args.file);
  request.moduleName = args.file;
  request.target = args.target;
  request.cpu = args.cpu;
  request.features = args.features;
  request.optLevel = args.optLevel;
  request.format = parseFormat(args.format);

  rjit::ClientOptions options = clientOptions(global);
  options.hashFirstBytes = args.hashFirstBytes;
  rjit::Client client(std::move(options));
  rjit::CompiledObject object = client.compile(request);

  for (const rjit::Diagnostic& d : object.diagnostics)
    printDiagnostic(args.file, d);
  writeAtomically(args.out, object.object);
  if (args.verbose)
    std::cerr << "compiled " << args.file << " -> " << args.out << " (" << object.key.substr(0, 16)
              << "\u2026, " << object.object.size() << " bytes, "
              << (object.fromCache ? std::string("from cache")
                                   : "compiled in " + formatMillis(object.compileMicros) + " ms")
              << ")\n";
  return 0;
}

nlohmann::json infoJson(const rjit::ServerInfo& info, const rjit::ServerStats& stats) {
  nlohmann::json targets = nlohmann::json::array();
  for (const rjit::TargetInfo& t : info.targets)
    targets.push_back({{"name", t.name},
                       {"triple", t.triple},
                       {"aliases", t.aliases},
                       {"default_cpu", t.defaultCpu}});
  return {
      {"server",
       {{"endpoint", info.endpoint},
        {"rjitd_version", info.rjitdVersion},
        {"llvm_version", info.llvmVersion},
        {"protocol_version", info.protocolVersion},
        {"compiler_identity", info.compilerIdentity},
        {"default_triple", info.defaultTriple},
        {"max_module_bytes", info.maxModuleBytes},
        {"targets", targets}}},
      {"cache",
       {{"entries", stats.cacheEntries},
        {"bytes", stats.cacheBytes},
        {"budget_bytes", stats.cacheBudgetBytes},
        {"hits", stats.cacheHits},
        {"misses", stats.cacheMisses},
        {"evictions", stats.cacheEvictions}}},
      {"compiles",
       {{"total", stats.compiles},
        {"failures", stats.compileFailures},
        {"in_flight", stats.compilesInFlight}}},
      {"requests", stats.requests},
      {"lookups", stats.lookups},
      {"lookup_hits", stats.lookupHits},
      {"module_bytes_received", stats.moduleBytesReceived},
      {"sessions", stats.sessions},
      {"workers", stats.workers},
      {"uptime_ms", stats.uptimeMillis},
  };
}

std::string formatUptime(uint64_t millis) {
  uint64_t seconds = millis / 1000;
  uint64_t days = seconds / 86400, hours = seconds / 3600 % 24, minutes = seconds / 60 % 60;
  std::string out;
  if (days != 0)
    out += std::to_string(days) + "d ";
  if (days != 0 || hours != 0)
    out += std::to_string(hours) + "h ";
  if (days != 0 || hours != 0 || minutes != 0)
    out += std::to_string(minutes) + "m ";
  return out + std::to_string(seconds % 60) + "s";
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items)
    out += (out.empty() ? "" : ", ") + item;
  return out;
}

void printInfoText(const rjit::ServerInfo& info, const rjit::ServerStats& stats) {
  auto line = [](const std::string& label, const std::string& value) {
    std::printf("%-20s%s\n", label.c_str(), value.c_str());
  };
  auto n = [](uint64_t v) { return std::to_string(v); };
  line("server", info.endpoint);
  line("rjitd version", info.rjitdVersion);
  line("LLVM version", info.llvmVersion);
  line("protocol", n(info.protocolVersion));
  line("compiler identity", info.compilerIdentity);
  size_t nameWidth = 0, tripleWidth = 0;
  for (const rjit::TargetInfo& t : info.targets) {
    nameWidth = std::max(nameWidth, t.name.size());
    tripleWidth = std::max(tripleWidth, t.triple.size());
  }
  bool first = true;
  for (const rjit::TargetInfo& t : info.targets) {
    std::string value = t.name + std::string(nameWidth - t.name.size() + 2, ' ') + t.triple +
                        std::string(tripleWidth - t.triple.size() + 2, ' ') + "cpu " + t.defaultCpu;
    if (!t.aliases.empty())
      value += "; aliases: " + joined(t.aliases);
    line(first ? "targets" : "", value);
    first = false;
  }
  if (info.targets.empty())
    line("targets", "none");
  line("default target", info.defaultTriple);
  line("max module bytes", n(info.maxModuleBytes));
  line("cache entries", n(stats.cacheEntries));
  line("cache bytes", n(stats.cacheBytes) + " of " + n(stats.cacheBudgetBytes) + " budget");
  line("cache hits", n(stats.cacheHits));
  line("cache misses", n(stats.cacheMisses));
  line("cache evictions", n(stats.cacheEvictions));
  line("compiles", n(stats.compiles) + " (" + n(stats.compileFailures) + " failed, " +
                       n(stats.compilesInFlight) + " in flight)");
  line("requests", n(stats.requests));
  line("lookups", n(stats.lookups) + " (" + n(stats.lookupHits) + " hits)");
  line("module bytes in", n(stats.moduleBytesReceived));
  line("sessions", n(stats.sessions));
  line("workers", n(stats.workers));
  line("uptime", formatUptime(stats.uptimeMillis));
}

int runInfo(const GlobalArgs& global, const InfoArgs& args) {
  rjit::Client client(clientOptions(global));
  rjit::ServerInfo info = client.serverInfo();
  rjit::ServerStats stats = client.stats();
  if (args.json)
    std::cout << infoJson(info, stats).dump(2) << "\n";
  else
    printInfoText(info, stats);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rjit: compile LLVM IR through rjitd, the remote JIT compilation service", "rjit"};
  // Global options may come before or after the subcommand.
  app.fallthrough();
  app.require_subcommand(1);
  app.set_version_flag("--version", "rjit " RJITD_VERSION);

  GlobalArgs global;
  app.add_option("--server", global.server,
                 "rjitd address(es), comma-separated: unix:/PATH or tcp:HOST:PORT (overrides "
                 "RJIT_SERVER)");
  app.add_option("--timeout-ms", global.timeoutMs,
                 "deadline per request in milliseconds (overrides RJIT_TIMEOUT_MS)")
      ->check(CLI::Range(int64_t(1), int64_t(2147483647)));

  CompileArgs compile;
  CLI::App* compileCmd =
      app.add_subcommand("compile", "compile a module (.ll or .bc) into a relocatable object");
  compileCmd->add_option("FILE", compile.file, "textual IR or bitcode")->required();
  compileCmd->add_option("-o", compile.out, "output object file")->required();
  compileCmd->add_option("--target", compile.target,
                         "x86_64, aarch64, an alias or a triple (default: the server's)");
  compileCmd->add_option("--cpu", compile.cpu, "target CPU (default: the target's)");
  compileCmd->add_option("--features", compile.features, "LLVM feature string, e.g. +avx2");
  compileCmd->add_option("-O", compile.optLevel, "optimization level -O0..-O3 (default -O2)")
      ->check(CLI::Range(0u, 3u));
  compileCmd->add_option("--format", compile.format, "input format (default auto)")
      ->check(CLI::IsMember({"auto", "text", "bitcode"}));
  compileCmd->add_option("--hash-first-bytes", compile.hashFirstBytes,
                         "look modules of at least N bytes up by hash before sending them "
                         "(overrides RJIT_HASH_FIRST_BYTES)");
  compileCmd->add_flag("-v,--verbose", compile.verbose, "print what was done");

  InfoArgs info;
  CLI::App* infoCmd = app.add_subcommand("info", "show the server's versions, targets and stats");
  infoCmd->add_flag("--json", info.json, "print JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0)
      return app.exit(e);  // --help, --version
    std::cerr << "error: " << e.what() << "\n"
              << "run 'rjit --help' for usage\n";
    return 2;
  }

  try {
    if (compileCmd->parsed())
      return runCompile(global, compile);
    return runInfo(global, info);
  } catch (const rjit::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    const std::string& file = compileCmd->parsed() ? compile.file : std::string("rjitd");
    // rjitd's message for a parse error already quotes LLVM's diagnostic with its source line
    // and caret; print only the diagnostics it does not already show.
    std::string_view shown = e.what();
    for (const rjit::Diagnostic& d : e.diagnostics()) {
      if (shown.find(formatDiagnostic(file, d)) == std::string_view::npos)
        printDiagnostic(file, d);
    }
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
