// SPDX-License-Identifier: MIT
// The framing follower (FramedStream) and the in-flight byte budget over a real socket pair:
// messages pass through intact however they are chunked, a started message that stalls fails
// its read at the deadline, and a message's bytes wait for the budget before they are returned.
#include "framed-stream.h"

#include <capnp/message.h>
#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

namespace rjitd::service {
namespace {

struct Pipe {
  explicit Pipe(kj::AsyncIoContext& io, InflightBudget& budget,
                kj::Duration readTimeout = 60 * kj::SECONDS) {
    auto pipe = io.provider->newCapabilityPipe();
    writer = kj::mv(pipe.ends[0]);
    kj::AsyncCapabilityStream* capability = pipe.ends[1].get();
    reader = kj::heap<FramedStream>(kj::mv(pipe.ends[1]), capability, io.provider->getTimer(),
                                    readTimeout, budget);
  }
  kj::Own<kj::AsyncCapabilityStream> writer;
  kj::Own<FramedStream> reader;
};

/// A message of several segments (small first segments force more).
kj::Array<capnp::word> multiSegmentMessage() {
  capnp::MallocMessageBuilder builder(1, capnp::AllocationStrategy::FIXED_SIZE);
  auto list = builder.getRoot<capnp::AnyPointer>().initAs<capnp::List<capnp::Text>>(5);
  for (unsigned i = 0; i < 5; ++i)
    list.set(i, "segment text that needs its own words");
  EXPECT_GT(builder.getSegmentsForOutput().size(), 2u);
  return capnp::messageToFlatArray(builder);
}

TEST(FramedStream, MessagesChunkedAnyHowPassThroughIntact) {
  auto io = kj::setupAsyncIo();
  InflightBudget budget(1 << 20);
  Pipe pipe(io, budget);
  auto flat = multiSegmentMessage();
  auto bytes = flat.asBytes();
  // Two messages back to back, one byte at a time.
  kj::Promise<void> writes = kj::READY_NOW;
  for (int copy = 0; copy < 2; ++copy)
    for (size_t i = 0; i < bytes.size(); ++i)
      writes = writes.then([&, i]() { return pipe.writer->write(bytes.begin() + i, 1); });
  auto written = writes.eagerlyEvaluate(nullptr);
  for (int copy = 0; copy < 2; ++copy) {
    auto message = capnp::readMessage(*pipe.reader).wait(io.waitScope);
    auto list = message->getRoot<capnp::List<capnp::Text>>();
    ASSERT_EQ(list.size(), 5u);
    EXPECT_EQ(list[4], "segment text that needs its own words");
    EXPECT_FALSE(pipe.reader->inMessage());
  }
  written.wait(io.waitScope);
  EXPECT_EQ(budget.inUse(), 0u);
}

TEST(FramedStream, StalledMessageFailsAtTheReadDeadline) {
  auto io = kj::setupAsyncIo();
  InflightBudget budget(1 << 30);
  Pipe pipe(io, budget, 20 * kj::MILLISECONDS);
  uint32_t header[2] = {0, (65u << 20) / 8};  // one segment of 65 MiB, then nothing
  pipe.writer->write(header, sizeof header).wait(io.waitScope);
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t{1} << 30;  // rjitd's is above 65 MiB too
  auto read = capnp::readMessage(*pipe.reader, options);
  auto failure = kj::runCatchingExceptions([&]() { read.wait(io.waitScope); });
  KJ_IF_MAYBE (e, failure) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::DISCONNECTED);
  } else {
    ADD_FAILURE() << "the stalled message was read";
  }
  EXPECT_TRUE(pipe.reader->timedOut());
  EXPECT_EQ(budget.inUse(), uint64_t{65} << 20);  // held until the stream goes
  pipe.reader = nullptr;
  EXPECT_EQ(budget.inUse(), 0u);
}

TEST(FramedStream, AMessageWaitsForTheBudgetBeforeItIsAllocated) {
  auto io = kj::setupAsyncIo();
  InflightBudget budget(1000);
  Pipe first(io, budget);
  Pipe second(io, budget);
  uint32_t header[2] = {0, 100};  // 800 bytes each
  first.writer->write(header, sizeof header).wait(io.waitScope);
  second.writer->write(header, sizeof header).wait(io.waitScope);
  kj::byte word[8];
  EXPECT_EQ(first.reader->tryRead(word, 8, 8).wait(io.waitScope), 8u);
  EXPECT_EQ(budget.inUse(), 800u);
  auto held = second.reader->tryRead(word, 8, 8);
  EXPECT_FALSE(held.poll(io.waitScope));  // 1600 bytes would not fit
  // The first message arrives whole: its bytes go back, the second's read returns.
  kj::byte body[800] = {};
  first.writer->write(body, sizeof body).wait(io.waitScope);
  EXPECT_EQ(first.reader->tryRead(body, 800, 800).wait(io.waitScope), 800u);
  EXPECT_EQ(held.wait(io.waitScope), 8u);
  EXPECT_EQ(budget.inUse(), 800u);
}

TEST(InflightBudget, LargerThanTheWholeBudgetGoesWhenNothingElseIsInFlight) {
  auto io = kj::setupAsyncIo();
  InflightBudget budget(100);
  uint64_t a = 0, b = 0, c = 0;
  budget.acquire(60, &a).wait(io.waitScope);
  auto big = budget.acquire(500, &b);
  auto small = budget.acquire(30, &c);
  EXPECT_FALSE(big.poll(io.waitScope));
  EXPECT_TRUE(small.poll(io.waitScope));  // first fit: it does not wait behind the big one
  small.wait(io.waitScope);
  budget.forget(&a);
  EXPECT_FALSE(big.poll(io.waitScope));
  budget.forget(&c);
  big.wait(io.waitScope);
  EXPECT_EQ(b, 500u);
  EXPECT_EQ(budget.inUse(), 500u);
  budget.forget(&b);
  EXPECT_EQ(budget.inUse(), 0u);
}

}  // namespace
}  // namespace rjitd::service
