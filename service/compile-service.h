// SPDX-License-Identifier: MIT
// The request logic between RPC and compiler, owned by the event-loop thread: validates a
// request, computes its key, serves it from the cache, joins an identical compile already in
// flight (single flight) or runs a new one on the worker pool and files the result.
#pragma once

#include "admission.h"
#include "cache-key.h"
#include "compile-backend.h"
#include "compiled-object.h"
#include "compiler.h"
#include "metrics.h"
#include "object-cache.h"
#include "outcome.h"
#include "targets.h"
#include "tiered-cache.h"
#include "worker-pool.h"

#include <cstdint>
#include <kj/async.h>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace rjitd::service {

struct ServiceConfig {
  uint64_t maxModuleBytes = 64ull << 20;
  /// Modules at least this large are hashed on the hash worker, not on the event loop.
  uint64_t hashOffloadBytes = 256ull << 10;
  std::string compilerIdentity;
  /// Test-only (rjitd --test-compile-gate; "" = off, the default): the path of a Unix socket
  /// at which a test holds compiles. Before each compile, its worker thread connects there,
  /// writes the module name and a newline, and waits until the connection yields a byte, an
  /// end of file or an error; then the compile runs. When nothing listens there the compile
  /// runs at once. Lets a test observe a compile in flight and decide when it ends, instead of
  /// relying on a module being slow to compile. Set only from rjitd's command line, never by a
  /// client; off it costs one empty-string test per compile.
  std::string compileGate;
  /// Compiles that may wait for a compile worker, per target (rjitd --max-queued); more are
  /// answered Overloaded with a retry-after hint.
  uint32_t maxQueued = 64;
  /// Bytes of modules all requests together may make rjitd hold after receiving them
  /// (rjitd --max-held-request-bytes; see HeldBytes); more are answered Overloaded.
  uint64_t maxHeldRequestBytes = 1ull << 30;
  /// How long a compile waits for another server that holds its compile lease (shared tier)
  /// before compiling itself: as long as that server's compile may take.
  kj::Duration leaseWaitBound = 300 * kj::SECONDS;
};

struct CompileJob {
  std::string module;  ///< copied out of the RPC message (it is freed before the compile ends)
  std::string moduleName;
  std::string target;  ///< as the client wrote it ("" = default)
  std::string cpu;
  std::string features;
  unsigned optLevel = 2;
  compiler::IrFormat format = compiler::IrFormat::Auto;
  /// Who asks (one client connection): the compile queue serves clients round-robin.
  uint64_t client = 0;
  /// The module's charge to --max-held-request-bytes (set by CompileService): goes
  /// wherever the module goes, and is returned when the last owner of the module is destroyed.
  HeldBytes::Charge held;
};

struct Served {
  cache::Key key;
  std::shared_ptr<const CompiledObject> object;
  bool fromCache = false;  ///< no compile ran for this request
};

/// What a compile or lookup request is answered with (see outcome.h).
using ServeResult = Outcome<Served>;

/// The short names of `targets` (the admission queues' lanes).
std::vector<std::string> targetNames(const std::vector<TargetName>& targets);

class CompileService final {
public:
  /// `cache`, the backend, the pools and `metrics` outlive the service. Compiles run through
  /// `backend` on `compilePool` threads (one compile per thread at a time). The service
  /// records what it does (modules received, compiles, hash-first lookups) in `metrics` and
  /// keeps no counters of its own: `metrics.totals()` is the one place to read them.
  ///
  /// With `tiers`, a memory miss asks the disk and shared tiers (TieredCache) before it
  /// compiles, and a compile's object is filed in every tier; `tiers` must wrap `cache`.
  /// Without, the memory tier is the only one.
  CompileService(ServiceConfig config, cache::ObjectCache& cache, CompileBackend& backend,
                 WorkerPool& compilePool, WorkerPool& hashPool, metrics::Metrics& metrics,
                 TieredCache* tiers = nullptr);
  CompileService(const CompileService&) = delete;
  CompileService& operator=(const CompileService&) = delete;

  /// Serves one compile request. Input errors are a Failure, never an exception.
  kj::Promise<ServeResult> compile(CompileJob job);

  /// Hash-first (a lookup or a load by key): the cached object for `key` from any tier, or a
  /// Failure of kind NotFound. A miss is counted under `missTarget` (the target the request
  /// named: a served target's short name, or NO_TARGET), a hit under the found object's target.
  /// Resolves at once on a memory hit or with no lower tiers.
  kj::Promise<ServeResult> lookup(const cache::Key& key,
                                  std::string_view missTarget = metrics::NO_TARGET);

  /// Puts `object` back under `key` when the cache evicted it, so that a load by key (an
  /// executor's, which holds the object for its client) finds it. False when the cache cannot
  /// hold it (an object larger than the whole budget).
  bool keepCached(const cache::Key& key, std::shared_ptr<const CompiledObject> object);

