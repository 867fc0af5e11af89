// SPDX-License-Identifier: MIT
// An accepted client stream that follows the Cap'n Proto framing of the bytes it receives, so
// that rjitd knows when a message is in progress: a started message must arrive whole within
// --read-timeout (an idle connection between messages may wait for ever), and the bytes of
// messages being received are charged to a budget shared by all connections
// (--max-inflight-bytes) before Cap'n Proto allocates them.
#pragma once

#include <cstdint>
#include <deque>
#include <kj/async-io.h>
#include <kj/function.h>
#include <kj/io.h>
#include <kj/timer.h>

namespace rjitd::service {

/// Bytes of request messages being received, over all connections. A message's size is known
/// from its segment table; the reader waits (backpressure: nothing more is read from that peer)
/// until the bytes fit. A message larger than the whole budget is let through when nothing
/// else is in flight, so that it cannot wait for ever. Waiters that fit go first (first fit),
/// so that one large message does not hold up small ones.
class InflightBudget final {
public:
  explicit InflightBudget(uint64_t limit) : limit(limit) {}
  InflightBudget(const InflightBudget&) = delete;
  InflightBudget& operator=(const InflightBudget&) = delete;

  /// Adds `bytes` to `*held` (and to what is in use) once they fit. `*held` must stay valid
  /// until the promise resolves or forget(held) is called.
  kj::Promise<void> acquire(uint64_t bytes, uint64_t* held);
  /// Returns `*held` bytes to the budget and sets `*held` to 0; drops any wait for `held`.
  void forget(uint64_t* held);
  uint64_t inUse() const { return used; }

private:
  struct Waiter {
    uint64_t bytes;
    uint64_t* held;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };
  bool fits(uint64_t bytes) const;
  void grant();

  uint64_t limit;
  uint64_t used = 0;
  std::deque<Waiter> waiters;
};

/// The accepted stream with the framing follower in front of its reads; writes and socket
/// options pass straight through. `capability` is the same object as `inner` seen as a
/// capability stream (Unix sockets, whose reads TwoPartyVatNetwork makes with fds), or nullptr
/// (TCP).
class FramedStream final : public kj::AsyncCapabilityStream {
public:
  /// `onReadTimeout` runs when a started message overruns `readTimeout`, before the read fails
  /// (the RPC system may shut the stream down before it is destroyed: count here, not later).
  FramedStream(kj::Own<kj::AsyncIoStream> inner, kj::AsyncCapabilityStream* capability,
               kj::Timer& timer, kj::Duration readTimeout, InflightBudget& budget,
               kj::Maybe<kj::Function<void()>> onReadTimeout = nullptr);
  ~FramedStream() noexcept(false);

  /// True once a read failed because a started message overran --read-timeout.
  bool timedOut() const { return timedOut_; }
  /// True while a message has started and not arrived whole.
  bool inMessage() const { return phase != Phase::Idle; }

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<ReadResult> tryReadWithFds(void* buffer, size_t minBytes, size_t maxBytes,
                                         kj::AutoCloseFd* fdBuffer, size_t maxFds) override;
  kj::Promise<ReadResult> tryReadWithStreams(void* buffer, size_t minBytes, size_t maxBytes,
                                             kj::Own<kj::AsyncCapabilityStream>* streamBuffer,
                                             size_t maxStreams) override;

  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  kj::Promise<void> writeWithFds(kj::ArrayPtr<const kj::byte> data,
                                 kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> moreData,
                                 kj::ArrayPtr<const int> fds) override;
  kj::Promise<void>
  writeWithStreams(kj::ArrayPtr<const kj::byte> data,
                   kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> moreData,
                   kj::Array<kj::Own<kj::AsyncCapabilityStream>> streams) override;
  void shutdownWrite() override;
  void abortRead() override;
  void getsockopt(int level, int option, void* value, kj::uint* length) override;
  void setsockopt(int level, int option, const void* value, kj::uint length) override;
  void getsockname(struct sockaddr* addr, kj::uint* length) override;
  void getpeername(struct sockaddr* addr, kj::uint* length) override;
  kj::Maybe<int> getFd() const override;

private:
  enum class Phase : uint8_t { Idle, FirstWord, SegmentTable, Body };

  /// Reads at least `minBytes` (fewer only at end of stream), one inner read at a time, so that
  /// the first byte of a message starts its deadline and every later read races it.
  kj::Promise<ReadResult> readLoop(kj::byte* buffer, size_t minBytes, size_t maxBytes,
                                   kj::AutoCloseFd* fds, size_t maxFds, ReadResult done);
  /// Follows the framing through `bytes` just received.
  void consume(const kj::byte* bytes, size_t size);
  /// The segment table is complete: the message's size is known.
  void tableDone();
  void messageDone();

  kj::Own<kj::AsyncIoStream> inner;
  kj::AsyncCapabilityStream* capability;
  kj::Timer& timer;
  kj::Duration readTimeout;
  InflightBudget& budget;
  kj::Maybe<kj::Function<void()>> onReadTimeout;

  Phase phase = Phase::Idle;
  kj::TimePoint deadline = kj::origin<kj::TimePoint>();
  kj::byte word[8] = {};  // the first word, or one segment size, as it arrives
  size_t wordFill = 0;
  uint64_t tableLeft = 0;  // bytes of the segment table still to come (sizes and padding)
  uint64_t sizesLeft = 0;  // segment sizes among them
  uint64_t bodyWords = 0;  // sum of the segment sizes known so far
  uint64_t bodyLeft = 0;   // bytes of segment bodies still to come
  uint64_t toAcquire = 0;  // a message's size, known, not yet charged to the budget
  uint64_t held = 0;       // charged to the budget for the message in progress
  bool timedOut_ = false;
};

}  // namespace rjitd::service
