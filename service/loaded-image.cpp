// SPDX-License-Identifier: MIT
// The LoadedImage capability (see loaded-image.h).
#include "loaded-image.h"

#include <fcntl.h>
#include <string>

#include <cerrno>
#include <condition_variable>
#include <kj/debug.h>
#include <mutex>
#include <unistd.h>

namespace rjitd::service {

namespace {

/// Reads `size` bytes at `offset` of `fd` into `out`; 0 or the errno of the failure.
int readFully(int fd, kj::byte* out, uint64_t size, uint64_t offset) {
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errno;
    if (n == 0)
      return EIO;  // the memfd is sealed against shrinking: a short file is rjitd's fault
    done += static_cast<uint64_t>(n);
  }
  return 0;
}

/// One read handed to a worker, which writes straight into the answer's buffer (a copy on the
/// loop would cost what the pread costs). That buffer belongs to the call. Cap'n Proto keeps a
/// call's promise until it settles unless the method allows cancellation (this one does not),
/// even when the client or its connection goes away; should the promise still be dropped
/// early (an event loop torn down before the pool), the worker must not write into the freed
/// buffer: a read not started yet is skipped, and one under way is waited for (one pread of
/// at most maxReadBytes from memory, so the wait is short and only on that path).
struct ReadJob {
  enum class State { Queued, Running, Finished, Abandoned };
  std::mutex mutex;
  std::condition_variable finished;
  State state = State::Queued;

  /// On the worker: whether to go ahead.
  bool start() {
    std::lock_guard<std::mutex> lock(mutex);
    if (state == State::Abandoned)
      return false;
    state = State::Running;
    return true;
  }
  void finish() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      state = State::Finished;
    }
    finished.notify_all();
  }
  /// On the loop, when the promise goes away (done or dropped).
  void abandon() {
    std::unique_lock<std::mutex> lock(mutex);
    if (state == State::Queued)
      state = State::Abandoned;
    finished.wait(lock, [this]() { return state != State::Running; });
  }
};

/// A read-only descriptor of the sealed image file (reopened through /proc/self/fd), or
/// `memfd` itself when that fails. Clients map the image from the descriptor they receive: a
/// read-only one maps shared on every kernel (before Linux 6.7 a MAP_SHARED mapping of a
/// write-sealed memfd from a read-write descriptor fails with EPERM), and a client that may
/// open no file (an executor under its seccomp filter) need not reopen it itself.
kj::AutoCloseFd readOnly(kj::AutoCloseFd memfd) {
  std::string self = "/proc/self/fd/" + std::to_string(memfd.get());
  kj::AutoCloseFd reopened(::open(self.c_str(), O_RDONLY | O_CLOEXEC));
  return reopened.get() >= 0 ? kj::mv(reopened) : kj::mv(memfd);
}

}  // namespace

LoadedImage::LoadedImage(linker::LinkedImage image, uint64_t maxReadBytes, WorkerPool& reads,
                         kj::Own<void> onRelease)
    : memfd(std::make_shared<const kj::AutoCloseFd>(readOnly(std::move(image.memfd)))),
      size(image.size), maxReadBytes(maxReadBytes), reads(reads), onRelease(kj::mv(onRelease)) {}

LoadedImage::~LoadedImage() noexcept(false) {}

kj::Maybe<int> LoadedImage::getFd() {
  return memfd->get();
}

kj::Promise<void> LoadedImage::read(ReadContext context) {
  uint64_t offset = context.getParams().getOffset(), bytes = context.getParams().getSize();
  KJ_REQUIRE(offset <= size && bytes <= size - offset, "read beyond the end of the image", offset,
             bytes, size);
  KJ_REQUIRE(bytes <= maxReadBytes, "read larger than LoadedModule.readLimit", bytes, maxReadBytes);
  auto out = context.getResults().initBytes(bytes);
  if (bytes == 0)
    return kj::READY_NOW;
  auto job = std::make_shared<ReadJob>();
  return reads
      .run<int>([job, fd = memfd, out = out.begin(), bytes, offset]() {
        if (!job->start())
          return ECANCELED;
        int error = readFully(fd->get(), out, bytes, offset);
        job->finish();
        return error;
      })
      .then([offset, bytes](int error) {
        if (error != 0)
          KJ_FAIL_SYSCALL("pread of the image memfd", error, offset, bytes);
      })
      .attach(kj::defer([job]() { job->abandon(); }));
}

}  // namespace rjitd::service
