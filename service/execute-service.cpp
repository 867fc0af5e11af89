// SPDX-License-Identifier: MIT
#include "execute-service.h"

#include "cache-key.h"
#include "call.h"
#include "log.h"
#include "proto-convert.h"
#include "rpc-edge.h"
#include "value.h"
#include "wire-enums.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <kj/debug.h>
#include <map>
#include <sys/stat.h>

namespace rjitd::service {

namespace {

using RemoteModuleServer = proto::RemoteModule::Server;
using CallContext =
    capnp::CallContext<proto::RemoteModule::CallParams, proto::RemoteModule::CallResults>;
using RunContext =
    capnp::CallContext<proto::RemoteModule::RunParams, proto::RemoteModule::RunResults>;

Failure mismatch(std::string message) {
  return Failure{ErrorKind::SignatureMismatch, std::move(message), {}};
}

/// A wire value as a message shows it: `1`, `18446744073709551615u`, `1.5f`, `string "x"`,
/// `buffer i32[4] in`, `null`.
std::string describeValue(proto::Value::Reader v) {
  switch (v.which()) {
  case proto::Value::VOID: return "void";
  case proto::Value::SIGNED: return std::to_string(v.getSigned());
  case proto::Value::UNSIGNED: return std::to_string(v.getUnsigned()) + "u";
  case proto::Value::FLOAT32:
    return marshal::formatValue(marshal::Value::floatNumber(v.getFloat32())) + "f";
  case proto::Value::FLOAT64:
    return marshal::formatValue(marshal::Value::doubleNumber(v.getFloat64()));
  case proto::Value::STRING: {
    std::string text = v.getString();
    if (text.size() > 32)
      text = text.substr(0, 32) + "...";
    return "string \"" + text + "\"";
  }
  case proto::Value::BUFFER: {
    auto b = v.getBuffer();
    return std::string("buffer ") + elementName(b.getElement()) + "[" +
           std::to_string(b.getCount()) + "] " + directionName(b.getDirection());
  }
  case proto::Value::NULL_: return "null";
  case proto::Value::POINTER: return "pointer";
  }
  return "an unknown value";
}

/// The scalar a wire value carries, as the marshalling library checks it; nullopt for the
/// kinds that are not scalars (buffer, null, void, pointer).
std::optional<marshal::Value> scalarOf(proto::Value::Reader v) {
  switch (v.which()) {
  case proto::Value::SIGNED: return marshal::Value::signedInt(v.getSigned());
  case proto::Value::UNSIGNED: return marshal::Value::unsignedInt(v.getUnsigned());
  case proto::Value::FLOAT32: return marshal::Value::floatNumber(v.getFloat32());
  case proto::Value::FLOAT64: return marshal::Value::doubleNumber(v.getFloat64());
  case proto::Value::STRING: return marshal::Value::string(v.getString());
  default: return std::nullopt;
  }
}

/// What is wrong with passing `v` for a parameter of `type`, or nullopt.
std::optional<std::string> argumentProblem(proto::Value::Reader v, const IrType& type,
                                           uint64_t maxBufferBytes,
                                           std::optional<uint64_t> segmentBytes) {
  bool pointer = type.kind == IrType::Kind::Pointer;
  switch (v.which()) {
  case proto::Value::BUFFER: {
    if (!pointer)
      return "a buffer can only be passed for ptr, not for " + formatIrType(type);
    auto b = v.getBuffer();
    size_t size = elementBytes(b.getElement());
    if (size == 0)
      return std::string("a buffer of an element type this rjitd does not know");
    if (b.getCount() > maxBufferBytes / size)
      return "a buffer of " + std::to_string(b.getCount()) + " elements of " +
             std::to_string(size) + " bytes is larger than an executor's memory (" +
             std::to_string(maxBufferBytes) + " bytes, rjitd --executor-memory)";
    uint64_t bytes = b.getCount() * size;
    if (b.isSegmentOffset()) {
      if (!segmentBytes)
        return std::string("a shared-segment buffer, but no segment is attached");
      if (b.getSegmentOffset() > *segmentBytes || bytes > *segmentBytes - b.getSegmentOffset())
        return "a shared-segment buffer at offset " + std::to_string(b.getSegmentOffset()) +
               " of " + std::to_string(bytes) + " bytes past the segment's " +
               std::to_string(*segmentBytes) + " bytes";
      return std::nullopt;
    }
    uint64_t given = b.getBytes().size();
    if (b.getDirection() == proto::Buffer::Direction::OUT) {
      if (given != 0)
        return std::string("an out buffer carries no bytes (it starts zeroed)");
      return std::nullopt;
    }
    if (given != bytes)
      return "a buffer of " + std::to_string(b.getCount()) + " elements needs " +
             std::to_string(bytes) + " bytes, " + std::to_string(given) + " were sent";
    return std::nullopt;
  }
  case proto::Value::NULL_:
    if (!pointer)
      return "null can only be passed for ptr, not for " + formatIrType(type);
    return std::nullopt;
  case proto::Value::VOID:
  case proto::Value::POINTER:
    return std::string("a ") + (v.isVoid() ? "void" : "pointer") +
           " value cannot be an argument (pass a buffer, a string or null for ptr)";
  default: break;
  }
  auto scalar = scalarOf(v);
  if (!scalar)
    return std::string("a value of a kind this rjitd does not know");
  if (pointer && scalar->kind != marshal::Value::Kind::String)
    return "expected a buffer, a string or null for ptr, not a number";
  return marshal::checkFits(*scalar, type);
}

}  // namespace

std::optional<std::string> answerProblem(capnp::List<proto::Value>::Reader arguments,
                                         proto::CallOutcome::Reader answer) {
  if (!answer.isOk())
    return std::string("neither a result nor an error");
  auto buffers = answer.getOk().getBuffers();
  size_t next = 0;
  for (auto v : arguments) {
    if (!v.isBuffer() || v.getBuffer().isSegmentOffset() ||
        v.getBuffer().getDirection() == proto::Buffer::Direction::IN)
      continue;
    uint64_t bytes = v.getBuffer().getCount() * elementBytes(v.getBuffer().getElement());
    if (next >= buffers.size())
      return "fewer out-buffers than the call passed (" + std::to_string(buffers.size()) + ")";
    if (buffers[next].size() != bytes)
      return "out-buffer " + std::to_string(next + 1) + " of " +
             std::to_string(buffers[next].size()) + " bytes for " + std::to_string(bytes);
    ++next;
  }
  if (next != buffers.size())
    return "more out-buffers (" + std::to_string(buffers.size()) + ") than the call passed";
  return std::nullopt;
}

std::variant<IrSignature, Failure> findFunction(const CompiledObject& object,
                                                std::string_view symbol) {
  for (const ObjectSymbol& s : object.defines) {
    if (s.name != symbol)
      continue;
    if (s.kind != ObjectSymbol::Kind::Function)
      return mismatch(std::string(symbol) + " is not a function the module defines (it is data)");
    auto parsed = parseIrSignature(s.signature);
    if (auto* error = std::get_if<IrSignatureError>(&parsed))
      return mismatch(std::string(symbol) +
                      " has a signature calls cannot use: " + error->describe());
    return std::get<IrSignature>(parsed);
  }
  return mismatch(std::string(symbol) + " is not a function the module defines");
}

std::optional<Failure> checkCallArguments(std::string_view symbol, const IrSignature& signature,
                                          capnp::List<proto::Value>::Reader arguments,
                                          uint64_t maxBufferBytes,
                                          std::optional<uint64_t> segmentBytes,
                                          uint64_t maxCopiedBytes) {
  if (auto error = marshal::checkCallable(symbol, signature))
    return mismatch(error->message);
  std::string given = "(";
  for (size_t i = 0; i < arguments.size(); ++i)
    given += (i == 0 ? "" : ", ") + describeValue(arguments[i]);
  given += ")";
  std::string head = describeFunction(symbol, signature) + " called with " + given + ": ";
  if (arguments.size() != signature.params.size())
    return mismatch(head + "expected " + std::to_string(signature.params.size()) + " argument" +
                    (signature.params.size() == 1 ? "" : "s") + ", got " +
                    std::to_string(arguments.size()));
  for (size_t i = 0; i < arguments.size(); ++i) {
    if (auto problem =
            argumentProblem(arguments[i], signature.params[i], maxBufferBytes, segmentBytes))
      return mismatch(head + "argument " + std::to_string(i + 1) + ": " + *problem);
  }
  // Each copied buffer fits on its own; together they must fit one call's budget too (out
  // buffers travel back in the answer).
  uint64_t copied = 0;
  for (auto v : arguments) {
    if (v.isString())
      copied += v.getString().size();
    if (v.isBuffer() && !v.getBuffer().isSegmentOffset())
      copied += v.getBuffer().getCount() * elementBytes(v.getBuffer().getElement());
  }
  if (copied > maxCopiedBytes)
    return Failure{ErrorKind::TooLarge,
                   describeFunction(symbol, signature) + ": the call's copied buffers and " +
                       "strings take " + std::to_string(copied) + " bytes, more than one call " +
                       "may pass (" + std::to_string(maxCopiedBytes) +
                       " bytes, rjitd --max-call-bytes); pass large arrays in the shared " +
                       "segment (a Unix-socket client's buffers)",
                   {}};
  return std::nullopt;
}

std::optional<Failure> checkMain(const IrSignature& signature) {
  auto is = [](const IrType& type, IrType::Kind kind) {
    return type.kind == kind && (kind != IrType::Kind::Integer || type.bits == 32);
  };
  bool ok = is(signature.result, IrType::Kind::Integer) && !signature.variadic;
  const auto& p = signature.params;
  if (ok && !p.empty())
    ok = (p.size() == 2 || p.size() == 3) && is(p[0], IrType::Kind::Integer) &&
         is(p[1], IrType::Kind::Pointer) && (p.size() == 2 || is(p[2], IrType::Kind::Pointer));
  if (ok)
    return std::nullopt;
  return mismatch(describeFunction("main", signature) +
                  " cannot be run as a program: main must be i32(), i32(i32, ptr) or "
                  "i32(i32, ptr, ptr)");
}

std::optional<Failure> checkSegment(int fd, uint64_t size, uint64_t maxBytes) {
  auto invalid = [](std::string why) {
    return Failure{ErrorKind::InvalidRequest, "shared segment refused: " + why, {}};
  };
  if (size > maxBytes)
    return Failure{ErrorKind::TooLarge,
                   "shared segment of " + std::to_string(size) +
                       " bytes is larger than an executor may map (" + std::to_string(maxBytes) +
                       " bytes: half of rjitd --executor-memory)",
                   {}};
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return invalid(std::string("fstat failed: ") + strerror(errno));
  if (!S_ISREG(st.st_mode))
    return invalid("it is not a regular file (a memfd)");
  if (static_cast<uint64_t>(st.st_size) < size)
    return invalid("its file has " + std::to_string(st.st_size) + " bytes, fewer than the " +
                   std::to_string(size) + " it claims");
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0)
    return invalid("it is not sealed against shrinking (F_SEAL_SHRINK): a client could cut it "
                   "short under the executor");
  return std::nullopt;
}

