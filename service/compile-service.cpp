// SPDX-License-Identifier: MIT
#include "compile-service.h"

#include "log.h"
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

void CompileService::CleanupErrors::taskFailed(kj::Exception&& exception) {
  log::error("internal: single-flight cleanup failed: ", exception.getDescription().cStr());
  metrics.daemonError(metrics::DaemonError::Internal);
}

CompileService::CompileService(ServiceConfig config, cache::ObjectCache& cache,
                               CompileBackend& backend, WorkerPool& compilePool,
                               WorkerPool& hashPool, metrics::Metrics& metrics)
    : cfg(std::move(config)), objects(cache), backend(backend), compilePool(compilePool),
      hashPool(hashPool), metrics(metrics), served(compiler::servedTargets()),
      defaultTarget(compiler::defaultTriple()), cleanupErrors(metrics) {}

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
  // Hashing tens of megabytes takes milliseconds: do it off the loop. The job stays owned by
  // this frame's continuation; the worker only reads it until the promise resolves.
  auto owned =
      kj::heap<std::pair<CompileJob, compiler::CompileOptions>>(kj::mv(job), kj::mv(options));
  auto& ref = *owned;
  return hashPool.run<cache::Key>([&ref, keyOf]() { return keyOf(ref.first.module, ref.second); })
      .then([this, owned = kj::mv(owned)](cache::Key key) mutable {
        return serveKeyed(key, kj::mv(owned->first), kj::mv(owned->second));
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
    it = inFlight
             .emplace(key,
                      startCompile(key, kj::mv(job), kj::mv(options), kj::mv(targetName)).fork())
             .first;
    // Drop the entry once the compile settles. Erasing from a branch's continuation is safe:
    // the branch itself keeps the fork hub alive while it runs.
    cleanup.add(it->second.addBranch().then([this, key](Shared&&) { inFlight.erase(key); },
                                            [this, key](kj::Exception&& e) {
                                              inFlight.erase(key);
                                              kj::throwFatalException(kj::mv(e));
                                            }));
  } else {
    log::debug("joining compile in flight for key ", cache::toHex(key).substr(0, 16));
  }
  return it->second.addBranch().then([key, joined](Shared&& shared) -> ServeResult {
    if (auto* f = std::get_if<Failure>(&shared))
      return kj::mv(*f);
    return Served{key, std::get<std::shared_ptr<const CompiledObject>>(kj::mv(shared)), joined};
  });
}

kj::Promise<CompileService::Shared> CompileService::startCompile(const cache::Key& key,
                                                                 CompileJob job,
                                                                 compiler::CompileOptions options,
                                                                 std::string targetName) {
  using Clock = std::chrono::steady_clock;
  using Timed = std::pair<compiler::CompileResult, Clock::duration>;
  unsigned optLevel = options.optLevel;
  metrics.compileStarted();
  Clock::time_point submitted = Clock::now();
  std::string keyHex = cache::toHex(key);
  log::debug("compiling '", job.moduleName, "' (", job.module.size(), " bytes) for ",
             options.triple, " -O", options.optLevel, " key ", keyHex.substr(0, 16));
  auto input = kj::heap<std::pair<std::string, compiler::CompileOptions>>(kj::mv(job.module),
                                                                          kj::mv(options));
  auto& ref = *input;
  // Timed on the worker thread: the histogram shows the compile, not the wait for a worker
  // (nor a test's hold at the gate).
  return compilePool
      .run<Timed>([&ref, &backend = backend, &gate = cfg.compileGate]() {
        if (!gate.empty())
          waitAtTestGate("test compile gate", gate, ref.second.moduleName);
        Clock::time_point start = Clock::now();
        compiler::CompileResult result = backend.compile(ref.first, ref.second);
        return Timed(std::move(result), Clock::now() - start);
      })
      .then(
          [this, key, keyHex, targetName, optLevel,
           input = kj::mv(input)](Timed&& timed) -> Shared {
            compiler::CompileResult& result = timed.first;
            if (auto* f = std::get_if<Failure>(&result)) {
              metrics.compileDone(targetName, optLevel, f->kind, timed.second);
              log::info("compile of '", input->second.moduleName, "' failed (",
                        errorKindName(f->kind), "): ", f->message);
              return kj::mv(*f);
            }
            metrics.compileDone(targetName, optLevel, std::nullopt, timed.second);
            auto object =
                std::make_shared<const CompiledObject>(std::get<CompiledObject>(kj::mv(result)));
            log::info("compiled '", input->second.moduleName, "' for ", object->triple, " -O",
                      input->second.optLevel, " in ", object->compileMicros / 1000, " ms, ",
                      object->object.size(), " bytes, key ", keyHex.substr(0, 16));
            if (!objects.put(key, object))
              log::warning("object for key ", keyHex.substr(0, 16), " (", object->object.size(),
                           " bytes) exceeds the whole cache budget; not cached");
            return object;
          },
          [this, targetName, optLevel, submitted](kj::Exception&& e) -> Shared {
            metrics.compileDone(targetName, optLevel, ErrorKind::Internal,
                                Clock::now() - submitted);
            log::error("internal: compile worker failed: ", e.getDescription().cStr());
            return Failure{ErrorKind::Internal,
                           std::string("compile failed inside rjitd: ") + e.getDescription().cStr(),
                           {}};
          });
}

size_t CompileService::abandonQueued() {
  return 0;  // issue 12: the bounded per-target queues answer their waiting work here
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

ServeResult CompileService::lookup(const cache::Key& key, std::string_view missTarget) {
  auto hit = objects.get(key);
  // A hit is labelled with the target of the object found: the key names none.
  std::string_view target = hit ? targetLabel(hit->triple) : missTarget;
  metrics.cacheLookup(metrics::CacheTier::Memory, target, hit != nullptr);
  metrics.hashFirstLookup(target, hit != nullptr);
  if (hit)
    return Served{key, kj::mv(hit), true};
  return failure(ErrorKind::NotFound, "no cached object for key " + cache::toHex(key));
}

}  // namespace rjitd::service
