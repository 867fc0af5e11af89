// SPDX-License-Identifier: MIT
// The executor's Control server (see control.h).
#include "control.h"

#include "call.h"
#include "compiled-object.h"
#include "fatal-signal.h"
#include "ir-signature.h"
#include "program-main.h"
#include "value.h"
#include "wire-enums.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <kj/debug.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <type_traits>
#include <unistd.h>

extern char** environ;

namespace rjitd::executor {

namespace {

namespace marshal = rjitd::marshal;
using rjit::Error;
using rjit::detail::LoadedParts;

void setError(proto::Error::Builder out, ErrorKind kind, const std::string& message) {
  out.setKind(toWireKind(kind));
  out.setMessage(message);
}

void setError(proto::Error::Builder out, const rjit::Error& error) {
  // The public kinds are the shared ones by number (wire-enums.h).
  setError(out, static_cast<ErrorKind>(error.kind()), error.what());
}

std::string errnoText(int error) {
  return std::system_category().message(error);
}

std::string text(capnp::Text::Reader t) {
  return std::string(t.cStr(), t.size());
}

/// A copied buffer argument: malloc'd memory the callee gets a pointer to.
struct CopiedBuffer {
  void* data = nullptr;
  uint64_t bytes = 0;
  bool sendBack = false;  ///< out or inOut: its contents go back in the answer
  CopiedBuffer() = default;
  CopiedBuffer(const CopiedBuffer&) = delete;
  CopiedBuffer& operator=(const CopiedBuffer&) = delete;
  CopiedBuffer(CopiedBuffer&& other) noexcept
      : data(other.data), bytes(other.bytes), sendBack(other.sendBack) {
    other.data = nullptr;
  }
  ~CopiedBuffer() { std::free(data); }
};

/// Why an argument cannot be passed: the message names the symbol and the argument.
struct ArgumentError {
  ErrorKind kind = ErrorKind::SignatureMismatch;
  std::string message;
};

/// Converts one wire argument; buffers become pointers to memory in this process (copies kept
/// in `copies`, or the shared segment).
std::variant<marshal::Value, ArgumentError> toArgument(proto::Value::Reader value,
                                                       std::vector<CopiedBuffer>& copies,
                                                       const SegmentMapping* segment) {
  switch (value.which()) {
  case proto::Value::SIGNED: return marshal::Value::signedInt(value.getSigned());
  case proto::Value::UNSIGNED: return marshal::Value::unsignedInt(value.getUnsigned());
  case proto::Value::FLOAT32: return marshal::Value::floatNumber(value.getFloat32());
  case proto::Value::FLOAT64: return marshal::Value::doubleNumber(value.getFloat64());
  case proto::Value::STRING: return marshal::Value::string(text(value.getString()));
  case proto::Value::NULL_: return marshal::Value::pointer(0);
  case proto::Value::BUFFER: break;
  case proto::Value::VOID:
  case proto::Value::POINTER:
  default: return ArgumentError{ErrorKind::SignatureMismatch, "a void or pointer value"};
  }
  proto::Buffer::Reader buffer = value.getBuffer();
  uint64_t size = elementBytes(buffer.getElement());
  uint64_t bytes = 0;
  if (size == 0 || __builtin_mul_overflow(buffer.getCount(), size, &bytes))
    return ArgumentError{ErrorKind::SignatureMismatch, "a buffer of an unknown element type or "
                                                       "too many elements"};
  bool out = buffer.getDirection() != proto::Buffer::Direction::IN;
  if (buffer.isSegmentOffset()) {
    uint64_t offset = buffer.getSegmentOffset();
    if (segment == nullptr)
      return ArgumentError{ErrorKind::InvalidRequest,
                           "a shared-segment buffer, but no segment is attached"};
    if (offset > segment->size() || bytes > segment->size() - offset)
      return ArgumentError{ErrorKind::InvalidRequest,
                           "a shared-segment buffer of " + std::to_string(bytes) +
                               " bytes at offset " + std::to_string(offset) +
                               " outside the segment's " + std::to_string(segment->size())};
    return marshal::Value::pointer(reinterpret_cast<uint64_t>(segment->base() + offset));
  }
  capnp::Data::Reader contents = buffer.getBytes();
  bool onlyOut = buffer.getDirection() == proto::Buffer::Direction::OUT;
  if (onlyOut ? contents.size() != 0 : contents.size() != bytes)
    return ArgumentError{ErrorKind::SignatureMismatch,
                         "a buffer of " + std::to_string(buffer.getCount()) + " elements with " +
                             std::to_string(contents.size()) + " bytes of contents"};
  CopiedBuffer copy;
  // calloc: an out buffer starts zeroed; at least one byte, so that even an empty buffer is a
  // valid, distinct pointer.
  copy.data = std::calloc(bytes == 0 ? 1 : bytes, 1);
  if (copy.data == nullptr)
    return ArgumentError{ErrorKind::OutOfMemory,
                         "cannot allocate a buffer of " + std::to_string(bytes) + " bytes"};
  if (!onlyOut && bytes != 0)
    std::memcpy(copy.data, contents.begin(), bytes);
  copy.bytes = bytes;
  copy.sendBack = out;
  uint64_t address = reinterpret_cast<uint64_t>(copy.data);
  copies.push_back(std::move(copy));
  return marshal::Value::pointer(address);
}

void setValue(proto::Value::Builder out, const marshal::Value& value) {
  switch (value.kind) {
  case marshal::Value::Kind::Void: out.setVoid(); return;
  case marshal::Value::Kind::Signed: out.setSigned(value.signedValue); return;
  case marshal::Value::Kind::Unsigned: out.setUnsigned(value.unsignedValue); return;
  case marshal::Value::Kind::Float: out.setFloat32(value.floatValue); return;
  case marshal::Value::Kind::Double: out.setFloat64(value.doubleValue); return;
  case marshal::Value::Kind::Pointer: out.setPointer(value.unsignedValue); return;
  case marshal::Value::Kind::String: out.setString(value.text); return;  // not a result today
  }
}

/// The IR signature the compiler recorded for `name` among `object`'s definitions, or "".
std::string definedSignature(const rjit::CompiledObject& object, const std::string& name) {
  for (const rjit::Symbol& symbol : object.defines)
    if (symbol.name == name && symbol.kind == rjit::Symbol::Kind::Function)
      return symbol.signature;
  return {};
}

/// Runs user code (a call, a main, constructors, destructors) with the page's phase UserCode.
/// noexcept: an exception the code lets escape must not unwind into kj, which would answer it
/// as an RPC failure and keep serving from a process in an unknown state; std::terminate ends
/// the process instead, and its handler records a std::bad_alloc as memory exhaustion
/// (fatal-signal.h).
template <typename Body> auto inUserCode(StatusPage& page, Body&& body) noexcept {
  setPhase(page, StatusPage::UserCode);
  if constexpr (std::is_void_v<decltype(body())>) {
    body();
    setPhase(page, StatusPage::Idle);
  } else {
    auto result = body();
    setPhase(page, StatusPage::Idle);
    return result;
  }
}

/// Flushes what the code wrote: rjitd reads the stdio memfds once the call answers.
void flushOutput() {
  std::fflush(stdout);
  std::fflush(stderr);
}

}  // namespace

SegmentMapping::~SegmentMapping() {
  ::munmap(base_, size_);
}

ControlServer::ControlServer(StatusPage& page, rjit::detail::RpcLoader& loader,
                             rjit::detail::ProcessLoader& processLoader)
    : page(page), loader(loader), processLoader(processLoader) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  connected = kj::mv(paf.fulfiller);
  handshake = paf.promise.fork();
}

