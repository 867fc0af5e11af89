// SPDX-License-Identifier: MIT
// rjit: the command-line client of rjitd (compile a module through the server, run it in this
// process through the fast path, call one of its functions, show what the server is and how it
// is doing). Everything it does goes through libremotejit-client.
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
#include <ffi.h>
#include <iostream>
#include <map>
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

/// `rjit run` and `rjit call`: a module loaded into this process.
struct LoadArgs {
  std::string file;
  unsigned optLevel = 2;
  std::string format = "auto";
  std::string symbol;             // call: the function
  std::vector<std::string> args;  // run: the program's arguments; call: the function's
  bool verbose = false;
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

/// Loads FILE; the compile's warnings go to stderr only with -v (`rjit run`'s stderr is the
/// program's).
rjit::Module loadFile(rjit::Client& client, const LoadArgs& args) {
  rjit::CompileRequest request;
  request.module = readFile(args.file);
  request.moduleName = args.file;
  request.optLevel = args.optLevel;
  request.format = parseFormat(args.format);
  rjit::Module module = client.load(request);
  if (args.verbose)
    for (const rjit::Diagnostic& d : module.object().diagnostics)
      printDiagnostic(args.file, d);
  return module;
}

const rjit::Symbol* findDefinition(const rjit::Module& module, const std::string& name) {
  for (const rjit::Symbol& s : module.object().defines)
    if (s.name == name)
      return &s;
  return nullptr;
}

/// Runs the module's `main` in this process, as the program would run natively: argv[0] is the
/// module's file name, the exit status is main's (or exit()'s, when the program calls it).
int runMain(const GlobalArgs& global, const LoadArgs& args) {
  rjit::Client client(clientOptions(global));
  rjit::Module module = loadFile(client, args);
  const rjit::Symbol* main = findDefinition(module, "main");
  void* address = module.address("main");
  if (main == nullptr || address == nullptr)
    throw CliError(args.file + " defines no global function 'main'");
  // C allows main(), main(int, char**) and main(int, char**, char**).
  const std::string& signature = main->signature;
  if (signature != "i32()" && signature != "i32(i32,ptr)" && signature != "i32(i32,ptr,ptr)" &&
      signature != "i32(i32,ptr,ptr,ptr)")
    throw CliError(args.file + ": 'main' has type " + signature +
                   "; expected int main(void), int main(int, char**) or "
                   "int main(int, char**, char**)");
  // Writable copies, NULL-terminated, as the kernel hands them to a native program.
  std::vector<std::vector<char>> storage;
  storage.emplace_back(args.file.begin(), args.file.end());
  for (const std::string& a : args.args)
    storage.emplace_back(a.begin(), a.end());
  std::vector<char*> argv;
  for (auto& s : storage) {
    s.push_back('\0');
    argv.push_back(s.data());
  }
  argv.push_back(nullptr);
  int argc = static_cast<int>(storage.size());
  auto mainFn = reinterpret_cast<int (*)(int, char**, char**)>(address);
  int status = mainFn(argc, argv.data(), environ);  // extra arguments are harmless in the C ABI
  // Like returning from a native main: the module's atexit handlers and destructors run, then
  // the process exits with main's status (exit() flushes stdio).
  module.unload();
  std::fflush(nullptr);
  return status & 0xff;
}

/// One scalar type of an IR signature, as libffi and printing see it.
struct ScalarType {
  std::string name;  // IR name: i32, double, ptr, ...
  ffi_type* ffi;
  bool isUnsigned = false;  // `zeroext` (C's unsigned char/short, _Bool)
};

/// "i32", "zeroext i8", "signext i16", "double", "ptr", "void".
std::optional<ScalarType> scalarType(std::string name) {
  bool isUnsigned = false;
  if (name.rfind("zeroext ", 0) == 0) {
    isUnsigned = true;
    name = name.substr(8);
  } else if (name.rfind("signext ", 0) == 0) {
    name = name.substr(8);
  }
  static const std::pair<const char*, ffi_type*> types[] = {
      {"void", &ffi_type_void},   {"i1", &ffi_type_uint8},      {"i8", &ffi_type_sint8},
      {"i16", &ffi_type_sint16},  {"i32", &ffi_type_sint32},    {"i64", &ffi_type_sint64},
      {"float", &ffi_type_float}, {"double", &ffi_type_double}, {"ptr", &ffi_type_pointer}};
  for (const auto& [n, t] : types) {
    if (name != n)
      continue;
    ffi_type* ffi = t;
    if (isUnsigned && name == "i8")
      ffi = &ffi_type_uint8;
    else if (isUnsigned && name == "i16")
      ffi = &ffi_type_uint16;
    return ScalarType{n, ffi, isUnsigned || name == "i1"};
  }
  return std::nullopt;
}

/// Splits "i32(i32,ptr)" into the return type and the parameter types.
std::pair<std::string, std::vector<std::string>> splitSignature(const std::string& signature) {
  size_t open = signature.find('(');
  std::vector<std::string> params;
  std::string inner = signature.substr(open + 1, signature.size() - open - 2);
  size_t start = 0;
  while (!inner.empty() && start <= inner.size()) {
    size_t comma = inner.find(',', start);
    params.push_back(inner.substr(start, comma - start));
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return {signature.substr(0, open), params};
}

/// One argument of `rjit call`, converted to the parameter's type; `storage` holds its bytes.
void parseArgument(const std::string& text, const ScalarType& type, size_t index,
                   std::vector<uint64_t>& storage, std::vector<std::string>& strings) {
  auto bad = [&](const std::string& expected) {
    throw CliError("argument " + std::to_string(index + 1) + " '" + text + "': expected " +
                   expected + " for parameter type " + type.name);
  };
  uint64_t slot = 0;
  if (type.name == "float" || type.name == "double") {
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno == ERANGE)
      bad("a number");
    if (type.name == "float") {
      float f = static_cast<float>(v);
      std::memcpy(&slot, &f, sizeof(f));
    } else {
      std::memcpy(&slot, &v, sizeof(v));
    }
  } else if (type.name == "ptr") {
    strings.push_back(text);  // a C string: the only pointer a command line can give
    slot = 0;
  } else {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(text.c_str(), &end, 0);
    if (text.empty() || *end != '\0' || errno == ERANGE)
      bad("an integer");
    unsigned bits = type.name == "i1" ? 1 : static_cast<unsigned>(std::stoul(type.name.substr(1)));
    if (bits < 64) {
      long long lo = bits == 1 ? 0 : -(1ll << (bits - 1)), hi = bits == 1 ? 1 : (1ll << bits) - 1;
      if (v < lo || v > hi)
        bad("an integer that fits in " + std::to_string(bits) + " bits");
    }
    std::memcpy(&slot, &v, sizeof(v));  // little-endian: the low bytes hold narrower types
  }
  storage.push_back(slot);
}

std::string formatResult(const ScalarType& type, const uint64_t* raw) {
  char buffer[64];
  if (type.name == "double") {
    double v;
    std::memcpy(&v, raw, sizeof(v));
    std::snprintf(buffer, sizeof(buffer), "%.17g", v);
  } else if (type.name == "float") {
    float v;
    std::memcpy(&v, raw, sizeof(v));
    std::snprintf(buffer, sizeof(buffer), "%.9g", static_cast<double>(v));
  } else if (type.name == "ptr") {
    void* v;
    std::memcpy(&v, raw, sizeof(v));
    std::snprintf(buffer, sizeof(buffer), "%p", v);
  } else {
    // libffi widens integer results to a full register (ffi_arg): sign-extend from the width.
    int64_t v;
    std::memcpy(&v, raw, sizeof(v));
    if (type.isUnsigned) {
      uint64_t u = static_cast<uint64_t>(v);
      if (type.name == "i1")
        u &= 1;
      else if (type.name == "i8")
        u = static_cast<uint8_t>(u);
      else if (type.name == "i16")
        u = static_cast<uint16_t>(u);
      else if (type.name == "i32")
        u = static_cast<uint32_t>(u);
      std::snprintf(buffer, sizeof(buffer), "%" PRIu64, u);
      return buffer;
    }
    if (type.name == "i8")
      v = static_cast<int8_t>(v);
    else if (type.name == "i16")
      v = static_cast<int16_t>(v);
    else if (type.name == "i32")
      v = static_cast<int32_t>(v);
    std::snprintf(buffer, sizeof(buffer), "%" PRId64, v);
  }
  return buffer;
}

/// Calls one function of the module with arguments converted by its IR signature (libffi makes
/// the call: no hand-written calling-convention code) and prints the result.
int runCall(const GlobalArgs& global, const LoadArgs& args) {
  rjit::Client client(clientOptions(global));
  rjit::Module module = loadFile(client, args);
  const rjit::Symbol* symbol = findDefinition(module, args.symbol);
  void* address = module.address(args.symbol);
  if (symbol == nullptr || address == nullptr)
    throw CliError(args.file + " defines no global symbol '" + args.symbol + "'");
  if (symbol->kind != rjit::Symbol::Kind::Function || symbol->signature.empty())
    throw CliError("'" + args.symbol + "' in " + args.file + " is not a function");
  auto [returnName, paramNames] = splitSignature(symbol->signature);
  if (!paramNames.empty() && paramNames.back() == "...")
    throw CliError("'" + args.symbol + "' takes variable arguments (" + symbol->signature +
                   "); rjit call calls functions with a fixed parameter list");
  std::optional<ScalarType> result = scalarType(returnName);
  std::vector<ScalarType> params;
  for (const std::string& p : paramNames) {
    std::optional<ScalarType> t = scalarType(p);
    if (!t || t->name == "void")
      throw CliError("'" + args.symbol + "' has type " + symbol->signature +
                     "; rjit call supports integer, floating-point and pointer (string) "
                     "parameters and results only");
    params.push_back(*t);
  }
  if (!result)
    throw CliError("'" + args.symbol + "' returns " + returnName +
                   "; rjit call supports integer, floating-point, pointer and void results only");
  if (args.args.size() != params.size())
    throw CliError("'" + args.symbol + "' has type " + symbol->signature + " and takes " +
                   std::to_string(params.size()) + " argument" + (params.size() == 1 ? "" : "s") +
                   "; " + std::to_string(args.args.size()) + " given");

  std::vector<uint64_t> storage;
  std::vector<std::string> strings;
  storage.reserve(params.size());
  strings.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i)
    parseArgument(args.args[i], params[i], i, storage, strings);
  std::vector<char*> stringPointers;
  std::vector<void*> values;
  std::vector<ffi_type*> types;
  size_t nextString = 0;
  stringPointers.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    types.push_back(params[i].ffi);
    if (params[i].name == "ptr") {
      stringPointers.push_back(strings[nextString++].data());
      values.push_back(&stringPointers.back());
    } else {
      values.push_back(&storage[i]);
    }
  }
  ffi_cif cif;
  if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, static_cast<unsigned>(types.size()), result->ffi,
                   types.data()) != FFI_OK)
    throw CliError("libffi cannot call a function of type " + symbol->signature);
  uint64_t raw[2] = {0, 0};  // at least sizeof(ffi_arg), and big enough for a double
  ffi_call(&cif, reinterpret_cast<void (*)()>(address), raw, values.data());
  std::fflush(nullptr);
  if (result->name != "void")
    std::printf("%s\n", formatResult(*result, raw).c_str());
  return 0;
}