std::chrono::milliseconds callDeadline(uint64_t clientMillis, std::chrono::milliseconds cap) {
  if (clientMillis == 0 || clientMillis >= static_cast<uint64_t>(cap.count()))
    return cap;
  return std::chrono::milliseconds(clientMillis);
}

namespace {

/// How a wait for an executor's answer ended: its answer, a fault it reported (an exception
/// other than a disconnect: a bug, the process lives on), or its death (`died`; the deadline's
/// kill is one, the process says so).
template <typename T> struct Raced {
  kj::Maybe<T> answer;
  kj::Maybe<kj::Exception> fault;
  bool died = false;
};

template <typename T> Raced<T> diedResult() {
  Raced<T> r;
  r.died = true;
  return r;
}

/// Waits for `answer`, the process's death, or `deadline` (then kills it and waits for the
/// death), whichever comes first. The process outlives the promise (its owner holds it).
template <typename T>
kj::Promise<Raced<T>> race(kj::Promise<T> answer, ExecutorProcess& process, kj::Timer& timer,
                           std::chrono::milliseconds deadline) {
  auto answered = answer.then(
      [](T&& value) -> kj::Promise<Raced<T>> {
        Raced<T> r;
        r.answer = kj::mv(value);
        return kj::mv(r);
      },
      [&process](kj::Exception&& e) -> kj::Promise<Raced<T>> {
        if (e.getType() == kj::Exception::Type::DISCONNECTED)
          // Its channel closes as it dies: wait for the exit itself (the deadline still runs).
          return process.exited().then([]() { return diedResult<T>(); });
        Raced<T> r;
        r.fault = kj::mv(e);
        return kj::mv(r);
      });
  auto exited = process.exited().then([]() { return diedResult<T>(); });
  auto late = timer.afterDelay(deadline.count() * kj::MILLISECONDS).then([&process]() {
    process.kill(true);
    return process.exited().then([]() { return diedResult<T>(); });
  });
  return answered.exclusiveJoin(kj::mv(exited)).exclusiveJoin(kj::mv(late));
}

}  // namespace

