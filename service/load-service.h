// SPDX-License-Identifier: MIT
// `Session.load`: compile (or find in the cache), then link for the client's address space and
// hand the client a sealed memfd with the image (src/linker). Per client connection, rjitd keeps
// the client's reservation (which ranges of it loaded modules occupy) and the symbols those
// modules define, so that a later module links against an earlier one; releasing a module's
// `LoadedImage` capability, or the connection closing, frees both.
#pragma once

#include "admission.h"
#include "compile-service.h"
#include "metrics.h"
#include "outcome.h"
#include "worker-pool.h"

#include <chrono>
#include <cstdint>
#include <kj/async.h>
#include <kj/timer.h>
#include <memory>
#include <rjit.capnp.h>
#include <string>

namespace rjitd::service {

/// Bounds on what clients may make rjitd hold for them (each loaded module holds one memfd and
/// its pages in rjitd, so these also keep clients from exhausting rjitd's file descriptors,
/// LimitNOFILE=65536 in rjitd.service, and memory).
struct LoadLimits {
  /// Shared memory one connection's loaded modules may hold (rjitd --max-client-memory).
  uint64_t maxClientImageBytes = 1ull << 30;
  /// ... and all connections' together.
  uint64_t maxImageBytes = 8ull << 30;
  /// Modules (loaded, or being loaded) one connection may hold, and all together.
  uint32_t maxClientImages = 4096;
  uint32_t maxImages = 32768;
  /// How long the client may take to answer rjitd's question for its symbols' addresses.
  std::chrono::milliseconds resolveTimeout{30000};
  /// The largest piece of an image one `LoadedImage.read` returns (TCP clients).
  uint64_t maxReadBytes = 16ull << 20;
  /// Addresses one load request may offer (LoadRequest.symbols), and the bytes of their names.
  uint32_t maxOfferedSymbols = 16384;
  uint64_t maxOfferedSymbolBytes = 1ull << 20;
  /// Process symbols rjitd remembers for one connection, and the bytes of their names; past
  /// these it asks the client again instead.
  uint32_t maxRememberedSymbols = 65536;
  uint64_t maxRememberedSymbolBytes = 4ull << 20;
};

/// What all connections have loaded; lives on the event-loop thread with the daemon's state.
struct LoadedTotals {
  uint32_t images = 0;
  uint64_t bytes = 0;
};

/// What one client connection has loaded. Shared by every Session the connection's bootstrap
/// hands out (a client cannot multiply its budget with more handshakes); lives as long as the
/// connection or any image it handed out.
class ClientImages;
std::shared_ptr<ClientImages> newClientImages();

/// The context of a `load` call (capnp's generated typedef is protected).
using LoadContext = capnp::CallContext<proto::Session::LoadParams, proto::Session::LoadResults>;

/// What serveLoad needs from the daemon; everything outlives the calls it serves.
struct LoadEnvironment {
  CompileService& service;
  WorkerPool& linkPool;
  metrics::Metrics& metrics;
  kj::Timer& timer;
  const LoadLimits& limits;
  LoadedTotals& totals;
  /// Links wait here for a link worker, per target and fair across clients (rjitd
  /// --max-queued); null: straight to `linkPool` (unit tests).
  Admission* linkAdmission = nullptr;
};

/// Serves one `load` call for `client` (a connection, CompileJob::client). `target` is the
/// request's metrics label. On success the call's
/// results hold the LoadedModule and the promise resolves to Done; a failure is a Failure value
/// for the caller to answer (the RPC edge writes it, as for compile and lookup). Rejects only
/// for a fault inside rjitd, or with DISCONNECTED when the client went away mid-load.
kj::Promise<Outcome<Done>> serveLoad(LoadEnvironment& env, std::string target,
                                     std::shared_ptr<ClientImages> images, uint64_t client,
                                     LoadContext context);

}  // namespace rjitd::service
