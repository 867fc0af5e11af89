// SPDX-License-Identifier: MIT
// Bounded, fair admission in front of a worker pool (see admission.h).
#include "admission.h"

#include "log.h"

#include <algorithm>
#include <kj/debug.h>

namespace rjitd::service {

/// One queued request: the adapter of the promise admit() returns. Its destructor (the promise
/// dropped: the call was cancelled) takes it out of the queue.
class Admission::Waiter final {
public:
  Waiter(kj::PromiseFulfiller<Admitted>& fulfiller, Admission& owner, Lane& lane, uint64_t client)
      : fulfiller(fulfiller), owner(&owner), lane(&lane) {
    owner.enqueue(lane, client, *this);
  }
  ~Waiter() {
    if (owner != nullptr)
      owner->cancelled(*this);
  }
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  /// Answers the waiter; the caller has taken it out of the queue already.
  void answer(Admitted&& outcome) {
    owner = nullptr;
    fulfiller.fulfill(kj::mv(outcome));
  }
  /// The admission goes away first (it never does in rjitd, where the service that owns it
  /// outlives every request): reject rather than leave the promise hanging.
  void orphan() {
    owner = nullptr;
    fulfiller.reject(KJ_EXCEPTION(DISCONNECTED, "rjitd's admission queue was destroyed"));
  }
  Lane& queue() const { return *lane; }

private:
  kj::PromiseFulfiller<Admitted>& fulfiller;
  Admission* owner;  ///< null once answered (then it is in no queue)
  Lane* lane;
};

void Admission::DetachedErrors::taskFailed(kj::Exception&& exception) {
  // runHolding() hands every outcome to its fulfiller, so nothing should reach here; logged
  // rather than swallowed in case it does.
  log::error("internal: admitted work failed after its caller left: ",
             exception.getDescription().cStr());
}

Admission::Admission(Config config, std::vector<std::string> names, DepthObserver observer,
                     CancelObserver onCancelled)
    : cfg(std::move(config)), observer(std::move(observer)), onCancelled(std::move(onCancelled)),
      meanMillis(static_cast<double>(cfg.initialMean.count())) {
  KJ_REQUIRE(cfg.workers >= 1, "admission needs at least one worker", cfg.kind);
  for (auto& name : names)
    lanes.push_back(Lane{std::move(name), {}, 0});
}

Admission::~Admission() noexcept(false) {
  for (Lane& lane : lanes) {
    for (auto& [client, waiters] : lane.clients)
      for (Waiter* waiter : waiters)
        waiter->orphan();
    lane.clients.clear();
    lane.size = 0;
  }
  // `detached` goes next (the last member is destroyed first); its slots' release finds no
  // waiter to hand a slot to.
}

Admission::Lane& Admission::laneNamed(std::string_view name) {
  for (Lane& lane : lanes)
    if (lane.name == name)
      return lane;
  lanes.push_back(Lane{std::string(name), {}, 0});
  return lanes.back();
}

const Admission::Lane* Admission::findLane(std::string_view name) const {
  for (const Lane& lane : lanes)
    if (lane.name == name)
      return &lane;
  return nullptr;
}

size_t Admission::queued(std::string_view name) const {
  const Lane* lane = findLane(name);
  return lane != nullptr ? lane->size : 0;
}

size_t Admission::queued() const {
  size_t n = 0;
  for (const Lane& lane : lanes)
    n += lane.size;
  return n;
}

uint32_t Admission::retryAfterMillis(std::string_view name) const {
  double ahead = static_cast<double>(queued(name) + 1);
  double estimate = ahead * meanMillis / static_cast<double>(cfg.workers);
  return static_cast<uint32_t>(std::clamp(estimate, static_cast<double>(MIN_RETRY_MILLIS),
                                          static_cast<double>(MAX_RETRY_MILLIS)));
}

Failure Admission::overloaded(const Lane& lane) const {
  uint32_t retry = retryAfterMillis(lane.name);
  return Failure{ErrorKind::Overloaded,
                 "rjitd has " + std::to_string(lane.size) + " " + cfg.kind +
                     " requests waiting for a worker for " + lane.name +
                     ", its limit (rjitd --max-queued " + std::to_string(cfg.maxQueued) +
                     "); retry in about " + std::to_string(retry) + " ms",
                 {},
                 0,
                 0,
                 retry};
}

std::optional<Failure> Admission::refusal(std::string_view name, uint64_t client) const {
  const Lane* lane = findLane(name);
  if (lane == nullptr || lane->size < cfg.maxQueued)
    return std::nullopt;
  size_t mine = 0, most = 0;
  for (const auto& [id, waiters] : lane->clients) {
    if (id == client)
      mine = waiters.size();
    most = std::max(most, waiters.size());
  }
  // A fairer claim: this client holds fewer places than the greediest one, which gives one up.
  if (mine + 1 < most)
    return std::nullopt;
  return overloaded(*lane);
}

kj::Promise<Admission::Admitted> Admission::admit(std::string_view name, uint64_t client) {
  Lane& lane = laneNamed(name);
  if (closed)
    return Admitted(Failure(*closed));
  if (busy < cfg.workers && queued() == 0)
    return Admitted(grant());
  if (auto refused = refusal(name, client))
    return Admitted(kj::mv(*refused));
  if (lane.size >= cfg.maxQueued) {
    // refusal() let a fairer claim in: the client with the most waiters loses its newest.
    auto greediest = std::max_element(
        lane.clients.begin(), lane.clients.end(),
        [](const auto& a, const auto& b) { return a.second.size() < b.second.size(); });
    Waiter* pushedOut = greediest->second.back();
    unlink(*pushedOut);
    pushedOut->answer(overloaded(lane));
  }
  return kj::newAdaptedPromise<Admitted, Waiter>(*this, lane, client);
}

void Admission::enqueue(Lane& lane, uint64_t client, Waiter& waiter) {
  auto it = std::find_if(lane.clients.begin(), lane.clients.end(),
                         [client](const auto& entry) { return entry.first == client; });
  if (it == lane.clients.end())
    lane.clients.emplace_back(client, std::deque<Waiter*>{&waiter});
  else
    it->second.push_back(&waiter);
  ++lane.size;
  depthChanged(lane);
}

void Admission::unlink(Waiter& waiter) {
  Lane& lane = waiter.queue();
  for (auto it = lane.clients.begin(); it != lane.clients.end(); ++it) {
    auto& waiters = it->second;
    auto found = std::find(waiters.begin(), waiters.end(), &waiter);
    if (found == waiters.end())
      continue;
    waiters.erase(found);
    if (waiters.empty())
      lane.clients.erase(it);
    --lane.size;
    depthChanged(lane);
    return;
  }
}

void Admission::cancelled(Waiter& waiter) {
  unlink(waiter);
  if (onCancelled)
    onCancelled();
}

Admission::Slot Admission::grant() {
  ++busy;
  auto start = std::chrono::steady_clock::now();
  return kj::heap(
      kj::defer([this, start]() { released(std::chrono::steady_clock::now() - start); }));
}

void Admission::released(std::chrono::steady_clock::duration held) {
  KJ_ASSERT(busy > 0);
  --busy;
  // An exponential moving average: recent work decides the hint, one outlier does not.
  double millis = std::chrono::duration<double, std::milli>(held).count();
  meanMillis = 0.8 * meanMillis + 0.2 * millis;
  dispatch();
}

void Admission::dispatch() {
  while (busy < cfg.workers && queued() > 0) {
    // The next lane with waiters, after the one served last.
    Lane* lane = nullptr;
    for (size_t i = 0; i < lanes.size() && lane == nullptr; ++i) {
      Lane& candidate = lanes[(nextLane + i) % lanes.size()];
      if (candidate.size > 0) {
        lane = &candidate;
        nextLane = (nextLane + i + 1) % lanes.size();
      }
    }
    KJ_ASSERT(lane != nullptr, "queued() counted a waiter no lane holds");
    // The client at the front gives its oldest waiter and goes to the back of the round.
    auto entry = kj::mv(lane->clients.front());
    lane->clients.pop_front();
    Waiter* waiter = entry.second.front();
    entry.second.pop_front();
    if (!entry.second.empty())
      lane->clients.push_back(kj::mv(entry));
    --lane->size;
    depthChanged(*lane);
    waiter->answer(grant());
  }
}

size_t Admission::abandonQueued(const Failure& answer) {
  closed = answer;
  size_t count = 0;
  for (Lane& lane : lanes) {
    auto clients = kj::mv(lane.clients);
    lane.clients.clear();
    lane.size = 0;
    depthChanged(lane);
    for (auto& [client, waiters] : clients)
      for (Waiter* waiter : waiters) {
        waiter->answer(Failure(answer));
        ++count;
      }
  }
  return count;
}

void Admission::depthChanged(const Lane& lane) {
  if (observer)
    observer(lane.name, lane.size);
}

HeldBytes::HeldBytes(uint64_t limit, Observer observer)
    : state(std::make_shared<State>(limit, std::move(observer))) {}

HeldBytes::Charge HeldBytes::charge(uint64_t bytes) {
  uint64_t used = state->used.load(std::memory_order_relaxed);
  do {
    // A module larger than the whole budget passes when nothing else is held (see the class).
    if (used != 0 && (bytes > state->limit || used > state->limit - bytes))
      return nullptr;
  } while (!state->used.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  if (state->observer)
    state->observer(static_cast<int64_t>(bytes));
  // Points at the state (a non-null charge) and deletes nothing; the deleter holds the state: a
  // charge released on a worker thread after the HeldBytes (and its service) went away still finds
  // its count.
  return Charge(static_cast<const void*>(state.get()), [s = state, bytes](const void*) {
    s->used.fetch_sub(bytes, std::memory_order_relaxed);
    if (s->observer)
      s->observer(-static_cast<int64_t>(bytes));
  });
}

}  // namespace rjitd::service
