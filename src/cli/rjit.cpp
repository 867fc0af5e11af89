// SPDX-License-Identifier: MIT
// rjit: the command-line client of rjitd (compile a module through the server, run it in this
// process through the fast path, call one of its functions, show what the server is and how it
// is doing). This file is the wiring: the command line (CLI11) and one function per command,
// joining libremotejit-client to the parts: file-io (reading modules, writing objects),
// program-main (`run`), src/marshal (`call`) and info-render (`info`).
#include "call.h"
#include "file-io.h"
#include "info-render.h"
#include "ir-signature.h"
#include "program-main.h"
#include "remote-values.h"
#include "remotejit/client.h"
#include "rjitd-config.h"
#include "value.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <optional>
#include <string>
#include <unistd.h>
#include <variant>
#include <vector>

namespace {

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
  bool remote = false;  // --remote: in an executor of rjitd's, not in this process
  std::string target;   // --target (with --remote)
};

/// The most standard input `rjit run --remote` sends (rjitd's --executor-output bounds it
/// further; this keeps a stream that never ends from filling this process).
constexpr size_t REMOTE_STDIN_LIMIT = size_t{64} << 20;

/// A failure of the CLI itself (a file, a symbol, an argument): printed like an rjit::Error.
int fail(const std::string& message) {
  std::cerr << "error: " << message << "\n";
  return 1;
}

rjit::ClientOptions clientOptions(const GlobalArgs& global) {
  rjit::ClientOptions options;
  if (!global.server.empty())
    options.servers.push_back(global.server);
  options.timeout = std::chrono::milliseconds(global.timeoutMs);
  options.clientName = "rjit/" RJITD_VERSION;
  return options;
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
  auto module = rjitd::cli::readFile(args.file);
  if (auto* error = std::get_if<rjitd::cli::FileError>(&module))
    return fail(error->message);
  rjit::CompileRequest request;
  request.module = std::move(std::get<std::string>(module));
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
  if (auto error = rjitd::cli::writeOutput(args.out, object.object))
    return fail(error->message);
  if (args.verbose)
    std::cerr << "compiled " << args.file << " -> " << args.out << " (" << object.key.substr(0, 16)
              << "\u2026, " << object.object.size() << " bytes, "
              << (object.fromCache ? std::string("from cache")
                                   : "compiled in " + formatMillis(object.compileMicros) + " ms")
              << ")\n";
  return 0;
}

/// Loads `module` (FILE's bytes) with `load` (Client::load here, RemoteExecutor::load in an
/// executor); the compile's warnings go to stderr only with -v (`rjit run`'s stderr is the
/// program's).
template <typename Load> auto loadWith(Load&& load, const LoadArgs& args, std::string module) {
  rjit::CompileRequest request;
  request.module = std::move(module);
  request.moduleName = args.file;
  request.optLevel = args.optLevel;
  request.format = parseFormat(args.format);
  auto loaded = load(request);
  if (args.verbose)
    for (const rjit::Diagnostic& d : loaded.object().diagnostics)
      printDiagnostic(args.file, d);
  return loaded;
}

rjit::Module loadModule(rjit::Client& client, const LoadArgs& args, std::string module) {
  return loadWith([&](const rjit::CompileRequest& r) { return client.load(r); }, args,
                  std::move(module));
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
  auto bytes = rjitd::cli::readFile(args.file);
  if (auto* error = std::get_if<rjitd::cli::FileError>(&bytes))
    return fail(error->message);
  rjit::Client client(clientOptions(global));
  rjit::Module module = loadModule(client, args, std::move(std::get<std::string>(bytes)));
  const rjit::Symbol* main = findDefinition(module, "main");
  void* address = module.address("main");
  if (main == nullptr || address == nullptr)
    return fail(args.file + " defines no global function 'main'");
  auto form = rjitd::cli::mainParameterCount(main->signature);
  if (auto* problem = std::get_if<std::string>(&form))
    return fail(args.file + ": " + *problem);
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
  int status = rjitd::cli::callMain(address, std::get<size_t>(form), argc, argv.data(), environ);
  // Like returning from a native main: the module's atexit handlers and destructors run, then
  // the process exits with main's status (exit() flushes stdio).
  module.unload();
  std::fflush(nullptr);
  return status & 0xff;
}

