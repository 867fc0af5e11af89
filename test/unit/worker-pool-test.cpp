// SPDX-License-Identifier: MIT
// WorkerPool: results and failures come back to the submitting event loop; a pool destroyed
// with jobs still queued rejects their promises instead of leaving them pending.
#include "worker-pool.h"

#include <gtest/gtest.h>
#include <kj/async.h>
#include <kj/debug.h>

#include <future>
#include <memory>
#include <thread>

namespace rjitd {
namespace {

TEST(WorkerPool, ResultsArriveOnTheCallingLoop) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  WorkerPool pool("test-pool", 2);
  EXPECT_EQ(pool.threads(), 2u);
  std::thread::id loopThread = std::this_thread::get_id();
  auto a = pool.run<std::thread::id>([]() { return std::this_thread::get_id(); });
  auto b = pool.run<int>([]() { return 42; });
  EXPECT_NE(a.wait(waitScope), loopThread);  // the job ran on a worker
  EXPECT_EQ(b.wait(waitScope), 42);
}

TEST(WorkerPool, AJobsExceptionRejectsItsPromise) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  WorkerPool pool("test-pool", 1);
  auto failing = pool.run<int>([]() -> int { KJ_FAIL_REQUIRE("bad input for the job"); });
  auto failure = kj::runCatchingExceptions([&]() { failing.wait(waitScope); });
  KJ_IF_MAYBE (e, failure) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::FAILED);
  } else {
    ADD_FAILURE() << "the job's exception did not reject its promise";
  }
  // The worker survives a failed job.
  EXPECT_EQ(pool.run<int>([]() { return 7; }).wait(waitScope), 7);
}

TEST(WorkerPool, DestructionRejectsQueuedJobs) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  auto pool = std::make_unique<WorkerPool>("test-pool", 1);
  std::promise<void> started, release;
  std::shared_future<void> released = release.get_future().share();
  // The only worker is busy until `release`, so the second job stays queued.
  auto busy = pool->run<int>([&started, released]() {
    started.set_value();
    released.wait();
    return 1;
  });
  started.get_future().wait();
  auto queued = pool->run<int>([]() { return 2; });
  EXPECT_EQ(pool->queued(), 1u);

  // The destructor drops the queued job first, then joins the busy worker. The rejection is
  // kj's for a cross-thread fulfiller destroyed unfulfilled: FAILED.
  std::thread destroyer([&pool]() { pool.reset(); });
  auto failure = kj::runCatchingExceptions([&]() { queued.wait(waitScope); });
  release.set_value();
  destroyer.join();
  KJ_IF_MAYBE (e, failure) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::FAILED) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "a job dropped by the destructor was fulfilled";
  }
  EXPECT_EQ(busy.wait(waitScope), 1);  // the running job finished
}

}  // namespace
}  // namespace rjitd
