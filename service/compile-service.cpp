// SPDX-License-Identifier: MIT
#include "compile-service.h"

#include "log.h"
#include "rpc-edge.h"
#include "test-gate.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <kj/debug.h>
#include <kj/io.h>
#include <unistd.h>

namespace rjitd::service {

namespace {

Failure failure(ErrorKind kind, std::string message) {
  return Failure{kind, std::move(message), {}};
}

std::string humanBytes(uint64_t n) {
  if (n >= (1ull << 20) && n % (1ull << 20) == 0)
    return std::to_string(n >> 20) + " MiB";
  if (n >= (1ull << 10) && n % (1ull << 10) == 0)
    return std::to_string(n >> 10) + " KiB";
  return std::to_string(n) + " bytes";
}

}  // namespace

std::vector<std::string> targetNames(const std::vector<TargetName>& targets) {
  std::vector<std::string> names;
  for (const TargetName& t : targets)
    names.push_back(t.name);
  return names;
}

void CompileService::CleanupErrors::taskFailed(kj::Exception&& exception) {
  log::error("internal: single-flight cleanup failed: ", exception.getDescription().cStr());
  metrics.daemonError(metrics::DaemonError::Internal);
}

CompileService::CompileService(ServiceConfig config, cache::ObjectCache& cache,
                               CompileBackend& backend, WorkerPool& compilePool,
                               WorkerPool& hashPool, metrics::Metrics& metrics, TieredCache* tiers)
    : cfg(std::move(config)), objects(cache),
      ownTiers(tiers == nullptr ? std::make_unique<TieredCache>(cache) : nullptr),
      tiers(tiers != nullptr ? tiers : ownTiers.get()), backend(backend), compilePool(compilePool),
      hashPool(hashPool), metrics(metrics), served(compiler::servedTargets()),
      defaultTarget(compiler::defaultTriple()),
      heldBytes(cfg.maxHeldRequestBytes,
                [&metrics](int64_t delta) { metrics.requestBytesHeld(delta); }),
      admission({"compile", compilePool.threads(), cfg.maxQueued}, targetNames(served),
                [&metrics](const std::string& target, size_t depth) {
                  metrics.queueDepth(target, "compile", depth);
                }),
      // Hashing a large module takes milliseconds: that is the retry hint's basis until hashes
      // were timed.
      hashAdmission(
          {"hash", hashPool.threads(), cfg.maxQueued, std::chrono::milliseconds(5)},
          targetNames(served),
          [&metrics](const std::string& target, size_t depth) {
            metrics.queueDepth(target, "hash", depth);
          },
          [&metrics]() { metrics.cancelled("hash"); }),
      cleanupErrors(metrics) {}

bool CompileService::chargeHeld(CompileJob& job) {
  if (!job.held)
    job.held = heldBytes.charge(job.module.size());
  return job.held != nullptr;
}

Failure CompileService::tooMuchHeld(const CompileJob& job, const std::string& target) const {
  // The held modules are returned as compiles end: the compile queue's estimate is the hint.
  uint32_t retry = admission.retryAfterMillis(target);
  return Failure{ErrorKind::Overloaded,
                 "rjitd holds " + std::to_string(heldBytes.held()) +
                     " bytes of modules of requests waiting for or in a compile; module '" +
                     job.moduleName + "' (" + std::to_string(job.module.size()) +
                     " bytes) does not fit in its limit (rjitd --max-held-request-bytes " +
                     humanBytes(heldBytes.limit()) + "); retry in about " + std::to_string(retry) +
                     " ms",
                 {},
                 0,
                 0,
                 retry};
}

kj::Promise<ServeResult> CompileService::compile(CompileJob job) {
  metrics.moduleReceived(job.module.size());

  if (job.optLevel > 3)
    return ServeResult(
        failure(ErrorKind::InvalidRequest, "optimization level " + std::to_string(job.optLevel) +
                                               " is out of range; use 0, 1, 2 or 3"));
  if (job.module.empty())
    return ServeResult(
        failure(ErrorKind::InvalidRequest, "module '" + job.moduleName + "' is empty (0 bytes)"));
  if (job.module.size() > cfg.maxModuleBytes)
    return ServeResult(failure(ErrorKind::TooLarge, "module '" + job.moduleName + "' is " +
                                                        std::to_string(job.module.size()) +
                                                        " bytes; this rjitd accepts at most " +
                                                        humanBytes(cfg.maxModuleBytes) +
                                                        " (rjitd --max-module-bytes)"));
  const TargetName* target = resolveTarget(served, job.target, defaultTarget);
  if (target == nullptr)
    return ServeResult(
        failure(ErrorKind::UnknownTarget, "unknown target '" + job.target +
                                              "'; this rjitd serves: " + describeTargets(served)));

  compiler::CompileOptions options;
  options.triple = target->triple;
  options.cpu = job.cpu.empty() ? target->defaultCpu : job.cpu;
  options.features = job.features;
  options.optLevel = job.optLevel;
  options.format = job.format;
  options.moduleName = job.moduleName;

  // The key covers exactly what decides the object; computed here from the received bytes,
  // never taken from the client.
  auto keyOf = [identity = cfg.compilerIdentity](const std::string& module,
                                                 const compiler::CompileOptions& o) {
    return cache::computeKey({module, o.triple, o.cpu, o.features, o.optLevel, identity});
  };
  if (job.module.size() < cfg.hashOffloadBytes) {
    cache::Key key = keyOf(job.module, options);
    return serveKeyed(key, kj::mv(job), kj::mv(options));
  }
  // Hashing tens of megabytes takes milliseconds: do it off the loop, after a place in the
  // hash queue (bounded and fair across clients, like compiles). The module is held from here
  // until the hash (and then the compile) is over: charged now, or refused.
  std::string lane = target->name;
  if (!chargeHeld(job)) {
    Failure refused = tooMuchHeld(job, lane);
    log::info("compile of '", job.moduleName, "' refused: ", refused.message);
    return ServeResult(kj::mv(refused));
  }
  uint64_t client = job.client;
  // The worker shares ownership of the job: the call may be cancelled (its continuation
  // dropped) while the hash runs, and the worker must never read memory the continuation
  // owned. A call cancelled while queued drops the only owner: its module is freed at once.
  auto owned = std::make_shared<std::pair<CompileJob, compiler::CompileOptions>>(kj::mv(job),
                                                                                 kj::mv(options));
  return hashAdmission.admit(lane, client)
      .then([this, owned, keyOf](Admission::Admitted&& admitted) -> kj::Promise<ServeResult> {
        if (Failure* f = failureOf(admitted)) {
          // Refused (the hash queue is full), pushed out by a fairer claim, or the drain.
          log::info("compile of '", owned->first.moduleName, "' refused: ", f->message);
          return ServeResult(kj::mv(*f));
        }
        return hashAdmission
            .runHolding<cache::Key>(hashPool, std::get<Admission::Slot>(kj::mv(admitted)),
                                    [owned, keyOf]() mutable {
                                      // Released before the answer reaches the loop.
                                      auto mine = kj::mv(owned);
                                      return keyOf(mine->first.module, mine->second);
                                    })
            .then([this, owned](cache::Key key) mutable {
              return serveKeyed(key, kj::mv(owned->first), kj::mv(owned->second));
            });
      });
}

kj::Promise<ServeResult> CompileService::serveKeyed(cache::Key key, CompileJob job,
                                                    compiler::CompileOptions options) {
  const TargetName* target = resolveTarget(served, options.triple, defaultTarget);
  KJ_ASSERT(target != nullptr, "compile() resolved the target to a canonical triple",
            options.triple);
  std::string targetName = target->name;
  auto hit = objects.get(key);
  metrics.cacheLookup(metrics::CacheTier::Memory, targetName, hit != nullptr);
  if (hit)
    return ServeResult(Served{key, kj::mv(hit), true});

  bool joined = true;
  auto it = inFlight.find(key);
  if (it == inFlight.end()) {
    joined = false;
    if (auto refused = admission.refusal(targetName, job.client)) {
      log::info("compile of '", job.moduleName, "' refused: ", refused->message);
      return ServeResult(kj::mv(*refused));
    }
    // The compile keeps the module until it ends. (A cache hit or a joined compile drops
    // this request's copy at once: only work that keeps a module is charged for it.)
    if (!chargeHeld(job)) {
      Failure refused = tooMuchHeld(job, targetName);
      log::info("compile of '", job.moduleName, "' refused: ", refused.message);
      return ServeResult(kj::mv(refused));
    }
    uint64_t generation = nextGeneration++;
    auto cancel = std::make_shared<CompileCancel>();
    std::string moduleName = job.moduleName;
    auto compile =
        resolve(key, kj::mv(job), kj::mv(options), kj::mv(targetName), cancel, generation);
    it = inFlight
             .emplace(key, Flight{compile.fork(), kj::mv(cancel), kj::mv(moduleName), generation})
             .first;
  } else {
    log::debug("joining compile in flight for key ", cache::toHex(key).substr(0, 16));
  }
  Flight& flight = it->second;
  ++flight.waiters;
  // Waiters are counted here, per request, not as fork branches: the last request to go away
  // (answered, cancelled or disconnected) calls a compile still queued or running off.
  auto left = kj::defer([this, key, generation = flight.generation]() { leave(key, generation); });
  return flight.fork.addBranch()
      .then([key, joined](Shared&& shared) -> ServeResult {
        if (auto* f = std::get_if<Failure>(&shared))
          return kj::mv(*f);
        Resolved r = std::get<Resolved>(kj::mv(shared));
        return Served{key, kj::mv(r.object), joined || !r.compiled};
      })
      .attach(kj::mv(left));
}

void CompileService::settle(const cache::Key& key, uint64_t generation) {
  auto it = inFlight.find(key);
  if (it == inFlight.end() || it->second.generation != generation)
    return;
  it->second.settled = true;
  // Not erased here: this runs inside the fork's own promise. A later turn drops the entry, so
  // that an identical request from then on compiles (or hits the cache) afresh.
  cleanup.add(kj::evalLater([this, key, generation]() {
    auto later = inFlight.find(key);
    if (later != inFlight.end() && later->second.generation == generation)
      inFlight.erase(later);
  }));
}

void CompileService::leave(const cache::Key& key, uint64_t generation) {
  auto it = inFlight.find(key);
  if (it == inFlight.end() || it->second.generation != generation)
    return;  // settled and dropped already
  Flight& flight = it->second;
  KJ_ASSERT(flight.waiters > 0);
  if (--flight.waiters > 0)
    return;
  if (!flight.settled) {
    // Nobody waits any more: a queued compile leaves the queue when its promise is dropped
    // below; a running one is told to stop (the backend kills its worker). Neither is the
    // module's fault, and nothing is cached.
    flight.cancel->cancel();
    metrics.compileCancelled();
    log::info("compile of '", flight.moduleName, "' called off: nobody waits for it any more");
  }
  inFlight.erase(it);
}

void CompileService::countBelow(const TieredCache::Found& found, std::string_view target) {
  if (found.diskAsked)
    metrics.cacheLookup(metrics::CacheTier::Disk, target, found.diskHit);
  if (found.sharedAsked)
    metrics.cacheLookup(metrics::CacheTier::Shared, target, found.sharedHit);
}

kj::Promise<CompileService::Shared> CompileService::resolve(const cache::Key& key, CompileJob job,
                                                            compiler::CompileOptions options,
                                                            std::string targetName,
                                                            std::shared_ptr<CompileCancel> cancel,
                                                            uint64_t generation) {
  if (!tiers->hasLowerTiers())
    return startCompile(key, kj::mv(job), kj::mv(options), kj::mv(targetName), kj::mv(cancel),
                        generation);
  // The job moves from continuation to continuation; a flight called off drops it wherever it
  // is, and with it the module's charge.
  auto owned = std::make_shared<std::pair<CompileJob, compiler::CompileOptions>>(kj::mv(job),
                                                                                 kj::mv(options));
  auto compile = [this, key, owned, targetName, cancel,
                  generation](std::shared_ptr<LeaseHold> lease) -> kj::Promise<Shared> {
    if (!lease)
      return startCompile(key, kj::mv(owned->first), kj::mv(owned->second), targetName, cancel,
                          generation);
    // The lease is ours. Its previous holder may have written the object and let go between
    // our search and our lease: look once more before compiling.
    return tiers->findShared(key).then(
        [this, key, owned, targetName, cancel, generation,
         lease](std::shared_ptr<const CompiledObject> object) mutable -> kj::Promise<Shared> {
          if (object) {
            lease = nullptr;  // lets go of the lease
            settle(key, generation);
            metrics.cacheLookup(metrics::CacheTier::Shared, targetName, true);
            return Shared(Resolved{kj::mv(object), false});
          }
          return startCompile(key, kj::mv(owned->first), kj::mv(owned->second), targetName, cancel,
                              generation, kj::mv(lease));
        });
  };
  return tiers->findBelow(key).then([this, key, targetName, generation, compile](
                                        TieredCache::Found&& found) mutable -> kj::Promise<Shared> {
    countBelow(found, targetName);
    if (found.object) {
      settle(key, generation);
      log::debug("key ", cache::toHex(key).substr(0, 16), " found in the ",
                 found.diskHit ? "disk" : "shared", " tier");
      return Shared(Resolved{kj::mv(found.object), false});
    }
    if (tiers->shared() == nullptr)
      return compile(nullptr);
    return tiers->tryLease(key).then([this, key, generation, compile](
                                         TieredCache::Lease lease) mutable -> kj::Promise<Shared> {
      if (lease.result != cache::LeaseResult::Held)
        return compile(kj::mv(lease.hold));
      // Another server compiles this module: wait for its object rather than compile
      // it again, for as long as a compile may take.
      log::debug("key ", cache::toHex(key).substr(0, 16),
                 " is being compiled by another server; waiting for its object");
      return tiers->awaitLeaseHolder(key, cfg.leaseWaitBound)
          .then([this, key, generation, compile](
                    std::shared_ptr<const CompiledObject> object) mutable -> kj::Promise<Shared> {
            if (object) {
              settle(key, generation);
              return Shared(Resolved{kj::mv(object), false});
            }
            // The holder failed, died (its lease expired) or took too long: compile
            // here, leased if we can get it.
            return tiers->tryLease(key).then([compile](TieredCache::Lease again) mutable {
              return compile(kj::mv(again.hold));
            });
          });
    });
  });
}

kj::Promise<CompileService::Shared> CompileService::startCompile(
    const cache::Key& key, CompileJob job, compiler::CompileOptions options, std::string targetName,
    std::shared_ptr<CompileCancel> cancel, uint64_t generation, std::shared_ptr<LeaseHold> lease) {
  using Clock = std::chrono::steady_clock;
  using Timed = std::pair<compiler::CompileResult, Clock::duration>;
  unsigned optLevel = options.optLevel;
  metrics.compileStarted();
  Clock::time_point submitted = Clock::now();
  std::string keyHex = cache::toHex(key);
  log::debug("compiling '", job.moduleName, "' (", job.module.size(), " bytes) for ",
             options.triple, " -O", options.optLevel, " key ", keyHex.substr(0, 16));
  // Shared with the worker: a compile called off while running still runs on its thread until
  // the backend returns, after every loop-side owner is gone (issue 12, item 7). The module's
  // charge goes with it: returned when the last owner (loop or worker) lets go.
  struct Input {
    std::string module;
    compiler::CompileOptions options;
    HeldBytes::Charge held;
  };
  auto input =
      std::make_shared<const Input>(Input{kj::mv(job.module), kj::mv(options), kj::mv(job.held)});
  // Not `input`: the module is returned to the budget when the compile ends, not a turn later
  // when the single-flight entry holding this continuation goes.
  // A lease held for this compile is released however it ends: with the object written
  // (store), or at once (failure, cancellation, drain) when the last owner of `lease` goes.
  auto done = [this, key, keyHex, targetName, optLevel, moduleName = input->options.moduleName,
               generation, lease](Timed&& timed) -> Shared {
    settle(key, generation);
    compiler::CompileResult& result = timed.first;
    if (auto* f = std::get_if<Failure>(&result)) {
      metrics.compileDone(targetName, optLevel, f->kind, timed.second);
      log::info("compile of '", moduleName, "' failed (", errorKindName(f->kind),
                "): ", f->message);
      return kj::mv(*f);
    }
    metrics.compileDone(targetName, optLevel, std::nullopt, timed.second);
    auto object = std::make_shared<const CompiledObject>(std::get<CompiledObject>(kj::mv(result)));
    log::info("compiled '", moduleName, "' for ", object->triple, " -O", optLevel, " in ",
              object->compileMicros / 1000, " ms, ", object->object.size(), " bytes, key ",
              keyHex.substr(0, 16));
    // The shared write releases the lease after it, in order: the guard stands down.
    if (lease)
      lease->standDown();
    if (!tiers->store(key, object, lease != nullptr))
      log::warning("object for key ", keyHex.substr(0, 16), " (", object->object.size(),
                   " bytes) exceeds the whole memory cache budget; not kept in memory");
    return Resolved{object, true};
  };
  auto failed = [this, targetName, optLevel, submitted, key,
                 generation](kj::Exception&& e) -> Shared {
    settle(key, generation);
    metrics.compileDone(targetName, optLevel, ErrorKind::Internal, Clock::now() - submitted);
    log::error("internal: compile worker failed: ", e.getDescription().cStr());
    return Failure{ErrorKind::Internal,
                   std::string("compile failed inside rjitd: ") + e.getDescription().cStr(),
                   {}};
  };
  return admission.admit(targetName, job.client)
      .then([this, input, cancel, key, generation, done = kj::mv(done), failed = kj::mv(failed)](
                Admission::Admitted&& admitted) mutable -> kj::Promise<Shared> {
        if (Failure* f = failureOf(admitted)) {
          // Pushed out of a full queue by a fairer claim, or abandoned by the drain: it never
          // ran, so it is not counted as a compile.
          settle(key, generation);
          metrics.compileCancelled();
          return Shared(kj::mv(*f));
        }
        // Timed on the worker thread: the histogram shows the compile, not the wait for a
        // worker (nor a test's hold at the gate).
        return admission
            .runHolding<Timed>(
                compilePool, std::get<Admission::Slot>(kj::mv(admitted)),
                [input, cancel, &backend = backend, gate = cfg.compileGate]() mutable {
                  // This thread's share of the module goes when the job returns, before its
                  // answer reaches the loop: a request answered next finds the bytes returned.
                  auto mine = kj::mv(input);
                  if (!gate.empty())
                    waitAtTestGate("test compile gate", gate, mine->options.moduleName);
                  Clock::time_point start = Clock::now();
                  if (cancel->cancelled())  // called off while it waited at the gate
                    return Timed(Failure{ErrorKind::Internal, "cancelled", {}}, Clock::duration{});
                  compiler::CompileResult result =
                      backend.compile(mine->module, mine->options, cancel.get());
                  return Timed(std::move(result), Clock::now() - start);
                })
            .then(kj::mv(done), kj::mv(failed));
      });
}

size_t CompileService::abandonQueued() {
  size_t hashes = hashAdmission.abandonQueued(shuttingDown());
  size_t count = admission.abandonQueued(shuttingDown());
  if (count + hashes > 0)
    log::info("drain: answered ", count, " queued compiles and ", hashes,
              " modules waiting for the hash worker with shutting-down");
  count += hashes;
  return count;
}

std::string_view CompileService::targetLabel(std::string_view spec) const {
  const TargetName* target = resolveTarget(served, spec, defaultTarget);
  return target != nullptr ? std::string_view(target->name) : metrics::UNKNOWN_TARGET;
}

bool CompileService::keepCached(const cache::Key& key,
                                std::shared_ptr<const CompiledObject> object) {
  if (objects.contains(key))
    return true;
  return objects.put(key, std::move(object));
}

kj::Promise<ServeResult> CompileService::lookup(const cache::Key& key,
                                                std::string_view missTarget) {
  auto hit = objects.get(key);
  // A hit is labelled with the target of the object found: the key names none.
  std::string_view target = hit ? targetLabel(hit->triple) : missTarget;
  metrics.cacheLookup(metrics::CacheTier::Memory, target, hit != nullptr);
  auto notFound = [key]() {
    return failure(ErrorKind::NotFound, "no cached object for key " + cache::toHex(key));
  };
  if (hit || !tiers->hasLowerTiers()) {
    metrics.hashFirstLookup(target, hit != nullptr);
    if (hit)
      return ServeResult(Served{key, kj::mv(hit), true});
    return ServeResult(notFound());
  }
  return tiers->findBelow(key).then(
      [this, key, missTarget = std::string(missTarget), notFound](TieredCache::Found&& found) {
        std::string_view target =
            found.object ? targetLabel(found.object->triple) : std::string_view(missTarget);
        countBelow(found, target);
        metrics.hashFirstLookup(target, found.object != nullptr);
        if (found.object)
          return ServeResult(Served{key, kj::mv(found.object), true});
        return ServeResult(notFound());
      });
}

}  // namespace rjitd::service
