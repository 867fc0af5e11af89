// SPDX-License-Identifier: MIT
#include "rpc-server.h"

#include "log.h"
#include "proto-convert.h"

#include <capnp/message.h>
#include <chrono>
#include <kj/debug.h>
#include <optional>
#include <string_view>

namespace rjitd::service {

namespace {

using Clock = std::chrono::steady_clock;
using metrics::Method;

std::optional<ErrorKind> errorOf(const ServeResult& result) {
  if (auto* f = std::get_if<Failure>(&result))
    return f->kind;
  return std::nullopt;
}

/// The `target` label for a request naming `spec` (a short name, alias or triple; "" = the
/// default): the served target's short name, or UNKNOWN_TARGET. The view stays valid as long as
/// the service.
std::string_view targetLabel(const CompileService& service, std::string_view spec) {
  const TargetName* target = resolveTarget(service.targets(), spec, service.defaultTriple());
  return target != nullptr ? std::string_view(target->name) : metrics::UNKNOWN_TARGET;
}

void fillOutcome(const ServeResult& result, bool withObject, proto::CompileOutcome::Builder out) {
  if (auto* f = std::get_if<Failure>(&result))
    toProto(*f, out.initError());
  else
    toProto(std::get<Served>(result), withObject, out.initOk());
}

Failure shuttingDown() {
  return Failure{ErrorKind::ShuttingDown,
                 "rjitd is shutting down and accepts no new requests; retry (a restarted or "
                 "another rjitd will answer)",
                 {}};
}

class SessionImpl final : public proto::Session::Server {
public:
  SessionImpl(DaemonState& state, std::string peer, std::shared_ptr<ClientImages> images)
      : state(state), peer(std::move(peer)), images(std::move(images)) {
    state.metrics.sessionOpened();
  }
  ~SessionImpl() noexcept(false) { state.metrics.sessionClosed(); }

  kj::Promise<void> compile(CompileContext context) override {
    Clock::time_point start = Clock::now();
    auto request = context.getParams().getRequest();
    std::string_view target = targetLabel(state.service, request.getTarget().getTriple().cStr());
    if (state.draining) {
      fillOutcome(shuttingDown(), false, context.getResults().initOutcome());
      state.metrics.requestDone(Method::Compile, target, ErrorKind::ShuttingDown,
                                Clock::now() - start);
      return kj::READY_NOW;
    }
    CompileJob job = toCompileJob(request);
    // The module is copied out; free the request message now rather than after the compile.
    context.releaseParams();

    state.requests.begin();
    auto done = kj::defer([this]() { state.requests.end(); });
    return state.service.compile(kj::mv(job))
        .then([context, &metrics = state.metrics, target, start](ServeResult&& result) mutable {
          fillOutcome(result, true, context.getResults().initOutcome());
          metrics.requestDone(Method::Compile, target, errorOf(result), Clock::now() - start);
        })
        .attach(kj::mv(done));
  }

  kj::Promise<void> lookup(LookupContext context) override {
    Clock::time_point start = Clock::now();
    auto request = context.getParams().getRequest();
    auto outcome = context.getResults().initOutcome();
    auto done = [&](std::string_view target, std::optional<ErrorKind> error) {
      state.metrics.requestDone(Method::Lookup, target, error, Clock::now() - start);
    };
    if (state.draining) {
      fillOutcome(shuttingDown(), false, outcome);
      done(metrics::NO_TARGET, ErrorKind::ShuttingDown);
      return kj::READY_NOW;
    }
    auto keyBytes = request.getKey();
    auto key = cache::keyFromBytes(
        std::string_view(reinterpret_cast<const char*>(keyBytes.begin()), keyBytes.size()));
    if (!key) {
      toProto(Failure{ErrorKind::InvalidRequest,
                      "lookup key is " + std::to_string(keyBytes.size()) +
                          " bytes; a key is a 32-byte SHA-256 digest",
                      {}},
              outcome.initError());
      done(metrics::NO_TARGET, ErrorKind::InvalidRequest);
      return kj::READY_NOW;
    }
    ServeResult result = state.service.lookup(*key);
    fillOutcome(result, request.getWantObject(), outcome);
    auto* served = std::get_if<Served>(&result);
    done(served != nullptr ? targetLabel(state.service, served->object->triple)
                           : metrics::NO_TARGET,
         errorOf(result));
    return kj::READY_NOW;
  }

  kj::Promise<void> load(LoadContext context) override {
    Clock::time_point start = Clock::now();
    std::string_view target =
        targetLabel(state.service,
                    context.getParams().getRequest().getCompile().getTarget().getTriple().cStr());
    if (state.draining) {
      toProto(shuttingDown(), context.getResults().initOutcome().initError());
      state.metrics.requestDone(Method::Load, target, ErrorKind::ShuttingDown,
                                Clock::now() - start);
      return kj::READY_NOW;
    }
    state.requests.begin();
    auto done = kj::defer([this]() { state.requests.end(); });
    return serveLoad(*state.load, std::string(target), images, context)
        .then([&metrics = state.metrics, target, start](std::optional<ErrorKind> error) {
          metrics.requestDone(Method::Load, target, error, Clock::now() - start);
        })
        .attach(kj::mv(done));
  }

