// SPDX-License-Identifier: MIT
// Admission control in front of a worker pool: bounded queues per target ("lane") with
// round-robin fairness across clients, `overloaded` answers with a retry-after hint when a queue
// is full, and waiters that go away (a cancelled call) leave the queue. Lives on the event-loop
// thread; knows no LLVM, so it is unit-tested on its own.
#pragma once

#include "outcome.h"
#include "worker-pool.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <kj/async.h>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rjitd::service {

/// Why a fair scheduler in front of WorkerPool rather than a smarter WorkerPool: the pool's
/// FIFO lives on worker threads behind a mutex and holds opaque jobs; fairness, bounds and
/// cancellation need to know clients and targets, and to drop a waiter when its promise is
/// dropped, which is event-loop work. The pool stays a plain FIFO (the hash pool and the client
/// library use it as is); an Admission hands out at most `workers` slots, so the pool's own queue
/// stays empty of admitted work.
class Admission final {
public:
  struct Config {
    /// "compile" or "link": the metrics label and the noun of the overloaded message.
    std::string kind;
    /// Slots: work running at once (the pool's threads).
    unsigned workers = 1;
    /// Work waiting for a slot, per lane (rjitd --max-queued).
    uint32_t maxQueued = 64;
    /// The mean time a slot is held before any was measured (the retry hint's basis).
    std::chrono::milliseconds initialMean{1000};
  };
  /// Told the depth of a lane's queue whenever it changes (metrics: rjitd_queued).
  using DepthObserver = std::function<void(const std::string& lane, size_t depth)>;

  /// Told when a queued waiter's promise was dropped (its caller went away).
  using CancelObserver = std::function<void()>;

  /// `lanes` are the targets' short names; a lane not listed is added on first use.
  Admission(Config config, std::vector<std::string> lanes, DepthObserver observer = nullptr,
            CancelObserver onCancelled = nullptr);
  /// Answers nobody: waiters still queued see their promises rejected when they are dropped.
  ~Admission() noexcept(false);
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  /// A slot: the right to run one piece of work on a worker. Destroying it gives the slot to
  /// the next waiter and records how long it was held.
  using Slot = kj::Own<void>;
  using Admitted = Outcome<Slot>;

  /// The Overloaded failure `client` would get from admit() on `lane` now, or nullopt when it
  /// would be queued (or run at once). A full lane still takes a request from a client holding
  /// fewer of its places than the client holding the most: that client's newest waiter is
  /// answered overloaded instead (so a client with many requests cannot crowd out one with few).
  std::optional<Failure> refusal(std::string_view lane, uint64_t client) const;

  /// Waits for a slot on `lane` for `client` (a connection): resolves at once when a slot is
  /// free and nobody waits; otherwise queues, and waiters are served round-robin across clients
  /// (and across lanes). Resolves to an Overloaded failure when refused (see refusal()), when
  /// later pushed out by a fairer claim, or to `abandonQueued`'s answer. Dropping the promise
  /// before it resolves leaves the queue.
  kj::Promise<Admitted> admit(std::string_view lane, uint64_t client);

  /// Runs `job` on `pool` holding `slot` until the job has ended on its thread, even when the
  /// returned promise is dropped first (a cancelled call): a worker thread busy with abandoned
  /// work is still busy. `job` must own everything it touches (item 7 of issue 12).
  template <typename T>
  kj::Promise<T> runHolding(WorkerPool& pool, Slot slot, kj::Function<T()> job) {
    auto paf = kj::newPromiseAndFulfiller<T>();
    auto& fulfiller = *paf.fulfiller;
    detached.add(pool.run<T>(kj::mv(job))
                     .then([&fulfiller](T&& value) { fulfiller.fulfill(kj::mv(value)); },
                           [&fulfiller](kj::Exception&& e) { fulfiller.reject(kj::mv(e)); })
                     .attach(kj::mv(paf.fulfiller), kj::mv(slot)));
    return kj::mv(paf.promise);
  }

