// SPDX-License-Identifier: MIT
// rjitd-executor: the sandboxed process in which rjitd runs a session's code (issue 10;
// ipc/executor/executor.capnp). Started by rjitd only, with fds 0-2 its stdio memfds, 3 the
// channel to rjitd and 4 the status page; it sandboxes itself before it reads a message. For
// code of another architecture it is the launcher (--emulator): it enters the sandbox on the
// host and executes qemu-user with that architecture's rjitd-executor (--launched), which
// serves as usual (docs/OPERATIONS.md "aarch64 executors").
#include "control.h"
#include "fatal-signal.h"
#include "sandbox.h"

#include "client-config.h"
#include "connection.h"
#include "endpoint.h"
#include "hash-worker.h"
#include "process-loader.h"
#include "rpc-load.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <optional>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace rjitd::executor {

namespace {

/// The descriptors rjitd passes (executor.capnp): 0-2 stdio, these two, nothing else.
constexpr int CHANNEL_FD = 3;
constexpr int STATUS_PAGE_FD = 4;

/// Exit statuses of an executor that could not start (phase Starting: rjitd logs stderr).
constexpr int EXIT_USAGE = 2;
constexpr int EXIT_START_FAILED = 1;

struct Options {
  uint64_t memoryBytes = 0;
  uint64_t outputBytes = 0;
  uint64_t cpuSeconds = 0;
  uint64_t openFiles = 0;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  /// Test only (test/unit/sandbox-test.cpp): die right after the sandbox, by a NULL write
  /// ("segv") or a forbidden system call ("socket").
  std::string testCrash;
  /// The launcher: qemu-user and the guest rjitd-executor it runs (both set, or neither).
  std::string emulator;
  std::string guest;
  /// The guest under the launcher: the sandbox is in place already (checked, not entered).
  bool launched = false;
};

int startFailed(const std::string& message) {
  std::fprintf(stderr, "rjitd-executor: error: %s\n", message.c_str());
  return EXIT_START_FAILED;
}

[[noreturn]] void testCrash(const std::string& how) {
  if (how == "socket") {
    ::socket(AF_INET, SOCK_STREAM, 0);  // SIGSYS from the filter
  } else {
    volatile int* nowhere = nullptr;
    *nowhere = 1;  // SIGSEGV at address 0
  }
  ::_exit(EXIT_START_FAILED);  // not reached when the sandbox works
}

/// The launcher: enters the sandbox's launcher profile (rlimits sized for qemu, Landlock, the
/// filter for qemu's host system calls) and executes the emulator with the guest executor and
/// fds 0-4 as they are. Returns only when that fails.
int launch(const Options& options) {
  SandboxOptions sandbox;
  // RLIMIT_AS counts qemu's own mappings (its translation buffer) besides the guest's.
  sandbox.memoryBytes = options.memoryBytes >= RLIM_INFINITY - EMULATOR_ADDRESS_SPACE
                            ? RLIM_INFINITY
                            : options.memoryBytes + EMULATOR_ADDRESS_SPACE;
  sandbox.outputBytes = options.outputBytes;
  sandbox.cpuSeconds = options.cpuSeconds;
  sandbox.openFiles = options.openFiles;
  sandbox.uid = options.uid;
  sandbox.gid = options.gid;
  sandbox.emulator = EmulatorFiles{options.emulator, options.guest};
  std::vector<std::string> args = {options.emulator, options.guest,
                                   "--memory",       std::to_string(options.memoryBytes),
                                   "--output",       std::to_string(options.outputBytes),
                                   "--cpu-seconds",  std::to_string(options.cpuSeconds),
                                   "--open-files",   std::to_string(options.openFiles),
                                   "--launched"};
  if (!options.testCrash.empty())
    args.insert(args.end(), {"--test-crash-after-sandbox", options.testCrash});
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  if (auto error = applySandbox(sandbox))
    return startFailed("cannot enter the sandbox: " + error->message);
  char* noEnvironment[] = {nullptr};  // nothing of rjitd's, and no QEMU_* settings
  ::execve(options.emulator.c_str(), argv.data(), noEnvironment);
  return startFailed("cannot execute the emulator " + options.emulator + ": " +
                     std::strerror(errno));
}

/// The guest under the launcher: qemu refuses a guest's seccomp and would apply its rlimits to
/// itself, so the sandbox is the launcher's; this checks that there was one (no new privileges
/// is set by it and survives the exec) and makes the process undumpable again (the exec of
/// qemu made it dumpable).
std::optional<std::string> checkLaunched() {
  if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
    return std::string("--launched, but not started by the launcher (no new privileges is off)");
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
    return std::string("prctl(PR_SET_DUMPABLE): ") + std::strerror(errno);
  return std::nullopt;
}

int serve(StatusPage& page, const Options& options) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  rjit::detail::Config config;
  // Loaded code's reservation counts against RLIMIT_AS like every other mapping: at most a
  // quarter of the executor's address space, so that the code's own data has the rest.
  config.memoryQuota =
      std::min<uint64_t>(rjit::detail::DEFAULT_MEMORY_QUOTA, options.memoryBytes / 4);
  config.clientName = "rjitd-executor";
  rjit::detail::HashWorker hasher;  // unused: loads go by key
  rjit::detail::RpcLoader loader(config, hasher);
  rjit::detail::ProcessLoader processLoader;
  auto control = kj::heap<ControlServer>(page, loader, processLoader);
  ControlServer& controlServer = *control;
  rjitd::Endpoint channel;
  channel.kind = rjitd::Endpoint::Kind::Unix;
  channel.path = "rjitd's executor channel";
  std::shared_ptr<rjit::detail::Connection> connection = rjit::detail::connectionOverFd(
      io, kj::AutoCloseFd(CHANNEL_FD), std::move(channel), kj::mv(control));

