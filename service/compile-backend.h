// SPDX-License-Identifier: MIT
// Where compiles run. rjitd runs them in compile worker processes (`rjitd --compile-worker`):
// LLVM ends the process on some inputs (report_fatal_error, crashes on malformed-but-parsable
// IR), and no request may take the daemon down with it. A worker that dies is an error for
// that request only; the next request gets a fresh worker. Workers also bound compile time.
// A worker can also die of something that is not the module's fault (the OOM killer, an
// operator's kill): a dead idle worker is noticed and replaced before it gets work, and a
// compile whose worker was killed from outside is retried once on a fresh worker; a second
// kill from outside answers Overloaded (the host is taking workers away), not InvalidModule.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "compiler.h"
#include "metrics.h"

namespace rjitd::service {

/// Lets the event loop call off one compile nobody waits for any more (every waiter of a
/// single-flight compile went away). Shared between the loop (which calls cancel()) and the
/// worker thread running the compile (which the backend tells about the process it runs it
/// in), so it lives in a shared_ptr owned by both. Thread-safe.
class CompileCancel {
public:
  /// Marks the compile cancelled and ends the worker process running it, if any (SIGKILL).
  /// A compile not started yet is not started. Idempotent.
  void cancel();
  bool cancelled() const;
  /// Backend side: `pid` runs this compile from now on (0: none any more). When cancel() came
  /// first, the worker is killed at once. The backend binds 0 before it reaps the worker, so
  /// that cancel() never signals a pid the kernel may have handed to another process.
  void bindWorker(int pid);

private:
  mutable std::mutex mutex;
  bool requested = false;
  int worker = 0;
};

/// Compiles modules. Thread-safe: worker-pool threads call compile() concurrently.
class CompileBackend {
public:
  virtual ~CompileBackend() = default;
  /// `cancel` (may be null) is how the loop calls the compile off; a cancelled compile answers
  /// a Failure (kind Internal, "cancelled") that nobody reads, and is never blamed on the module.
  virtual compiler::CompileResult compile(std::string_view module,
                                          const compiler::CompileOptions& options,
                                          CompileCancel* cancel = nullptr) = 0;
};

/// Compiles in this process (tests and benchmarks of the pipeline itself).
class InProcessBackend final : public CompileBackend {
public:
  compiler::CompileResult compile(std::string_view module, const compiler::CompileOptions& options,
                                  CompileCancel* /*cancel: an in-process compile runs to its end*/
                                  = nullptr) override {
    return compiler::compile(module, options);
  }
};

/// Did a worker that ended with waitpid() status `status` die of a signal sent from outside
/// (SIGKILL from the OOM killer or an operator, SIGTERM, ...), rather than by its own doing?
/// The signals a process raises itself when it crashes or aborts (SIGSEGV, SIGBUS, SIGILL,
/// SIGFPE, SIGABRT, SIGTRAP, SIGSYS) and a plain exit count as its own doing.
bool killedFromOutside(int status);

/// What one compile worker may produce and use (rjitd --max-object-bytes, --compile-memory).
struct WorkerLimits {
  /// A larger object is answered TooLarge; the worker checks before it sends the bytes, so
  /// rjitd never holds them, and the backend checks again what it reads.
  uint64_t maxObjectBytes = 64ull << 20;
  /// RLIMIT_AS of each worker process (0 = none). An allocation that fails inside the worker
  /// ends it with WORKER_OUT_OF_MEMORY, answered TooLarge naming --compile-memory.
  uint64_t memoryBytes = 4ull << 30;
};

/// The exit status of a compile worker whose allocation failed (past its RLIMIT_AS): the
/// backend answers TooLarge, never blames the module as invalid, and replaces the worker.
inline constexpr int WORKER_OUT_OF_MEMORY = 73;

/// Compiles in child processes running `WORKER_PATH --compile-worker 3`, reused across
/// requests (one per concurrent compile), replaced when one dies or overruns the time limit.
/// A module is reported invalid after crashing a worker only when the worker crashed by its own
/// doing on its first compile, or crashed by its own doing on a fresh worker (one retry). A
/// compile whose retry is killed from outside too answers Overloaded. A compile cancelled through
/// its CompileCancel, or cut off by stop(), is neither retried nor blamed on the module.
class ProcessBackend final : public CompileBackend {
public:
  /// `metrics` outlives the backend; it counts the workers that had to be replaced.
  /// `workerGate` is test-only (rjitd --test-worker-gate; "" = off): passed to each worker as
  /// `--test-worker-gate PATH`, see runCompileWorker().
  ProcessBackend(std::string workerPath, std::chrono::milliseconds timeLimit,
                 metrics::Metrics& metrics, std::string workerGate = {}, WorkerLimits limits = {});
  ~ProcessBackend() override;
  ProcessBackend(const ProcessBackend&) = delete;
  ProcessBackend& operator=(const ProcessBackend&) = delete;

