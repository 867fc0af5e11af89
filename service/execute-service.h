// SPDX-License-Identifier: MIT
// Remote execute on rjitd's side (ipc/rjit.capnp "Remote execute", docs/OPERATIONS.md
// "Executors"): Session.executor, and the `Executor` and `RemoteModule` capabilities, which
// drive one sandboxed executor process per Executor (executor-process.h). rjitd checks every
// call's arguments against the function's IR signature before anything reaches the executor,
// enforces deadlines by killing it, names its deaths, restarts it with the modules still held,
// and relays the client's shared segment.
#pragma once

#include "compiled-object.h"
#include "executor-process.h"
#include "ir-signature.h"
#include "outcome.h"

#include <capnp/list.h>
#include <chrono>
#include <cstdint>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/timer.h>
#include <memory>
#include <optional>
#include <rjit.capnp.h>
#include <string>
#include <string_view>
#include <unordered_set>
#include <variant>

namespace rjitd::service {

struct DaemonState;

/// rjitd's remote-execute limits (its command-line options).
struct ExecuteLimits {
  /// Executors (Executor capabilities alive) over all connections (--max-executors) ...
  uint32_t maxExecutors = 64;
  /// ... and per client connection (--max-executors-per-connection).
  uint32_t maxExecutorsPerConnection = 4;
  /// An executor's address space (--executor-memory); a buffer argument may be at most this
  /// large, a shared segment at most half of it.
  uint64_t executorMemory = 1ull << 30;
  /// What one call may write to stdout and to stderr, and a run's stdin (--executor-output).
  uint64_t executorOutput = 8ull << 20;
  /// The longest a call, a run or a load's constructors may take (--execute-timeout); also the
  /// cap on the client's own deadline.
  std::chrono::milliseconds executeTimeout{30000};
  /// Bytes of copied buffers (in and out) and strings one call may pass (--max-call-bytes): the
  /// request message, and the answer that carries out-buffers back, stay this small.
  uint64_t maxCallBytes = 128ull << 20;
  /// Arguments one call may pass (a C function has at most a few dozen).
  uint32_t maxArguments = 1024;
  /// Bytes of argv and env one run may pass.
  uint64_t maxRunArgumentBytes = 1ull << 20;
};

class ExecutorCore;

/// What the execute capabilities need; main's, outlives every capability and process.
struct ExecuteEnvironment {
  DaemonState& state;
  kj::LowLevelAsyncIoProvider& lowLevel;
  kj::UnixEventPort& eventPort;
  kj::Timer& timer;
  ExecutorConfig process;
  ExecuteLimits limits;
  /// Of the channel to each executor (a load's answer carries no module; calls carry values).
  capnp::ReaderOptions readerOptions;
  /// Executors alive (one per Executor capability with its modules); every one is in `cores`.
  uint32_t executors = 0;
  std::unordered_set<ExecutorCore*> cores;
  /// Background work with no caller to answer (unloads after a RemoteModule is released).
  kj::TaskSet& tasks;

  /// SIGKILLs every executor process (rjitd is draining: no user code outlives it).
  void killAll();
};

/// The Executor capabilities one client connection holds (shared by its sessions).
struct ConnectionExecutors {
  uint32_t alive = 0;
  /// The connection's client identity (CompileJob::client): its executors' compiles queue
  /// under it.
  uint64_t client = 0;
};

/// The retry hint of an `overloaded` answer to Session.executor (executors exhausted).
constexpr uint32_t EXECUTOR_RETRY_MILLIS = 1000;

/// Session.executor: an Executor for `target`, or the Failure to answer (unknownTarget for a
/// target rjitd does not serve or cannot run here, overloaded past the limits, shuttingDown).
/// `targetLabel` is set to the target's metrics label.
Outcome<proto::Executor::Client> openExecutor(ExecuteEnvironment& env,
                                              std::shared_ptr<ConnectionExecutors> connection,
                                              proto::TargetSpec::Reader target, std::string peer);

/// The function `symbol` of `object` and its parsed signature, or a SignatureMismatch Failure
/// (not defined, not a function, a signature that does not parse).
std::variant<IrSignature, Failure> findFunction(const CompiledObject& object,
                                                std::string_view symbol);

/// nullopt when `arguments` can be passed to `symbol` of `signature` (checkCallable, the count,
/// each value against its parameter's type by marshal::checkFits; strings, buffers and null for
/// ptr only; a buffer's bytes must be count * element size, or empty for `out`, and at most
/// `maxBufferBytes`; a segment buffer needs a segment of `segmentBytes` holding it). Otherwise
/// a SignatureMismatch Failure naming the symbol, its signature, what was given and what is
/// wrong, e.g. "i64 add(i64, i64) called with (1, string \"x\"): argument 2: expected ...".
/// A TooLarge Failure when the copied buffers and strings together exceed `maxCopiedBytes`.
std::optional<Failure> checkCallArguments(std::string_view symbol, const IrSignature& signature,
                                          capnp::List<proto::Value>::Reader arguments,
                                          uint64_t maxBufferBytes,
                                          std::optional<uint64_t> segmentBytes,
                                          uint64_t maxCopiedBytes = UINT64_MAX);

/// nullopt when `signature` is one a program's main may have for a run: i32(), i32(i32,ptr) or
/// i32(i32,ptr,ptr); otherwise a SignatureMismatch Failure.
/// What is wrong with an executor's answer `answer` to a call with `arguments` (its copied
/// out and in-out buffers must come back, in order, at their sizes), or nullopt.
std::optional<std::string> answerProblem(capnp::List<proto::Value>::Reader arguments,
                                         proto::CallOutcome::Reader answer);

std::optional<Failure> checkMain(const IrSignature& signature);

/// nullopt when `fd` can be a shared segment of `size` bytes: a regular file (a memfd) at
/// least that large, sealed against shrinking (F_SEAL_SHRINK), `size` at most `maxBytes`.
/// Otherwise an InvalidRequest or TooLarge Failure saying why.
std::optional<Failure> checkSegment(int fd, uint64_t size, uint64_t maxBytes);

/// The deadline of a call or run: the client's (0 = none) capped by rjitd's.
std::chrono::milliseconds callDeadline(uint64_t clientMillis, std::chrono::milliseconds cap);

}  // namespace rjitd::service
