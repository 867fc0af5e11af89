// SPDX-License-Identifier: MIT
// Remote execute on the client's I/O thread: the executors and remote modules of this client
// (capabilities, kept here by id for the public handles), and their calls over the connection
// each executor belongs to: load (hash-first), attaching the shared segment, call and run.
// Only asking for an executor is retried (after its server went away): an executor lives on one
// connection, and a call that reached it is not idempotent.
#pragma once

#include "cache-key.h"
#include "client-config.h"
#include "connection.h"
#include "hash-worker.h"
#include "result.h"
#include "shared-segment.h"

#include <cstdint>
#include <kj/async-io.h>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace rjit::detail {

/// A failure of a call or run carries its output: ExecError, not Error.
template <typename T> using ExecResult = std::variant<T, ExecError>;

/// An executor rjitd gave this client.
struct ExecutorParts {
  uint64_t id = 0;
  std::string triple;
  bool passesFds = false;  ///< the connection is a Unix socket: buffers may be shared
};

/// A module loaded into an executor.
struct RemoteLoadedParts {
  uint64_t id = 0;
  CompiledObject object;
};

class RemoteCalls final {
public:
  /// Everything given outlives this object.
  RemoteCalls(kj::AsyncIoContext& io, const Config& config, HashWorker& hasher,
              Connector& connector);
  ~RemoteCalls();
  RemoteCalls(const RemoteCalls&) = delete;
  RemoteCalls& operator=(const RemoteCalls&) = delete;

  // None of these rejects: every failure is a value.

  /// Session.executor for `target` on the current connection, within the deadline; retried on
  /// a new connection after a broken one or a `shutting-down` answer.
  kj::Promise<Result<ExecutorParts>> executor(std::string target);
  /// Executor.load; `request` must outlive the promise.
  kj::Promise<Result<RemoteLoadedParts>> load(uint64_t executor, const CompileRequest& request);
  /// RemoteModule.call with `args` (checked already; they and the Buffers they point to must
  /// outlive the promise); copied Out/InOut buffers are written back. `segment`: the
  /// executor's shared segment, attached first when a Buffer lives in it (may be null).
  kj::Promise<ExecResult<CallResult>> call(uint64_t module, std::string symbol,
                                           const std::vector<Value>& args,
                                           std::shared_ptr<SharedSegment> segment);
  kj::Promise<ExecResult<RunResult>> run(uint64_t module, std::vector<std::string> argv,
                                         std::vector<std::string> env, std::string stdinBytes);

  /// Drops a handle's capability (rjitd unloads the module, or ends the executor once its
  /// modules are gone too). Unknown ids are ignored.
  void releaseModule(uint64_t module);
  void releaseExecutor(uint64_t executor);
  /// Drops everything (the client is closing).
  void reset();

private:
  struct Executor;
  struct Module;
  kj::Promise<Result<ExecutorParts>> executorAttempt(std::string target, unsigned retries);
  template <typename T, typename E>
  kj::Promise<std::variant<T, E>> bounded(std::shared_ptr<Connection> connection, uint64_t millis,
                                          kj::Promise<std::variant<T, E>> work);
  kj::Promise<Result<Done>> attach(Executor& executor, std::shared_ptr<SharedSegment> segment);
  kj::Promise<Result<RemoteLoadedParts>> sendLoad(uint64_t executor, const CompileRequest& request,
                                                  const rjitd::TargetName& target,
                                                  std::optional<rjitd::cache::Key> key);

  kj::AsyncIoContext& io;
  const Config& config;
  HashWorker& hasher;
  Connector& connector;
  std::map<uint64_t, kj::Own<Executor>> executors;
  std::map<uint64_t, kj::Own<Module>> modules;
  uint64_t nextId = 1;
};

}  // namespace rjit::detail
