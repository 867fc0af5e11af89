// SPDX-License-Identifier: MIT
// Request checks and cache keys shared by compile and load (see module-request.h).
#include "module-request.h"

namespace rjit::detail {

namespace {

/// Modules up to this size are hashed on the I/O thread itself: SHA-256 of 256 KiB takes well
/// under a millisecond, less than handing the job to the worker and back would cost in latency.
constexpr size_t INLINE_HASH_BYTES = 256 * 1024;

}  // namespace

std::string moduleDisplayName(const CompileRequest& request) {
  return request.moduleName.empty() ? std::string("<unnamed>") : request.moduleName;
}

Result<Done> checkOptLevel(const CompileRequest& request) {
  if (request.optLevel > 3)
    return Error(ErrorKind::InvalidRequest, "optimization level " +
                                                std::to_string(request.optLevel) +
                                                " is out of range; expected 0 to 3");
  return Done{};
}

Result<Done> checkSize(const CompileRequest& request, const Connection& connection) {
  uint64_t limit = connection.info().maxModuleBytes;
  if (limit != 0 && request.module.size() > limit)
    return Error(ErrorKind::TooLarge, "module " + moduleDisplayName(request) + " is " +
                                          std::to_string(request.module.size()) +
                                          " bytes; rjitd at " + connection.address() +
                                          " accepts at most " + std::to_string(limit) +
                                          " bytes (rjitd --max-module-bytes)");
  return Done{};
}

kj::Promise<rjitd::cache::Key> moduleKey(HashWorker& hasher, const CompileRequest& request,
                                         const rjitd::TargetName& target,
                                         const Connection& connection) {
  // The cpu as the server defaults it: both sides must arrive at the same key.
  KeyParams params{target.triple, request.cpu.empty() ? target.defaultCpu : request.cpu,
                   request.features, request.optLevel, connection.info().compilerIdentity};
  if (request.module.size() <= INLINE_HASH_BYTES)
    return rjitd::cache::computeKey({request.module, params.triple, params.cpu, params.features,
                                     params.optLevel, params.compilerIdentity});
  return hasher.computeKey(request.module, std::move(params));
}

kj::Promise<RoutingKey> moduleRoutingKey(HashWorker& hasher, const CompileRequest& request) {
  if (request.module.size() <= INLINE_HASH_BYTES)
    return routingKey(request);
  // TODO(perf): a large module sent hash-first is hashed twice (routing key, then cache key);
  // one pass could feed both digests.
  return hasher.computeKey(request.module, routingParams(request));
}

}  // namespace rjit::detail
