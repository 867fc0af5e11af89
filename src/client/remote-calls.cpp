// SPDX-License-Identifier: MIT
// Remote execute on the I/O thread (see remote-calls.h).
#include "remote-calls.h"

#include "module-request.h"
#include "rpc-load.h"

#include <cstring>
#include <kj/debug.h>

namespace rjit::detail {

namespace {

/// rjitd answers a call that overran its deadline itself (a timeout error with the output); the
/// client's own timer waits this much longer, for an answer that could not come.
constexpr uint64_t CALL_GRACE_MILLIS = 5000;

/// Session.executor after a server went away (a broken connection, a `shutting-down` answer):
/// it is idempotent until the first load, so it is retried on a new connection, a few times.
constexpr unsigned RETRIES_FOR_EXECUTOR = 2;

kj::StringPtr ptr(const std::string& s) {
  return kj::StringPtr(s.c_str(), s.size());
}

capnp::Data::Reader bytes(const void* data, size_t size) {
  return capnp::Data::Reader(static_cast<const kj::byte*>(data), size);
}

std::string text(capnp::Data::Reader data) {
  return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
}

ExecOutput toOutput(proto::ExecOutput::Reader output) {
  return ExecOutput{text(output.getStdout()), text(output.getStderr()), output.getMicros()};
}

ExecError toExecError(proto::Error::Reader error, proto::ExecOutput::Reader output) {
  return ExecError(toError(error), toOutput(output), error.getSignal(), error.getExitStatus());
}

Value fromWire(proto::Value::Reader value) {
  Value out;
  switch (value.which()) {
  case proto::Value::VOID: break;
  case proto::Value::SIGNED:
    out.kind = Value::Kind::Signed;
    out.i = value.getSigned();
    break;
  case proto::Value::UNSIGNED:
    out.kind = Value::Kind::Unsigned;
    out.u = value.getUnsigned();
    break;
  case proto::Value::FLOAT32:
    out.kind = Value::Kind::Float;
    out.f = value.getFloat32();
    break;
  case proto::Value::FLOAT64:
    out.kind = Value::Kind::Double;
    out.d = value.getFloat64();
    break;
  case proto::Value::STRING:
    out.kind = Value::Kind::String;
    out.text = value.getString();
    break;
  case proto::Value::POINTER:
    out.kind = Value::Kind::Pointer;
    out.u = value.getPointer();
    break;
  case proto::Value::NULL_: out.kind = Value::Kind::Null; break;
  case proto::Value::BUFFER: break;  // never a result
  }
  return out;
}

/// Whether `buffer` goes as an offset into `segment` (attached to the executor) rather than
/// copied: it lives in that very segment.
bool inSegment(const Buffer& buffer, const SharedSegment* segment) {
  return segment != nullptr && buffer.shared() && segment->contains(buffer.data());
}

void toWire(const Value& value, const SharedSegment* segment, proto::Value::Builder out) {
  switch (value.kind) {
  case Value::Kind::Signed: out.setSigned(value.i); break;
  case Value::Kind::Unsigned: out.setUnsigned(value.u); break;
  case Value::Kind::Float: out.setFloat32(value.f); break;
  case Value::Kind::Double: out.setFloat64(value.d); break;
  case Value::Kind::String: out.setString(ptr(value.text)); break;
  case Value::Kind::Null: out.setNull(); break;
  case Value::Kind::Buffer: {
    const Buffer& buffer = *value.buffer;
    proto::Buffer::Builder b = out.initBuffer();
    // The public enums are the wire's by number (client.h).
    b.setElement(static_cast<proto::Buffer::Element>(buffer.element()));
    b.setCount(buffer.count());
    b.setDirection(static_cast<proto::Buffer::Direction>(buffer.direction()));
    if (inSegment(buffer, segment))
      b.setSegmentOffset(segment->offsetOf(buffer.data()));
    else if (buffer.direction() == Direction::Out)
      b.setBytes(capnp::Data::Reader());  // zeroed by the executor
    else
      b.setBytes(bytes(buffer.data(), buffer.bytes()));
    break;
  }
  case Value::Kind::Void:
  case Value::Kind::Pointer:
    // exec-values' checks refuse these before a call gets here.
    KJ_FAIL_ASSERT("a void or pointer value as an argument");
  }
}

static_assert(static_cast<int>(proto::Buffer::Element::I8) == static_cast<int>(ElementType::I8));
static_assert(static_cast<int>(proto::Buffer::Element::F64) == static_cast<int>(ElementType::F64));
static_assert(static_cast<int>(proto::Buffer::Element::U32) == static_cast<int>(ElementType::U32));
static_assert(static_cast<int>(proto::Buffer::Direction::IN_OUT) ==
              static_cast<int>(Direction::InOut));
static_assert(static_cast<int>(proto::Buffer::Direction::OUT) == static_cast<int>(Direction::Out));

/// Offers the segment's memfd to rjitd (Capability::Client::getFd on the other side).
class SegmentServer final : public proto::SharedSegment::Server {
public:
  explicit SegmentServer(std::shared_ptr<SharedSegment> segment) : segment(std::move(segment)) {}
  kj::Maybe<int> getFd() override { return segment->fd(); }

private:
  std::shared_ptr<SharedSegment> segment;
};

}  // namespace

// The connection is declared first so that it outlives (is destroyed after) the capability
// into its RPC system.
struct RemoteCalls::Executor {
  std::shared_ptr<Connection> connection;
  proto::Executor::Client capability;
  rjitd::TargetName target;
  /// The segment rjitd was given (once per executor); null until then.
  std::shared_ptr<SharedSegment> attached;
  /// An attach in progress, shared by the calls that need it meanwhile.
  kj::Maybe<kj::ForkedPromise<Result<Done>>> attaching;
};

struct RemoteCalls::Module {
  std::shared_ptr<Connection> connection;
  proto::RemoteModule::Client capability;
  uint64_t executor;
};

RemoteCalls::RemoteCalls(kj::AsyncIoContext& io, const Config& config, HashWorker& hasher,
                         Connector& connector)
    : io(io), config(config), hasher(hasher), connector(connector) {}

RemoteCalls::~RemoteCalls() = default;

template <typename T, typename E>
kj::Promise<std::variant<T, E>> RemoteCalls::bounded(std::shared_ptr<Connection> connection,
                                                     uint64_t millis,
                                                     kj::Promise<std::variant<T, E>> work) {
  std::string address = connection->address();
  auto deadline = io.provider->getTimer()
                      .afterDelay(millis * kj::MILLISECONDS)
                      .then([address, millis]() -> std::variant<T, E> {
                        return E(Error(ErrorKind::Timeout, "no answer from rjitd at " + address +
                                                               " within " + std::to_string(millis) +
                                                               " ms (RJIT_TIMEOUT_MS)"));
                      });
  return work
      .catch_([address](kj::Exception&& exception) -> std::variant<T, E> {
        if (exception.getType() == kj::Exception::Type::DISCONNECTED)
          return E(Error(ErrorKind::Connection,
                         "the connection to rjitd at " + address +
                             " broke; remote calls are not retried (a call may have run) and "
                             "an executor lives on one connection: make a new one"));
        return E(toError(exception, address));
      })
      .exclusiveJoin(kj::mv(deadline))
      .attach(kj::mv(connection));
}

kj::Promise<Result<ExecutorParts>> RemoteCalls::executor(std::string target) {
  uint64_t millis = static_cast<uint64_t>(config.timeout.count());
  // The whole of it, connecting and retries included, within the deadline.
  auto deadline =
      io.provider->getTimer()
          .afterDelay(millis * kj::MILLISECONDS)
          .then([this, millis]() -> Result<ExecutorParts> {
            connector.abandonConnect();
            return Error(ErrorKind::Timeout, "no answer from rjitd at " +
                                                 connector.connectingAddress() + " within " +
                                                 std::to_string(millis) + " ms (RJIT_TIMEOUT_MS)");
          });
  return executorAttempt(kj::mv(target), RETRIES_FOR_EXECUTOR).exclusiveJoin(kj::mv(deadline));
}

kj::Promise<Result<ExecutorParts>> RemoteCalls::executorAttempt(std::string target,
                                                                unsigned retries) {
  return connector.connection().then(
      [this, target = kj::mv(target), retries](
          Connector::ConnectionResult&& result) mutable -> kj::Promise<Result<ExecutorParts>> {
        if (auto* error = std::get_if<Error>(&result))
          return ready<ExecutorParts>(std::move(*error));
        std::shared_ptr<Connection> connection =
            std::get<std::shared_ptr<Connection>>(std::move(result));
        const ServerInfo& info = connection->info();
        // No target: this client's own architecture, as for a load, so that code built for
        // this machine runs the same with and without --remote.
        if (target.empty())
          target = HOST_TARGET;
        const rjitd::TargetName* resolved =
            rjitd::resolveTarget(connection->targets(), target, info.defaultTriple);
        if (resolved == nullptr)
          return ready<ExecutorParts>(
              Error(ErrorKind::UnknownTarget, "unknown target '" + target + "'; rjitd at " +
                                                  connection->address() + " serves " +
                                                  rjitd::describeTargets(connection->targets())));
        auto request = connection->session().executorRequest();
        request.initTarget().setTriple(ptr(resolved->triple));
        rjitd::TargetName name = *resolved;
        return request.send()
            .then([this, connection, name = kj::mv(name)](
                      capnp::Response<proto::Session::ExecutorResults>&& response) mutable
                  -> Result<ExecutorParts> {
              proto::ExecutorOutcome::Reader outcome = response.getOutcome();
              if (outcome.isError())
                return toError(outcome.getError());
              uint64_t id = nextId++;
              ExecutorParts parts{id, name.triple, connection->passesFds()};
              executors.emplace(id, kj::heap<Executor>(Executor{connection, outcome.getOk(),
                                                                kj::mv(name), nullptr, nullptr}));
              return parts;
            })
            .then(
                [this, target, retries, connection](
                    Result<ExecutorParts>&& result) mutable -> kj::Promise<Result<ExecutorParts>> {
                  // Asking for an executor starts nothing yet (rjitd spawns on the first load), so
                  // a draining server's answer is retried on the next server as compile is.
                  Error* error = failed(result);
                  if (error != nullptr && error->kind() == ErrorKind::ShuttingDown && retries > 0) {
                    connector.forget(connection.get());
                    return executorAttempt(kj::mv(target), retries - 1);
                  }
                  return ready<ExecutorParts>(std::move(result));
                },
                [this, target, retries, connection](
                    kj::Exception&& exception) mutable -> kj::Promise<Result<ExecutorParts>> {
                  if (exception.getType() == kj::Exception::Type::DISCONNECTED) {
                    connector.forget(connection.get());
                    if (retries > 0)
                      return executorAttempt(kj::mv(target), retries - 1);
                  }
                  return ready<ExecutorParts>(toError(exception, connection->address()));
                });
      });
}

kj::Promise<Result<RemoteLoadedParts>> RemoteCalls::load(uint64_t id,
                                                         const CompileRequest& request) {
  auto found = executors.find(id);
  if (found == executors.end())
    return ready<RemoteLoadedParts>(Error(ErrorKind::InvalidRequest, "no such executor"));
  Executor& executor = *found->second;
  Result<Done> checked = checkOptLevel(request);
  if (Error* error = failed(checked))
    return ready<RemoteLoadedParts>(std::move(*error));
  if (!request.target.empty()) {
    const rjitd::TargetName* named = rjitd::resolveTarget(
        executor.connection->targets(), request.target, executor.connection->info().defaultTriple);
    if (named == nullptr || named->triple != executor.target.triple)
      return ready<RemoteLoadedParts>(
          Error(ErrorKind::TargetMismatch, "module target '" + request.target +
                                               "' is not the executor's (" +
                                               executor.target.triple + ")"));
  }
  Result<Done> size = checkSize(request, *executor.connection);
  if (Error* error = failed(size))
    return ready<RemoteLoadedParts>(std::move(*error));
  if (request.module.size() < config.hashFirstBytes)
    return sendLoad(id, request, executor.target, std::nullopt);
  return moduleKey(hasher, request, executor.target, *executor.connection)
      .then([this, id, &request](rjitd::cache::Key key) {
        auto found = executors.find(id);
        if (found == executors.end())
          return ready<RemoteLoadedParts>(Error(ErrorKind::InvalidRequest, "no such executor"));
        return sendLoad(id, request, found->second->target, key);
      });
}

kj::Promise<Result<RemoteLoadedParts>> RemoteCalls::sendLoad(uint64_t id,
                                                             const CompileRequest& request,
                                                             const rjitd::TargetName& target,
                                                             std::optional<rjitd::cache::Key> key) {
  Executor& executor = *executors.at(id);
  auto call = executor.capability.loadRequest();
  // Hash-first: the module stays here unless rjitd answers notFound.
  toProto(request, target, !key.has_value(), call.initRequest());
  if (key)
    call.setKey(bytes(key->data(), key->size()));
  bool bodySent = !key.has_value();
  std::shared_ptr<Connection> connection = executor.connection;
  kj::Promise<Result<RemoteLoadedParts>> answer =
      call.send().then([this, id, &request, bodySent,
                        connection](capnp::Response<proto::Executor::LoadResults>&& response)
                           -> kj::Promise<Result<RemoteLoadedParts>> {
        proto::RemoteLoadOutcome::Reader outcome = response.getOutcome();
        if (outcome.isError()) {
          if (!bodySent && outcome.getError().getKind() == proto::Error::Kind::NOT_FOUND) {
            auto found = executors.find(id);
            if (found == executors.end())
              return ready<RemoteLoadedParts>(Error(ErrorKind::InvalidRequest, "no such executor"));
            return sendLoad(id, request, found->second->target, std::nullopt);
          }
          return ready<RemoteLoadedParts>(toError(outcome.getError()));
        }
        proto::RemoteLoaded::Reader loaded = outcome.getOk();
        Result<CompiledObject> object = toCompiledObject(loaded.getObject(), bodySent);
        if (Error* error = failed(object))
          return ready<RemoteLoadedParts>(std::move(*error));
        uint64_t moduleId = nextId++;
        modules.emplace(moduleId, kj::heap<Module>(Module{connection, loaded.getModule(), id}));
        return ready<RemoteLoadedParts>(
            RemoteLoadedParts{moduleId, std::get<CompiledObject>(std::move(object))});
      });
  return bounded<RemoteLoadedParts, Error>(
      connection, static_cast<uint64_t>(config.timeout.count()), kj::mv(answer));
}

kj::Promise<Result<Done>> RemoteCalls::attach(Executor& executor,
                                              std::shared_ptr<SharedSegment> segment) {
  if (executor.attached == segment)
    return ready<Done>(Done{});
  KJ_IF_MAYBE (pending, executor.attaching)
    return pending->addBranch();
  auto call = executor.capability.attachSegmentRequest();
  call.setSegment(kj::heap<SegmentServer>(segment));
  call.setSize(segment->size());
  Executor* target = &executor;
  kj::ForkedPromise<Result<Done>> forked =
      call.send()
          .then(
              [target, segment](capnp::Response<proto::Executor::AttachSegmentResults>&& response)
                  -> Result<Done> {
                proto::AttachOutcome::Reader outcome = response.getOutcome();
                if (outcome.isError())
                  return toError(outcome.getError());
                target->attached = segment;
                return Done{};
              },
              [](kj::Exception&& exception) -> Result<Done> { return toError(exception, ""); })
          .fork();
  kj::Promise<Result<Done>> branch = forked.addBranch().then([target](Result<Done>&& result) {
    // Settled: later calls see `attached`, or (after a failure) try again. Cleared from a
    // branch, not from the forked promise's own continuation, which it would destroy.
    target->attaching = nullptr;
    return kj::mv(result);
  });
  executor.attaching = kj::mv(forked);
  return branch;
}

kj::Promise<ExecResult<CallResult>> RemoteCalls::call(uint64_t id, std::string symbol,
                                                      const std::vector<Value>& args,
                                                      std::shared_ptr<SharedSegment> segment) {
  auto found = modules.find(id);
  if (found == modules.end())
    return kj::Promise<ExecResult<CallResult>>(
        ExecError(Error(ErrorKind::InvalidRequest, "no such remote module")));
  Module& module = *found->second;
  auto executorEntry = executors.find(module.executor);
  bool needsSegment = false;
  for (const Value& arg : args)
    if (arg.kind == Value::Kind::Buffer && segment != nullptr &&
        inSegment(*arg.buffer, segment.get()))
      needsSegment = true;
  kj::Promise<Result<Done>> prepared = ready<Done>(Done{});
  if (needsSegment && executorEntry != executors.end())
    prepared = attach(*executorEntry->second, segment);
  else
    segment = nullptr;  // every buffer is copied
  proto::RemoteModule::Client capability = module.capability;
  std::shared_ptr<Connection> connection = module.connection;
  uint64_t timeout = static_cast<uint64_t>(config.timeout.count());
  kj::Promise<ExecResult<CallResult>> answer =
      prepared.then([capability, symbol = kj::mv(symbol), &args, segment, timeout](
                        Result<Done>&& attached) mutable -> kj::Promise<ExecResult<CallResult>> {
        if (Error* error = failed(attached))
          return kj::Promise<ExecResult<CallResult>>(ExecError(std::move(*error)));
        auto call = capability.callRequest();
        proto::CallRequest::Builder request = call.initRequest();
        request.setSymbol(ptr(symbol));
        request.setTimeoutMillis(timeout);
        auto list = request.initArguments(static_cast<unsigned>(args.size()));
        for (size_t i = 0; i < args.size(); ++i)
          toWire(args[i], segment.get(), list[static_cast<unsigned>(i)]);
        return call.send().then(
            [&args, segment](capnp::Response<proto::RemoteModule::CallResults>&& response)
                -> ExecResult<CallResult> {
              proto::CallOutcome::Reader outcome = response.getOutcome();
              if (outcome.isError())
                return toExecError(outcome.getError(), outcome.getOutput());
              proto::CallResult::Reader ok = outcome.getOk();
              auto returned = ok.getBuffers();
              unsigned next = 0;
              for (const Value& arg : args) {
                if (arg.kind != Value::Kind::Buffer || inSegment(*arg.buffer, segment.get()) ||
                    arg.buffer->direction() == Direction::In)
                  continue;
                if (next >= returned.size() || returned[next].size() != arg.buffer->bytes())
                  return ExecError(Error(ErrorKind::Internal,
                                         "rjitd sent back " + std::to_string(returned.size()) +
                                             " buffers, or one of the wrong size"),
                                   toOutput(outcome.getOutput()));
                std::memcpy(arg.buffer->data(), returned[next].begin(), returned[next].size());
                ++next;
              }
              return CallResult{fromWire(ok.getValue()), toOutput(outcome.getOutput())};
            });
      });
  return bounded<CallResult, ExecError>(connection, timeout + CALL_GRACE_MILLIS, kj::mv(answer));
}

kj::Promise<ExecResult<RunResult>> RemoteCalls::run(uint64_t id, std::vector<std::string> argv,
                                                    std::vector<std::string> env,
                                                    std::string stdinBytes) {
  auto found = modules.find(id);
  if (found == modules.end())
    return kj::Promise<ExecResult<RunResult>>(
        ExecError(Error(ErrorKind::InvalidRequest, "no such remote module")));
  Module& module = *found->second;
  uint64_t timeout = static_cast<uint64_t>(config.timeout.count());
  auto call = module.capability.runRequest();
  proto::RunRequest::Builder request = call.initRequest();
  auto args = request.initArgv(static_cast<unsigned>(argv.size()));
  for (size_t i = 0; i < argv.size(); ++i)
    args.set(static_cast<unsigned>(i), ptr(argv[i]));
  auto vars = request.initEnv(static_cast<unsigned>(env.size()));
  for (size_t i = 0; i < env.size(); ++i)
    vars.set(static_cast<unsigned>(i), ptr(env[i]));
  request.setStdin(bytes(stdinBytes.data(), stdinBytes.size()));
  request.setTimeoutMillis(timeout);
  kj::Promise<ExecResult<RunResult>> answer = call.send().then(
      [](capnp::Response<proto::RemoteModule::RunResults>&& response) -> ExecResult<RunResult> {
        proto::RunOutcome::Reader outcome = response.getOutcome();
        if (outcome.isError())
          return toExecError(outcome.getError(), outcome.getOutput());
        proto::RunResult::Reader ok = outcome.getOk();
        RunResult result;
        if (ok.isSignal())
          result.signal = ok.getSignal();
        else
          result.exitStatus = ok.getExitStatus();
        result.signalName = ok.getSignalName();
        result.output = toOutput(outcome.getOutput());
        return result;
      });
  return bounded<RunResult, ExecError>(module.connection, timeout + CALL_GRACE_MILLIS,
                                       kj::mv(answer));
}

void RemoteCalls::releaseModule(uint64_t id) {
  modules.erase(id);
}

void RemoteCalls::releaseExecutor(uint64_t id) {
  executors.erase(id);
}

void RemoteCalls::reset() {
  modules.clear();
  executors.clear();
}

}  // namespace rjit::detail
