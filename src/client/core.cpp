// SPDX-License-Identifier: MIT
// Connection management, deadlines, retries and the calls (see core.h).
#include "core.h"

#include <kj/debug.h>

namespace rjit::detail {

namespace {

/// Modules up to this size are hashed on the I/O thread itself: SHA-256 of 256 KiB takes well
/// under a millisecond, less than handing the job to the worker and back would cost in latency.
constexpr size_t INLINE_HASH_BYTES = 256 * 1024;

template <typename T> kj::Promise<Result<T>> ready(Result<T> result) {
  return kj::Promise<Result<T>>(kj::mv(result));
}

std::string moduleDisplayName(const CompileRequest& request) {
  return request.moduleName.empty() ? std::string("<unnamed>") : request.moduleName;
}

kj::StringPtr ptr(const std::string& s) {
  return kj::StringPtr(s.c_str(), s.size());
}

}  // namespace

/// One public call: the operation to run on a connection (kept so it can be retried) and the
/// connection its current attempt uses (for the deadline to drop; not owned).
template <typename T> struct ClientCore::Call {
  explicit Call(kj::Function<kj::Promise<Result<T>>(Connection&)> op) : op(kj::mv(op)) {}
  kj::Function<kj::Promise<Result<T>>(Connection&)> op;
  const Connection* connection = nullptr;
  std::string address;
};

ClientCore::ClientCore(kj::AsyncIoContext& io, const Config& config)
    : io(io), config(config), tasks(newTaskSet()) {}

ClientCore::~ClientCore() = default;

// --- calls ----------------------------------------------------------------------------------

kj::Promise<Result<ServerInfo>> ClientCore::serverInfo() {
  return run<ServerInfo>(
      [](Connection& connection) { return ready<ServerInfo>(connection.info()); });
}

kj::Promise<Result<ServerStats>> ClientCore::stats() {
  return run<ServerStats>([](Connection& connection) {
    return connection.session().statsRequest().send().then(
        [](capnp::Response<proto::Session::StatsResults>&& response) -> Result<ServerStats> {
          return toServerStats(response.getStats());
        });
  });
}

kj::Promise<ClientCore::CompileResult>
ClientCore::compile(const CompileRequest& request, std::shared_ptr<const CompileRequest> owner) {
  if (request.optLevel > 3)
    return ready<CompiledObject>(
        Error(ErrorKind::InvalidRequest, "optimization level " + std::to_string(request.optLevel) +
                                             " is out of range; expected 0 to 3"));
  return run<CompiledObject>([this, &request, owner = std::move(owner)](Connection& connection) {
    return compileOn(connection, request, owner);
  });
}

void ClientCore::compileAsync(std::shared_ptr<const CompileRequest> request,
                              std::promise<CompiledObject> promise) {
  uint64_t id = nextPending++;
  pending.emplace(id, std::move(promise));
  const CompileRequest& ref = *request;
  tasks->add(kj::evalNow([&] { return compile(ref, std::move(request)); })
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
  current = nullptr;
  connecting = nullptr;
  ++connectGeneration;
}

// --- deadline and retry ---------------------------------------------------------------------

template <typename T>
kj::Promise<Result<T>> ClientCore::run(kj::Function<kj::Promise<Result<T>>(Connection&)> op) {
  auto call = kj::heap<Call<T>>(kj::mv(op));
  Call<T>& ref = *call;
  kj::Promise<Result<T>> work = attempt(ref, 1);
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

template <typename T>
kj::Promise<Result<T>> ClientCore::attempt(Call<T>& call, unsigned retriesLeft) {
  call.connection = nullptr;
  return connection().then(
      [this, &call, retriesLeft](ConnectionResult&& result) -> kj::Promise<Result<T>> {
        if (auto* error = std::get_if<Error>(&result))
          return ready<T>(std::move(*error));
        std::shared_ptr<Connection> connection =
            std::get<std::shared_ptr<Connection>>(std::move(result));
        call.connection = connection.get();
        call.address = connection->address();
        kj::Promise<Result<T>> outcome = call.op(*connection);
        // The lambda's copy of `connection` keeps it open until the operation's promise is gone.
        return outcome.catch_([this, &call, retriesLeft, connection = std::move(connection)](
                                  kj::Exception&& exception) -> kj::Promise<Result<T>> {
          if (exception.getType() == kj::Exception::Type::DISCONNECTED) {
            forget(connection.get());
            // Every call is idempotent (compile, lookup, stats, hello), so one more try on a fresh
            // connection, failing over through the list, is safe.
            if (retriesLeft > 0)
              return attempt(call, retriesLeft - 1);
          }
          return ready<T>(toError(exception, connection->address()));
        });
      });
}

Error ClientCore::timedOut(const std::string& callAddress, const Connection* connection) {
  std::string address = callAddress.empty() ? connectingAddress : callAddress;
  if (connection != nullptr) {
    forget(connection);
  } else {
    // The call was waiting for a connect: abandon it, so that the next call starts afresh
    // instead of queueing behind a server that does not answer.
    connecting = nullptr;
    ++connectGeneration;
  }
  return Error(ErrorKind::Timeout, "no answer from rjitd at " + address + " within " +
                                       std::to_string(config.timeout.count()) +
                                       " ms (RJIT_TIMEOUT_MS)");
}

void ClientCore::forget(const Connection* connection) {
  if (current.get() == connection)
    current = nullptr;
}

// --- connecting -----------------------------------------------------------------------------

kj::Promise<ClientCore::ConnectionResult> ClientCore::connection() {
  if (current != nullptr && !current->broken())
    return kj::Promise<ConnectionResult>(ConnectionResult(current));
  current = nullptr;
  if (connecting == nullptr) {
    ++connectGeneration;
    connecting = connectFrom(0, std::string()).fork();
  }
  uint64_t generation = connectGeneration;
  return KJ_ASSERT_NONNULL(connecting)
      .addBranch()
      .then([this, generation](ConnectionResult&& result) -> ConnectionResult {
        if (generation == connectGeneration) {
          // This connect is over: the next call that finds no usable connection starts anew.
          connecting = nullptr;
          auto* connection = std::get_if<std::shared_ptr<Connection>>(&result);
          if (connection != nullptr && current == nullptr)
            current = *connection;
        }
        return kj::mv(result);
      });
}

kj::Promise<ClientCore::ConnectionResult> ClientCore::connectFrom(size_t index,
                                                                  std::string reasons) {
  if (index == config.endpoints.size())
    return kj::Promise<ConnectionResult>(ConnectionResult(
        Error(ErrorKind::Connection, "cannot reach rjitd: " + reasons +
                                         " (is rjitd running? set RJIT_SERVER to its address)")));
  const rjitd::Endpoint& endpoint = config.endpoints[index];
  connectingAddress = endpoint.text();
  // evalNow: an address that fails synchronously (a socket() error) still goes to the handler.
  return kj::evalNow([&] { return openConnection(io, endpoint, config.clientName); })
      .then([](ConnectionResult&& result) { return kj::Promise<ConnectionResult>(kj::mv(result)); },
            [this, index, reasons = std::move(reasons)](
                kj::Exception&& exception) mutable -> kj::Promise<ConnectionResult> {
              // Unreachable, refused, or the handshake broke: try the next address.
              reasons += (reasons.empty() ? "" : "; ") + config.endpoints[index].text() + ": " +
                         describe(exception);
              return connectFrom(index + 1, std::move(reasons));
            });
}

// --- compile --------------------------------------------------------------------------------

kj::Promise<ClientCore::CompileResult>
ClientCore::compileOn(Connection& connection, const CompileRequest& request,
                      const std::shared_ptr<const CompileRequest>& owner) {
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
  if (info.maxModuleBytes != 0 && request.module.size() > info.maxModuleBytes)
    return ready<CompiledObject>(Error(
        ErrorKind::TooLarge,
        "module " + moduleDisplayName(request) + " is " + std::to_string(request.module.size()) +
            " bytes; rjitd at " + connection.address() + " accepts at most " +
            std::to_string(info.maxModuleBytes) + " bytes (rjitd --max-module-bytes)"));
  if (request.module.size() < config.hashFirstBytes)
    return sendCompile(connection, request, *target);

  KeyParams params{target->triple, request.cpu.empty() ? target->defaultCpu : request.cpu,
                   request.features, request.optLevel, info.compilerIdentity};
  return key(request, owner, std::move(params))
      .then([this, &connection, &request, target](rjitd::cache::Key key) {
        return lookup(connection, request, *target, key);
      });
}

kj::Promise<rjitd::cache::Key> ClientCore::key(const CompileRequest& request,
                                               const std::shared_ptr<const CompileRequest>& owner,
                                               KeyParams params) {
  if (request.module.size() <= INLINE_HASH_BYTES)
    return rjitd::cache::computeKey({request.module, params.triple, params.cpu, params.features,
                                     params.optLevel, params.compilerIdentity});
  // The worker must own what it reads: the call may be dropped (deadline) mid-hash.
  std::shared_ptr<const std::string> module =
      owner != nullptr ? std::shared_ptr<const std::string>(owner, &owner->module)
                       : std::make_shared<const std::string>(request.module);
  return hasher.computeKey(std::move(module), std::move(params));
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
  proto::CompileRequest::Builder compile = call.initRequest();
  compile.setModuleName(ptr(request.moduleName));
  proto::TargetSpec::Builder spec = compile.initTarget();
  spec.setTriple(ptr(target.triple));
  spec.setCpu(ptr(request.cpu));  // as given: the server applies the same default
  spec.setFeatures(ptr(request.features));
  compile.setOptLevel(static_cast<uint8_t>(request.optLevel));
  compile.setFormat(toProto(request.format));
  // TODO(perf): a copy; referenceExternalData() would avoid it, but the RPC layer may still be
  // writing the message after a deadline has released the caller's bytes.
  compile.setModule(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(request.module.data()),
                                        request.module.size()));
  return call.send().then([](capnp::Response<proto::Session::CompileResults>&& response) {
    return toCompiledObject(response.getOutcome(), true);
  });
}

}  // namespace rjit::detail