/// {"compile": {"ok": 12, "invalid-module": 1}, ...}
nlohmann::json requestsByMethod(const rjit::ServerStats& stats) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& r : stats.requestCounts)
    out[r.method][r.result] = r.count;
  return out;
}

nlohmann::json errorsByKind(const rjit::ServerStats& stats) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& e : stats.errorCounts)
    out[e.kind] = e.count;
  return out;
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
      {"connections", stats.connections},
      {"workers", stats.workers},
      {"compile_worker_restarts", stats.compileWorkerRestarts},
      {"uptime_ms", stats.uptimeMillis},
      {"fast_path",
       {{"loads", stats.loads},
        {"links", stats.links},
        {"link_failures", stats.linkFailures},
        {"loaded_modules", stats.loadedImages},
        {"loaded_bytes", stats.loadedImageBytes},
        {"symbol_questions", stats.symbolQuestions}}},
      {"requests_by_method", requestsByMethod(stats)},
      {"errors", errorsByKind(stats)},
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
  std::map<std::string, std::vector<std::string>> byMethod;
  for (const auto& r : stats.requestCounts)
    if (r.count != 0)
      byMethod[r.method].push_back(r.result + " " + n(r.count));
  bool firstMethod = true;
  for (const auto& [method, results] : byMethod) {
    line(firstMethod ? "requests by method" : "", method + ": " + joined(results));
    firstMethod = false;
  }
  std::vector<std::string> errors;
  for (const auto& e : stats.errorCounts)
    if (e.count != 0)
      errors.push_back(e.kind + " " + n(e.count));
  line("errors", errors.empty() ? std::string("none") : joined(errors));
  line("loads",
       n(stats.loads) + " (" + n(stats.links) + " links, " + n(stats.linkFailures) + " failed)");
  line("loaded modules", n(stats.loadedImages) + " (" + n(stats.loadedImageBytes) + " bytes)");
  line("symbol questions", n(stats.symbolQuestions) + " (round trips to clients during loads)");
  line("sessions", n(stats.sessions) + " (" + n(stats.connections) + " connections)");
  line("workers", n(stats.workers) + " (" + n(stats.compileWorkerRestarts) + " restarts)");
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

  LoadArgs run;
  CLI::App* runCmd = app.add_subcommand(
      "run", "run the module's main() in this process (compiled and linked by rjitd, mapped "
             "here): exit status, stdout and stderr are the program's");
  runCmd->add_option("FILE", run.file, "textual IR or bitcode")->required();
  runCmd->add_option("ARGS", run.args, "the program's arguments (after --)");
  runCmd->add_option("-O", run.optLevel, "optimization level -O0..-O3 (default -O2)")
      ->check(CLI::Range(0u, 3u));
  runCmd->add_option("--format", run.format, "input format (default auto)")
      ->check(CLI::IsMember({"auto", "text", "bitcode"}));
  runCmd->add_flag("-v,--verbose", run.verbose, "print the compile's warnings");
  runCmd->positionals_at_end();

  LoadArgs call;
  CLI::App* callCmd = app.add_subcommand(
      "call", "call one function of the module in this process and print its result");
  callCmd->add_option("FILE", call.file, "textual IR or bitcode")->required();
  callCmd->add_option("SYMBOL", call.symbol, "the function")->required();
  callCmd->add_option("ARGS", call.args,
                      "its arguments: integers, floating-point numbers, strings (for ptr)");
  callCmd->add_option("-O", call.optLevel, "optimization level -O0..-O3 (default -O2)")
      ->check(CLI::Range(0u, 3u));
  callCmd->add_option("--format", call.format, "input format (default auto)")
      ->check(CLI::IsMember({"auto", "text", "bitcode"}));
  callCmd->add_flag("-v,--verbose", call.verbose, "print the compile's warnings");
  callCmd->positionals_at_end();

  InfoArgs info;
  CLI::App* infoCmd = app.add_subcommand("info", "show the server's versions, targets and stats");
  infoCmd->add_flag("--json", info.json, "print JSON");

  // Everything after the first "--" belongs to the program (run) or the function (call), verbatim:
  // split it off before CLI11 sees it, so that "--" and option-like words ("-5", "--x") reach
  // them unchanged.
  std::vector<std::string> passthrough;
  int parsed = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      parsed = i;
      passthrough.assign(argv + i + 1, argv + argc);
      break;
    }
  }
  try {
    app.parse(parsed, argv);
    if (!passthrough.empty() && !runCmd->parsed() && !callCmd->parsed())
      throw CLI::ExtrasError({"--"});
    std::vector<std::string>& extra = runCmd->parsed() ? run.args : call.args;
    extra.insert(extra.end(), passthrough.begin(), passthrough.end());
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
    if (runCmd->parsed())
      return runMain(global, run);
    if (callCmd->parsed())
      return runCall(global, call);
    return runInfo(global, info);
  } catch (const rjit::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    const std::string& file = compileCmd->parsed() ? compile.file
                              : runCmd->parsed()   ? run.file
                              : callCmd->parsed()  ? call.file
                                                   : std::string("rjitd");
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
