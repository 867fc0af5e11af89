// SPDX-License-Identifier: MIT
// Computes cache keys of large modules on a thread of their own, so that hashing megabytes
// never stalls the client's I/O loop (and the other calls it carries).
#pragma once

#include "cache-key.h"

#include <condition_variable>
#include <deque>
#include <kj/async.h>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace rjit::detail {

/// What a key covers besides the module bytes (owned copies of rjitd::cache::KeyInputs).
struct KeyParams {
  std::string triple;
  std::string cpu;
  std::string features;
  unsigned optLevel = 0;
  std::string compilerIdentity;
};

/// One worker thread, started on first use and joined by the destructor. Used from one kj
/// event loop thread.
class HashWorker final {
public:
  HashWorker() = default;
  ~HashWorker();
  HashWorker(const HashWorker&) = delete;
  HashWorker& operator=(const HashWorker&) = delete;

  /// The key of `module` with `params`. The job co-owns the bytes, so dropping the promise
  /// (a deadline, a shutdown) never leaves the worker reading freed memory.
  kj::Promise<rjitd::cache::Key> computeKey(std::shared_ptr<const std::string> module,
                                            KeyParams params);

private:
  struct Job {
    std::shared_ptr<const std::string> module;
    KeyParams params;
    kj::Own<kj::CrossThreadPromiseFulfiller<rjitd::cache::Key>> fulfiller;
  };

  void run();

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Job> jobs;   // guarded by mutex
  bool stopping = false;  // guarded by mutex
  std::thread thread;     // started by the first computeKey()
};

}  // namespace rjit::detail
