// SPDX-License-Identifier: MIT
// The public remote-execute handles (RemoteExecutor, RemoteModule, Buffer): checks made on the
// caller's thread before anything is sent (exec-values.h), buffers in the shared segment
// (shared-segment.h), and the calls handed to the I/O thread (remote-calls.h).
#include "client-impl.h"
#include "exec-values.h"
#include "remote-calls.h"
#include "remotejit/client.h"
#include "shared-segment.h"

#include <cstring>
#include <limits>
#include <mutex>

namespace rjit {

size_t elementSize(ElementType element) {
  switch (element) {
  case ElementType::I8:
  case ElementType::U8: return 1;
  case ElementType::I16:
  case ElementType::U16: return 2;
  case ElementType::I32:
  case ElementType::U32:
  case ElementType::F32: return 4;
  case ElementType::I64:
  case ElementType::U64:
  case ElementType::F64: return 8;
  }
  return 1;
}

ExecError::ExecError(const Error& error, ExecOutput output, int signal, int exitStatus)
    : Error(error), output_(std::move(output)), signal_(signal), exitStatus_(exitStatus) {}

// --- Buffer -----------------------------------------------------------------------------------

struct __attribute__((visibility("hidden"))) Buffer::State {
  ElementType element = ElementType::U8;
  size_t count = 0;
  Direction direction = Direction::InOut;
  void* data = nullptr;
  /// Memory of this process, or null when the buffer lives in `segment`.
  std::unique_ptr<std::byte[]> heap;
  std::shared_ptr<detail::SharedSegment> segment;

