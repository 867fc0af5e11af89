// SPDX-License-Identifier: MIT
// The Cap'n Proto face of the daemon (see rpc-server.h) and its edge: where every method's
// answer is settled, failures are written to the wire and unexpected faults become `internal`.
#include "rpc-server.h"

#include "execute-service.h"
#include "log.h"
#include "outcome.h"
#include "proto-convert.h"
#include "rpc-edge.h"

#include <atomic>
#include <capnp/message.h>
#include <chrono>
#include <kj/debug.h>
#include <string_view>

namespace rjitd::service {

namespace {

using Clock = std::chrono::steady_clock;
using metrics::Method;

/// The `target` label of a request's TargetSpec, read before the edge checks the message: a
/// malformed one (checkReadable answers it) is labelled UNKNOWN_TARGET.
std::string_view requestTargetLabel(const CompileService& service,
                                    kj::FunctionParam<proto::TargetSpec::Reader()> spec) {
  std::string_view label = metrics::UNKNOWN_TARGET;
  // Why the catch: the message is checked inside the edge; here only the label is at stake.
  (void)kj::runCatchingExceptions(
      [&]() { label = service.targetLabel(spec().getTriple().cStr()); });
  return label;
}

/// Client identities, one per connection. Atomic: unit tests run daemons on several threads.
std::atomic<uint64_t> nextClient{1};

class SessionImpl final : public proto::Session::Server {
public:
  SessionImpl(DaemonState& state, std::string peer, uint64_t client,
              std::shared_ptr<ClientImages> images, std::shared_ptr<ConnectionExecutors> executors)
      : state(state), peer(std::move(peer)), client(client), images(std::move(images)),
        executors(std::move(executors)) {
    state.metrics.sessionOpened();
  }
  ~SessionImpl() noexcept(false) { state.metrics.sessionClosed(); }

  /// An executor's own channel (no `executors`) is for its loads by key only: user code in the
  /// executor can speak on it, and must not make rjitd compile (or look up) on its behalf.
  std::optional<Failure> refusedOnExecutorChannel(const char* what) const {
    if (executors != nullptr)
      return std::nullopt;
    return Failure{ErrorKind::InvalidRequest,
                   std::string(what) + " on an executor's channel: it loads cached modules by key "
                                       "only",
                   {}};
  }

  kj::Promise<void> compile(CompileContext context) override {
    // A client that goes away (or cancels) stops waiting: its compile leaves the queue, and is
    // called off when nobody else waits for it (CompileService's single flight counts waiters).
    context.allowCancellation();
    Clock::time_point start = Clock::now();
    std::string_view target = requestTargetLabel(
        state.service, [&]() { return context.getParams().getRequest().getTarget(); });
    return edge.respond<Served>(
        Method::Compile, target, start,
        [this, context]() mutable -> kj::Promise<ServeResult> {
          if (state.draining)
            return ServeResult(shuttingDown());
          if (auto malformed = checkReadable(context.getParams().getRequest()))
            return ServeResult(kj::mv(*malformed));
          if (auto refused = refusedOnExecutorChannel("compile"))
            return ServeResult(kj::mv(*refused));
          CompileJob job = toCompileJob(context.getParams().getRequest());
          job.client = client;
          // The module is copied out; free the request message now rather than after the
          // compile.
          context.releaseParams();
          state.requests.begin();
          auto done = kj::defer([this]() { state.requests.end(); });
          return state.service.compile(kj::mv(job)).attach(kj::mv(done));
        },
        [context, target](Served& served) mutable {
          toProto(served, true, context.getResults().initOutcome().initOk());
          return target;
        },
        errorSlotOf(context));
  }

  kj::Promise<void> lookup(LookupContext context) override {
    Clock::time_point start = Clock::now();
    return edge.respond<Served>(
        Method::Lookup, metrics::NO_TARGET, start,
        [this, context]() mutable -> kj::Promise<ServeResult> {
          if (state.draining)
            return ServeResult(shuttingDown());
          if (auto malformed = checkReadable(context.getParams().getRequest()))
            return ServeResult(kj::mv(*malformed));
          if (auto refused = refusedOnExecutorChannel("lookup"))
            return ServeResult(kj::mv(*refused));
          auto keyBytes = context.getParams().getRequest().getKey();
          auto key = cache::keyFromBytes(
              std::string_view(reinterpret_cast<const char*>(keyBytes.begin()), keyBytes.size()));
          if (!key)
            return ServeResult(Failure{ErrorKind::InvalidRequest,
                                       "lookup key is " + std::to_string(keyBytes.size()) +
                                           " bytes; a key is a 32-byte SHA-256 digest",
                                       {}});
          return state.service.lookup(*key);
        },
        [this, context](Served& served) mutable {
          toProto(served, context.getParams().getRequest().getWantObject(),
                  context.getResults().initOutcome().initOk());
          // Known only now: a lookup names no target, the object it finds does.
          return state.service.targetLabel(served.object->triple);
        },
        errorSlotOf(context));
  }

