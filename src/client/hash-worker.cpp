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

kj::Promise<rjitd::cache::Key> HashWorker::computeKey(std::shared_ptr<const std::string> module,
                                                      KeyParams params) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<rjitd::cache::Key>();
  {
    std::lock_guard<std::mutex> lock(mutex);
    jobs.push_back(Job{std::move(module), std::move(params), kj::mv(paf.fulfiller)});
    if (!thread.joinable())
      thread = std::thread([this] { run(); });
  }
  wake.notify_one();
  return kj::mv(paf.promise);
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
    // A job whose promise is gone (deadline passed) is skipped rather than hashed.
    if (!job.fulfiller->isWaiting())
      continue;
    rjitd::cache::Key key = rjitd::cache::computeKey(
        {*job.module, job.params.triple, job.params.cpu, job.params.features, job.params.optLevel,
         job.params.compilerIdentity});
    job.fulfiller->fulfill(kj::mv(key));
  }
}

}  // namespace rjit::detail