/// One Executor: its process (started lazily, restarted after a death), the modules its client
/// holds, and its shared segment. Shared by the Executor capability and every RemoteModule of
/// it; the last one released kills the process.
class ExecutorCore final : public kj::Refcounted {
public:
  struct Module {
    cache::Key key;
    std::shared_ptr<const CompiledObject> object;
    unsigned optLevel = 0;
    std::string name;
    uint64_t generation = 0;  ///< the process it is loaded in (0: none)
    uint64_t id = 0;          ///< its id in that process
  };

  ExecutorCore(ExecuteEnvironment& env, std::shared_ptr<ConnectionExecutors> connection,
               const TargetName& target, const EmulatedTarget* emulated, std::string cpu,
               std::string features, std::string peer)
      : env(env), connection(std::move(connection)), target(target), emulated(emulated),
        cpu(std::move(cpu)), features(std::move(features)), peer(std::move(peer)) {
    ++env.executors;
    ++this->connection->alive;
    env.cores.insert(this);
  }
  ~ExecutorCore() noexcept(false) {
    env.cores.erase(this);
    --env.executors;
    --connection->alive;
  }

  ExecuteEnvironment& environment() { return env; }
  const TargetName& targetName() const { return target; }
  std::string_view label() const { return target.name; }

  void kill() {
    KJ_IF_MAYBE (p, process)
      (*p)->kill(false);
  }