/// Calls one function of the module with arguments converted by its IR signature and prints
/// the result (src/marshal makes the call).
int runCall(const GlobalArgs& global, const LoadArgs& args) {
  auto bytes = rjitd::cli::readFile(args.file);
  if (auto* error = std::get_if<rjitd::cli::FileError>(&bytes))
    return fail(error->message);
  rjit::Client client(clientOptions(global));
  rjit::Module module = loadModule(client, args, std::move(std::get<std::string>(bytes)));
  const rjit::Symbol* symbol = findDefinition(module, args.symbol);
  void* address = module.address(args.symbol);
  if (symbol == nullptr || address == nullptr)
    return fail(args.file + " defines no global symbol '" + args.symbol + "'");
  if (symbol->kind != rjit::Symbol::Kind::Function || symbol->signature.empty())
    return fail("'" + args.symbol + "' in " + args.file + " is not a function");
  auto signature = rjitd::parseIrSignature(symbol->signature);
  if (auto* error = std::get_if<rjitd::IrSignatureError>(&signature))
    return fail("'" + args.symbol + "' in " + args.file + ": " + error->describe());
  const rjitd::IrSignature& type = std::get<rjitd::IrSignature>(signature);
  auto arguments = rjitd::marshal::parseArguments(args.symbol, type, args.args);
  if (auto* error = std::get_if<rjitd::marshal::CallError>(&arguments))
    return fail(error->message);
  auto result = rjitd::marshal::callBySignature(
      address, args.symbol, type, std::get<std::vector<rjitd::marshal::Value>>(arguments));
  if (auto* error = std::get_if<rjitd::marshal::CallError>(&result))
    return fail(error->message);
  std::fflush(nullptr);
  const rjitd::marshal::Value& value = std::get<rjitd::marshal::Value>(result);
  if (value.kind != rjitd::marshal::Value::Kind::Void)
    std::printf("%s\n", rjitd::marshal::formatValue(value).c_str());
  return 0;
}

/// A failure of `rjit call/run --remote` before the call: printed as rjitd's errors are.
int failRemote(rjit::ErrorKind kind, const std::string& message) {
  std::cerr << "error: " << rjit::errorKindName(kind) << ": " << message << "\n";
  return 1;
}

/// What the code wrote, to rjit's own stdout and stderr, byte for byte.
void passOutput(const rjit::ExecOutput& output) {
  std::cout.flush();
  rjitd::cli::writeAll(STDOUT_FILENO, output.out);
  rjitd::cli::writeAll(STDERR_FILENO, output.err);
}

/// FILE compiled by rjitd (or its cache) and loaded into an executor of rjitd's for --target.
rjit::RemoteModule loadRemote(rjit::RemoteExecutor& executor, const LoadArgs& args,
                              std::string module) {
  return loadWith([&](const rjit::CompileRequest& r) { return executor.load(r); }, args,
                  std::move(module));
}

/// `rjit call --remote`: the arguments parsed here against the symbol's IR signature, the call
/// made in rjitd's executor, its output written out, then the result printed as `rjit call`
/// prints it.
int runCallRemote(const GlobalArgs& global, const LoadArgs& args) {
  auto bytes = rjitd::cli::readFile(args.file);
  if (auto* error = std::get_if<rjitd::cli::FileError>(&bytes))
    return failRemote(rjit::ErrorKind::InvalidRequest, error->message);
  rjit::Client client(clientOptions(global));
  rjit::RemoteExecutor executor = client.executor(args.target);
  rjit::RemoteModule module = loadRemote(executor, args, std::move(std::get<std::string>(bytes)));
  const rjit::Symbol* symbol = nullptr;
  for (const rjit::Symbol& s : module.object().defines)
    if (s.name == args.symbol)
      symbol = &s;
  if (symbol == nullptr)
    return failRemote(rjit::ErrorKind::SignatureMismatch,
                      args.file + " defines no global symbol '" + args.symbol + "'");
  if (symbol->kind != rjit::Symbol::Kind::Function || symbol->signature.empty())
    return failRemote(rjit::ErrorKind::SignatureMismatch,
                      "'" + args.symbol + "' in " + args.file + " is not a function");
  auto signature = rjitd::parseIrSignature(symbol->signature);
  if (auto* error = std::get_if<rjitd::IrSignatureError>(&signature))
    return failRemote(rjit::ErrorKind::SignatureMismatch,
                      "'" + args.symbol + "' in " + args.file + ": " + error->describe());
  auto arguments = rjitd::marshal::parseArguments(
      args.symbol, std::get<rjitd::IrSignature>(signature), args.args);
  if (auto* error = std::get_if<rjitd::marshal::CallError>(&arguments))
    return failRemote(rjit::ErrorKind::SignatureMismatch, error->message);
  rjit::CallResult result;
  try {
    result = module.callValues(
        args.symbol,
        rjitd::cli::toRemoteValues(std::get<std::vector<rjitd::marshal::Value>>(arguments)));
  } catch (const rjit::ExecError& e) {
    passOutput(e.output());  // what the code wrote before it failed
    throw;
  }
  passOutput(result.output);
  if (result.value.kind != rjit::Value::Kind::Void)
    std::cout << rjitd::marshal::formatValue(rjitd::cli::fromRemoteValue(result.value)) << "\n";
  return 0;
}

