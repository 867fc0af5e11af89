// SPDX-License-Identifier: MIT
// The public Client: a private I/O thread running a kj event loop owns the connection (in a
// ClientCore); public methods hand their work to that loop through its kj::Executor and wait
// for, or are promised, the result.
#include "remotejit/client.h"

#include "config.h"
#include "convert.h"
#include "core.h"

#include <csignal>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <map>
#include <mutex>
#include <pthread.h>
#include <thread>

namespace rjit {

const char* errorKindName(ErrorKind kind) {
  switch (kind) {
  case ErrorKind::Internal: return "internal";
  case ErrorKind::InvalidModule: return "invalid-module";
  case ErrorKind::UnknownTarget: return "unknown-target";
  case ErrorKind::TargetMismatch: return "target-mismatch";
  case ErrorKind::TooLarge: return "too-large";
  case ErrorKind::InvalidRequest: return "invalid-request";
  case ErrorKind::NotFound: return "not-found";
  case ErrorKind::ShuttingDown: return "shutting-down";
  case ErrorKind::ProtocolMismatch: return "protocol-mismatch";
  case ErrorKind::Overloaded: return "overloaded";
  case ErrorKind::Connection: return "connection";
  case ErrorKind::Timeout: return "timeout";
  case ErrorKind::Configuration: return "configuration";
  case ErrorKind::LinkFailed: return "link-failed";
  case ErrorKind::Load: return "load";
  }
  return "unknown";
}

Error::Error(ErrorKind kind, const std::string& message, std::vector<Diagnostic> diagnostics)
    : std::runtime_error(message), kind_(kind), diagnostics_(std::move(diagnostics)) {}

namespace {

/// kj::setupAsyncIo() sets SIGPIPE to SIG_IGN for the whole process, which is no business of a
/// library's. Instead, SIGPIPE stays blocked on the I/O thread (a write to a closed socket
/// there fails with EPIPE and the signal stays pending on this thread, never delivered) and
/// the host program's own disposition is put back.
kj::AsyncIoContext setupAsyncIoKeepingSigpipe() {
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  KJ_ASSERT(pthread_sigmask(SIG_BLOCK, &pipe, nullptr) == 0);
  struct sigaction previous;
  KJ_SYSCALL(sigaction(SIGPIPE, nullptr, &previous));
  kj::AsyncIoContext io = kj::setupAsyncIo();
  KJ_SYSCALL(sigaction(SIGPIPE, &previous, nullptr));
  return io;
}

}  // namespace

namespace detail {

/// How a Module, which may outlive its Client, tells the I/O thread that its image is gone.
/// Closed (under the mutex) before the I/O thread stops.
struct ReleaseChannel {
  std::mutex mutex;
  bool open = false;
  const kj::Executor* executor = nullptr;
  ClientCore* core = nullptr;

  void release(uint64_t id) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!open)
      return;
    // Best effort: if the I/O thread cannot take it, the connection's end frees it in rjitd.
    kj::runCatchingExceptions([&] { executor->executeSync([&] { core->releaseImage(id); }); });
  }
  void close() {
    std::lock_guard<std::mutex> lock(mutex);
    open = false;
  }
};

}  // namespace detail

// Hidden although nested in an exported class: nothing of it is public API.
struct __attribute__((visibility("hidden"))) Module::State {
  std::unique_ptr<detail::MappedImage> image;
  std::map<std::string, uint64_t, std::less<>> symbols;
  CompiledObject object;
  uint64_t linkMicros = 0;
  std::shared_ptr<detail::ReleaseChannel> channel;
  uint64_t imageId = 0;
  std::shared_ptr<detail::ModuleRegistry> registry;  // set once registered in it
  /// Modules this one links against: they stay loaded as long as this one is (their handles
  /// may be gone), and are unloaded after it.
  std::vector<std::shared_ptr<void>> dependencies;

  ~State() {
    if (registry)
      registry->remove(image->base());
    image.reset();  // destructors, unmap
    if (channel)
      channel->release(imageId);
    dependencies.clear();
  }
};

