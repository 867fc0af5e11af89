// SPDX-License-Identifier: MIT
// The key-hashing thread (see hash-worker.h).
#include "hash-worker.h"

#include <kj/debug.h>

namespace rjit::detail {

void HashWorker::Lease::revoke() {
  revoked.store(true, std::memory_order_release);
  std::unique_lock<std::mutex> lock(mutex);
  done.wait(lock, [this] { return !reading; });
}

kj::Promise<rjitd::cache::Key> HashWorker::computeKey(std::string_view module, KeyParams params) {
  if (!pool)
    pool.emplace("rjit-hash", 1);
  auto lease = std::make_shared<Lease>();
  // Borrowing, not copying: a copy of a large module would cost the client its size in memory.
  kj::Function<std::optional<rjitd::cache::Key>()> job =
      [module, params = std::move(params), lease]() -> std::optional<rjitd::cache::Key> {
    {
      // A job whose promise is gone (deadline passed) is skipped rather than hashed.
      std::lock_guard<std::mutex> lock(lease->mutex);
      if (lease->revoked.load(std::memory_order_acquire))
        return std::nullopt;
      lease->reading = true;
    }
    std::optional<rjitd::cache::Key> key =
        rjitd::cache::computeKey({module, params.triple, params.cpu, params.features,
                                  params.optLevel, params.compilerIdentity},
                                 lease->revoked);
    {
      std::lock_guard<std::mutex> lock(lease->mutex);
      lease->reading = false;
    }
    lease->done.notify_all();
    return key;
  };
  return pool->run(kj::mv(job))
      .then([](std::optional<rjitd::cache::Key> key) {
        // Only revoke() stops a hash early, and it runs when this promise is dropped.
        KJ_ASSERT(key.has_value(), "a key hash stopped while its promise was still wanted");
        return *key;
      })
      .attach(kj::defer([lease]() { lease->revoke(); }));
}

}  // namespace rjit::detail