  /// Runs `work` after every earlier one ended: one call, run, load or attach at a time, so
  /// that output and deaths belong to one request. Work cancelled once started (its caller went
  /// away: a call or a run whose client disconnected) kills the process: the executor may be
  /// running user code that nobody waits for, and the next request gets a fresh one.
  template <typename T> kj::Promise<T> exclusive(kj::Function<kj::Promise<T>()> work) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    auto before = kj::mv(queue);
    queue = kj::mv(paf.promise);
    return before
        .then([this, work = kj::mv(work)]() mutable {
          auto settled = kj::heap<bool>(false);
          bool& done = *settled;
          auto abandoned =
              kj::defer([core = kj::addRef(*this), settled = kj::mv(settled)]() mutable {
                if (!*settled)
                  core->kill();
              });
          return work()
              .then(
                  [&done](T&& value) -> kj::Promise<T> {
                    done = true;
                    return kj::mv(value);
                  },
                  [&done](kj::Exception&& e) -> kj::Promise<T> {
                    done = true;
                    return kj::mv(e);
                  })
              .attach(kj::mv(abandoned));
        })
        .attach(kj::defer([fulfiller = kj::mv(paf.fulfiller)]() mutable { fulfiller->fulfill(); }));
  }

  /// The running process, started (and given the segment and every held module) if there is
  /// none or it died.
  kj::Promise<Outcome<ExecutorProcess*>> ready() {
    KJ_IF_MAYBE (p, process) {
      if ((*p)->alive())
        return Outcome<ExecutorProcess*>(p->get());
    }
    process = nullptr;  // a dead one (already reaped) goes
    if (env.state.draining)
      return Outcome<ExecutorProcess*>(shuttingDown());  // a request queued behind the drain
    ++generation;
    auto started = ExecutorProcess::start(env.process, emulated, env.state, env.lowLevel,
                                          env.eventPort, env.readerOptions, peer + " executor");
    ExecutorProcess* p = started.get();
    process = kj::mv(started);
    kj::Promise<Outcome<Done>> step = Outcome<Done>(Done{});
    if (segment != nullptr)
      step = attachTo(*p);
    for (auto& [serial, module] : modules) {
      step = step.then(
          [this, p, serial = serial](Outcome<Done>&& before) mutable -> kj::Promise<Outcome<Done>> {
            if (failureOf(before) != nullptr)
              return kj::mv(before);
            auto found = modules.find(serial);
            if (found == modules.end())
              return Outcome<Done>(Done{});  // released meanwhile
            return loadInto(*p, serial)
                .then([name = found->second.name](Outcome<Done>&& loaded) -> Outcome<Done> {
                  if (auto* f = failureOf(loaded))
                    return Failure{f->kind,
                                   "the executor was restarted, and loading module " + name +
                                       " into it again failed: " + f->message,
                                   {}};
                  return kj::mv(loaded);
                });
          });
    }
    return step.then([this, p](Outcome<Done>&& done) -> Outcome<ExecutorProcess*> {
      if (auto* f = failureOf(done)) {
        p->kill(false);  // half set up: the next request starts over
        return *f;
      }
      return p;
    });
  }

  /// Control.load of `module` into `process` (the cache made to hold its object first), raced
  /// with the deadline: its constructors are user code.
  kj::Promise<Outcome<Done>> loadInto(ExecutorProcess& p, uint64_t serial) {
    Module& module = modules.at(serial);
    if (!env.state.service.keepCached(module.key, module.object))
      return Outcome<Done>(
          Failure{ErrorKind::TooLarge,
                  "module " + module.name + "'s object is larger than rjitd's whole cache",
                  {}});
    auto request = p.control().loadRequest();
    auto spec = request.initTarget();
    spec.setTriple(target.triple);
    spec.setCpu(cpu);
    spec.setFeatures(features);
    request.setOptLevel(static_cast<uint8_t>(module.optLevel));
    request.setKey(capnp::Data::Reader(module.key.data(), module.key.size()));
    request.setModuleName(module.name);
    using Response = capnp::Response<proto::executor::Control::LoadResults>;
    uint64_t gen = generation;
    return race<Response>(request.send(), p, env.timer, env.limits.executeTimeout)
        .then(
            [this, &p, serial, gen, name = module.name](Raced<Response>&& raced) -> Outcome<Done> {
              std::string what = "module " + name + "'s constructors";
              KJ_IF_MAYBE (answer, raced.answer) {
                auto outcome = answer->getOutcome();
                if (outcome.isError())
                  return fromProto(outcome.getError());
                // The client may have released the module meanwhile: then it is simply not kept.
                auto found = modules.find(serial);
                if (found != modules.end()) {
                  found->second.generation = gen;
                  found->second.id = outcome.getId();
                }
                return Done{};
              }
              return settleDeath(p, raced.fault, what);
            });
  }

  /// The Failure of a request whose executor died or faulted (see Raced).
  Failure settleDeath(ExecutorProcess& p, kj::Maybe<kj::Exception>& fault, std::string_view what) {
    KJ_IF_MAYBE (e, fault) {
      log::error("executor of ", peer, " failed a request: ", e->getDescription().cStr());
      return Failure{ErrorKind::Internal,
                     std::string("the executor failed inside: ") + e->getDescription().cStr(),
                     {}};
    }
    if (env.state.draining && !p.killedForDeadline())
      return shuttingDown();  // killed by the drain (ExecuteEnvironment::killAll)
    Failure f = classifyDeath(*p.waitStatus(), p.snapshot(), p.killedForDeadline(), what);
    noteDeath(p, f.kind);
    return f;
  }

  void noteDeath(ExecutorProcess& p, ErrorKind kind) {
    env.state.metrics.executorRestarted(kind);
    if (kind == ErrorKind::Internal) {
      auto output = p.readOutput(64 << 10);
      log::error("executor of ", peer, " died before it was ready; its stderr: ", output.err);
    } else {
      log::info("executor of ", peer, " ended (", errorKindName(kind),
                "); the next request "
                "starts a fresh one");
    }
  }

  /// Control.attachSegment of the segment into `p`.
  kj::Promise<Outcome<Done>> attachTo(ExecutorProcess& p) {
    class Segment final : public proto::SharedSegment::Server {
    public:
      explicit Segment(int fd) : fd(fd) {}
      kj::Maybe<int> getFd() override { return fd; }

    private:
      int fd;  // the core's, which outlives the message carrying it
    };
    auto request = p.control().attachSegmentRequest();
    request.setSegment(kj::heap<Segment>(segment.get()));
    request.setSize(segmentSize);
    using Response = capnp::Response<proto::executor::Control::AttachSegmentResults>;
    return race<Response>(request.send(), p, env.timer, env.limits.executeTimeout)
        .then([this, &p](Raced<Response>&& raced) -> Outcome<Done> {
          KJ_IF_MAYBE (answer, raced.answer) {
            if (answer->getError().size() != 0)
              return Failure{ErrorKind::InvalidRequest,
                             std::string("the executor cannot map the shared segment: ") +
                                 answer->getError().cStr(),
                             {}};
            return Done{};
          }
          return settleDeath(p, raced.fault, "attaching the shared segment");
        });
  }

  ExecuteEnvironment& env;
  std::shared_ptr<ConnectionExecutors> connection;
  const TargetName& target;  // one of the service's targets, which outlive rjitd's serving
  /// How its processes start: natively (nullptr) or under an emulator (in env.process).
  const EmulatedTarget* emulated;
  std::string cpu, features, peer;
  kj::Maybe<kj::Own<ExecutorProcess>> process;
  uint64_t generation = 0;
  std::map<uint64_t, Module> modules;
  uint64_t nextSerial = 1;
  kj::AutoCloseFd segment;
  uint64_t segmentSize = 0;
  kj::Promise<void> queue = kj::READY_NOW;
};

