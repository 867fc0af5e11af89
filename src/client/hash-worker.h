// SPDX-License-Identifier: MIT
// Computes cache keys of large modules on a worker thread (rjitd's WorkerPool, one thread), so
// that hashing megabytes never stalls the client's I/O loop (and the other calls it carries).
// What this adds to the pool is the lease: the worker reads the caller's bytes in place.
#pragma once

#include "cache-key.h"

#include "worker-pool.h"

#include <atomic>
#include <condition_variable>
#include <kj/async.h>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace rjit::detail {

/// What a key covers besides the module bytes (owned copies of rjitd::cache::KeyInputs).
struct KeyParams {
  std::string triple;
  std::string cpu;
  std::string features;
  unsigned optLevel = 0;
  std::string compilerIdentity;
};

/// One worker thread, started on first use (a client that never hashes starts none) and joined
/// by the destructor. Used from one kj event loop thread.
class HashWorker final {
public:
  HashWorker() = default;
  ~HashWorker() = default;
  HashWorker(const HashWorker&) = delete;
  HashWorker& operator=(const HashWorker&) = delete;

  /// The key of `module` with `params`. The worker reads the caller's bytes in place: they
  /// must stay alive until the promise is fulfilled or dropped, and dropping it (a deadline,
  /// a shutdown) waits until the worker has stopped reading them (at most one 256 KiB piece).
  kj::Promise<rjitd::cache::Key> computeKey(std::string_view module, KeyParams params);

private:
  /// The worker's hold on a job's bytes; revoke() takes them back. It runs on the I/O thread
  /// (when the promise is dropped) and blocks it until the worker has finished the piece it is
  /// hashing: 256 KiB, about 0.1–0.4 ms, longer only if the worker thread is preempted. That
  /// is the price of not copying the module (a copy costs the client its size in memory).
  /// kj offers no way to cancel a cross-thread job short of waiting for it.
  struct Lease {
    std::atomic<bool> revoked{false};
    std::mutex mutex;
    std::condition_variable done;
    bool reading = false;  // guarded by mutex
    void revoke();
  };

  std::optional<rjitd::WorkerPool> pool;  // started by the first computeKey()
};

}  // namespace rjit::detail