Module::Module() = default;
Module::Module(std::shared_ptr<State> state) : state(std::move(state)) {}
Module::~Module() = default;
Module::Module(Module&&) noexcept = default;
Module& Module::operator=(Module&&) noexcept = default;

void* Module::address(std::string_view name) const {
  if (!state)
    return nullptr;
  auto it = state->symbols.find(name);
  return it == state->symbols.end() ? nullptr : reinterpret_cast<void*>(it->second);
}

void* Module::require(std::string_view name) const {
  if (!state)
    throw Error(ErrorKind::InvalidRequest, "lookup of '" + std::string(name) +
                                               "' in an empty module handle (not loaded, moved "
                                               "from or unloaded)");
  void* p = address(name);
  if (p == nullptr)
    throw Error(ErrorKind::NotFound, "module " + state->object.key.substr(0, 12) +
                                         " defines no global symbol '" + std::string(name) + "'");
  return p;
}

std::vector<std::string> Module::symbols() const {
  std::vector<std::string> out;
  if (state)
    for (const auto& entry : state->symbols)
      out.push_back(entry.first);
  return out;
}

const CompiledObject& Module::object() const {
  static const CompiledObject none;
  return state ? state->object : none;
}

uint64_t Module::base() const {
  return state ? state->image->base() : 0;
}
uint64_t Module::size() const {
  return state ? state->image->size() : 0;
}
uint64_t Module::linkMicros() const {
  return state ? state->linkMicros : 0;
}

void Module::unload() {
  state.reset();
}

// Hidden although nested in an exported class: nothing of it is public API.
struct __attribute__((visibility("hidden"))) Client::Impl {
  explicit Impl(detail::Config config);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  /// Runs `work(core)` on the I/O thread and waits for its result; throws its Error.
  template <typename T, typename Work> T runSync(Work&& work);

  void loop(std::promise<void>& started);

  const detail::Config config;
  std::thread thread;
  // Set by the I/O thread before it reports that it started; used only on that thread except
  // `executor`, which any thread may use.
  kj::Own<const kj::Executor> executor;
  detail::ClientCore* core = nullptr;
  kj::PromiseFulfiller<void>* stop = nullptr;
  std::shared_ptr<detail::ReleaseChannel> channel = std::make_shared<detail::ReleaseChannel>();
  std::shared_ptr<detail::ModuleRegistry> modules = std::make_shared<detail::ModuleRegistry>();
};

Client::Impl::Impl(detail::Config config) : config(std::move(config)) {
  std::promise<void> started;
  std::future<void> ready = started.get_future();
  thread = std::thread([this, &started] { loop(started); });
  try {
    ready.get();
  } catch (...) {
    // The loop could not start (it reported why); the thread is finishing already.
    thread.join();
    throw;
  }
}

void Client::Impl::loop(std::promise<void>& started) {
  bool reported = false;
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&] {
    kj::AsyncIoContext io = setupAsyncIoKeepingSigpipe();
    detail::ClientCore state(io, config);
    auto stopped = kj::newPromiseAndFulfiller<void>();
    core = &state;
    stop = stopped.fulfiller.get();
    executor = kj::getCurrentThreadExecutor().addRef();
    {
      std::lock_guard<std::mutex> lock(channel->mutex);
      channel->executor = executor.get();
      channel->core = &state;
      channel->open = true;
    }
    reported = true;
    started.set_value();  // `started` is gone after this: the constructor returns
    stopped.promise.wait(io.waitScope);
    core = nullptr;
  });
  KJ_IF_MAYBE (exception, failure) {
    if (!reported)
      started.set_exception(std::make_exception_ptr(
          Error(ErrorKind::Internal,
                "cannot start the client's I/O thread: " + detail::describe(*exception))));
    // Otherwise the loop died after starting: `executor` is no longer live, and every later
    // call reports that (runSync) instead of hanging.
  }
}

