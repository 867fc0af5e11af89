// SPDX-License-Identifier: MIT
// The Cap'n Proto face of the daemon (see rpc-server.h) and its edge: where every method's
// answer is settled, failures are written to the wire and unexpected faults become `internal`.
#include "rpc-server.h"

#include "log.h"
#include "outcome.h"
#include "proto-convert.h"

#include <capnp/message.h>
#include <chrono>
#include <kj/debug.h>
#include <string_view>

namespace rjitd::service {

namespace {

using Clock = std::chrono::steady_clock;
using metrics::Method;

/// The `target` label for a request naming `spec` (a short name, alias or triple; "" = the
/// default): the served target's short name, or UNKNOWN_TARGET. The view stays valid as long as
/// the service.
std::string_view targetLabel(const CompileService& service, std::string_view spec) {
  const TargetName* target = resolveTarget(service.targets(), spec, service.defaultTriple());
  return target != nullptr ? std::string_view(target->name) : metrics::UNKNOWN_TARGET;
}

/// The `target` label of a request's TargetSpec, read before the edge checks the message: a
/// malformed one (checkReadable answers it) is labelled UNKNOWN_TARGET.
std::string_view requestTargetLabel(const CompileService& service,
                                    kj::FunctionParam<proto::TargetSpec::Reader()> spec) {
  std::string_view label = metrics::UNKNOWN_TARGET;
  // Why the catch: the message is checked inside the edge; here only the label is at stake.
  (void)kj::runCatchingExceptions(
      [&]() { label = targetLabel(service, spec().getTriple().cStr()); });
  return label;
}

Failure shuttingDown() {
  return Failure{ErrorKind::ShuttingDown,
                 "rjitd is shutting down and accepts no new requests; retry (a restarted or "
                 "another rjitd will answer)",
                 {}};
}

/// Where a method writes its Error (an `initError()` of its results).
using ErrorSlot = kj::Function<proto::Error::Builder()>;

/// The Error of a call whose results hold an `outcome` (compile, lookup, load).
template <typename Context> ErrorSlot errorSlotOf(Context context) {
  return [context]() mutable { return context.getResults().initOutcome().initError(); };
}

/// The RPC edge of one connection's methods, the one place an answer is settled (see respond).
class Edge final {
public:
  /// Both outlive the edge (they are its owner's).
  Edge(DaemonState& state, const std::string& peer) : state(state), peer(peer) {}

  /// Runs `serve` (an exception it throws counts as its promise's), writes a value with
  /// `writeOk`, which returns the request's `target` label, or a Failure into `errorSlot`
  /// (toProto, the one mapping to the wire), and counts the request in the metrics. Expected
  /// failures are Failure values; an exception here is a fault inside rjitd: it is logged with
  /// the method and the peer, counted as `internal` and answered as an Internal Error, never
  /// as the client's fault. A method without an Error on the wire (no `errorSlot`: hello,
  /// stats) answers such a fault with an exception instead. DISCONNECTED is the exception: the
  /// client is gone, so there is nobody to answer and the request is not counted as answered
  /// (the listener counts how the connection ended).
  template <typename T>
  kj::Promise<void> respond(Method method, std::string_view target, Clock::time_point start,
                            kj::Function<kj::Promise<Outcome<T>>()> serve,
                            kj::Function<std::string_view(T&)> writeOk,
                            kj::Maybe<ErrorSlot> errorSlot) {
    return kj::evalNow([this, method, serve = kj::mv(serve)]() mutable {
             if (state.faultForTest)
               state.faultForTest(method);
             return serve();
           })
        .catch_([this, method](kj::Exception&& e) -> Outcome<T> {
          return internalFailure(method, kj::mv(e));
        })
        .then([this, method, target, start, writeOk = kj::mv(writeOk),
               errorSlot = kj::mv(errorSlot)](Outcome<T>&& outcome) mutable {
          std::string_view label = target;
          const Failure* f = failureOf(outcome);
          if (f == nullptr)
            label = writeOk(std::get<T>(outcome));
          else KJ_IF_MAYBE (slot, errorSlot)
            toProto(*f, (*slot)());
          state.metrics.requestDone(method, label, errorKindOf(outcome), Clock::now() - start);
          if (f != nullptr && errorSlot == nullptr)
            kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                                  kj::str(f->message.c_str())));
        });
  }

private:
  /// The answer to an exception that reached the edge (see respond); rethrows DISCONNECTED.
  Failure internalFailure(Method method, kj::Exception&& e) {
    const char* name = metrics::methodName(method);
    if (e.getType() == kj::Exception::Type::DISCONNECTED) {
      log::info(name, " from ", peer,
                " not answered: the client went away: ", e.getDescription().cStr());
      kj::throwFatalException(kj::mv(e));
    }
    log::error("internal: ", name, " from ", peer, " failed: ", e.getDescription().cStr());
    return Failure{ErrorKind::Internal,
                   std::string("rjitd failed inside while serving this ") + name +
                       " request: " + e.getDescription().cStr(),
                   {}};
  }

  DaemonState& state;
  const std::string& peer;
};

class SessionImpl final : public proto::Session::Server {
public:
  SessionImpl(DaemonState& state, std::string peer, std::shared_ptr<ClientImages> images)
      : state(state), peer(std::move(peer)), images(std::move(images)) {
    state.metrics.sessionOpened();
  }
  ~SessionImpl() noexcept(false) { state.metrics.sessionClosed(); }

  kj::Promise<void> compile(CompileContext context) override {
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
          CompileJob job = toCompileJob(context.getParams().getRequest());
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
          return targetLabel(state.service, served.object->triple);
        },
        errorSlotOf(context));
  }

  kj::Promise<void> load(LoadContext context) override {
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
          state.requests.begin();
          auto done = kj::defer([this]() { state.requests.end(); });
          return serveLoad(*state.load, std::string(target), images, context).attach(kj::mv(done));
        },
        // serveLoad wrote the LoadedModule (its capability and image) into the results.
        [target](Done&) { return target; }, errorSlotOf(context));
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
  }

  DaemonState& state;
  std::string peer;
  Edge edge{state, peer};
  /// What this connection loaded (shared by its sessions); images handed out keep it alive.
  std::shared_ptr<ClientImages> images;
};

class BootstrapImpl final : public proto::Rjitd::Server {
public:
  BootstrapImpl(DaemonState& state, std::string peer) : state(state), peer(std::move(peer)) {}
  // One per connection: every session a client gets from it shares what it loaded, so more
  // handshakes do not buy a client more of rjitd's memory.

  kj::Promise<void> hello(HelloContext context) override {
    return edge.respond<Done>(
        Method::Hello, metrics::NO_TARGET, Clock::now(),
        [this, context]() mutable -> kj::Promise<Outcome<Done>> {
          answerHello(context);
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
    results.setSession(kj::heap<SessionImpl>(state, peer, images));
  }

  DaemonState& state;
  std::string peer;
  Edge edge{state, peer};
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
