// SPDX-License-Identifier: MIT
#include "compile-backend.h"

#include <algorithm>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <cerrno>
#include <compile-worker.capnp.h>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <new>
#include <poll.h>
#include <spawn.h>
#include <string>
#include <string_view>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "log.h"
#include "proto-convert.h"
#include "test-gate.h"

extern char** environ;

namespace rjitd::service {

namespace {

// Requests carry a module, answers an object: both can be tens of megabytes.
capnp::ReaderOptions bigMessages() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = 1ull << 31;  // 16 GiB: the size limits are enforced elsewhere
  return o;
}

std::string describeStatus(int status) {
  if (WIFSIGNALED(status))
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  if (WIFEXITED(status))
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended";
}

/// An object over --max-object-bytes: the worker's answer and the backend's second look.
Failure objectTooLarge(const std::string& moduleName, uint64_t size, uint64_t limit) {
  return Failure{ErrorKind::TooLarge,
                 "the object compiled from module '" + moduleName + "' is " + std::to_string(size) +
                     " bytes, over the limit of " + std::to_string(limit) +
                     " bytes (rjitd --max-object-bytes)",
                 {}};
}

}  // namespace

bool killedFromOutside(int status) {
  if (!WIFSIGNALED(status))
    return false;
  switch (WTERMSIG(status)) {
  // What a crash or an abort raises in the process itself (LLVM's assertions, a fault in
  // code generation). SIGKILL, SIGTERM and the rest can only come from another process or
  // the kernel's OOM killer. A kill(1) of SIGSEGV would be misread as a crash; nobody does that
  // by accident, and the price is one module reported invalid.
  case SIGSEGV:
  case SIGBUS:
  case SIGILL:
  case SIGFPE:
  case SIGABRT:
  case SIGTRAP:
  case SIGSYS: return false;
  default: return true;
  }
}

// One child process and our end of its socket.
class ProcessBackend::Worker {
public:
  Worker(pid_t pid, kj::AutoCloseFd fd)
      : pid(pid), fd(kj::mv(fd)), in(this->fd.get()), buffered(in) {}
  ~Worker() {
    fd = nullptr;  // EOF tells an idle worker to exit
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      int status;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }

  /// Ends the child (SIGKILL first when `kill`) and returns its waitpid() status.
  int reap(bool kill) {
    if (kill)
      ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    pid = -1;
    return status;
  }

  /// Can this idle worker take work? Not when its end of the socket is closed or readable: an
  /// idle worker never writes unprompted, so either means it died or is dying (its socket
  /// closes before it becomes a zombie, so this also catches a kill still in progress).
  bool alive() {
    pollfd pfd{fd.get(), POLLIN, 0};
    int ready;
    do {
      ready = ::poll(&pfd, 1, 0);
    } while (ready < 0 && errno == EINTR);
    if (ready != 0)
      return false;
    // WNOWAIT: leave an ended child a zombie, so its pid stays ours (never reused) until reap()
    // collects its status for the log.
    siginfo_t info{};
    int rc;
    do {
      rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    } while (rc < 0 && errno == EINTR);
    return rc == 0 && info.si_pid == 0;
  }

  pid_t id() const { return pid; }
  int socket() const { return fd.get(); }
  kj::BufferedInputStreamWrapper& input() { return buffered; }
  /// Has this worker compiled nothing yet? (LLVM state left by earlier compiles can make a
  /// used worker crash on a module a fresh one compiles.)
  bool fresh() const { return compiles == 0; }
  void countCompile() { ++compiles; }

private:
  pid_t pid;
  kj::AutoCloseFd fd;
  kj::FdInputStream in;
  kj::BufferedInputStreamWrapper buffered;
  uint64_t compiles = 0;
};

// A worker that died (or stopped answering) before it answered a compile, already reaped.
struct ProcessBackend::Crash {
  pid_t pid;
  std::string what;  // "died", "stopped reading requests: ..."
  int status;        // waitpid() status
};