  kj::Promise<void> stats(StatsContext context) override {
    Clock::time_point start = Clock::now();
    auto out = context.getResults().initStats();
    auto c = state.service.cacheStats();
    auto cache = out.initCache();
    cache.setEntries(c.entries);
    cache.setBytes(c.bytes);
    cache.setBudgetBytes(c.budgetBytes);
    cache.setHits(c.hits);
    cache.setMisses(c.misses);
    cache.setEvictions(c.evictions);
    // The same figures the metrics endpoint serves: read from the metrics, never kept twice.
    metrics::Totals n = state.metrics.totals();
    out.setCompiles(n.compiles);
    out.setCompileFailures(n.compileFailures);
    out.setCompilesInFlight(n.compilesInFlight);
    out.setRequests(n.requests);
    out.setModuleBytesReceived(n.moduleBytesReceived);
    out.setLookups(n.lookups);
    out.setLookupHits(n.lookupHits);
    out.setSessions(n.sessions);
    out.setConnections(n.connections);
    out.setCompileWorkerRestarts(n.compileWorkerRestarts);
    out.setLoads(n.loads);
    out.setLinks(n.links);
    out.setLinkFailures(n.linkFailures);
    out.setLoadedImages(n.loadedImages);
    out.setLoadedImageBytes(n.loadedImageBytes);
    out.setSymbolQuestions(n.symbolQuestions);
    auto requests = out.initRequestCounts(n.requestCounts.size());
    for (size_t i = 0; i < n.requestCounts.size(); ++i) {
      requests[i].setMethod(n.requestCounts[i].method);
      requests[i].setResult(n.requestCounts[i].result);
      requests[i].setCount(n.requestCounts[i].count);
    }
    auto errors = out.initErrorCounts(n.errorCounts.size());
    for (size_t i = 0; i < n.errorCounts.size(); ++i) {
      errors[i].setKind(n.errorCounts[i].kind);
      errors[i].setCount(n.errorCounts[i].count);
    }
    out.setWorkers(state.workers);
    out.setUptimeMillis(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - state.started)
                            .count());
    state.metrics.requestDone(Method::Stats, metrics::NO_TARGET, std::nullopt,
                              Clock::now() - start);
    return kj::READY_NOW;
  }

private:
  DaemonState& state;
  std::string peer;
  /// What this connection loaded (shared by its sessions); images handed out keep it alive.
  std::shared_ptr<ClientImages> images;
};

class BootstrapImpl final : public proto::Rjitd::Server {
public:
  BootstrapImpl(DaemonState& state, std::string peer) : state(state), peer(std::move(peer)) {}
  // One per connection: every session a client gets from it shares what it loaded, so more
  // handshakes do not buy a client more of rjitd's memory.

  kj::Promise<void> hello(HelloContext context) override {
    Clock::time_point start = Clock::now();
    auto client = context.getParams().getClient();
    if (client.getProtocolVersion() != proto::PROTOCOL_VERSION)
      log::warning(peer, " (", client.getClientName().cStr(), ") speaks protocol ",
                   client.getProtocolVersion(), ", rjitd speaks ", proto::PROTOCOL_VERSION);
    else
      log::debug("hello from ", peer, " (", client.getClientName().cStr(), ")");
    auto results = context.getResults();
    auto server = results.initServer();
    server.setProtocolVersion(proto::PROTOCOL_VERSION);
    server.setRjitdVersion(state.rjitdVersion);
    server.setLlvmVersion(state.llvmVersion);
    server.setCompilerIdentity(state.service.config().compilerIdentity);
    const auto& targets = state.service.targets();
    auto list = server.initTargets(targets.size());
    for (size_t i = 0; i < targets.size(); ++i) {
      list[i].setName(targets[i].name);
      list[i].setTriple(targets[i].triple);
      auto aliases = list[i].initAliases(targets[i].aliases.size());
      for (size_t j = 0; j < targets[i].aliases.size(); ++j)
        aliases.set(j, targets[i].aliases[j]);
      list[i].setDefaultCpu(targets[i].defaultCpu);
    }
    server.setDefaultTriple(state.service.defaultTriple());
    server.initLimits().setMaxModuleBytes(state.service.config().maxModuleBytes);
    results.setSession(kj::heap<SessionImpl>(state, peer, images));
    state.metrics.requestDone(Method::Hello, metrics::NO_TARGET, std::nullopt,
                              Clock::now() - start);
    return kj::READY_NOW;
  }

private:
  DaemonState& state;
  std::string peer;
  std::shared_ptr<ClientImages> images = newClientImages();
};

}  // namespace

void RequestTracker::end() {
  KJ_ASSERT(active > 0);
  if (--active == 0) {
    for (auto& w : waiters)
      w->fulfill();
    waiters.clear();
  }
}

kj::Promise<void> RequestTracker::drained() {
  if (active == 0)
    return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiters.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

kj::Own<proto::Rjitd::Server> newBootstrap(DaemonState& state, std::string peer) {
  return kj::heap<BootstrapImpl>(state, std::move(peer));
}

}  // namespace rjitd::service
