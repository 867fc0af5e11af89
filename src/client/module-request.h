// SPDX-License-Identifier: MIT
// What compile and load both do with a request before it goes out: the checks the client makes
// itself (optimization level, size against the server's limit), its routing key (which server)
// and the module's cache key for a hash-first request.
#pragma once

#include "connection.h"
#include "hash-worker.h"
#include "remotejit/client.h"
#include "result.h"
#include "routing.h"
#include "targets.h"

#include <kj/async.h>
#include <string>

namespace rjit::detail {

/// The module's name for messages ("<unnamed>" when it has none).
std::string moduleDisplayName(const CompileRequest& request);

/// Fails with Error(InvalidRequest) for an optimization level outside 0..3.
Result<Done> checkOptLevel(const CompileRequest& request);

/// Fails with Error(TooLarge) for a module over what the server on `connection` accepts.
Result<Done> checkSize(const CompileRequest& request, const Connection& connection);

/// The cache key of `request` compiled for the canonical `target` by the server on
/// `connection`, as the server computes it. Small modules are hashed at once on this thread,
/// large ones on `hasher`'s; `request` must outlive the promise (the hash worker borrows its
/// bytes).
kj::Promise<rjitd::cache::Key> moduleKey(HashWorker& hasher, const CompileRequest& request,
                                         const rjitd::TargetName& target,
                                         const Connection& connection);

/// The routing key of `request` (routing.h), hashed like moduleKey: small modules on this
/// thread, large ones on `hasher`'s. `request` must outlive the promise.
kj::Promise<RoutingKey> moduleRoutingKey(HashWorker& hasher, const CompileRequest& request);

}  // namespace rjit::detail
