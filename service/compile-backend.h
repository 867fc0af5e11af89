// SPDX-License-Identifier: MIT
// Where compiles run. rjitd runs them in compile worker processes (`rjitd --compile-worker`):
// LLVM ends the process on some inputs (report_fatal_error, crashes on malformed-but-parsable
// IR), and no request may take the daemon down with it. A worker that dies is an error for
// that request only; the next request gets a fresh worker. Workers also bound compile time.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "compiler.h"
#include "metrics.h"

namespace rjitd::service {

/// Compiles modules. Thread-safe: worker-pool threads call compile() concurrently.
class CompileBackend {
public:
  virtual ~CompileBackend() = default;
  virtual compiler::CompileResult compile(std::string_view module,
                                          const compiler::CompileOptions& options) = 0;
};

/// Compiles in this process (tests and benchmarks of the pipeline itself).
class InProcessBackend final : public CompileBackend {
public:
  compiler::CompileResult compile(std::string_view module,
                                  const compiler::CompileOptions& options) override {
    return compiler::compile(module, options);
  }
};

/// Compiles in child processes running `WORKER_PATH --compile-worker 3`, reused across
/// requests (one per concurrent compile), replaced when one dies or overruns the time limit.
class ProcessBackend final : public CompileBackend {
public:
  /// `metrics` outlives the backend; it counts the workers that had to be replaced.
  ProcessBackend(std::string workerPath, std::chrono::milliseconds timeLimit,
                 metrics::Metrics& metrics);
  ~ProcessBackend() override;
  ProcessBackend(const ProcessBackend&) = delete;
  ProcessBackend& operator=(const ProcessBackend&) = delete;

  compiler::CompileResult compile(std::string_view module,
                                  const compiler::CompileOptions& options) override;

  /// Worker processes started so far (a replacement after a crash counts too).
  uint64_t spawned() const;

private:
  class Worker;
  std::unique_ptr<Worker> take();
  void giveBack(std::unique_ptr<Worker> worker);

  const std::string workerPath;
  const std::chrono::milliseconds timeLimit;
  metrics::Metrics& metrics;
  mutable std::mutex mutex;
  std::vector<std::unique_ptr<Worker>> idle;
  uint64_t spawnCount = 0;
};

/// The compile worker's main loop: reads requests from `fd`, compiles, answers, until EOF.
/// Returns the process exit status.
int runCompileWorker(int fd);

}  // namespace rjitd::service