ProcessBackend::ProcessBackend(std::string workerPath, std::chrono::milliseconds timeLimit,
                               metrics::Metrics& metrics, std::string workerGate,
                               WorkerLimits limits)
    : workerPath(std::move(workerPath)), workerGate(std::move(workerGate)), timeLimit(timeLimit),
      limits(limits), metrics(metrics) {}

ProcessBackend::~ProcessBackend() = default;

uint64_t ProcessBackend::spawned() const {
  std::lock_guard lock(mutex);
  return spawnCount;
}

std::unique_ptr<ProcessBackend::Worker> ProcessBackend::take() {
  while (true) {
    std::unique_ptr<Worker> worker;
    {
      std::lock_guard lock(mutex);
      if (idle.empty())
        break;
      worker = std::move(idle.back());
      idle.pop_back();
    }
    if (worker->alive())
      return worker;
    // Killed while idle (OOM killer, operator): never the next module's fault.
    pid_t pid = worker->id();
    std::string how = describeStatus(worker->reap(true));
    metrics.compileWorkerLost();
    log::warning("idle compile worker ", pid, " ended (", how, "); replacing it");
  }
  return spawn();
}

std::unique_ptr<ProcessBackend::Worker> ProcessBackend::spawn() {
  {
    std::lock_guard lock(mutex);
    ++spawnCount;
  }
  int sv[2];
  KJ_SYSCALL(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), "compile worker socket");
  kj::AutoCloseFd ours(sv[0]), theirs(sv[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  KJ_DEFER(posix_spawn_file_actions_destroy(&actions));
  // dup2 onto fd 3 clears CLOEXEC on the copy, so exactly this socket survives the exec.
  posix_spawn_file_actions_adddup2(&actions, theirs.get(), 3);
  std::string path = workerPath;
  char arg1[] = "--compile-worker";
  char arg2[] = "3";
  char arg3[] = "--max-object-bytes";
  std::string maxObject = std::to_string(limits.maxObjectBytes);
  char arg5[] = "--test-worker-gate";
  std::string gate = workerGate;
  char* argv[] = {path.data(), arg1, arg2, arg3, maxObject.data(), nullptr, nullptr, nullptr};
  if (!gate.empty()) {
    argv[5] = arg5;
    argv[6] = gate.data();
  }
  pid_t pid;
  int rc = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, environ);
  KJ_REQUIRE(rc == 0, "cannot start the compile worker", path, strerror(rc));
  auto worker = std::make_unique<Worker>(pid, kj::mv(ours));
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of shadow address space: under RLIMIT_AS an ASan
  // worker could not map anything. Sanitizer builds (tests only) run workers without it, as
  // they run executors (service/executor/sandbox.cpp).
  constexpr bool SET_MEMORY_LIMIT = false;
#else
  constexpr bool SET_MEMORY_LIMIT = true;
#endif
  if (SET_MEMORY_LIMIT && limits.memoryBytes != 0) {
    // posix_spawn has no attribute for rlimits, so the limit is set from here. glibc's
    // posix_spawn returns only after the child has exec'd, so this applies to the worker's own
    // image; and it is in place before the worker reads its first request (sent after this), so
    // no module is ever compiled without it.
    rlimit memory{limits.memoryBytes, limits.memoryBytes};
    KJ_SYSCALL(::prlimit(pid, RLIMIT_AS, &memory, nullptr), "compile worker memory limit",
               limits.memoryBytes);
  }
  return worker;
}

void ProcessBackend::giveBack(std::unique_ptr<Worker> worker) {
  std::lock_guard lock(mutex);
  idle.push_back(std::move(worker));
}

void CompileCancel::cancel() {
  std::lock_guard lock(mutex);
  requested = true;
  if (worker > 0)
    ::kill(worker, SIGKILL);
}

bool CompileCancel::cancelled() const {
  std::lock_guard lock(mutex);
  return requested;
}

