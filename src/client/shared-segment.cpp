// SPDX-License-Identifier: MIT
// The shared segment: memfd, seals, mapping and Boost.Interprocess allocation (see
// shared-segment.h).
#include "shared-segment.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace rjit::detail {

namespace {

/// The smallest segment worth making: Boost's bookkeeping plus a few buffers.
constexpr uint64_t MIN_SEGMENT_BYTES = uint64_t{1} << 20;

Error systemError(const char* call) {
  return Error(ErrorKind::Load, std::string("cannot make the shared segment: ") + call + ": " +
                                    std::strerror(errno));
}

}  // namespace

Result<uint64_t> segmentSizeFromEnvironment() {
  const char* text = std::getenv("RJIT_SEGMENT_BYTES");
  if (text == nullptr || text[0] == '\0')
    return DEFAULT_SEGMENT_BYTES;
  char* end = nullptr;
  errno = 0;
  unsigned long long value = std::strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || text[0] == '-' || value < MIN_SEGMENT_BYTES ||
      value > (uint64_t{1} << 40))
    return Error(ErrorKind::Configuration,
                 "RJIT_SEGMENT_BYTES='" + std::string(text) +
                     "' is not a byte count between 1048576 (1 MiB) and 2^40");
  return static_cast<uint64_t>(value);
}

Result<std::shared_ptr<SharedSegment>> SharedSegment::create(uint64_t size) {
  int raw = memfd_create("rjit-segment", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (raw < 0)
    return systemError("memfd_create");
  kj::AutoCloseFd fd(raw);
  // ftruncate reserves nothing: tmpfs pages are allocated when first touched.
  if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
    return systemError("ftruncate");
  // rjitd refuses a segment that could shrink under the executor's mapping (SIGBUS there).
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0)
    return systemError("fcntl(F_ADD_SEALS)");
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED)
    return systemError("mmap");
  return std::make_shared<SharedSegment>(Token{}, kj::mv(fd), base, size);
}

SharedSegment::SharedSegment(Token, kj::AutoCloseFd memfd, void* base, uint64_t size)
    : memfd(kj::mv(memfd)), base(base), size_(size),
      heap(boost::interprocess::create_only, base, size) {}

SharedSegment::~SharedSegment() {
  munmap(base, size_);
}

void* SharedSegment::allocate(size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex);
  void* p = heap.allocate(bytes == 0 ? 1 : bytes, std::nothrow);
  if (p != nullptr)
    // Memory given back by an earlier buffer holds its old contents.
    std::memset(p, 0, bytes);
  return p;
}

void SharedSegment::deallocate(void* p) {
  std::lock_guard<std::mutex> lock(mutex);
  heap.deallocate(p);
}

uint64_t SharedSegment::offsetOf(const void* p) const {
  return static_cast<uint64_t>(static_cast<const char*>(p) - static_cast<const char*>(base));
}

bool SharedSegment::contains(const void* p) const {
  auto* c = static_cast<const char*>(p);
  auto* b = static_cast<const char*>(base);
  return c >= b && c < b + size_;
}

}  // namespace rjit::detail
