// SPDX-License-Identifier: MIT
// The public Client: a private I/O thread running a kj event loop owns the connection (in a
// ClientCore); public methods hand their work to that loop through its kj::Executor and wait
// for, or are promised, the result.
#include "remotejit/client.h"

#include "client-config.h"
#include "client-core.h"
#include "client-impl.h"
#include "process-loader.h"
#include "result.h"
#include "wire-convert.h"

#include <csignal>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <pthread.h>
#include <thread>

namespace rjit {

const char* errorKindName(ErrorKind kind) {
  return rjitd::errorKindName(detail::toSharedKind(kind));
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
    processLoader.channel().open(*executor, state.loader());
    reported = true;
    started.set_value();  // `started` is gone after this: the constructor returns
    stopped.promise.wait(io.waitScope);
    core = nullptr;
  });
  // The loader it lent the channel is gone with the loop (a release in between finds the
  // executor dead and does nothing).
  processLoader.channel().close();
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
  // Modules unloaded from now on need not tell rjitd: the connection ends.
  processLoader.channel().close();
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

Client::Client(ClientOptions options)
    : impl(std::make_shared<Impl>(detail::valueOrThrow(detail::resolveConfig(options)))) {}

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
  const detail::ModuleRegistry& modules = impl->processLoader.modules();
  detail::LoadedParts parts =
      impl->runSync<detail::LoadedParts>([&request, &shared, &modules](detail::ClientCore& core) {
        return core.load(request, shared, modules);
      });
  // Mapped and started on this thread: constructors are user code, and must not run on the I/O
  // thread (they may call back into this client).
  return Module(detail::valueOrThrow(impl->processLoader.map(std::move(parts), request)));
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