void CompileCancel::bindWorker(int pid) {
  std::lock_guard lock(mutex);
  worker = pid;
  if (requested && worker > 0)
    ::kill(worker, SIGKILL);
}

namespace {

/// What a compile nobody waits for any more answers (nobody reads it; logs and metrics do).
Failure cancelledFailure() {
  return Failure{ErrorKind::Internal, "cancelled", {}};
}

Failure shuttingDownFailure(const std::string& moduleName) {
  return Failure{ErrorKind::ShuttingDown,
                 "rjitd is shutting down (its --drain-timeout passed) and stopped compiling '" +
                     moduleName + "'; retry on another server or after it restarts",
                 {}};
}

}  // namespace

bool ProcessBackend::markBusy(pid_t pid, CompileCancel* cancel) {
  {
    std::lock_guard lock(mutex);
    if (stopping)
      return false;
    busy.push_back(pid);
  }
  if (cancel != nullptr)
    cancel->bindWorker(pid);
  return true;
}

void ProcessBackend::markIdle(pid_t pid, CompileCancel* cancel) {
  // Unbound before the worker can be reaped: neither cancel() nor stop() may signal a pid the
  // kernel could have given to another process.
  if (cancel != nullptr)
    cancel->bindWorker(0);
  std::lock_guard lock(mutex);
  busy.erase(std::remove(busy.begin(), busy.end(), pid), busy.end());
}

bool ProcessBackend::isStopping() const {
  std::lock_guard lock(mutex);
  return stopping;
}

void ProcessBackend::stop() {
  std::vector<std::unique_ptr<Worker>> ending;
  size_t running = 0;
  {
    std::lock_guard lock(mutex);
    stopping = true;
    // Under the lock: markIdle() removes a pid (under the same lock) before its worker is reaped.
    for (pid_t pid : busy)
      ::kill(pid, SIGKILL);
    running = busy.size();
    ending.swap(idle);
  }
  log::info("stopping compile workers: ", running, " compiles cut off, ", ending.size(),
            " idle workers ended");
  // ~Worker closes each socket (an idle worker exits on EOF), SIGKILLs and reaps it.
}

