// SPDX-License-Identifier: MIT
// The Cap'n Proto face of the daemon: the bootstrap `Rjitd` capability (handshake) and the
// `Session` it hands out, translating between the wire types and CompileService.
#pragma once

#include "compile-service.h"
#include "load-service.h"
#include "metrics.h"
#include "worker-pool.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <kj/async.h>
#include <rjit.capnp.h>
#include <string>

namespace rjitd::service {

/// Counts requests in progress so that shutdown can wait for them.
class RequestTracker final {
public:
  void begin() { ++active; }
  void end();
  uint32_t inProgress() const { return active; }
  /// Resolves once no request is in progress (immediately if none is).
  kj::Promise<void> drained();

private:
  uint32_t active = 0;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> waiters;
};

struct ExecuteEnvironment;

/// State shared by every connection; lives on the event-loop thread.
struct DaemonState {
  CompileService& service;
  /// Requests, sessions and connections are counted here; `stats` reads its figures back.
  metrics::Metrics& metrics;
  std::string rjitdVersion;
  std::string llvmVersion;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  uint32_t workers = 0;
  /// What loads need (set by main before any connection is served).
  LoadEnvironment* load = nullptr;
  /// What remote execute needs (set by main; without it Session.executor answers unknownTarget).
  ExecuteEnvironment* execute = nullptr;
  bool draining = false;  ///< SIGTERM seen: new requests are refused with shuttingDown
  RequestTracker requests;
  /// Test seam, empty in rjitd (main never sets it and nothing a client sends reaches it):
  /// called as each method of Rjitd and Session starts, inside the RPC edge, so that a test can
  /// raise a fault there (test/unit/rpc-server-test.cpp). An exception it throws is what any
  /// fault inside rjitd looks like to the edge.
  std::function<void(metrics::Method)> faultForTest;
};

/// The bootstrap capability served on one connection. `peer` describes the client for logs.
/// `mayExecute` false (the channel of an executor, whose user code could speak on it) makes
/// Session.executor refuse: an executor never opens executors. `onHello`, when set, is called
/// as each handshake is answered (rjitd learns so that an executor is up and sandboxed).
kj::Own<proto::Rjitd::Server> newBootstrap(DaemonState& state, std::string peer,
                                           bool mayExecute = true,
                                           std::function<void()> onHello = {});

/// The bootstrap of a connection rjitd will not serve (over a connection limit, a peer it does
/// not allow): hello answers `refusal` in ServerHello.refused, with rjitd's versions and no
/// session, then calls `onAnswered` (the listener closes the connection once the answer is
/// written). A client library turns the answer into an rjit::Error of the refusal's kind.
kj::Own<proto::Rjitd::Server> newRefusingBootstrap(DaemonState& state, Failure refusal,
                                                   std::function<void()> onAnswered);

}  // namespace rjitd::service