void ExecuteEnvironment::killAll() {
  for (ExecutorCore* core : cores)
    core->kill();
}

namespace {

/// The output memfds' contents, into an ExecOutput.
void writeOutput(ExecutorProcess& p, uint64_t limit, Clock::duration elapsed,
                 proto::ExecOutput::Builder out) {
  auto output = p.readOutput(limit);
  out.setStdout(
      capnp::Data::Reader(reinterpret_cast<const kj::byte*>(output.out.data()), output.out.size()));
  out.setStderr(
      capnp::Data::Reader(reinterpret_cast<const kj::byte*>(output.err.data()), output.err.size()));
  out.setMicros(std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
}

class RemoteModuleImpl final : public proto::RemoteModule::Server {
public:
  RemoteModuleImpl(kj::Own<ExecutorCore> core, uint64_t serial)
      : core(kj::mv(core)), serial(serial), edge(this->core->env.state, this->core->peer) {}

  ~RemoteModuleImpl() noexcept(false) {
    // Releasing the capability unloads the module (when the process that has it lives on).
    auto found = core->modules.find(serial);
    if (found == core->modules.end())
      return;
    ExecutorCore::Module module = found->second;
    core->modules.erase(found);
    KJ_IF_MAYBE (p, core->process) {
      if ((*p)->alive() && module.generation == core->generation) {
        auto request = (*p)->control().unloadRequest();
        request.setId(module.id);
        // Not holding the core: when this was the last reference, the process ends instead
        // (the unload then fails as DISCONNECTED, which the task set ignores).
        core->env.tasks.add(request.send().ignoreResult());
      }
    }
  }

  kj::Promise<void> call(CallContext context) override {
    // A client that goes away mid-call (its connection breaks) cancels the call, and with it
    // the executor (ExecutorCore::exclusive), instead of leaving it to the deadline.
    context.allowCancellation();
    return respondExecute(
        Method::Call, [this, context]() mutable { return serveCall(context); },
        ErrorSlot([context]() mutable { return context.getResults().getOutcome().initError(); }));
  }

  kj::Promise<void> run(RunContext context) override {
    context.allowCancellation();  // as call's
    return respondExecute(
        Method::Run, [this, context]() mutable { return serveRun(context); },
        ErrorSlot([context]() mutable { return context.getResults().getOutcome().initError(); }));
  }

private:
  /// A call or a run through the RPC edge: counted as a request in progress (a drain waits for
  /// its answer; its executor is killed first) and in rjitd_executes_total by its result.
  kj::Promise<void> respondExecute(Method method, kj::Function<kj::Promise<Outcome<Done>>()> serve,
                                   ErrorSlot errorSlot) {
    Clock::time_point start = Clock::now();
    std::string_view target = core->label();
    return edge.respond<Done>(
        method, target, start,
        [this, target, start, serve = kj::mv(serve)]() mutable -> kj::Promise<Outcome<Done>> {
          core->env.state.requests.begin();
          auto done = kj::defer([&state = core->env.state]() { state.requests.end(); });
          return serve()
              .attach(kj::mv(done))
              .then([this, target, start](Outcome<Done>&& outcome) mutable {
                core->env.state.metrics.executeDone(target, errorKindOf(outcome),
                                                    Clock::now() - start);
                return kj::mv(outcome);
              });
        },
        [target](Done&) { return target; }, kj::mv(errorSlot));
  }

  ExecutorCore::Module& module() {
    auto found = core->modules.find(serial);
    KJ_ASSERT(found != core->modules.end(), "a RemoteModule outlived its entry");
    return found->second;
  }

  kj::Promise<Outcome<Done>> serveCall(CallContext context) {
    if (core->env.state.draining)
      return Outcome<Done>(shuttingDown());
    auto request = context.getParams().getRequest();
    if (auto malformed = checkReadable(request))
      return Outcome<Done>(kj::mv(*malformed));
    std::string symbol = request.getSymbol();
    auto& limits = core->env.limits;
    if (request.getArguments().size() > limits.maxArguments)
      return Outcome<Done>(
          mismatch(symbol + " called with " + std::to_string(request.getArguments().size()) +
                   " arguments; a call may pass at most " + std::to_string(limits.maxArguments)));
    auto found = findFunction(*module().object, symbol);
    if (auto* f = std::get_if<Failure>(&found))
      return Outcome<Done>(kj::mv(*f));
    IrSignature signature = std::get<IrSignature>(found);
    std::optional<uint64_t> segmentBytes;
    if (core->segment != nullptr)
      segmentBytes = core->segmentSize;
    if (auto f = checkCallArguments(symbol, signature, request.getArguments(),
                                    limits.executorMemory, segmentBytes, limits.maxCallBytes))
      return Outcome<Done>(kj::mv(*f));
    auto deadline = callDeadline(request.getTimeoutMillis(), limits.executeTimeout);
    std::string signatureText = formatIrSignature(signature);
    return core->exclusive<Outcome<Done>>([this, context, symbol, signatureText,
                                           deadline]() mutable -> kj::Promise<Outcome<Done>> {
      return core->ready().then(
          [this, context, symbol, signatureText,
           deadline](Outcome<ExecutorProcess*>&& ready) mutable -> kj::Promise<Outcome<Done>> {
            if (auto* f = failureOf(ready))
              return Outcome<Done>(kj::mv(*f));
            ExecutorProcess& p = *std::get<ExecutorProcess*>(ready);
            p.clearOutput();
            Clock::time_point begin = Clock::now();
            auto call = p.control().callRequest();
            call.setId(module().id);
            call.setSymbol(symbol);
            call.setSignature(signatureText);
            call.setArguments(context.getParams().getRequest().getArguments());
            using Response = capnp::Response<proto::executor::Control::CallResults>;
            return race<Response>(call.send(), p, core->env.timer, deadline)
                .then([this, context, &p, symbol,
                       begin](Raced<Response>&& raced) mutable -> Outcome<Done> {
                  auto outcome = context.getResults().initOutcome();
                  writeOutput(p, core->env.limits.executorOutput, Clock::now() - begin,
                              outcome.initOutput());
                  KJ_IF_MAYBE (answer, raced.answer) {
                    auto answered = answer->getOutcome();
                    if (answered.isError())
                      return fromProto(answered.getError());
                    // User code shares the executor's memory: its answer is checked
                    // against the request before it is passed on, never trusted.
                    if (auto wrong = answerProblem(context.getParams().getRequest().getArguments(),
                                                   answered)) {
                      p.kill(false);
                      log::warning("executor ", p.pid(), " answered a call of ", symbol,
                                   " wrongly: ", *wrong, "; killed it");
                      return Failure{ErrorKind::Crashed,
                                     "the executor's answer to " + symbol + " was damaged (" +
                                         *wrong +
                                         "): the code may have written over the executor's "
                                         "memory; the next call gets a fresh executor",
                                     {}};
                    }
                    outcome.setOk(answered.getOk());
                    return Done{};
                  }
                  return core->settleDeath(p, raced.fault, symbol);
                });
          });
    });
  }

  kj::Promise<Outcome<Done>> serveRun(RunContext context) {
    if (core->env.state.draining)
      return Outcome<Done>(shuttingDown());
    auto request = context.getParams().getRequest();
    if (auto malformed = checkReadable(request))
      return Outcome<Done>(kj::mv(*malformed));
    auto& limits = core->env.limits;
    auto found = findFunction(*module().object, "main");
    if (auto* f = std::get_if<Failure>(&found))
      return Outcome<Done>(kj::mv(*f));
    if (auto f = checkMain(std::get<IrSignature>(found)))
      return Outcome<Done>(kj::mv(*f));
    if (request.getStdin().size() > limits.executorOutput)
      return Outcome<Done>(
          Failure{ErrorKind::TooLarge,
                  "standard input of " + std::to_string(request.getStdin().size()) +
                      " bytes is more than a run may pass (" +
                      std::to_string(limits.executorOutput) + " bytes, rjitd --executor-output)",
                  {}});
    uint64_t argumentBytes = 0;
    for (auto list : {request.getArgv(), request.getEnv()})
      for (auto text : list)
        argumentBytes += text.size() + 1;
    if (argumentBytes > limits.maxRunArgumentBytes)
      return Outcome<Done>(Failure{ErrorKind::TooLarge,
                                   "argv and environment of " + std::to_string(argumentBytes) +
                                       " bytes are more than a run may pass (" +
                                       std::to_string(limits.maxRunArgumentBytes) + ")",
                                   {}});
    auto deadline = callDeadline(request.getTimeoutMillis(), limits.executeTimeout);
    return core->exclusive<Outcome<Done>>([this, context,
                                           deadline]() mutable -> kj::Promise<Outcome<Done>> {
      return core->ready().then(
          [this, context,
           deadline](Outcome<ExecutorProcess*>&& ready) mutable -> kj::Promise<Outcome<Done>> {
            if (auto* f = failureOf(ready))
              return Outcome<Done>(kj::mv(*f));
            ExecutorProcess& p = *std::get<ExecutorProcess*>(ready);
            auto request = context.getParams().getRequest();
            p.clearOutput();
            p.setInput(request.getStdin());
            Clock::time_point begin = Clock::now();
            auto run = p.control().runRequest();
            run.setId(module().id);
            run.setArgv(request.getArgv());
            run.setEnv(request.getEnv());
            using Response = capnp::Response<proto::executor::Control::RunResults>;
            return race<Response>(run.send(), p, core->env.timer, deadline)
                .then([this, context, &p, begin](Raced<Response>&& raced) mutable -> Outcome<Done> {
                  auto outcome = context.getResults().initOutcome();
                  writeOutput(p, core->env.limits.executorOutput, Clock::now() - begin,
                              outcome.initOutput());
                  if (!raced.died) {
                    // Control.run never answers: an answer or a fault is the executor's bug.
                    p.kill(false);
                    kj::Maybe<kj::Exception> fault = kj::mv(raced.fault);
                    if (fault == nullptr)
                      fault = KJ_EXCEPTION(FAILED, "the executor answered a run");
                    return core->settleDeath(p, fault, "main");
                  }
                  auto end =
                      classifyRunEnd(*p.waitStatus(), p.snapshot(), p.killedForDeadline(), "main");
                  if (auto* f = std::get_if<Failure>(&end)) {
                    core->noteDeath(p, f->kind);
                    return kj::mv(*f);
                  }
                  auto& ended = std::get<RunEnd>(end);
                  auto ok = outcome.initOk();
                  if (ended.signal != 0)
                    ok.setSignal(ended.signal);
                  else
                    ok.setExitStatus(ended.exitStatus);
                  ok.setSignalName(ended.signalName);
                  return Done{};
                });
          });
    });
  }

  kj::Own<ExecutorCore> core;
  uint64_t serial;
  Edge edge;
};

using LoadContext = capnp::CallContext<proto::Executor::LoadParams, proto::Executor::LoadResults>;
using AttachContext =
    capnp::CallContext<proto::Executor::AttachSegmentParams, proto::Executor::AttachSegmentResults>;

class ExecutorImpl final : public proto::Executor::Server {
public:
  explicit ExecutorImpl(kj::Own<ExecutorCore> core)
      : core(kj::mv(core)), edge(this->core->env.state, this->core->peer) {}

  kj::Promise<void> load(LoadContext context) override {
    Clock::time_point start = Clock::now();
    return edge.respond<Done>(
        Method::RemoteLoad, core->label(), start,
        [this, context]() mutable { return serveLoad(context); },
        [this](Done&) { return core->label(); }, errorSlotOf(context));
  }

  kj::Promise<void> attachSegment(AttachContext context) override {
    Clock::time_point start = Clock::now();
    return edge.respond<Done>(
        Method::Attach, core->label(), start,
        [this, context]() mutable { return serveAttach(context); },
        [this, context](Done&) mutable {
          context.getResults().initOutcome().setOk();
          return core->label();
        },
        errorSlotOf(context));
  }

private:
  kj::Promise<Outcome<Done>> serveLoad(LoadContext context) {
    ExecuteEnvironment& env = core->env;
    if (env.state.draining)
      return Outcome<Done>(shuttingDown());
    auto params = context.getParams();
    if (auto malformed = checkReadable(params.getRequest()))
      return Outcome<Done>(kj::mv(*malformed));
    CompileJob job = toCompileJob(params.getRequest());
    // The executor's target: the module is compiled for (or must have been compiled for) it.
    if (!job.target.empty()) {
      const TargetName* named =
          resolveTarget(env.state.service.targets(), job.target, env.state.service.defaultTriple());
      if (named == nullptr || named->triple != core->target.triple)
        return Outcome<Done>(Failure{ErrorKind::TargetMismatch,
                                     "this executor runs " + core->target.name +
                                         " code; the module asks for " + job.target,
                                     {}});
    }
    job.target = core->target.triple;
    if (job.cpu.empty())
      job.cpu = core->cpu;
    if (job.features.empty())
      job.features = core->features;
    unsigned optLevel = job.optLevel;
    std::string name = job.moduleName;
    kj::Promise<ServeResult> served = nullptr;
    if (job.module.empty()) {
      auto keyBytes = params.getKey();
      auto key = cache::keyFromBytes(
          std::string_view(reinterpret_cast<const char*>(keyBytes.begin()), keyBytes.size()));
      if (!key)
        return Outcome<Done>(Failure{ErrorKind::InvalidRequest,
                                     "a load without a module needs a 32-byte key, not " +
                                         std::to_string(keyBytes.size()) + " bytes",
                                     {}});
      served = env.state.service.lookup(*key, core->label());
    } else {
      context.releaseParams();
      job.client = core->connection->client;
      served = env.state.service.compile(kj::mv(job));
    }
    env.state.requests.begin();
    auto done = kj::defer([&env]() { env.state.requests.end(); });
    return served
        .then([this, context, optLevel,
               name](ServeResult&& result) mutable -> kj::Promise<Outcome<Done>> {
          if (auto* f = failureOf(result))
            return Outcome<Done>(kj::mv(*f));
          Served s = std::get<Served>(kj::mv(result));
          if (s.object->triple != core->target.triple)
            return Outcome<Done>(Failure{ErrorKind::TargetMismatch,
                                         "the cached object is " + s.object->triple +
                                             " code; this executor runs " + core->target.triple,
                                         {}});
          return core->exclusive<Outcome<Done>>(
              [this, context, optLevel, name, s]() mutable -> kj::Promise<Outcome<Done>> {
                return core->ready().then(
                    [this, context, optLevel, name,
                     s](Outcome<ExecutorProcess*>&& ready) mutable -> kj::Promise<Outcome<Done>> {
                      if (auto* f = failureOf(ready))
                        return Outcome<Done>(kj::mv(*f));
                      uint64_t serial = core->nextSerial++;
                      ExecutorCore::Module& module = core->modules[serial];
                      module.key = s.key;
                      module.object = s.object;
                      module.optLevel = optLevel;
                      module.name = name;
                      return core->loadInto(*std::get<ExecutorProcess*>(ready), serial)
                          .then([this, context, serial, s](Outcome<Done>&& loaded) mutable {
                            if (failureOf(loaded) != nullptr) {
                              core->modules.erase(serial);
                              return kj::mv(loaded);
                            }
                            auto ok = context.getResults().initOutcome().initOk();
                            toProto(s, false, ok.initObject());
                            ok.setModule(kj::heap<RemoteModuleImpl>(kj::addRef(*core), serial));
                            return kj::mv(loaded);
                          });
                    });
              });
        })
        .attach(kj::mv(done));
  }

  kj::Promise<Outcome<Done>> serveAttach(AttachContext context) {
    ExecuteEnvironment& env = core->env;
    if (env.state.draining)
      return Outcome<Done>(shuttingDown());
    if (core->segment != nullptr)
      return Outcome<Done>(Failure{ErrorKind::InvalidRequest,
                                   "this executor has a shared segment already (one per executor)",
                                   {}});
    auto params = context.getParams();
    uint64_t size = params.getSize();
    return params.getSegment().getFd().then(
        [this, size](kj::Maybe<int> fd) -> kj::Promise<Outcome<Done>> {
          int received = -1;
          KJ_IF_MAYBE (f, fd)
            received = *f;
          if (received < 0)
            return Outcome<Done>(Failure{ErrorKind::InvalidRequest,
                                         "no descriptor came with the shared segment (shared "
                                         "segments need a Unix socket connection)",
                                         {}});
          if (auto f = checkSegment(received, size, core->env.limits.executorMemory / 2))
            return Outcome<Done>(kj::mv(*f));
          if (core->segment != nullptr)
            return Outcome<Done>(Failure{
                ErrorKind::InvalidRequest, "this executor has a shared segment already", {}});
          int copy;
          KJ_SYSCALL(copy = ::fcntl(received, F_DUPFD_CLOEXEC, 0));
          core->segment = kj::AutoCloseFd(copy);
          core->segmentSize = size;
          // A running executor maps it now; one started later gets it as it starts.
          return core->exclusive<Outcome<Done>>([this]() -> kj::Promise<Outcome<Done>> {
            KJ_IF_MAYBE (p, core->process) {
              if ((*p)->alive())
                return core->attachTo(**p);
            }
            return Outcome<Done>(Done{});
          });
        });
  }

  kj::Own<ExecutorCore> core;
  Edge edge;
};

}  // namespace

Outcome<proto::Executor::Client> openExecutor(ExecuteEnvironment& env,
                                              std::shared_ptr<ConnectionExecutors> connection,
                                              proto::TargetSpec::Reader spec, std::string peer) {
  const CompileService& service = env.state.service;
  std::string name = spec.getTriple();
  const TargetName* target = resolveTarget(service.targets(), name, service.defaultTriple());
  if (target == nullptr)
    return Failure{ErrorKind::UnknownTarget,
                   "rjitd does not serve target '" + name +
                       "'; it serves: " + describeTargets(service.targets()),
                   {}};
  // The default target is the host's, run natively; another architecture's code runs under
  // its emulator when rjitd was given one (ExecutorConfig::emulated).
  const TargetName* host = resolveTarget(service.targets(), "", service.defaultTriple());
  const EmulatedTarget* emulated = nullptr;
  if (host == nullptr || host->triple != target->triple) {
    for (const EmulatedTarget& candidate : env.process.emulated)
      if (candidate.triple == target->triple)
        emulated = &candidate;
    if (emulated == nullptr)
      return Failure{ErrorKind::UnknownTarget,
                     "rjitd cannot execute " + target->name + " code on this host",
                     {}};
    if (!emulated->unavailable.empty())
      return Failure{ErrorKind::UnknownTarget,
                     "rjitd cannot execute " + target->name +
                         " code here: " + emulated->unavailable,
                     {}};
  }
  // Executors are held until their clients release them, so no queue can say when one frees
  // up: the retry hint is a fixed pause, long enough not to spin, short enough for a client's
  // deadline.
  if (env.executors >= env.limits.maxExecutors)
    return Failure{ErrorKind::Overloaded,
                   "rjitd runs " + std::to_string(env.executors) +
                       " executors, its limit (--max-executors); release one or retry later",
                   {},
                   0,
                   0,
                   EXECUTOR_RETRY_MILLIS};
  if (connection->alive >= env.limits.maxExecutorsPerConnection)
    return Failure{ErrorKind::Overloaded,
                   "this connection holds " + std::to_string(connection->alive) +
                       " executors, the limit per connection (--max-executors-per-connection); "
                       "release one first",
                   {}};  // no retry hint: only this client can free one; waiting frees none
  auto core = kj::refcounted<ExecutorCore>(env, std::move(connection), *target, emulated,
                                           spec.getCpu(), spec.getFeatures(), std::move(peer));
  return proto::Executor::Client(kj::heap<ExecutorImpl>(kj::mv(core)));
}

}  // namespace rjitd::service