  kj::Promise<void> load(LoadContext context) override {
    context.allowCancellation();  // as compile's: a load nobody waits for leaves its queues
    Clock::time_point start = Clock::now();
    std::string_view target = requestTargetLabel(
        state.service, [&]() { return context.getParams().getRequest().getCompile().getTarget(); });
    return edge.respond<Done>(
        Method::Load, target, start,
        [this, context, target]() mutable -> kj::Promise<Outcome<Done>> {
          if (state.draining)
            return Outcome<Done>(shuttingDown());
          if (auto malformed = checkReadable(context.getParams().getRequest()))
            return Outcome<Done>(kj::mv(*malformed));
          if (context.getParams().getRequest().getCompile().getModule().size() != 0)
            if (auto refused = refusedOnExecutorChannel("load with a module"))
              return Outcome<Done>(kj::mv(*refused));
          state.requests.begin();
          auto done = kj::defer([this]() { state.requests.end(); });
          return serveLoad(*state.load, std::string(target), images, client, context)
              .attach(kj::mv(done));
        },
        // serveLoad wrote the LoadedModule (its capability and image) into the results.
        [target](Done&) { return target; }, errorSlotOf(context));
  }

  kj::Promise<void> executor(ExecutorContext context) override {
    Clock::time_point start = Clock::now();
    std::string_view target =
        requestTargetLabel(state.service, [&]() { return context.getParams().getTarget(); });
    return edge.respond<proto::Executor::Client>(
        Method::Executor, target, start,
        [this, context]() mutable -> kj::Promise<Outcome<proto::Executor::Client>> {
          using Result = Outcome<proto::Executor::Client>;
          if (state.draining)
            return Result(shuttingDown());
          if (state.execute == nullptr)
            return Result(Failure{ErrorKind::UnknownTarget, "this rjitd runs no executors", {}});
          if (executors == nullptr)
            return Result(
                Failure{ErrorKind::InvalidRequest, "an executor cannot open executors", {}});
          return openExecutor(*state.execute, executors, context.getParams().getTarget(), peer);
        },
        [context, target](proto::Executor::Client& executor) mutable {
          context.getResults().initOutcome().setOk(kj::mv(executor));
          return target;
        },
        errorSlotOf(context));
  }

  kj::Promise<void> stats(StatsContext context) override {
    return edge.respond<Done>(
        Method::Stats, metrics::NO_TARGET, Clock::now(),
        [this, context]() mutable -> kj::Promise<Outcome<Done>> {
          writeStats(context.getResults().initStats());
          return Outcome<Done>(Done{});
        },
        [](Done&) { return metrics::NO_TARGET; }, nullptr);
  }

private:
  void writeStats(proto::ServerStats::Builder out) {
    auto c = state.service.cacheStats();
    auto cache = out.initCache();
    cache.setEntries(c.entries);
    cache.setBytes(c.bytes);
    cache.setBudgetBytes(c.budgetBytes);
    cache.setEvictions(c.evictions);
    // The same figures the metrics endpoint serves: read from the metrics, never kept twice.
    metrics::Totals n = state.metrics.totals();
    cache.setHits(n.cacheHits);
    cache.setMisses(n.cacheMisses);
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
    out.setExecutes(n.executes);
    out.setExecuteFailures(n.executeFailures);
    out.setExecutors(n.executors);
    out.setExecutorRestarts(n.executorRestarts);
    auto executes = out.initExecuteCounts(n.executeCounts.size());
    for (size_t i = 0; i < n.executeCounts.size(); ++i) {
      executes[i].setMethod(n.executeCounts[i].method);
      executes[i].setResult(n.executeCounts[i].result);
      executes[i].setCount(n.executeCounts[i].count);
    }
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
    std::vector<metrics::TierSnapshot> tiers = state.metrics.tiers();
    auto tierList = out.initTiers(tiers.size());
    for (size_t i = 0; i < tiers.size(); ++i) {
      const metrics::TierSnapshot& t = tiers[i];
      auto w = tierList[i];
      w.setTier(metrics::cacheTierName(t.tier));
      w.setEntries(t.entries);
      w.setBytes(t.bytes);
      w.setBudgetBytes(t.budgetBytes);
      w.setHits(t.hits);
      w.setMisses(t.misses);
      w.setEvictions(t.evictions);
      w.setStored(t.stored);
      w.setRejected(t.rejectedTotal());
      w.setErrors(t.errors);
      w.setAvailable(t.available);
      w.setAddress(t.address);
      w.setLeaseWaits(t.leaseWaits);
    }
    auto targets = out.initTargets(n.targets.size());
    for (size_t i = 0; i < n.targets.size(); ++i) {
      const metrics::Totals::TargetTotals& t = n.targets[i];
      auto w = targets[i];
      w.setTarget(t.target);
      w.setCacheLookups(t.cacheLookups);
      w.setCacheHits(t.cacheHits);
      w.setCompiles(t.compiles);
      w.setCompileFailures(t.compileFailures);
      w.setLoads(t.loads);
      w.setLoadFailures(t.loadFailures);
      w.setLinks(t.links);
      w.setLinkFailures(t.linkFailures);
      w.setExecutes(t.executes);
      w.setExecuteFailures(t.executeFailures);
      w.setCompileSeconds(t.compileSeconds);
      w.setLoadSeconds(t.loadSeconds);
      w.setLinkSeconds(t.linkSeconds);
      w.setExecuteSeconds(t.executeSeconds);
    }
    out.setWorkers(state.workers);
    out.setUptimeMillis(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - state.started)
                            .count());
  }

