// SPDX-License-Identifier: MIT
// `Session.load`: compile (or find in the cache), then link for the client's address space and
// hand the client a sealed memfd with the image (src/linker). Per session, rjitd keeps the
// client's reservation (which ranges of it loaded modules occupy) and the symbols those modules
// define, so that a later module links against an earlier one; releasing a module's
// `LoadedImage` capability, or the connection closing, frees both.
#pragma once

#include "compile-pool.h"
#include "compile-service.h"
#include "metrics.h"

#include <cstdint>
#include <kj/async.h>
#include <memory>
#include <optional>
#include <rjit.capnp.h>

namespace rjitd::service {

struct LoadLimits {
  /// Shared memory one session's loaded modules may hold at once (rjitd --max-client-memory).
  uint64_t maxSessionImageBytes = 1ull << 30;
};

/// What one session has loaded. Lives as long as the session or any image it handed out.
class SessionImages;

/// The context of a `load` call (capnp's generated typedef is protected).
using LoadContext = capnp::CallContext<proto::Session::LoadParams, proto::Session::LoadResults>;

std::shared_ptr<SessionImages> newSessionImages();

/// Serves one `load` call. `service`, `linkPool` and `metrics` outlive the returned promise.
/// Every failure is answered as an Error in the outcome, and the promise resolves to its kind
/// (nullopt: loaded); it rejects only on faults of the RPC layer (a client gone mid-load).
kj::Promise<std::optional<ErrorKind>> serveLoad(CompileService& service, WorkerPool& linkPool,
                                                metrics::Metrics& metrics, const LoadLimits& limits,
                                                std::shared_ptr<SessionImages> images,
                                                LoadContext context);

}  // namespace rjitd::service
