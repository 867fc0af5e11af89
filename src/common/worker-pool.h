// SPDX-License-Identifier: MIT
// A fixed set of worker threads for blocking work (LLVM compiles, links and hashing big modules
// in rjitd; hashing big modules in the client library), so a kj event loop never blocks.
// Results come back to the submitting loop thread as kj promises through cross-thread
// fulfillers. Depends on kj and threads only, so the client library can link it.
#pragma once

#include <condition_variable>
#include <deque>
#include <kj/async.h>
#include <kj/function.h>
#include <kj/thread.h>
#include <kj/vector.h>
#include <mutex>
#include <string>

namespace rjitd {

/// Jobs run in the order queued, each on whichever worker is free.
class WorkerPool final {
public:
  /// Starts `threads` (>= 1) workers named NAME/0, NAME/1, ... (cut to Linux's 15 bytes).
  WorkerPool(std::string name, unsigned threads);
  /// Stops the workers after their current job (waiting for it); queued jobs are dropped and
  /// their promises reject (FAILED: kj's "fulfiller destroyed without fulfilling").
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Runs `job` on a worker; the promise resolves on the calling thread's event loop. An
  /// exception thrown by the job rejects the promise. `job` must not touch loop-thread state.
  template <typename T> kj::Promise<T> run(kj::Function<T()> job) {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
    enqueue([job = kj::mv(job), fulfiller = kj::mv(paf.fulfiller)]() mutable {
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { fulfiller->fulfill(job()); })) {
        fulfiller->reject(kj::mv(*e));
      }
    });
    return kj::mv(paf.promise);
  }

  unsigned threads() const { return workers.size(); }
  /// Jobs waiting for a worker (not counting running ones).
  size_t queued() const;

private:
  void enqueue(kj::Function<void()> job);
  void workerLoop();

  const std::string name;
  mutable std::mutex mutex;
  std::condition_variable wake;
  std::deque<kj::Function<void()>> queue;
  bool stopping = false;
  kj::Vector<kj::Own<kj::Thread>> workers;
};

}  // namespace rjitd