  /// Drain (SIGTERM): answers every compile still waiting for a worker (or for the hash
  /// worker) with shuttingDown and returns how many; running compiles go on.
  size_t abandonQueued();

  /// Compiles waiting for a compile worker (all targets), and compiles in flight (queued or
  /// running, each shared compile once).
  size_t queued() const { return admission.queued(); }
  /// Large modules waiting for the hash worker (all targets).
  size_t hashQueued() const { return hashAdmission.queued(); }
  /// Bytes of request modules held now (see HeldBytes).
  uint64_t heldRequestBytes() const { return heldBytes.held(); }
  size_t inFlightCount() const { return inFlight.size(); }

  const std::vector<TargetName>& targets() const { return served; }
  /// The `target` label for `spec` (a short name, alias or triple; "" = the default): the
  /// served target's short name, or UNKNOWN_TARGET. The view lives as long as the service.
  std::string_view targetLabel(std::string_view spec) const;
  const std::string& defaultTriple() const { return defaultTarget; }
  const ServiceConfig& config() const { return cfg; }
  cache::CacheStats cacheStats() const { return objects.stats(); }
  TieredCache& cacheTiers() { return *tiers; }

private:
  /// A flight's result: the object, and whether a compile ran for it (false: a lower tier had
  /// it, or another server compiled it).
  struct Resolved {
    std::shared_ptr<const CompiledObject> object;
    bool compiled = true;
  };
  using Shared = Outcome<Resolved>;

  /// Charges `job`'s module to `heldBytes` unless it is charged already; false when it does
  /// not fit.
  bool chargeHeld(CompileJob& job);
  /// The request's module cannot be held now: Overloaded with a retry hint for `target`.
  Failure tooMuchHeld(const CompileJob& job, const std::string& target) const;
  kj::Promise<ServeResult> serveKeyed(cache::Key key, CompileJob job,
                                      compiler::CompileOptions options);
  /// A new flight: the lower tiers, then (with a shared tier) the cross-server lease, then the
  /// compile.
  kj::Promise<Shared> resolve(const cache::Key& key, CompileJob job,
                              compiler::CompileOptions options, std::string targetName,
                              std::shared_ptr<CompileCancel> cancel, uint64_t generation);
  /// `lease`: the compile lease this server holds for `key` (or null), released once the
  /// object is written to the shared tier (or at once when the compile fails or is called off).
  kj::Promise<Shared> startCompile(const cache::Key& key, CompileJob job,
                                   compiler::CompileOptions options, std::string targetName,
                                   std::shared_ptr<CompileCancel> cancel, uint64_t generation,
                                   std::shared_ptr<LeaseHold> lease = nullptr);
  /// Counts a search of the lower tiers under `target`.
  void countBelow(const TieredCache::Found& found, std::string_view target);
  /// The compile of `key` (generation `generation`) has its result: nothing left to call off.
  void settle(const cache::Key& key, uint64_t generation);
  /// One waiter of the compile of `key` (generation `flight`) went away, answered or not. The
  /// last one to go calls a compile still queued or running off.
  void leave(const cache::Key& key, uint64_t flight);

  const ServiceConfig cfg;
  cache::ObjectCache& objects;
  std::unique_ptr<TieredCache> ownTiers;  // memory only, when the caller gave no tiers
  TieredCache* tiers;
  CompileBackend& backend;
  WorkerPool& compilePool;
  WorkerPool& hashPool;
  metrics::Metrics& metrics;
  const std::vector<TargetName> served;
  const std::string defaultTarget;
  /// Module copies held by requests, over all clients.
  HeldBytes heldBytes;
  /// Compiles wait here for a compile worker: per target, fair across clients.
  Admission admission;
  /// Large modules wait here for the hash worker, bounded and fair like compiles: a client
  /// cannot fill the hash queue, and a cancelled request's module leaves it.
  Admission hashAdmission;
  /// One compile in flight (queued or running) and who waits for it (single flight).
  struct Flight {
    kj::ForkedPromise<Shared> fork;
    std::shared_ptr<CompileCancel> cancel;
    std::string moduleName;
    uint64_t generation = 0;  ///< tells this compile from a later one of the same key
    size_t waiters = 0;       ///< requests (not fork branches) waiting for its result
    bool settled = false;     ///< its result is in; nothing left to call off
  };
  /// Compiles in flight by key; identical requests join the fork instead of compiling again.
  /// Declared after `admission`: dropping a queued compile takes it out of the admission queue.
  std::unordered_map<cache::Key, Flight, cache::KeyHash> inFlight;
  uint64_t nextGeneration = 1;
  class CleanupErrors final : public kj::TaskSet::ErrorHandler {
  public:
    explicit CleanupErrors(metrics::Metrics& metrics) : metrics(metrics) {}
    void taskFailed(kj::Exception&& exception) override;

  private:
    metrics::Metrics& metrics;
  } cleanupErrors;
  kj::TaskSet cleanup{cleanupErrors};  // erases inFlight entries once their compile settled
};

}  // namespace rjitd::service