compiler::CompileResult ProcessBackend::compile(std::string_view module,
                                                const compiler::CompileOptions& options,
                                                CompileCancel* cancel) {
  if (cancel != nullptr && cancel->cancelled())
    return cancelledFailure();  // called off while it waited for a worker thread
  if (isStopping())
    return shuttingDownFailure(options.moduleName);
  std::unique_ptr<Worker> worker = take();
  for (unsigned attempts = 1;; ++attempts) {
    bool fresh = worker->fresh();
    auto outcome = attempt(std::move(worker), module, options, cancel);
    auto* crash = std::get_if<Crash>(&outcome);
    if (crash == nullptr)
      return std::get<compiler::CompileResult>(std::move(outcome));
    std::string how = describeStatus(crash->status);
    // Ended by us, not by the module or the host: no retry, no blame, and no worker loss to
    // count (the next compile simply gets a new worker).
    if (cancel != nullptr && cancel->cancelled()) {
      log::debug("compile of '", options.moduleName, "' cancelled; its worker ", crash->pid, " ",
                 how);
      return cancelledFailure();
    }
    if (isStopping()) {
      log::info("compile of '", options.moduleName, "' cut off by the drain; its worker ",
                crash->pid, " ", how);
      return shuttingDownFailure(options.moduleName);
    }
    metrics.compileWorkerLost();
    if (WIFEXITED(crash->status) && WEXITSTATUS(crash->status) == WORKER_OUT_OF_MEMORY) {
      // An allocation failed past RLIMIT_AS: the module needs more memory than a worker may
      // have. Not a crash on bad IR, and a retry would fail the same way.
      log::warning("compile worker ", crash->pid, " ran out of memory compiling '",
                   options.moduleName, "' (--compile-memory ", limits.memoryBytes >> 20,
                   " MiB); starting a new one for the next compile");
      return Failure{ErrorKind::TooLarge,
                     "compiling module '" + options.moduleName +
                         "' needed more memory than a compile worker may use (" +
                         std::to_string(limits.memoryBytes >> 20) +
                         " MiB, rjitd --compile-memory); try a lower optimization level or a "
                         "smaller module (large constant arrays become object bytes)",
                     {}};
    }
    bool outside = killedFromOutside(crash->status);
    if (attempts == 1 && (outside || !fresh)) {
      log::warning("compile worker ", crash->pid, " ", crash->what, " (", how, ") compiling '",
                   options.moduleName, "'; ",
                   outside ? "it was killed from outside" : "it had compiled other modules",
                   ", so the compile is retried once on a new worker");
      worker = spawn();
      continue;
    }
    if (outside) {
      // Killed from outside on the retry too: the host (the OOM killer, an operator) is taking
      // workers away, which says nothing about the module; the client may try again later.
      log::warning("compile worker ", crash->pid, " for '", options.moduleName, "' ", crash->what,
                   " (", how, ") on the retry too; answering overloaded");
      // killedFromOutside() holds only for a status WIFSIGNALED.
      std::string signal = std::to_string(WTERMSIG(crash->status));
      return Failure{ErrorKind::Overloaded,
                     "compile worker killed by signal " + signal + " twice while compiling '" +
                         options.moduleName +
                         "'; rjitd's host is reclaiming memory or an operator is stopping "
                         "workers: retry later",
                     {}};
    }
    log::warning("compile worker ", crash->pid, " for '", options.moduleName, "' ", crash->what,
                 " (", how, "); starting a new one for the next compile");
    return Failure{ErrorKind::InvalidModule,
                   "the compiler crashed on module '" + options.moduleName + "' (" + how +
                       "); LLVM could not handle this IR — check it with `opt-19 -verify` "
                       "and `llc-19`",
                   {}};
  }
}

std::variant<compiler::CompileResult, ProcessBackend::Crash>
ProcessBackend::attempt(std::unique_ptr<Worker> worker, std::string_view module,
                        const compiler::CompileOptions& options, CompileCancel* cancel) {
  worker->countCompile();
  pid_t pid = worker->id();
  if (!markBusy(pid, cancel)) {
    // stop() came first and has already ended the idle workers it found: this one is not given
    // back but ended here (~Worker kills and reaps it).
    return shuttingDownFailure(options.moduleName);
  }
  // Every way out unbinds before the worker is reaped or given back.
  bool bound = true;
  auto unbind = [&]() {
    if (bound)
      markIdle(pid, cancel);
    bound = false;
  };
  KJ_DEFER(unbind());
  // The worker ended, or broke the protocol and is killed here (which then reads as a kill from
  // outside: one retry, the same as for a worker killed by someone else).
  auto crashed = [&](std::string what) -> Crash {
    unbind();
    return Crash{pid, std::move(what), worker->reap(true)};
  };

  // Request: a CompileRequest with the canonical options and the module bytes.
  {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<proto::CompileRequest>();
    toProto(options, request);
    request.setModule(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(module.data()), module.size()));
    KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                        [&]() { capnp::writeMessageToFd(worker->socket(), message); })) {
      return crashed(std::string("stopped reading requests: ") + e->getDescription().cStr());
    }
  }

  // Answer, within the time limit.
  pollfd pfd{worker->socket(), POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&pfd, 1, static_cast<int>(timeLimit.count()));
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) {
    unbind();
    worker->reap(true);
    metrics.compileWorkerLost();
    log::warning("compile of '", options.moduleName, "' exceeded ", timeLimit.count(),
                 " ms; killed its worker");
    return Failure{ErrorKind::TooLarge,
                   "compiling module '" + options.moduleName + "' took longer than the limit of " +
                       std::to_string(timeLimit.count() / 1000) +
                       " s (rjitd --compile-timeout); try a lower optimization level or a "
                       "smaller module",
                   {}};
  }
  compiler::CompileResult result = Failure{};
  bool exiting = false;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 capnp::InputStreamMessageReader reader(worker->input(), bigMessages());
                 auto answer = reader.getRoot<proto::worker::WorkerAnswer>();
                 auto outcome = answer.getOutcome();
                 if (outcome.isError())
                   result = fromProto(outcome.getError());
                 else
                   result = fromProto(outcome.getOk());
                 exiting = answer.getExiting();
               })) {
    return crashed("died");
  }
  unbind();
  if (auto* object = std::get_if<CompiledObject>(&result);
      object != nullptr && object->object.size() > limits.maxObjectBytes) {
    // The worker checks this before sending (runCompileWorker); a second look costs nothing.
    result = objectTooLarge(options.moduleName, object->object.size(), limits.maxObjectBytes);
  }
  if (!exiting && cancel != nullptr && cancel->cancelled()) {
    // cancel() may have come after the answer and killed the worker: never give it back.
    worker->reap(true);
    return result;
  }
  if (exiting) {
    // The worker hit an LLVM fatal error, reported it and exits: never reuse it.
    std::string how = describeStatus(worker->reap(false));
    metrics.compileWorkerLost();
    log::warning("compile worker ", pid, " for '", options.moduleName,
                 "' hit an LLVM fatal error and ", how);
    return result;
  }
  giveBack(std::move(worker));
  return result;
}