  std::optional<rjit::detail::Result<bool>> hello;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                 hello = connection->hello(config.clientName).wait(io.waitScope);
               })) {
    // rjitd went away before it answered (it killed this executor's session meanwhile).
    if (exception->getType() == kj::Exception::Type::DISCONNECTED)
      return 0;
    return startFailed("handshake with rjitd failed: " +
                       std::string(exception->getDescription().cStr()));
  }
  if (auto* error = rjit::detail::failed(*hello))
    return startFailed(std::string("handshake with rjitd failed: ") + error->what());
  controlServer.setConnection(*connection);  // loads waiting for the handshake go on
  // Serve Control until rjitd closes the channel (it ends the executor that way, or kills it).
  KJ_IF_MAYBE (exception,
               kj::runCatchingExceptions([&] { connection->disconnected().wait(io.waitScope); })) {
    // A read error on the channel ends it just as a close does.
    (void)exception;
  }
  return 0;
}

}  // namespace

}  // namespace rjitd::executor

#if defined(__SANITIZE_ADDRESS__)
/// Sanitizer builds (tests only): an executor's exit() from user code must stay an exit, but
/// LeakSanitizer's check at exit runs a tracer (clone without CLONE_THREAD, ptrace) that the
/// seccomp filter answers with SIGSYS, and a report would exec a symbolizer; neither may run in
/// the sandbox. (rjitd spawns executors with an empty environment, so ASAN_OPTIONS is no way.)
extern "C" const char* __asan_default_options() {
  return "detect_leaks=0:symbolize=0";
}
#endif

int main(int argc, char** argv) {
  using namespace rjitd::executor;
  // No inherited descriptor but the five rjitd passes, whatever it (or a test) leaked.
  if (::close_range(STATUS_PAGE_FD + 1, ~0U, 0) < 0)
    return startFailed(std::string("close_range: ") + std::strerror(errno));
  // The page is mapped from a copy: a launcher passes fd 4 itself on to the guest.
  kj::AutoCloseFd pageFd(STATUS_PAGE_FD);
  auto mapped =
      mapStatusPage(kj::AutoCloseFd(::fcntl(STATUS_PAGE_FD, F_DUPFD_CLOEXEC, STATUS_PAGE_FD + 1)));
  if (auto* error = std::get_if<std::string>(&mapped))
    return startFailed(*error);
  StatusPage& page = *std::get<StatusPage*>(mapped);
  if (auto error = installFatalSignalHandlers(page))
    return startFailed(*error);

  Options options;
  CLI::App app{"rjitd-executor: runs a session's code for rjitd, sandboxed (started by rjitd "
               "only: fd 3 is its channel, fd 4 its status page)",
               "rjitd-executor"};
  app.add_option("--memory", options.memoryBytes, "address space limit in bytes (RLIMIT_AS)")
      ->required();
  app.add_option("--output", options.outputBytes,
                 "largest size of the stdout and stderr files in bytes (RLIMIT_FSIZE)")
      ->required();
  app.add_option("--cpu-seconds", options.cpuSeconds, "CPU time limit (RLIMIT_CPU)")->required();
  app.add_option("--open-files", options.openFiles, "descriptor limit (RLIMIT_NOFILE)")->required();
  app.add_option("--uid", options.uid, "user to run as (rjitd running as root)");
  app.add_option("--gid", options.gid, "group to run as (rjitd running as root)");
  app.add_option("--test-crash-after-sandbox", options.testCrash)->group("");  // tests only
  auto* emulator =
      app.add_option("--emulator", options.emulator,
                     "launcher: run GUEST under this qemu-user, sandboxed on the host");
  app.add_option("--guest", options.guest, "launcher: the other architecture's rjitd-executor")
      ->needs(emulator);
  emulator->needs("--guest");
  app.add_flag("--launched", options.launched)->group("");  // set by the launcher only
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0)
      return app.exit(e);
    std::fprintf(stderr, "rjitd-executor: error: %s\n", e.what());
    return EXIT_USAGE;
  }

  struct stat channel;
  if (::fstat(CHANNEL_FD, &channel) < 0 || !S_ISSOCK(channel.st_mode))
    return startFailed("fd 3 is not rjitd's channel (a Unix socket)");
  if (!options.emulator.empty())
    return launch(options);  // fds 0-4 go on to the guest
  pageFd = nullptr;          // the mapping keeps the page: no descriptor of it stays open

  SandboxOptions sandbox;
  sandbox.memoryBytes = options.memoryBytes;
  sandbox.outputBytes = options.outputBytes;
  sandbox.cpuSeconds = options.cpuSeconds;
  sandbox.openFiles = options.openFiles;
  sandbox.uid = options.uid;
  sandbox.gid = options.gid;
  // What the C library would otherwise read from files on first use, which the filter then
  // refuses: the local time zone (localtime(), strftime(); /etc/localtime).
  ::tzset();
  if (options.launched) {
    if (auto error = checkLaunched())
      return startFailed(*error);
  } else if (auto error = applySandbox(sandbox)) {
    return startFailed("cannot enter the sandbox: " + error->message);
  }
  setPhase(page, StatusPage::Idle);
  if (!options.testCrash.empty())
    testCrash(options.testCrash);

  int status = serve(page, options);
  // _exit: rjitd has closed the channel; the modules' destructors (user code) and the
  // executor's own teardown would only delay the process's end, which rjitd may be waiting for.
  std::fflush(nullptr);
  ::_exit(status);
}