/// `rjit run --remote`: main run as a program in rjitd's executor, with argv[0] = FILE, rjit's
/// environment and (when it is not a terminal) rjit's standard input; its output is written
/// out exactly and its exit status is rjit's (128 + N for a signal N, as a shell shows it).
int runMainRemote(const GlobalArgs& global, const LoadArgs& args) {
  auto bytes = rjitd::cli::readFile(args.file);
  if (auto* error = std::get_if<rjitd::cli::FileError>(&bytes))
    return failRemote(rjit::ErrorKind::InvalidRequest, error->message);
  std::string input;
  // A closed stdin (EBADF) or a terminal gives the program no input.
  if (fcntl(STDIN_FILENO, F_GETFD) != -1 && isatty(STDIN_FILENO) == 0) {
    auto read = rjitd::cli::readBounded(STDIN_FILENO, "stdin", REMOTE_STDIN_LIMIT);
    if (auto* error = std::get_if<rjitd::cli::FileError>(&read))
      return failRemote(rjit::ErrorKind::TooLarge, error->message);
    input = std::move(std::get<std::string>(read));
  }
  std::vector<std::string> argv{args.file};
  argv.insert(argv.end(), args.args.begin(), args.args.end());
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e)
    env.emplace_back(*e);
  rjit::Client client(clientOptions(global));
  rjit::RemoteExecutor executor = client.executor(args.target);
  rjit::RemoteModule module = loadRemote(executor, args, std::move(std::get<std::string>(bytes)));
  rjit::RunResult result;
  try {
    result = module.run(std::move(argv), std::move(env), std::move(input));
  } catch (const rjit::ExecError& e) {
    passOutput(e.output());
    throw;
  }
  passOutput(result.output);
  if (result.signal != 0)
    return 128 + result.signal;
  return result.exitStatus & 0xff;
}

int runInfo(const GlobalArgs& global, const InfoArgs& args) {
  rjit::Client client(clientOptions(global));
  rjit::ServerInfo info = client.serverInfo();
  rjit::ServerStats stats = client.stats();
  if (args.json)
    std::cout << rjitd::cli::infoJson(info, stats).dump(2) << "\n";
  else
    std::cout << rjitd::cli::infoText(info, stats);
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
  runCmd->add_flag("--remote", run.remote,
                   "run it in a sandboxed executor process of rjitd's instead of this process");
  runCmd->add_option("--target", run.target,
                     "with --remote: the executor's target (default: this machine's)");
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
  callCmd->add_flag("--remote", call.remote,
                    "call it in a sandboxed executor process of rjitd's instead of this process");
  callCmd->add_option("--target", call.target,
                      "with --remote: the executor's target (default: this machine's)");
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
    if ((runCmd->parsed() && !run.target.empty() && !run.remote) ||
        (callCmd->parsed() && !call.target.empty() && !call.remote))
      throw CLI::ValidationError("--target", "--target needs --remote (local runs are native)");
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
      return run.remote ? runMainRemote(global, run) : runMain(global, run);
    if (callCmd->parsed())
      return call.remote ? runCallRemote(global, call) : runCall(global, call);
    return runInfo(global, info);
  } catch (const rjit::Error& e) {
    // Remote calls name the kind ("error: crashed: ..."), as scripts tell them apart.
    if ((runCmd->parsed() && run.remote) || (callCmd->parsed() && call.remote))
      std::cerr << "error: " << rjit::errorKindName(e.kind()) << ": " << e.what() << "\n";
    else
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
