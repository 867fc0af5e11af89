// SPDX-License-Identifier: MIT
// Worker threads for blocking work (see worker-pool.h).
#include "worker-pool.h"

#include <kj/debug.h>
#include <pthread.h>

namespace rjitd {

WorkerPool::WorkerPool(std::string name, unsigned threads) : name(std::move(name)) {
  KJ_REQUIRE(threads >= 1, "a worker pool needs at least one thread", this->name);
  for (unsigned i = 0; i < threads; ++i) {
    workers.add(kj::heap<kj::Thread>([this, i]() {
      // Thread names show in `top -H` and core dumps; Linux limits them to 15 bytes.
      std::string label = (this->name + "/" + std::to_string(i)).substr(0, 15);
      pthread_setname_np(pthread_self(), label.c_str());
      workerLoop();
    }));
  }
}

WorkerPool::~WorkerPool() {
  std::deque<kj::Function<void()>> dropped;
  {
    std::lock_guard lock(mutex);
    stopping = true;
    dropped.swap(queue);
  }
  wake.notify_all();
  // Dropping a job destroys its fulfiller unfulfilled, which rejects the promise.
  dropped.clear();
  workers.clear();  // kj::Thread joins in its destructor
}

size_t WorkerPool::queued() const {
  std::lock_guard lock(mutex);
  return queue.size();
}

void WorkerPool::enqueue(kj::Function<void()> job) {
  {
    std::lock_guard lock(mutex);
    KJ_REQUIRE(!stopping, "worker pool is shutting down", name);
    queue.push_back(kj::mv(job));
  }
  wake.notify_one();
}

void WorkerPool::workerLoop() {
  while (true) {
    kj::Function<void()> job;
    {
      std::unique_lock lock(mutex);
      wake.wait(lock, [this]() { return stopping || !queue.empty(); });
      if (stopping)
        return;
      job = kj::mv(queue.front());
      queue.pop_front();
    }
    job();
  }
}

}  // namespace rjitd