  DaemonState& state;
  std::string peer;
  const uint64_t client;  ///< the connection's identity in the admission queues
  Edge edge{state, peer};
  /// What this connection loaded (shared by its sessions); images handed out keep it alive.
  std::shared_ptr<ClientImages> images;
  /// The executors this connection holds (shared by its sessions, for the per-connection limit);
  /// null on an executor's own channel, which may open none.
  std::shared_ptr<ConnectionExecutors> executors;
};

class BootstrapImpl final : public proto::Rjitd::Server {
public:
  BootstrapImpl(DaemonState& state, std::string peer, bool mayExecute,
                std::function<void()> onHello)
      : state(state), peer(std::move(peer)), onHello(std::move(onHello)) {
    if (!mayExecute)
      executors = nullptr;
    else
      executors->client = client;
  }
  // One per connection: every session a client gets from it shares what it loaded, so more
  // handshakes do not buy a client more of rjitd's memory.

  kj::Promise<void> hello(HelloContext context) override {
    return edge.respond<Done>(
        Method::Hello, metrics::NO_TARGET, Clock::now(),
        [this, context]() mutable -> kj::Promise<Outcome<Done>> {
          answerHello(context);
          if (onHello)
            onHello();
          return Outcome<Done>(Done{});
        },
        [](Done&) { return metrics::NO_TARGET; }, nullptr);
  }

private:
  void answerHello(HelloContext& context) {
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
    results.setSession(kj::heap<SessionImpl>(state, peer, this->client, images, executors));
  }

  DaemonState& state;
  std::string peer;
  /// The connection's identity in the admission queues (CompileJob::client): every session of
  /// one connection is one client, so more handshakes do not buy more turns.
  const uint64_t client = nextClient++;
  Edge edge{state, peer};
  std::shared_ptr<ClientImages> images = newClientImages();
  std::shared_ptr<ConnectionExecutors> executors = std::make_shared<ConnectionExecutors>();
  std::function<void()> onHello;
};

class RefusingBootstrapImpl final : public proto::Rjitd::Server {
public:
  RefusingBootstrapImpl(DaemonState& state, Failure refusal, std::function<void()> onAnswered)
      : state(state), refusal(std::move(refusal)), onAnswered(std::move(onAnswered)) {}

  kj::Promise<void> hello(HelloContext context) override {
    // Versions too, so that a client prints which rjitd refused it; no session.
    auto server = context.getResults().initServer();
    server.setProtocolVersion(proto::PROTOCOL_VERSION);
    server.setRjitdVersion(state.rjitdVersion);
    server.setLlvmVersion(state.llvmVersion);
    toProto(refusal, server.initRefused());
    if (onAnswered)
      onAnswered();
    return kj::READY_NOW;
  }

private:
  DaemonState& state;
  Failure refusal;
  std::function<void()> onAnswered;
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

kj::Own<proto::Rjitd::Server> newBootstrap(DaemonState& state, std::string peer, bool mayExecute,
                                           std::function<void()> onHello) {
  return kj::heap<BootstrapImpl>(state, std::move(peer), mayExecute, std::move(onHello));
}

kj::Own<proto::Rjitd::Server> newRefusingBootstrap(DaemonState& state, Failure refusal,
                                                   std::function<void()> onAnswered) {
  return kj::heap<RefusingBootstrapImpl>(state, std::move(refusal), std::move(onAnswered));
}

}  // namespace rjitd::service