  /// Answers every waiter with `answer` (drain: shuttingDown) and returns how many there were.
  /// The admission is closed from then on: every later admit() is answered `answer` at once,
  /// so nothing queues (or starts) behind the drain.
  size_t abandonQueued(const Failure& answer);

  /// Waiters on `lane` (0 for an unknown lane), and over all lanes.
  size_t queued(std::string_view lane) const;
  size_t queued() const;
  /// Slots held now.
  unsigned running() const { return busy; }
  /// The retry hint for a request refused on `lane` now: the work ahead of it (queued + one)
  /// times the mean slot hold, shared by the workers, clamped to [MIN_RETRY, MAX_RETRY].
  uint32_t retryAfterMillis(std::string_view lane) const;

  static constexpr uint32_t MIN_RETRY_MILLIS = 50;
  static constexpr uint32_t MAX_RETRY_MILLIS = 30000;

private:
  class Waiter;
  struct Lane {
    std::string name;
    /// Clients with waiters, in round-robin order; each with its waiters, oldest first.
    std::deque<std::pair<uint64_t, std::deque<Waiter*>>> clients;
    size_t size = 0;
  };

  Lane& laneNamed(std::string_view name);
  const Lane* findLane(std::string_view name) const;
  Failure overloaded(const Lane& lane) const;
  void enqueue(Lane& lane, uint64_t client, Waiter& waiter);
  void unlink(Waiter& waiter);
  /// A waiter's promise was dropped while it was queued.
  void cancelled(Waiter& waiter);
  Slot grant();
  void released(std::chrono::steady_clock::duration held);
  /// Hands free slots to waiters, round-robin across lanes and, within a lane, across clients.
  void dispatch();
  void depthChanged(const Lane& lane);

  const Config cfg;
  DepthObserver observer;
  CancelObserver onCancelled;
  std::deque<Lane> lanes;  // a deque: Lane references stay valid as lanes are added
  size_t nextLane = 0;
  unsigned busy = 0;
  std::optional<Failure> closed;  ///< set by abandonQueued(): the answer to every later admit
  double meanMillis;
  class DetachedErrors final : public kj::TaskSet::ErrorHandler {
  public:
    void taskFailed(kj::Exception&& exception) override;
  } detachedErrors;
  kj::TaskSet detached{detachedErrors};  // work whose slot outlives its caller (runHolding)
};

/// Bytes of request bodies rjitd holds after receiving them (the module copy of a compile or
/// load, from the request until its hash, queue wait and compile are over), over all
/// connections (rjitd --max-held-request-bytes). Unlike InflightBudget (bytes of messages being
/// received, which waits), a request that does not fit is refused at once, answered overloaded:
/// a request that waited would hold its module anyway. A module larger than the whole budget is
/// let through when nothing else is held, so that --max-module-bytes alone decides whether it
/// can ever be served. Charged on the event loop; a charge may be released on any thread (the
/// last owner of a module copy may be a worker's job), so the count is atomic and the charges
/// keep the count alive.
class HeldBytes final {
public:
  /// Told every change (+bytes charged, -bytes released), on the thread that made it.
  using Observer = std::function<void(int64_t delta)>;
  /// `observer` outlives every charge.
  explicit HeldBytes(uint64_t limit, Observer observer = nullptr);
  HeldBytes(const HeldBytes&) = delete;
  HeldBytes& operator=(const HeldBytes&) = delete;

  /// The right to hold `bytes`: destroying the last copy returns them. Copies share one charge
  /// (a CompileJob is copyable), so the bytes stay charged while any copy lives.
  using Charge = std::shared_ptr<const void>;

  /// Charges `bytes` when they fit (or nothing else is held), else returns null.
  Charge charge(uint64_t bytes);
  uint64_t held() const { return state->used.load(std::memory_order_relaxed); }
  uint64_t limit() const { return state->limit; }

private:
  struct State {
    State(uint64_t limit, Observer observer) : limit(limit), observer(std::move(observer)) {}
    uint64_t limit;
    Observer observer;
    std::atomic<uint64_t> used{0};
  };
  std::shared_ptr<State> state;
};

}  // namespace rjitd::service