Client::Impl::~Impl() {
  channel->close();  // modules unloaded from now on need not tell rjitd: the connection ends
  if (executor->isLive()) {
    // Failing here means the loop ended on its own already; there is nothing left to stop.
    kj::runCatchingExceptions([this] {
      executor->executeSync([this] {
        core->shutdown();
        stop->fulfill();
      });
    });
  }
  thread.join();
}

template <typename T, typename Work> T Client::Impl::runSync(Work&& work) {
  detail::Result<T> result = Error(ErrorKind::Internal, "no result");
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                 result = executor->executeSync([&] { return work(*core); });
               })) {
    // The I/O thread is gone (it failed), or the work failed to start: a fault of ours.
    result = Error(ErrorKind::Internal,
                   "libremotejit-client's I/O thread failed: " + detail::describe(*exception));
  }
  if (auto* error = std::get_if<Error>(&result))
    throw std::move(*error);
  return std::get<T>(std::move(result));
}

Client::Client(ClientOptions options)
    : impl(std::make_unique<Impl>(detail::resolveConfig(options))) {}

Client::~Client() = default;

ServerInfo Client::serverInfo() {
  return impl->runSync<ServerInfo>([](detail::ClientCore& core) { return core.serverInfo(); });
}

ServerStats Client::stats() {
  return impl->runSync<ServerStats>([](detail::ClientCore& core) { return core.stats(); });
}

CompiledObject Client::compile(const CompileRequest& request) {
  // `request` outlives the call: this thread waits until the I/O thread is done with it.
  return impl->runSync<CompiledObject>(
      [&request](detail::ClientCore& core) { return core.compile(request); });
}

Module Client::load(const CompileRequest& request, const LoadOptions& options) {
  auto shared = std::make_shared<const LoadOptions>(options);
  detail::LoadedParts parts =
      impl->runSync<detail::LoadedParts>([&request, &shared, this](detail::ClientCore& core) {
        return core.load(request, shared, impl->modules);
      });
  auto state = std::make_shared<Module::State>();
  state->channel = impl->channel;
  state->imageId = parts.imageId;
  for (uint64_t base : parts.dependencies) {
    std::shared_ptr<void> owner = impl->modules->owner(base);
    if (owner == nullptr) {
      state->channel->release(parts.imageId);
      throw Error(ErrorKind::Load, "a module that " +
                                       (request.moduleName.empty() ? std::string("this module")
                                                                   : request.moduleName) +
                                       " links against was unloaded while it was being loaded; "
                                       "load it again");
    }
    state->dependencies.push_back(std::move(owner));
  }
  state->object = std::move(parts.object);
  state->linkMicros = parts.linkMicros;
  for (auto& [name, address] : parts.symbols)
    state->symbols.emplace(std::move(name), address);
  // Mapped and started on the caller's thread: constructors are user code, and must not run
  // on the I/O thread (they may call back into this client).
  state->image =
      std::make_unique<detail::MappedImage>(parts.arena, parts.fd.get(), std::move(parts.spec));
  parts.fd = nullptr;  // the mappings keep the file; the descriptor is no longer needed
  state->image->start();
  impl->modules->add(
      {state->image->base(), state->image->size(), &state->symbols, std::weak_ptr<void>(state)});
  state->registry = impl->modules;
  return Module(std::move(state));
}

std::future<CompiledObject> Client::compileAsync(CompileRequest request) {
  std::promise<CompiledObject> promise;
  std::future<CompiledObject> future = promise.get_future();
  auto shared = std::make_shared<const CompileRequest>(std::move(request));
  bool posted = false;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                 impl->executor->executeSync([&] {
                   posted = true;
                   impl->core->compileAsync(std::move(shared), std::move(promise));
                 });
               })) {
    if (!posted)
      promise.set_exception(std::make_exception_ptr(
          Error(ErrorKind::Internal,
                "libremotejit-client's I/O thread failed: " + detail::describe(*exception))));
  }
  return future;
}

}  // namespace rjit
