// SPDX-License-Identifier: MIT
// The calls, on the client's I/O thread: each public call runs as an operation on a connection
// to the first server of its route (routing.h, connection.h) within the configured deadline,
// retried on a new connection after its server went away (a broken connection, a restart);
// compile, lookup, serverInfo and stats are here, loads are rpc-load.h's. Everything here runs
// on that one thread.
#pragma once

#include "client-config.h"
#include "connection.h"
#include "hash-worker.h"
#include "remote-calls.h"
#include "result.h"
#include "rpc-load.h"
#include "wire-convert.h"

#include <cstdint>
#include <future>
#include <kj/async-io.h>
#include <kj/function.h>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace rjit::detail {

class ClientCore final : private kj::TaskSet::ErrorHandler {
public:
  /// `io` and `config` outlive this object.
  ClientCore(kj::AsyncIoContext& io, const Config& config);
  ~ClientCore();
  ClientCore(const ClientCore&) = delete;
  ClientCore& operator=(const ClientCore&) = delete;

  // Each call below connects if needed and runs within the configured deadline. None rejects:
  // every failure is an Error value.

  kj::Promise<Result<ServerInfo>> serverInfo();
  kj::Promise<Result<ServerStats>> stats();

  /// `request` must outlive the returned promise.
  kj::Promise<Result<CompiledObject>> compile(const CompileRequest& request);

  /// Compiles and links `request` for this process; the image is not mapped yet. `request` must
  /// outlive the returned promise, and `modules` this object; `options` is shared with the
  /// symbol resolver rjitd calls.
  kj::Promise<Result<LoadedParts>> load(const CompileRequest& request,
                                        std::shared_ptr<const LoadOptions> options,
                                        const ModuleRegistry& modules);
  /// Remote execute: executors, their modules and calls (no retries: see remote-calls.h).
  RemoteCalls& remote() { return remoteCalls; }

  /// What drops the capabilities of unloaded images (ReleaseChannel::open takes it).
  RpcLoader& loader() { return rpcLoader; }

  /// Starts a compile whose outcome settles `promise`.
  void compileAsync(std::shared_ptr<const CompileRequest> request,
                    std::promise<CompiledObject> promise);

  /// Cancels the calls in flight, fails pending compileAsync() futures with
  /// Error(Connection, "client closed") and closes the connection.
  void shutdown();

private:
  template <typename T> struct Call;
  using ConnectionResult = Connector::ConnectionResult;
  using CompileResult = Result<CompiledObject>;

  /// Runs `op` on a connection to the first server of `route` that answers, within the
  /// deadline (which covers computing the route).
  template <typename T>
  kj::Promise<Result<T>> run(kj::Promise<std::vector<size_t>> route,
                             kj::Function<kj::Promise<Result<T>>(Connection&)> op);
  /// The servers to try for `request`, best first (routing.h): by its routing key under the
  /// Key policy, else in the configured order. `forLoad`: Unix-socket servers first.
  kj::Promise<std::vector<size_t>> routeFor(const CompileRequest& request, bool forLoad);
  /// The configured order: calls without a module (serverInfo, stats).
  kj::Promise<std::vector<size_t>> firstServers();
  template <typename T> kj::Promise<Result<T>> attempt(Call<T>& call);
  /// After an `overloaded` answer with a retry-after hint: another attempt after the hint
  /// (jittered) when the call has retries left and its deadline leaves room, else `error` saying
  /// why it was not retried.
  template <typename T> kj::Promise<Result<T>> afterOverloaded(Call<T>& call, Error error);
  Error timedOut(const std::string& callAddress, const Connection* connection);

  kj::Promise<CompileResult> compileOn(Connection& connection, const CompileRequest& request);
  kj::Promise<CompileResult> lookup(Connection& connection, const CompileRequest& request,
                                    const rjitd::TargetName& target, const rjitd::cache::Key& key);
  kj::Promise<CompileResult> sendCompile(Connection& connection, const CompileRequest& request,
                                         const rjitd::TargetName& target);

  void settle(uint64_t id, CompileResult&& result);
  kj::Own<kj::TaskSet> newTaskSet();
  void taskFailed(kj::Exception&& exception) override;

  kj::AsyncIoContext& io;
  const Config& config;
  HashWorker hasher;  // destroyed last: joins its thread after every promise on it is gone
  Connector connector;
  RpcLoader rpcLoader;
  RemoteCalls remoteCalls;

  std::minstd_rand random{std::random_device{}()};           // jitter of retry-after delays
  std::map<uint64_t, std::promise<CompiledObject>> pending;  // compileAsync() futures
  uint64_t nextPending = 0;
  kj::Own<kj::TaskSet> tasks;  // destroyed first: its tasks use everything above
};

}  // namespace rjit::detail
