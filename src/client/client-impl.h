// SPDX-License-Identifier: MIT
// The public Client's private part, shared with the remote-execute handles
// (remote-executor.cpp): the I/O thread, its kj event loop and the ClientCore living on it, and
// how public methods run work there and wait for it.
#pragma once

#include "client-config.h"
#include "client-core.h"
#include "process-loader.h"
#include "remotejit/client.h"
#include "result.h"
#include "wire-convert.h"

#include <future>
#include <kj/async-io.h>
#include <thread>

namespace rjit {

namespace detail {

/// The value of `result`, or its error thrown: the public API's one way to fail.
template <typename T, typename E> T valueOrThrow(std::variant<T, E>&& result) {
  if (E* error = std::get_if<E>(&result))
    throw std::move(*error);
  return std::get<T>(std::move(result));
}

}  // namespace detail

// Hidden although nested in an exported class: nothing of it is public API.
struct __attribute__((visibility("hidden"))) Client::Impl {
  explicit Impl(detail::Config config);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  /// Runs `work(core)` on the I/O thread and waits for its result; throws its Error.
  template <typename T, typename Work> T runSync(Work&& work) {
    return detail::valueOrThrow(runResult<T, Error>(std::forward<Work>(work)));
  }

  /// Same, giving the result (a value or an E, Error or ExecError) instead of throwing.
  template <typename T, typename E, typename Work> std::variant<T, E> runResult(Work&& work);

  /// Runs `work(core)` on the I/O thread if it still runs (a handle's release); never throws.
  template <typename Work> void post(Work&& work) noexcept {
    kj::runCatchingExceptions([&] {
      if (executor->isLive())
        executor->executeSync([&] {
          if (core != nullptr)
            work(*core);
        });
    });
  }

  void loop(std::promise<void>& started);

  const detail::Config config;
  std::thread thread;
  // Set by the I/O thread before it reports that it started; used only on that thread except
  // `executor`, which any thread may use.
  kj::Own<const kj::Executor> executor;
  detail::ClientCore* core = nullptr;
  kj::PromiseFulfiller<void>* stop = nullptr;
  /// Maps loaded modules on callers' threads; its registry outlives the I/O thread (joined in
  /// the destructor's body), which lends it to the resolvers it runs.
  detail::ProcessLoader processLoader;
};

template <typename T, typename E, typename Work>
std::variant<T, E> Client::Impl::runResult(Work&& work) {
  std::variant<T, E> result = E(Error(ErrorKind::Internal, "no result"));
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                 result = executor->executeSync([&] { return work(*core); });
               })) {
    // The I/O thread is gone (it failed), or the work failed to start: a fault of ours.
    result = E(Error(ErrorKind::Internal,
                     "libremotejit-client's I/O thread failed: " + detail::describe(*exception)));
  }
  return result;
}

}  // namespace rjit
