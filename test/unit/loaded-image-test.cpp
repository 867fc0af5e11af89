// SPDX-License-Identifier: MIT
// The LoadedImage capability: reads within bounds and limits, served off the event loop by a
// real worker pool, the memfd attached, and its release running the module's bookkeeping.
#include "loaded-image.h"

#include <capnp/rpc-twoparty.h>
#include <future>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace rjitd::service {
namespace {

constexpr uint64_t IMAGE_BYTES = 3 * 4096 + 100;
constexpr uint64_t MAX_READ = 8192;

/// A sealed-size memfd holding byte i % 251 at offset i, standing in for a linked image.
linker::LinkedImage testImage() {
  linker::LinkedImage image;
  int fd = ::memfd_create("loaded-image-test", MFD_CLOEXEC);
  KJ_SYSCALL(fd, "memfd_create");
  image.memfd = kj::AutoCloseFd(fd);
  std::string bytes(IMAGE_BYTES, '\0');
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<char>(i % 251);
  KJ_ASSERT(::pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
  image.base = 0x7f0000000000;
  image.size = IMAGE_BYTES;
  return image;
}

bool expected(kj::ArrayPtr<const kj::byte> bytes, uint64_t offset) {
  for (size_t i = 0; i < bytes.size(); ++i)
    if (bytes[i] != (offset + i) % 251)
      return false;
  return true;
}

/// Keeps the pool's only worker busy until open(): what the worker does next waits.
struct Gate {
  std::promise<void> started, opened;
  kj::Promise<int> occupy(WorkerPool& pool) {
    auto promise = pool.run<int>([this, open = opened.get_future().share()]() {
      started.set_value();
      open.wait();
      return 0;
    });
    started.get_future().wait();  // bounded: the pool's one worker is idle until now
    return promise;
  }
  void open() { opened.set_value(); }
};

class LoadedImageTest : public ::testing::Test {
protected:
  // Held through a pointer: kj types have noexcept(false) destructors. The capability goes
  // before the pool that serves its reads.
  struct Env {
    explicit Env(bool& released)
        : image(kj::heap<LoadedImage>(testImage(), MAX_READ, pool,
                                      kj::heap(kj::defer([&released]() { released = true; })))) {}
    kj::AsyncIoContext io = kj::setupAsyncIo();
    WorkerPool pool{"test-read", 1};
    proto::LoadedImage::Client image;
  };
  bool released = false;
  std::unique_ptr<Env> env = std::make_unique<Env>(released);
  proto::LoadedImage::Client& image = env->image;

  capnp::Request<proto::LoadedImage::ReadParams, proto::LoadedImage::ReadResults>
  readRequest(uint64_t offset, uint64_t size) {
    auto request = image.readRequest();
    request.setOffset(offset);
    request.setSize(size);
    return request;
  }

  /// The kind of exception a read is refused with (it must be refused).
  kj::Exception::Type refused(uint64_t offset, uint64_t size) {
    kj::Exception::Type type = kj::Exception::Type::UNIMPLEMENTED;
    bool failed = false;
    readRequest(offset, size)
        .send()
        .then([](auto&&) {},
              [&](kj::Exception&& e) {
                failed = true;
                type = e.getType();
              })
        .wait(env->io.waitScope);
    EXPECT_TRUE(failed) << "read of " << size << " at " << offset;
    return type;
  }
};

TEST_F(LoadedImageTest, ReadsReturnTheImageBytes) {
  for (auto [offset, size] : {std::pair<uint64_t, uint64_t>{0, 100},
                              {4000, MAX_READ},
                              {IMAGE_BYTES - MAX_READ, MAX_READ},
                              {IMAGE_BYTES - 1, 1},
                              {IMAGE_BYTES, 0}}) {
    auto response = readRequest(offset, size).send().wait(env->io.waitScope);
    auto bytes = response.getBytes();
    ASSERT_EQ(bytes.size(), size);
    EXPECT_TRUE(expected(bytes, offset)) << "at " << offset;
  }
}

TEST_F(LoadedImageTest, ReadsOutsideTheImageOrOverTheLimitAreRefused) {
  EXPECT_EQ(refused(IMAGE_BYTES + 1, 0), kj::Exception::Type::FAILED);
  EXPECT_EQ(refused(IMAGE_BYTES - 10, 11), kj::Exception::Type::FAILED);
  EXPECT_EQ(refused(1, UINT64_MAX), kj::Exception::Type::FAILED);  // offset + size wraps
  EXPECT_EQ(refused(UINT64_MAX, 2), kj::Exception::Type::FAILED);
  EXPECT_EQ(refused(0, MAX_READ + 1), kj::Exception::Type::FAILED);
}

TEST_F(LoadedImageTest, TheMemfdIsAttachedAndReleaseUnloads) {
  auto fd = image.getFd().wait(env->io.waitScope);
  KJ_IF_MAYBE (f, fd) {
    char byte = 0;
    ASSERT_EQ(::pread(*f, &byte, 1, 300), 1);
    EXPECT_EQ(static_cast<unsigned char>(byte), 300 % 251);
  } else {
    ADD_FAILURE() << "no fd attached";
  }
  EXPECT_FALSE(released);
  image = nullptr;
  env->io.waitScope.poll();
  EXPECT_TRUE(released);
}

TEST_F(LoadedImageTest, AReadRunsOnTheWorkerNotTheLoop) {
  // The only worker is busy until the test lets it go: the read cannot finish before then, yet
  // the loop keeps turning.
  Gate gate;
  auto busy = gate.occupy(env->pool);
  auto read = readRequest(0, MAX_READ).send();
  EXPECT_FALSE(read.poll(env->io.waitScope)) << "the read waits for the worker";
  gate.open();
  auto response = read.wait(env->io.waitScope);
  EXPECT_TRUE(expected(response.getBytes(), 0));
  busy.wait(env->io.waitScope);
}

TEST_F(LoadedImageTest, AReadInFlightKeepsTheImageUntilItIsAnswered) {
  // The caller loses interest and drops the capability while the read waits for the worker:
  // the read still completes (from the memfd it shares) before the image is released.
  Gate gate;
  auto busy = gate.occupy(env->pool);
  {
    auto read = readRequest(0, MAX_READ).send();
    EXPECT_FALSE(read.poll(env->io.waitScope));
  }
  image = nullptr;
  env->io.waitScope.poll();
  EXPECT_FALSE(released) << "the call in flight holds the capability";
  gate.open();
  busy.wait(env->io.waitScope);
  // The worker is past the read once a later job has run; its answer reaches the loop next.
  EXPECT_EQ(env->pool.run<int>([]() { return 7; }).wait(env->io.waitScope), 7);
  env->io.waitScope.poll();
  EXPECT_TRUE(released);
}

TEST_F(LoadedImageTest, AServerTornDownDuringAReadReleasesTheImageWhenTheReadEnds) {
  // Over a real two-party connection: the client goes away, then the server side too, while a
  // read waits for the worker. Cap'n Proto keeps the call (rjitd does not allow cancellation)
  // and with it the capability until the read is done; then the image is released.
  Gate gate;
  auto busy = gate.occupy(env->pool);
  auto pipe = kj::newTwoWayPipe();
  auto server = kj::heap<capnp::TwoPartyServer>(kj::mv(image));
  server->accept(kj::mv(pipe.ends[0]));
  {
    auto client = kj::heap<capnp::TwoPartyClient>(*pipe.ends[1]);
    auto remote = client->bootstrap().castAs<proto::LoadedImage>();
    auto request = remote.readRequest();
    request.setOffset(0);
    request.setSize(MAX_READ);
    auto read = request.send();
    // Until the call has reached the server and waits for the worker.
    for (int i = 0; i < 100 && env->pool.queued() == 0; ++i)
      env->io.waitScope.poll();
    ASSERT_EQ(env->pool.queued(), 1u);
  }
  pipe.ends[1] = nullptr;  // the client's end closes
  server = nullptr;
  env->io.waitScope.poll();
  EXPECT_FALSE(released) << "the call in flight holds the capability";
  gate.open();
  busy.wait(env->io.waitScope);
  // The worker is past the read once a later job has run; the read's end reaches the loop next.
  EXPECT_EQ(env->pool.run<int>([]() { return 7; }).wait(env->io.waitScope), 7);
  for (int i = 0; i < 100 && !released; ++i)
    env->io.waitScope.poll();
  EXPECT_TRUE(released);
}

}  // namespace
}  // namespace rjitd::service