  ~State() {
    if (segment != nullptr)
      segment->deallocate(data);
  }
};

namespace {

size_t checkedBytes(ElementType element, size_t count) {
  if (count > std::numeric_limits<size_t>::max() / elementSize(element))
    throw Error(ErrorKind::InvalidRequest,
                "a buffer of " + std::to_string(count) + " elements is too large");
  return count * elementSize(element);
}

}  // namespace

Buffer::Buffer() = default;
Buffer::Buffer(std::unique_ptr<State> state) : state(std::move(state)) {}
Buffer::~Buffer() = default;
Buffer::Buffer(Buffer&&) noexcept = default;
Buffer& Buffer::operator=(Buffer&&) noexcept = default;

Buffer::Buffer(ElementType element, size_t count, Direction direction)
    : state(std::make_unique<State>()) {
  size_t bytes = checkedBytes(element, count);
  state->element = element;
  state->count = count;
  state->direction = direction;
  // Value-initialized: zeroed, as Out buffers start in the executor too.
  state->heap = std::make_unique<std::byte[]>(bytes == 0 ? 1 : bytes);
  state->data = state->heap.get();
}

void* Buffer::data() {
  return state ? state->data : nullptr;
}
const void* Buffer::data() const {
  return state ? state->data : nullptr;
}
size_t Buffer::count() const {
  return state ? state->count : 0;
}
size_t Buffer::bytes() const {
  return state ? state->count * elementSize(state->element) : 0;
}
ElementType Buffer::element() const {
  return state ? state->element : ElementType::U8;
}
Direction Buffer::direction() const {
  return state ? state->direction : Direction::InOut;
}
bool Buffer::shared() const {
  return state && state->segment != nullptr;
}

void* Buffer::typedData(ElementType expected) {
  if (state && state->element != expected)
    throw Error(ErrorKind::InvalidRequest, "Buffer::as<T>() with a T that is not the buffer's "
                                           "element type");
  return data();
}

// --- RemoteExecutor ---------------------------------------------------------------------------

struct __attribute__((visibility("hidden"))) RemoteExecutor::State {
  State(std::shared_ptr<Client::Impl> client, detail::ExecutorParts parts)
      : client(std::move(client)), parts(std::move(parts)) {}
  ~State() {
    uint64_t id = parts.id;
    client->post([id](detail::ClientCore& core) { core.remote().releaseExecutor(id); });
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  /// The segment, made on the first buffer(); null before and over TCP.
  std::shared_ptr<detail::SharedSegment> segment() {
    std::lock_guard<std::mutex> lock(mutex);
    return segment_;
  }
  std::shared_ptr<detail::SharedSegment> makeSegment() {
    std::lock_guard<std::mutex> lock(mutex);
    if (segment_ == nullptr) {
      uint64_t size = detail::valueOrThrow(detail::segmentSizeFromEnvironment());
      segment_ = detail::valueOrThrow(detail::SharedSegment::create(size));
    }
    return segment_;
  }

  const std::shared_ptr<Client::Impl> client;
  const detail::ExecutorParts parts;

private:
  std::mutex mutex;
  std::shared_ptr<detail::SharedSegment> segment_;
};

RemoteExecutor::RemoteExecutor() = default;
RemoteExecutor::RemoteExecutor(std::shared_ptr<State> state) : state(std::move(state)) {}
RemoteExecutor::~RemoteExecutor() = default;
RemoteExecutor::RemoteExecutor(RemoteExecutor&&) noexcept = default;
RemoteExecutor& RemoteExecutor::operator=(RemoteExecutor&&) noexcept = default;

namespace {

template <typename T> T& require(const std::shared_ptr<T>& state, const char* what) {
  if (state == nullptr)
    throw Error(ErrorKind::InvalidRequest, std::string("use of an empty ") + what +
                                               " handle (default-constructed or moved "
                                               "from)");
  return *state;
}

}  // namespace

bool RemoteExecutor::sharedMemory() const {
  return state && state->parts.passesFds;
}

const std::string& RemoteExecutor::triple() const {
  static const std::string none;
  return state ? state->parts.triple : none;
}

Buffer RemoteExecutor::buffer(ElementType element, size_t count, Direction direction) {
  State& s = require(state, "RemoteExecutor");
  if (!s.parts.passesFds)
    return Buffer(element, count, direction);
  size_t bytes = checkedBytes(element, count);
  std::shared_ptr<detail::SharedSegment> segment = s.makeSegment();
  void* p = segment->allocate(bytes);
  if (p == nullptr)
    // The segment is full (or the buffer larger than it): copied memory still works.
    return Buffer(element, count, direction);
  auto buffer = std::make_unique<Buffer::State>();
  buffer->element = element;
  buffer->count = count;
  buffer->direction = direction;
  buffer->data = p;
  buffer->segment = std::move(segment);
  return Buffer(std::move(buffer));
}

struct __attribute__((visibility("hidden"))) RemoteModule::State {
  State(std::shared_ptr<RemoteExecutor::State> executor, detail::RemoteLoadedParts parts)
      : executor(std::move(executor)), id(parts.id), object(std::move(parts.object)) {}
  ~State() {
    uint64_t module = id;
    executor->client->post(
        [module](detail::ClientCore& core) { core.remote().releaseModule(module); });
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  const std::shared_ptr<RemoteExecutor::State> executor;
  const uint64_t id;
  const CompiledObject object;
};

RemoteModule RemoteExecutor::load(const CompileRequest& request) {
  State& s = require(state, "RemoteExecutor");
  uint64_t id = s.parts.id;
  detail::RemoteLoadedParts parts = s.client->runSync<detail::RemoteLoadedParts>(
      [id, &request](detail::ClientCore& core) { return core.remote().load(id, request); });
  return RemoteModule(std::make_shared<RemoteModule::State>(state, std::move(parts)));
}

RemoteExecutor Client::executor(std::string target) {
  detail::ExecutorParts parts = impl->runSync<detail::ExecutorParts>(
      [&target](detail::ClientCore& core) { return core.remote().executor(target); });
  return RemoteExecutor(std::make_shared<RemoteExecutor::State>(impl, std::move(parts)));
}

// --- RemoteModule -----------------------------------------------------------------------------

RemoteModule::RemoteModule() = default;
RemoteModule::RemoteModule(std::shared_ptr<State> state) : state(std::move(state)) {}
RemoteModule::~RemoteModule() = default;
RemoteModule::RemoteModule(RemoteModule&&) noexcept = default;
RemoteModule& RemoteModule::operator=(RemoteModule&&) noexcept = default;

const CompiledObject& RemoteModule::object() const {
  static const CompiledObject none;
  return state ? state->object : none;
}

namespace {

CallResult callChecked(RemoteModule::State& state, std::string_view symbol, std::vector<Value> args,
                       bool typed, const RemoteModule::ResultType* result) {
  auto signature = detail::functionSignature(state.object, symbol);
  if (auto* problem = std::get_if<std::string>(&signature))
    throw ExecError(Error(ErrorKind::SignatureMismatch, *problem));
  if (auto problem = detail::checkArguments(symbol, std::get<rjitd::IrSignature>(signature), args,
                                            typed, result))
    throw ExecError(Error(ErrorKind::SignatureMismatch, *problem));
  uint64_t id = state.id;
  std::shared_ptr<detail::SharedSegment> segment = state.executor->segment();
  std::string name(symbol);
  return detail::valueOrThrow(state.executor->client->runResult<CallResult, ExecError>(
      [id, &name, &args, &segment](detail::ClientCore& core) {
        return core.remote().call(id, name, args, segment);
      }));
}

}  // namespace

CallResult RemoteModule::callValues(std::string_view symbol, std::vector<Value> args) {
  return callChecked(require(state, "RemoteModule"), symbol, std::move(args), false, nullptr);
}

Value RemoteModule::callTyped(std::string_view symbol, std::vector<Value> args, ResultType result) {
  return callChecked(require(state, "RemoteModule"), symbol, std::move(args), true, &result).value;
}

RunResult RemoteModule::run(std::vector<std::string> argv, std::vector<std::string> env,
                            std::string stdinBytes) {
  State& s = require(state, "RemoteModule");
  // rjitd checks main's form; a module without one is refused here, before anything is sent.
  auto signature = detail::functionSignature(s.object, "main");
  if (auto* problem = std::get_if<std::string>(&signature))
    throw ExecError(Error(ErrorKind::SignatureMismatch, *problem));
  uint64_t id = s.id;
  return detail::valueOrThrow(s.executor->client->runResult<RunResult, ExecError>(
      [id, &argv, &env, &stdinBytes](detail::ClientCore& core) {
        return core.remote().run(id, std::move(argv), std::move(env), std::move(stdinBytes));
      }));
}

}  // namespace rjit