  compiler::CompileResult compile(std::string_view module, const compiler::CompileOptions& options,
                                  CompileCancel* cancel = nullptr) override;

  /// Worker processes started so far (a replacement after a crash counts too).
  uint64_t spawned() const;

  /// The drain's last step: from now on no compile starts (each answers ShuttingDown), the
  /// compiles running are cut off (their workers SIGKILLed; they answer ShuttingDown) and the
  /// idle workers end. Thread-safe; idempotent.
  void stop();

private:
  class Worker;
  struct Crash;
  /// An idle worker that is still alive, or a new one.
  std::unique_ptr<Worker> take();
  std::unique_ptr<Worker> spawn();
  /// Runs one compile on `worker`: its answer (the worker then given back or ended), or how it
  /// died before answering (the worker then reaped).
  std::variant<compiler::CompileResult, Crash> attempt(std::unique_ptr<Worker> worker,
                                                       std::string_view module,
                                                       const compiler::CompileOptions& options,
                                                       CompileCancel* cancel);
  void giveBack(std::unique_ptr<Worker> worker);
  /// Records `pid` as running a compile (stop() kills it) and binds it to `cancel`; false when
  /// stop() came first (the compile must not start).
  bool markBusy(pid_t pid, CompileCancel* cancel);
  /// Undoes markBusy() before the worker is reaped or given back.
  void markIdle(pid_t pid, CompileCancel* cancel);
  bool isStopping() const;

  const std::string workerPath;
  const std::string workerGate;
  const std::chrono::milliseconds timeLimit;
  const WorkerLimits limits;
  metrics::Metrics& metrics;
  mutable std::mutex mutex;
  std::vector<std::unique_ptr<Worker>> idle;
  std::vector<pid_t> busy;  ///< workers running a compile (guarded by mutex)
  bool stopping = false;    ///< guarded by mutex
  uint64_t spawnCount = 0;
};

/// The compile worker's main loop: reads requests from `fd`, compiles, answers, until EOF.
/// Returns the process exit status. `gate` is test-only ("" = off, the default): the path of a
/// Unix socket where the worker, after reading each request and before compiling it, waits
/// for the test to let it go (waitAtTestGate(), the protocol of ServiceConfig::compileGate),
/// so that a test can kill a worker in the middle of a compile whatever the machine's speed.
/// The hold counts against the daemon's compile time limit. An object larger than
/// `maxObjectBytes` is answered TooLarge without its bytes. The worker ends when the daemon that
/// started it dies (PR_SET_PDEATHSIG, checked against the pid that made its socket, so that it
/// works when rjitd is PID 1 in a container) or closes the socket.
int runCompileWorker(int fd, const std::string& gate = {},
                     uint64_t maxObjectBytes = WorkerLimits{}.maxObjectBytes);

/// runCompileWorker()'s loop without its process setup (signals, stderr, LLVM's fatal-error
/// handler): reads requests from `fd` and answers each on `fd` until EOF (returns 0). A
/// malformed request throws (kj): in a worker that ends the process. For the compile-worker
/// fuzzer (test/fuzz), which runs it in its own process.
int serveCompileRequests(int fd, const std::string& gate = {},
                         uint64_t maxObjectBytes = WorkerLimits{}.maxObjectBytes);

}  // namespace rjitd::service