// --- the child ------------------------------------------------------------------------------

namespace {

int workerFd = -1;
const char* currentModule = "<module>";

void writeAnswer(int fd, const compiler::CompileResult& result, bool exiting) {
  capnp::MallocMessageBuilder message;
  auto answer = message.initRoot<proto::worker::WorkerAnswer>();
  answer.setExiting(exiting);
  auto outcome = answer.initOutcome();
  if (auto* f = std::get_if<Failure>(&result))
    toProto(*f, outcome.initError());
  else
    toProto(std::get<CompiledObject>(result), true, outcome.initOk());
  capnp::writeMessageToFd(fd, message);
}

void onLlvmFatalError(const char* reason) {
  // LLVM is about to end this process: tell the daemon why, then exit.
  std::string message =
      std::string("LLVM fatal error while compiling module '") + currentModule + "': " + reason;
  kj::runCatchingExceptions([&]() {
    writeAnswer(workerFd, Failure{ErrorKind::InvalidModule, message, {}}, true);
  });
  _exit(70);  // EX_SOFTWARE
}

}  // namespace

namespace {

/// Routes what anything in the worker prints on its stderr (LLVM's errs(), libc) through the
/// log, escaped, a line at a time: the worker inherits rjitd's stderr, which journald reads,
/// and LLVM's messages quote text a module chose (names, inline assembly), which must not
/// forge journal lines (log.h). The log itself keeps the real stderr; a thread of the worker
/// reads a pipe that stands in for fd 2. On any failure the raw stderr is kept: a worker
/// without a log would be worse than one whose rare raw lines are unescaped.
void routeStderrThroughLog() {
  kj::AutoCloseFd saved(::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3));
  int ends[2];
  if (saved.get() < 0 || ::pipe2(ends, O_CLOEXEC) != 0)
    return;
  kj::AutoCloseFd readEnd(ends[0]);
  kj::AutoCloseFd writeEnd(ends[1]);
  log::setOutputFd(saved.release());  // the log's descriptor for the worker's life
  if (::dup2(writeEnd.get(), STDERR_FILENO) < 0) {
    log::warning("compile worker: cannot route stderr through the log: ", strerror(errno));
    return;
  }
  // A plain int in the thread: kj::AutoCloseFd's destructor is noexcept(false), which
  // std::thread's state cannot hold; the read end lives as long as the worker anyway.
  std::thread([readFd = readEnd.release()]() {
    std::string pending;
    char buffer[4096];
    for (;;) {
      ssize_t n = ::read(readFd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      pending.append(buffer, static_cast<size_t>(n));
      // Whole lines; a line longer than 64 KiB is written in pieces rather than held.
      for (size_t end; (end = pending.find('\n')) != std::string::npos || pending.size() > 65536;) {
        size_t take = end != std::string::npos ? end : pending.size();
        log::warning("compile worker stderr: ", std::string_view(pending).substr(0, take));
        pending.erase(0, end != std::string::npos ? take + 1 : take);
      }
    }
    if (!pending.empty())
      log::warning("compile worker stderr: ", pending);
  }).detach();  // lives as long as the worker process: fd 2 is never closed
}

}  // namespace