void ControlServer::setConnection(rjit::detail::Connection& connection) {
  KJ_REQUIRE(this->connection == nullptr, "ControlServer::setConnection called twice");
  this->connection = &connection;
  connected->fulfill();
}

ControlServer::~ControlServer() {
  unloadAll();
}

ControlServer::LoadedModule& ControlServer::module(uint64_t id) {
  auto it = modules.find(id);
  KJ_REQUIRE(it != modules.end(), "rjitd named a module this executor does not hold", id);
  return it->second;
}

void ControlServer::unloadAll() {
  for (auto& [id, loaded] : modules) {
    inUserCode(page, [&] { loaded.state.reset(); });  // destructors
    loader.release(loaded.imageId);
  }
  modules.clear();
}

kj::Promise<void> ControlServer::load(LoadContext context) {
  return handshake.addBranch().then([this, context]() mutable { return loadNow(context); });
}

kj::Promise<void> ControlServer::loadNow(LoadContext context) {
  auto params = context.getParams();
  auto outcome = context.getResults().initOutcome();
  capnp::Data::Reader keyBytes = params.getKey();
  rjitd::cache::Key key;
  if (keyBytes.size() != key.size()) {
    setError(outcome.initError(), ErrorKind::InvalidRequest,
             "a cache key of " + std::to_string(keyBytes.size()) + " bytes, not " +
                 std::to_string(key.size()));
    return kj::READY_NOW;
  }
  std::memcpy(key.data(), keyBytes.begin(), key.size());
  // What the load refers to until it settles (LoadCall holds references).
  struct Job {
    rjit::CompileRequest request;
    rjit::detail::LoadCall call;
    explicit Job(const rjit::detail::ModuleRegistry& modules)
        : call{request, std::make_shared<const rjit::LoadOptions>(), modules} {}
  };
  auto job = kj::heap<Job>(processLoader.modules());
  proto::TargetSpec::Reader target = params.getTarget();
  job->request.target = text(target.getTriple());
  job->request.cpu = text(target.getCpu());
  job->request.features = text(target.getFeatures());
  job->request.optLevel = params.getOptLevel();
  job->request.moduleName = text(params.getModuleName());
  Job& j = *job;
  return loader.loadByKeyOn(*connection, j.call, key)
      .then([this, context, &j](rjit::detail::Result<LoadedParts>&& loaded) mutable {
        auto outcome = context.getResults().getOutcome();
        if (Error* error = rjit::detail::failed(loaded)) {
          setError(outcome.initError(), *error);
          return;
        }
        LoadedParts& parts = std::get<LoadedParts>(loaded);
        uint64_t imageId = parts.imageId;
        auto mapped = inUserCode(page, [&] {  // the module's constructors
          return processLoader.map(std::move(parts), j.request);
        });
        if (Error* error = rjit::detail::failed(mapped)) {
          loader.release(imageId);
          setError(outcome.initError(), *error);
          return;
        }
        uint64_t id = nextId++;
        modules.emplace(
            id, LoadedModule{std::get<std::shared_ptr<rjit::Module::State>>(std::move(mapped)),
                             imageId});
        outcome.setId(id);
      })
      .attach(kj::mv(job));
}

