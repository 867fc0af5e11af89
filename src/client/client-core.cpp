// SPDX-License-Identifier: MIT
// Deadlines, retries and the calls (see client-core.h).
#include "client-core.h"

#include "module-request.h"

#include <kj/debug.h>
#include <optional>
#include <random>
#include <string>

namespace rjit::detail {

namespace {

// Retries of one call after its server went away. Every call here is idempotent (hello,
// compile, lookup, stats, load; remote calls are not, and remote-calls.h never retries), so
// repeating one on a fresh connection is safe: a load cut short mapped nothing here, and what rjitd
// linked for it belongs to the old connection, which frees it when it ends (the retry reserves and
// links anew on the new connection). Each retry needs a new connection and handshake, so none spins
// against an address nobody serves (that is a Connection error at once), and all of them share the
// call's deadline.
//
// A `shutting-down` answer is the server saying it drains before exiting (rjitd does that on
// SIGTERM, e.g. `systemctl restart`). A socket-activated rjitd has stopped accepting by then;
// systemd holds the listening socket, so a new connection waits there and is served by the
// next rjitd. Such an answer cannot come from a request that broke the server, so it may be
// retried several times: a call can meet one per restart, and one more when it reconnects
// through a connect that was already in progress to the draining server.
constexpr unsigned RETRIES_AFTER_SHUTTING_DOWN = 8;
// A connection that breaks under a call (DISCONNECTED) is what a call sent in the last moment
// of a drain sees: rjitd had answered everything it had read and closed the connection as it
// exited. It is also what a request that crashes the server sees, so these retries stay few:
// such a request brings the server down at most three times per call, short of systemd's
// start limit (5 starts in 10 s), which would leave the socket failed for everyone.
constexpr unsigned RETRIES_AFTER_DISCONNECT = 2;
// An `overloaded` answer with a retry-after hint is rjitd saying its queue for that target is
// full and when to come back. The call waits that long (jittered, so that the clients turned
// away together do not return together) and tries again on the same connection, while its
// deadline leaves room; a few times at most, so that a server that stays full gets a clear
// answer to the user rather than a call that quietly spends its whole deadline.
constexpr unsigned RETRIES_AFTER_OVERLOADED = 4;
// Up to half the hint again: spreads a burst of clients over the next half interval.
constexpr unsigned JITTER_PERCENT = 50;

}  // namespace

/// One public call: the operation to run on a connection (kept so it can be retried), the
/// connection its current attempt uses (for the deadline to drop; not owned) and the retries
/// it has left.
template <typename T> struct ClientCore::Call {
  explicit Call(kj::Function<kj::Promise<Result<T>>(Connection&)> op) : op(kj::mv(op)) {}
  kj::Function<kj::Promise<Result<T>>(Connection&)> op;
  const Connection* connection = nullptr;
  std::string address;
  /// The servers to try, best first (run() sets it once the route is known).
  std::vector<size_t> route;
  unsigned shuttingDownRetries = RETRIES_AFTER_SHUTTING_DOWN;
  unsigned disconnectRetries = RETRIES_AFTER_DISCONNECT;
  unsigned overloadedRetries = RETRIES_AFTER_OVERLOADED;
  /// When the call's deadline passes (run() sets it): a retry-after hint past it is not waited
  /// for.
  kj::TimePoint deadline = kj::origin<kj::TimePoint>();
  /// The `shutting-down` answer that made the call retry, for when no server answers then.
  std::optional<Error> shuttingDown;
};

ClientCore::ClientCore(kj::AsyncIoContext& io, const Config& config)
    : io(io), config(config), connector(io, config), rpcLoader(config, hasher),
      remoteCalls(io, config, hasher, connector), tasks(newTaskSet()) {}

ClientCore::~ClientCore() = default;

// --- calls ----------------------------------------------------------------------------------

kj::Promise<Result<ServerInfo>> ClientCore::serverInfo() {
  return run<ServerInfo>(
      firstServers(), [](Connection& connection) { return ready<ServerInfo>(connection.info()); });
}

kj::Promise<Result<ServerStats>> ClientCore::stats() {
  return run<ServerStats>(firstServers(), [](Connection& connection) {
    return connection.session().statsRequest().send().then(
        [](capnp::Response<proto::Session::StatsResults>&& response) -> Result<ServerStats> {
          return toServerStats(response.getStats());
        });
  });
}

kj::Promise<ClientCore::CompileResult> ClientCore::compile(const CompileRequest& request) {
  Result<Done> checked = checkOptLevel(request);
  if (Error* error = failed(checked))
    return ready<CompiledObject>(std::move(*error));
  return run<CompiledObject>(routeFor(request, false), [this, &request](Connection& connection) {
    return compileOn(connection, request);
  });
}

kj::Promise<Result<LoadedParts>> ClientCore::load(const CompileRequest& request,
                                                  std::shared_ptr<const LoadOptions> options,
                                                  const ModuleRegistry& modules) {
  Result<Done> checked = checkOptLevel(request);
  if (Error* error = failed(checked))
    return ready<LoadedParts>(std::move(*error));
  auto call = std::make_shared<LoadCall>(LoadCall{request, std::move(options), modules});
  return run<LoadedParts>(routeFor(request, true), [this, call](Connection& connection) {
    return rpcLoader.loadOn(connection, *call);
  });
}

void ClientCore::compileAsync(std::shared_ptr<const CompileRequest> request,
                              std::promise<CompiledObject> promise) {
  uint64_t id = nextPending++;
  pending.emplace(id, std::move(promise));
  const CompileRequest& ref = *request;
  tasks->add(kj::evalNow([&] { return compile(ref).attach(std::move(request)); })
                 .then([this, id](CompileResult&& result) { settle(id, std::move(result)); },
                       [this, id](kj::Exception&& exception) {
                         // compile() reports failures as values; this is a fault of ours.
                         settle(id, toError(exception, ""));
                       }));
}

void ClientCore::settle(uint64_t id, CompileResult&& result) {
  auto it = pending.find(id);
  if (it == pending.end())
    return;  // shutdown() failed it already
  std::promise<CompiledObject> promise = std::move(it->second);
  pending.erase(it);
  if (auto* error = std::get_if<Error>(&result))
    promise.set_exception(std::make_exception_ptr(std::move(*error)));
  else
    promise.set_value(std::get<CompiledObject>(std::move(result)));
}

kj::Own<kj::TaskSet> ClientCore::newTaskSet() {
  return kj::heap<kj::TaskSet>(static_cast<kj::TaskSet::ErrorHandler&>(*this));
}

void ClientCore::taskFailed(kj::Exception&& exception) {
  // Only settle() itself can fail here (out of memory while settling); the future it could not
  // settle reports a broken promise to its owner.
  KJ_LOG(ERROR, "libremotejit-client: an asynchronous compile failed", exception);
}

void ClientCore::shutdown() {
  // Cancelling first means no task settles a promise while we fail them below.
  tasks = newTaskSet();
  for (auto& entry : pending)
    entry.second.set_exception(
        std::make_exception_ptr(Error(ErrorKind::Connection, "client closed")));
  pending.clear();
  rpcLoader.releaseAll();
  remoteCalls.reset();
  connector.reset();
}

// --- deadline and retry ---------------------------------------------------------------------

kj::Promise<std::vector<size_t>> ClientCore::firstServers() {
  return configuredOrder(config.endpoints.size());
}

kj::Promise<std::vector<size_t>> ClientCore::routeFor(const CompileRequest& request, bool forLoad) {
  if (config.policy == RoutingPolicy::Ordered || config.endpoints.size() < 2)
    // Today's first-available order, loads included: the user chose the order.
    return configuredOrder(config.endpoints.size());
  return moduleRoutingKey(hasher, request)
      .then([this, forLoad](RoutingKey key) -> std::vector<size_t> {
        std::vector<size_t> ranked = rankServers(key, config.endpoints, config.weights);
        // A load wants a Unix socket to a same-host rjitd (the image's memfd is passed, not
        // copied): the Unix servers by key, then the TCP ones by key. When all servers are
        // Unix sockets, a module's compile and load go to the same server and share its cache.
        return forLoad ? unixFirst(ranked, config.endpoints) : ranked;
      });
}

template <typename T>
kj::Promise<Result<T>> ClientCore::run(kj::Promise<std::vector<size_t>> route,
                                       kj::Function<kj::Promise<Result<T>>(Connection&)> op) {
  auto call = kj::heap<Call<T>>(kj::mv(op));
  Call<T>& ref = *call;
  ref.deadline = io.provider->getTimer().now() + config.timeout.count() * kj::MILLISECONDS;
  kj::Promise<Result<T>> work = route.then([this, &ref](std::vector<size_t> servers) {
    ref.route = std::move(servers);
    return attempt(ref);
  });
  kj::Promise<Result<T>> deadline =
      io.provider->getTimer()
          .afterDelay(config.timeout.count() * kj::MILLISECONDS)
          .then([this, &ref]() -> Result<T> { return timedOut(ref.address, ref.connection); });
  return work.exclusiveJoin(kj::mv(deadline))
      .catch_([&ref](kj::Exception&& exception) -> Result<T> {
        // Only a fault of ours gets here: failures of the server and the network are values.
        return toError(exception, ref.address);
      })
      .attach(kj::mv(call));
}

template <typename T> kj::Promise<Result<T>> ClientCore::attempt(Call<T>& call) {
  call.connection = nullptr;
  kj::Promise<ConnectionResult> connected = connector.connection(call.route, call.deadline);
  return connected.then([this, &call](ConnectionResult&& result) -> kj::Promise<Result<T>> {
    if (auto* error = std::get_if<Error>(&result)) {
      if (call.shuttingDown && error->kind() == ErrorKind::Connection)
        // The server we were retrying for has gone and no other answers (a daemon stopped for
        // good, not restarted): what it said last explains this better than "cannot reach".
        return ready<T>(Error(ErrorKind::ShuttingDown,
                              std::string(call.shuttingDown->what()) + "; then " + error->what()));
      return ready<T>(std::move(*error));
    }
    std::shared_ptr<Connection> connection =
        std::get<std::shared_ptr<Connection>>(std::move(result));
    call.connection = connection.get();
    call.address = connection->address();
    kj::Promise<Result<T>> outcome = call.op(*connection);
    // The lambdas' copies of `connection` keep it open until the operation's promise is gone.
    return outcome.then(
        [this, &call, connection](Result<T>&& result) -> kj::Promise<Result<T>> {
          auto* error = std::get_if<Error>(&result);
          if (error != nullptr && error->kind() == ErrorKind::ShuttingDown &&
              call.shuttingDownRetries > 0) {
            --call.shuttingDownRetries;
            // New calls must not use the draining server either.
            connector.forget(connection.get());
            call.shuttingDown = std::move(*error);
            return attempt(call);
          }
          if (error != nullptr && error->kind() == ErrorKind::Overloaded &&
              error->retryAfter().count() > 0)
            return afterOverloaded(call, std::move(*error));
          return ready<T>(std::move(result));
        },
        [this, &call, connection](kj::Exception&& exception) -> kj::Promise<Result<T>> {
          if (exception.getType() == kj::Exception::Type::DISCONNECTED) {
            connector.forget(connection.get());
            if (call.disconnectRetries > 0 && !overMessageSizeLimit(exception)) {
              --call.disconnectRetries;
              return attempt(call);
            }
          }
          return ready<T>(toError(exception, connection->address()));
        });
  });
}

template <typename T>
kj::Promise<Result<T>> ClientCore::afterOverloaded(Call<T>& call, Error error) {
  std::chrono::milliseconds hint = error.retryAfter();
  auto giveUp = [&](const std::string& why) {
    Error out(ErrorKind::Overloaded, std::string(error.what()) + "; " + why, error.diagnostics());
    out.withRetryAfter(hint);
    return ready<T>(std::move(out));
  };
  if (call.overloadedRetries == 0)
    return giveUp("still overloaded after " + std::to_string(RETRIES_AFTER_OVERLOADED) +
                  " retries");
  std::uniform_int_distribution<int64_t> jitter(0, hint.count() * JITTER_PERCENT / 100);
  int64_t delayMs = hint.count() + jitter(random);
  kj::Timer& timer = io.provider->getTimer();
  if (timer.now() + delayMs * kj::MILLISECONDS >= call.deadline)
    return giveUp("not retried, as that is past this call's deadline of " +
                  std::to_string(config.timeout.count()) + " ms (RJIT_TIMEOUT_MS)");
  --call.overloadedRetries;
  return timer.afterDelay(delayMs * kj::MILLISECONDS).then([this, &call]() {
    return attempt(call);
  });
}

Error ClientCore::timedOut(const std::string& callAddress, const Connection* connection) {
  std::string address = callAddress.empty() ? connector.connectingAddress() : callAddress;
  if (connection != nullptr)
    connector.forget(connection);
  else
    // The call was waiting for a connect: abandon it, so that the next call starts afresh
    // instead of queueing behind a server that does not answer.
    connector.abandonConnect();
  return Error(ErrorKind::Timeout, "no answer from rjitd at " + address + " within " +
                                       std::to_string(config.timeout.count()) +
                                       " ms (RJIT_TIMEOUT_MS)");
}

// --- compile --------------------------------------------------------------------------------

kj::Promise<ClientCore::CompileResult> ClientCore::compileOn(Connection& connection,
                                                             const CompileRequest& request) {
  const ServerInfo& info = connection.info();
  // Resolved here, against what this server says it serves, exactly as the server resolves it:
  // both sides must arrive at the same canonical triple for the same cache key.
  const rjitd::TargetName* target =
      rjitd::resolveTarget(connection.targets(), request.target, info.defaultTriple);
  if (target == nullptr) {
    std::string what = request.target.empty() ? "default target '" + info.defaultTriple + "'"
                                              : "target '" + request.target + "'";
    return ready<CompiledObject>(Error(
        ErrorKind::UnknownTarget, "unknown " + what + "; rjitd at " + connection.address() +
                                      " serves " + rjitd::describeTargets(connection.targets())));
  }
  Result<Done> size = checkSize(request, connection);
  if (Error* error = failed(size))
    return ready<CompiledObject>(std::move(*error));
  if (request.module.size() < config.hashFirstBytes)
    return sendCompile(connection, request, *target);
  return moduleKey(hasher, request, *target, connection)
      .then([this, &connection, &request, target](rjitd::cache::Key key) {
        return lookup(connection, request, *target, key);
      });
}

kj::Promise<ClientCore::CompileResult> ClientCore::lookup(Connection& connection,
                                                          const CompileRequest& request,
                                                          const rjitd::TargetName& target,
                                                          const rjitd::cache::Key& key) {
  auto call = connection.session().lookupRequest();
  proto::LookupRequest::Builder lookup = call.initRequest();
  lookup.setKey(capnp::Data::Reader(key.data(), key.size()));
  lookup.setWantObject(true);
  return call.send().then(
      [this, &connection, &request, &target](
          capnp::Response<proto::Session::LookupResults>&& response) -> kj::Promise<CompileResult> {
        proto::CompileOutcome::Reader outcome = response.getOutcome();
        if (outcome.isError() && outcome.getError().getKind() == proto::Error::Kind::NOT_FOUND)
          return sendCompile(connection, request, target);
        return ready<CompiledObject>(toCompiledObject(outcome, false));
      });
}

kj::Promise<ClientCore::CompileResult> ClientCore::sendCompile(Connection& connection,
                                                               const CompileRequest& request,
                                                               const rjitd::TargetName& target) {
  auto call = connection.session().compileRequest();
  toProto(request, target, true, call.initRequest());
  return call.send().then([](capnp::Response<proto::Session::CompileResults>&& response) {
    return toCompiledObject(response.getOutcome(), true);
  });
}

}  // namespace rjit::detail