namespace {

/// Ends a worker whose allocation failed (operator new, or LLVM's safe_malloc through
/// compiler::setOutOfMemoryHandler), with a status the daemon reads as "past --compile-memory".
/// Allocates nothing: the heap is what just failed.
[[noreturn]] void outOfMemory() {
  static const char MESSAGE[] = "compile worker: out of memory (rjitd --compile-memory)\n";
  (void)!::write(STDERR_FILENO, MESSAGE, sizeof MESSAGE - 1);
  _exit(WORKER_OUT_OF_MEMORY);
}

/// The pid of the process that made our end of the socket: the rjitd that started us (a
/// socketpair's credentials are its creator's). 0 when unknown.
pid_t daemonPid(int fd) {
  ucred peer{};
  socklen_t size = sizeof peer;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0)
    return 0;
  return peer.pid;
}

}  // namespace

int runCompileWorker(int fd, const std::string& gate, uint64_t maxObjectBytes) {
  // Die with the daemon, even if it is SIGKILLed. The signal comes only for a death after this
  // call, so a daemon that died before it is caught by comparing our parent with the daemon
  // that made our socket. (Not `getppid() == 1`: when rjitd is PID 1 in a container, that is
  // every worker's parent from the start.) An end of file on the socket ends us too.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  pid_t daemon = daemonPid(fd);
  if (daemon != 0 && getppid() != daemon)
    return 1;
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGTERM, SIG_IGN);  // the daemon decides when a worker ends (by closing fd)
  std::signal(SIGINT, SIG_IGN);
  workerFd = fd;
  routeStderrThroughLog();
  compiler::setFatalErrorHandler(onLlvmFatalError);
  // Running past RLIMIT_AS (--compile-memory) must read as that, not as a crash on the module:
  // uncaught, a failed allocation ends in abort(), which the daemon would blame on the IR.
  std::set_new_handler([]() { outOfMemory(); });
  compiler::setOutOfMemoryHandler([]() { outOfMemory(); });
  return serveCompileRequests(fd, gate, maxObjectBytes);
}

int serveCompileRequests(int fd, const std::string& gate, uint64_t maxObjectBytes) {
  kj::FdInputStream in(fd);
  kj::BufferedInputStreamWrapper buffered(in);
  while (true) {
    if (buffered.tryGetReadBuffer().size() == 0)
      return 0;  // EOF: the daemon closed our socket
    capnp::InputStreamMessageReader reader(buffered, bigMessages());
    auto request = reader.getRoot<proto::CompileRequest>();
    compiler::CompileOptions options = fromProto(request);
    currentModule = options.moduleName.c_str();
    if (!gate.empty())
      waitAtTestGate("test worker gate", gate, options.moduleName);
    auto bytes = request.getModule();
    compiler::CompileResult result = compiler::compile(
        std::string_view(reinterpret_cast<const char*>(bytes.begin()), bytes.size()), options);
    if (auto* object = std::get_if<CompiledObject>(&result);
        object != nullptr && object->object.size() > maxObjectBytes) {
      // Refused here, before the bytes travel: the daemon never holds (nor caches) them.
      result = objectTooLarge(options.moduleName, object->object.size(), maxObjectBytes);
    }
    writeAnswer(fd, result, false);
  }
}

}  // namespace rjitd::service
