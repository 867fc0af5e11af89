// SPDX-License-Identifier: MIT
// The key-hashing thread (see hash-worker.h).
#include "hash-worker.h"

namespace rjit::detail {

HashWorker::~HashWorker() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
    // Jobs not started are dropped: their promises were dropped before us (the loop's state
    // that asked for them is destroyed first), so nobody waits for them.
    jobs.clear();
  }
  wake.notify_one();
  if (thread.joinable())
    thread.join();
}

void HashWorker::Lease::revoke() {
  revoked.store(true, std::memory_order_release);
  std::unique_lock<std::mutex> lock(mutex);
  done.wait(lock, [this] { return !reading; });
}

kj::Promise<rjitd::cache::Key> HashWorker::computeKey(std::string_view module, KeyParams params) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<rjitd::cache::Key>();
  auto lease = std::make_shared<Lease>();
  {
    std::lock_guard<std::mutex> lock(mutex);
    jobs.push_back(Job{module, std::move(params), lease, kj::mv(paf.fulfiller)});
    if (!thread.joinable())
      thread = std::thread([this] { run(); });
  }
  wake.notify_one();
  // Borrowing, not copying: a copy of a large module would cost the client its size in memory.
  return kj::mv(paf.promise).attach(kj::defer([lease]() { lease->revoke(); }));
}

void HashWorker::run() {
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex);
      wake.wait(lock, [this] { return stopping || !jobs.empty(); });
      if (stopping)
        return;
      job = std::move(jobs.front());
      jobs.pop_front();
    }
    Lease& lease = *job.lease;
    {
      // A job whose promise is gone (deadline passed) is skipped rather than hashed.
      std::lock_guard<std::mutex> lock(lease.mutex);
      if (lease.revoked.load(std::memory_order_acquire))
        continue;
      lease.reading = true;
    }
    std::optional<rjitd::cache::Key> key = rjitd::cache::computeKey(
        {job.module, job.params.triple, job.params.cpu, job.params.features, job.params.optLevel,
         job.params.compilerIdentity},
        lease.revoked);
    {
      std::lock_guard<std::mutex> lock(lease.mutex);
      lease.reading = false;
    }
    lease.done.notify_all();
    if (key)
      job.fulfiller->fulfill(kj::mv(*key));
  }
}

}  // namespace rjit::detail
