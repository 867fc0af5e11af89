// SPDX-License-Identifier: MIT
// The address ranges of one client's reservation: which pages loaded modules occupy, first fit.
#pragma once

#include "compiled-object.h"
#include "outcome.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

namespace rjitd::service {

/// Page sizes a client may name: what Linux uses on x86_64 and AArch64 (4, 16 and 64 KiB).
constexpr uint64_t MIN_PAGE_BYTES = 4096, MAX_PAGE_BYTES = 64 * 1024;

/// A client's reservation (the PROT_NONE range it mapped for rjitd's images) and which page
/// ranges of it loaded modules hold. Every range handed out is page-aligned and a whole number
/// of pages. reserve() runs on link workers and release() on the event loop (or a worker whose
/// link failed), hence the mutex.
class AddressRanges final {
public:
  /// Checks the reservation the client names (a power-of-two page size from MIN_PAGE_BYTES to
  /// MAX_PAGE_BYTES, a non-empty page-aligned range that does not wrap around or start at 0)
  /// and returns its allocator, or an InvalidRequest Failure saying what is wrong. `limit` is
  /// what rjitd lets the client hold at once (--max-client-memory).
  static Outcome<std::shared_ptr<AddressRanges>> create(uint64_t base, uint64_t size,
                                                        uint64_t pageSize, uint64_t limit);

  AddressRanges(uint64_t base, uint64_t size, uint64_t pageSize, uint64_t limit);
  AddressRanges(const AddressRanges&) = delete;
  AddressRanges& operator=(const AddressRanges&) = delete;

  /// nullopt when (base, size, pageSize) names this reservation, else an InvalidRequest
  /// Failure: a connection loads into the one reservation its first load named.
  std::optional<Failure> checkSame(uint64_t base, uint64_t size, uint64_t pageSize) const;

  /// The lowest free range of `bytes` rounded up to whole pages (first fit). Fails with
  /// TooLarge when the client's limit or its reservation has no room (saying which).
  Outcome<uint64_t> reserve(uint64_t bytes);

  /// Returns a range reserve() handed out for `bytes`; adjacent free ranges merge.
  void release(uint64_t address, uint64_t bytes);

  /// Bytes handed out now.
  uint64_t used() const;

private:
  const uint64_t base, size, pageSize, limit;
  mutable std::mutex mutex;
  std::map<uint64_t, uint64_t> free;  // address -> bytes; never two adjacent entries
  uint64_t inUse = 0;
};

/// A range reserved in a client's AddressRanges, returned on destruction (or reset()) unless
/// moved on. It travels with the link result, so a load abandoned at any step (the client
/// gone, the call cancelled, a failure) gives its range back.
class RangeLease final {
public:
  RangeLease() = default;
  /// `bytes` as passed to reserve(), which returned `address`.
  RangeLease(std::shared_ptr<AddressRanges> ranges, uint64_t address, uint64_t bytes);
  RangeLease(RangeLease&& other) noexcept;
  RangeLease& operator=(RangeLease&& other) noexcept;
  RangeLease(const RangeLease&) = delete;
  RangeLease& operator=(const RangeLease&) = delete;
  ~RangeLease();

  /// Returns the range now.
  void reset();

private:
  std::shared_ptr<AddressRanges> ranges;
  uint64_t address = 0, bytes = 0;
};

}  // namespace rjitd::service
