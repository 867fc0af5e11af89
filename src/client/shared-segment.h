// SPDX-License-Identifier: MIT
// The shared segment of a RemoteExecutor: a sealed memfd mapped here and, by rjitd's executor,
// there, in which Buffers are allocated so that array arguments cross without a copy (only
// their offsets travel).
#pragma once

#include "result.h"

#include <boost/interprocess/managed_external_buffer.hpp>
#include <cstddef>
#include <cstdint>
#include <kj/io.h>
#include <memory>
#include <mutex>
#include <optional>

namespace rjit::detail {

/// Default segment size when RJIT_SEGMENT_BYTES is unset: 256 MiB, reserved (not committed).
constexpr uint64_t DEFAULT_SEGMENT_BYTES = uint64_t{256} << 20;

/// The segment size from RJIT_SEGMENT_BYTES (a byte count of at least 1 MiB), else the
/// default; Error(Configuration) for a bad value.
Result<uint64_t> segmentSizeFromEnvironment();

/// Allocation is Boost.Interprocess's `managed_external_buffer` laid over the mapping: the
/// product card names Boost.Interprocess, and its allocator keeps its bookkeeping in the
/// segment as offsets, so the same heap is valid at the executor's address too. Only this
/// process allocates (the executor reads and writes buffers in place), so a process-local mutex
/// guards it. Thread-safe; shared (std::shared_ptr) by the executor handle and the buffers in
/// it, which free their memory here when destroyed.
class SharedSegment final {
public:
  /// A memfd of `size` bytes (CLOEXEC, sealed against shrinking and growing), mapped shared
  /// read-write here. Fails with Error(Load) naming the system call.
  static Result<std::shared_ptr<SharedSegment>> create(uint64_t size);
  ~SharedSegment();
  SharedSegment(const SharedSegment&) = delete;
  SharedSegment& operator=(const SharedSegment&) = delete;

  /// Zeroed memory of `bytes` (16-byte aligned) in the segment, or null when it has no room.
  void* allocate(size_t bytes);
  /// Gives back what allocate() returned.
  void deallocate(void* p);
  /// Where `p` (inside the segment) lies from its start: what a Buffer sends.
  uint64_t offsetOf(const void* p) const;
  bool contains(const void* p) const;

  int fd() const { return memfd.get(); }
  uint64_t size() const { return size_; }

private:
  /// Only create() can name it: the constructor is public for std::make_shared alone.
  struct Token {};

public:
  SharedSegment(Token, kj::AutoCloseFd memfd, void* base, uint64_t size);

private:
  kj::AutoCloseFd memfd;
  void* base;
  uint64_t size_;
  std::mutex mutex;
  boost::interprocess::managed_external_buffer heap;
};

}  // namespace rjit::detail