kj::Promise<void> ControlServer::unload(UnloadContext context) {
  auto it = modules.find(context.getParams().getId());
  if (it == modules.end())
    return kj::READY_NOW;  // already gone: unloading twice is harmless
  uint64_t imageId = it->second.imageId;
  inUserCode(page, [&] { modules.erase(it); });  // destructors
  loader.release(imageId);
  return kj::READY_NOW;
}

kj::Promise<void> ControlServer::call(CallContext context) {
  auto params = context.getParams();
  auto outcome = context.getResults().initOutcome();
  LoadedModule& loaded = module(params.getId());
  std::string symbol = text(params.getSymbol());
  std::string signatureText = text(params.getSignature());
  auto found = loaded.state->symbols.find(symbol);
  if (found == loaded.state->symbols.end()) {
    setError(outcome.initError(), ErrorKind::SignatureMismatch,
             symbol + " is not a function the module defines");
    return kj::READY_NOW;
  }
  auto parsed = parseIrSignature(signatureText);
  if (auto* error = std::get_if<IrSignatureError>(&parsed)) {
    setError(outcome.initError(), ErrorKind::SignatureMismatch,
             symbol + " has an unreadable signature: " + error->describe());
    return kj::READY_NOW;
  }
  const IrSignature& signature = std::get<IrSignature>(parsed);

  auto wire = params.getArguments();
  std::vector<CopiedBuffer> copies;
  std::vector<marshal::Value> arguments;
  arguments.reserve(wire.size());
  for (size_t i = 0; i < wire.size(); ++i) {
    auto argument = toArgument(wire[i], copies, segment.get());
    if (auto* error = std::get_if<ArgumentError>(&argument)) {
      setError(outcome.initError(), error->kind,
               symbol + "(" + signatureText + "): argument " + std::to_string(i + 1) + " is " +
                   error->message);
      return kj::READY_NOW;
    }
    arguments.push_back(std::get<marshal::Value>(std::move(argument)));
  }

  auto result = inUserCode(page, [&] {
    return marshal::callBySignature(reinterpret_cast<void*>(found->second), symbol, signature,
                                    arguments);
  });
  flushOutput();
  if (auto* error = std::get_if<marshal::CallError>(&result)) {
    setError(outcome.initError(), ErrorKind::SignatureMismatch, error->message);
    return kj::READY_NOW;
  }
  auto ok = outcome.initOk();
  setValue(ok.initValue(), std::get<marshal::Value>(result));
  size_t back = 0;
  for (const CopiedBuffer& copy : copies)
    back += copy.sendBack ? 1 : 0;
  auto buffers = ok.initBuffers(back);
  size_t i = 0;
  for (const CopiedBuffer& copy : copies)
    if (copy.sendBack)
      buffers.set(i++, capnp::Data::Reader(static_cast<const kj::byte*>(copy.data), copy.bytes));
  return kj::READY_NOW;
}

