// SPDX-License-Identifier: MIT
// The framing follower and the in-flight byte budget (see framed-stream.h).
#include "framed-stream.h"

#include <algorithm>
#include <cstring>
#include <kj/debug.h>

namespace rjitd::service {

namespace {

uint32_t littleEndian32(const kj::byte* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

// --- InflightBudget -------------------------------------------------------------------------

bool InflightBudget::fits(uint64_t bytes) const {
  return used == 0 || (bytes <= limit && used <= limit - bytes);
}

kj::Promise<void> InflightBudget::acquire(uint64_t bytes, uint64_t* held) {
  if (fits(bytes)) {
    used += bytes;
    *held += bytes;
    return kj::READY_NOW;
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiters.push_back(Waiter{bytes, held, kj::mv(paf.fulfiller)});
  return kj::mv(paf.promise);
}

void InflightBudget::forget(uint64_t* held) {
  std::erase_if(waiters, [held](const Waiter& w) { return w.held == held; });
  used -= std::min(used, *held);
  *held = 0;
  grant();
}

void InflightBudget::grant() {
  for (auto it = waiters.begin(); it != waiters.end();) {
    if (!it->fulfiller->isWaiting()) {
      it = waiters.erase(it);  // its reader went away without forget(): nothing was charged
    } else if (fits(it->bytes)) {
      used += it->bytes;
      *it->held += it->bytes;
      it->fulfiller->fulfill();
      it = waiters.erase(it);
    } else {
      ++it;
    }
  }
}

// --- FramedStream ---------------------------------------------------------------------------

FramedStream::FramedStream(kj::Own<kj::AsyncIoStream> inner, kj::AsyncCapabilityStream* capability,
                           kj::Timer& timer, kj::Duration readTimeout, InflightBudget& budget,
                           kj::Maybe<kj::Function<void()>> onReadTimeout)
    : inner(kj::mv(inner)), capability(capability), timer(timer), readTimeout(readTimeout),
      budget(budget), onReadTimeout(kj::mv(onReadTimeout)) {}

FramedStream::~FramedStream() noexcept(false) {
  budget.forget(&held);
}

kj::Promise<size_t> FramedStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  return readLoop(static_cast<kj::byte*>(buffer), minBytes, maxBytes, nullptr, 0, {0, 0})
      .then([](ReadResult r) { return r.byteCount; });
}

kj::Promise<FramedStream::ReadResult> FramedStream::tryReadWithFds(void* buffer, size_t minBytes,
                                                                   size_t maxBytes,
                                                                   kj::AutoCloseFd* fdBuffer,
                                                                   size_t maxFds) {
  KJ_REQUIRE(capability != nullptr, "fd passing on a TCP connection");
  return readLoop(static_cast<kj::byte*>(buffer), minBytes, maxBytes, fdBuffer, maxFds, {0, 0});
}

kj::Promise<FramedStream::ReadResult>
FramedStream::tryReadWithStreams(void* buffer, size_t minBytes, size_t maxBytes,
                                 kj::Own<kj::AsyncCapabilityStream>* streamBuffer,
                                 size_t maxStreams) {
  // rjitd never receives streams (TwoPartyVatNetwork reads with fds); refused rather than
  // passed through unframed.
  (void)buffer, (void)minBytes, (void)maxBytes, (void)streamBuffer, (void)maxStreams;
  return KJ_EXCEPTION(UNIMPLEMENTED, "rjitd does not receive streams");
}

kj::Promise<FramedStream::ReadResult> FramedStream::readLoop(kj::byte* buffer, size_t minBytes,
                                                             size_t maxBytes, kj::AutoCloseFd* fds,
                                                             size_t maxFds, ReadResult done) {
  if (toAcquire > 0) {
    // The segment table just told the message's size: charge it before Cap'n Proto allocates
    // the message (it does once this read returns). Waiting here reads nothing more from this
    // peer; its deadline starts again once the bytes are granted.
    uint64_t bytes = toAcquire;
    toAcquire = 0;
    return budget.acquire(bytes, &held)
        .then([this, buffer, minBytes, maxBytes, fds, maxFds, done]() {
          deadline = timer.now() + readTimeout;
          return readLoop(buffer, minBytes, maxBytes, fds, maxFds, done);
        });
  }
  if (done.byteCount >= minBytes)
    return done;
  kj::Promise<ReadResult> read = nullptr;
  if (fds != nullptr)
    read = capability->tryReadWithFds(buffer + done.byteCount, 1, maxBytes - done.byteCount,
                                      fds + done.capCount, maxFds - done.capCount);
  else
    read = inner->tryRead(buffer + done.byteCount, 1, maxBytes - done.byteCount).then([](size_t n) {
      return ReadResult{n, 0};
    });
  if (phase != Phase::Idle)
    read = read.exclusiveJoin(timer.atTime(deadline).then([this]() -> kj::Promise<ReadResult> {
      timedOut_ = true;
      KJ_IF_MAYBE (callback, onReadTimeout) {
        (*callback)();
      }
      return KJ_EXCEPTION(DISCONNECTED,
                          "a message from this client did not arrive whole within "
                          "--read-timeout; closing the connection",
                          readTimeout / kj::MILLISECONDS);
    }));
  return read.then([this, buffer, minBytes, maxBytes, fds, maxFds,
                    done](ReadResult got) mutable -> kj::Promise<ReadResult> {
    if (got.byteCount == 0)
      return done;  // end of stream
    if (phase == Phase::Idle)
      deadline = timer.now() + readTimeout;  // a message starts with this byte
    consume(buffer + done.byteCount, got.byteCount);
    done.byteCount += got.byteCount;
    done.capCount += got.capCount;
    return readLoop(buffer, minBytes, maxBytes, fds, maxFds, done);
  });
}

void FramedStream::consume(const kj::byte* bytes, size_t size) {
  // Cap'n Proto's stream framing: a word with (segment count - 1) and the first segment's size
  // in words, the other segments' sizes (4 bytes each), padding to a word, then the segments.
  while (size > 0) {
    switch (phase) {
    case Phase::Idle:
      phase = Phase::FirstWord;
      wordFill = 0;
      [[fallthrough]];
    case Phase::FirstWord: {
      size_t take = std::min(size, sizeof(word) - wordFill);
      std::memcpy(word + wordFill, bytes, take);
      wordFill += take;
      bytes += take;
      size -= take;
      if (wordFill < sizeof(word))
        return;
      uint64_t segments = uint64_t{littleEndian32(word)} + 1;
      bodyWords = littleEndian32(word + 4);
      sizesLeft = segments - 1;
      tableLeft = sizesLeft * 4 + (segments % 2 == 0 ? 4 : 0);
      wordFill = 0;
      phase = Phase::SegmentTable;
      if (tableLeft == 0)
        tableDone();  // one segment: its size was in the first word
      break;
    }
    case Phase::SegmentTable:
      while (size > 0 && tableLeft > 0) {
        if (sizesLeft > 0) {
          word[wordFill++] = *bytes;
          if (wordFill == 4) {
            bodyWords += littleEndian32(word);
            wordFill = 0;
            --sizesLeft;
          }
        }
        ++bytes;
        --size;
        --tableLeft;
      }
      if (tableLeft > 0)
        return;
      tableDone();
      break;
    case Phase::Body: {
      uint64_t take = std::min<uint64_t>(size, bodyLeft);
      bodyLeft -= take;
      bytes += take;
      size -= take;
      if (bodyLeft == 0)
        messageDone();
      break;
    }
    }
  }
}

void FramedStream::tableDone() {
  bodyLeft = bodyWords * 8;
  toAcquire = bodyLeft;
  phase = Phase::Body;
  if (bodyLeft == 0)
    messageDone();
}

void FramedStream::messageDone() {
  phase = Phase::Idle;
  toAcquire = 0;
  budget.forget(&held);
}

kj::Promise<void> FramedStream::write(const void* buffer, size_t size) {
  return inner->write(buffer, size);
}

kj::Promise<void> FramedStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  return inner->write(pieces);
}

kj::Promise<void> FramedStream::whenWriteDisconnected() {
  return inner->whenWriteDisconnected();
}

kj::Promise<void>
FramedStream::writeWithFds(kj::ArrayPtr<const kj::byte> data,
                           kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> moreData,
                           kj::ArrayPtr<const int> fds) {
  KJ_REQUIRE(capability != nullptr, "fd passing on a TCP connection");
  return capability->writeWithFds(data, moreData, fds);
}

kj::Promise<void>
FramedStream::writeWithStreams(kj::ArrayPtr<const kj::byte> data,
                               kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> moreData,
                               kj::Array<kj::Own<kj::AsyncCapabilityStream>> streams) {
  KJ_REQUIRE(capability != nullptr, "stream passing on a TCP connection");
  return capability->writeWithStreams(data, moreData, kj::mv(streams));
}

void FramedStream::shutdownWrite() {
  inner->shutdownWrite();
}

void FramedStream::abortRead() {
  inner->abortRead();
}

void FramedStream::getsockopt(int level, int option, void* value, kj::uint* length) {
  inner->getsockopt(level, option, value, length);
}

void FramedStream::setsockopt(int level, int option, const void* value, kj::uint length) {
  inner->setsockopt(level, option, value, length);
}

void FramedStream::getsockname(struct sockaddr* addr, kj::uint* length) {
  inner->getsockname(addr, length);
}

void FramedStream::getpeername(struct sockaddr* addr, kj::uint* length) {
  inner->getpeername(addr, length);
}

kj::Maybe<int> FramedStream::getFd() const {
  return inner->getFd();
}

}  // namespace rjitd::service