kj::Promise<void> ControlServer::run(RunContext context) {
  auto params = context.getParams();
  LoadedModule& loaded = module(params.getId());
  auto found = loaded.state->symbols.find("main");
  std::string signature = definedSignature(loaded.state->object, "main");
  // rjitd checked main before asking; a failure here is its bug, answered as an exception.
  KJ_REQUIRE(found != loaded.state->symbols.end() && !signature.empty(),
             "Control.run of a module that defines no function main");
  auto form = rjitd::cli::mainParameterCount(signature);
  KJ_REQUIRE(std::holds_alternative<size_t>(form), "Control.run of an unusable main", signature);

  // The environment the program sees: exactly `env` (rjitd starts executors with none).
  ::clearenv();
  environment.clear();
  auto env = params.getEnv();
  environment.reserve(env.size());  // putenv keeps pointers: no reallocation after this
  for (auto entry : env)
    environment.push_back(text(entry));
  for (std::string& entry : environment)
    if (entry.find('=') != std::string::npos)
      ::putenv(entry.data());
  // Writable, NUL-terminated copies, as the kernel hands them to a native program.
  std::vector<std::vector<char>> storage;
  for (auto a : params.getArgv()) {
    storage.emplace_back(a.begin(), a.end());
    storage.back().push_back('\0');
  }
  std::vector<char*> argv;
  for (auto& s : storage)
    argv.push_back(s.data());
  argv.push_back(nullptr);
  // rjitd wrote stdin into fd 0's file; start reading it from the beginning.
  ::lseek(STDIN_FILENO, 0, SEEK_SET);

  // clearenv() leaves environ NULL when `env` is empty; a native envp is never NULL.
  static char* noEnvironment[] = {nullptr};
  char** envp = environ != nullptr ? environ : noEnvironment;
  int status = inUserCode(page, [&] {
    return rjitd::cli::callMain(reinterpret_cast<void*>(found->second), std::get<size_t>(form),
                                static_cast<int>(storage.size()), argv.data(), envp);
  });
  // As a native main's return: the modules' atexit handlers and destructors, stdio flushed,
  // then the exit status, which rjitd reads from waitpid. _exit rather than exit: the
  // executor's own static objects (its RPC state) are not torn down under a live call.
  unloadAll();
  setPhase(page, StatusPage::UserCode);
  std::fflush(nullptr);
  ::_exit(status & 0xff);
}

kj::Promise<void> ControlServer::attachSegment(AttachSegmentContext context) {
  auto params = context.getParams();
  uint64_t size = params.getSize();
  auto capability = params.getSegment();
  // The fd travels with the capability once it has resolved (it may arrive as a promise).
  return capability.whenResolved()
      .then([capability]() mutable { return capability.getFd(); })
      .then([this, context, size, capability](kj::Maybe<int> maybeFd) mutable {
        auto answer = [&](const std::string& error) { context.getResults().setError(error); };
        if (segment != nullptr)
          return answer("a shared segment is already attached to this executor");
        int fd = -1;
        KJ_IF_MAYBE (f, maybeFd) {
          fd = *f;
        } else {
          return answer("the shared segment came without a file descriptor");
        }
        struct stat st;
        if (::fstat(fd, &st) < 0)
          return answer("cannot inspect the shared segment: " + errnoText(errno));
        if (!S_ISREG(st.st_mode) || size == 0 || static_cast<uint64_t>(st.st_size) < size)
          return answer("the shared segment is not a file of at least " + std::to_string(size) +
                        " bytes");
        void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED)
          return answer("cannot map the shared segment (" + std::to_string(size) +
                        " bytes): " + errnoText(errno));
        // The mapping keeps the file; the capability (and its descriptor) may go.
        segment = std::make_unique<SegmentMapping>(base, size);
        answer("");
      });
}

}  // namespace rjitd::executor
