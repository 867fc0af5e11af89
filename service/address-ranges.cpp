// SPDX-License-Identifier: MIT
// First-fit ranges of a client's reservation (see address-ranges.h).
#include "address-ranges.h"

#include <cstdio>
#include <string>
#include <utility>

namespace rjitd::service {

namespace {

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

Failure invalid(std::string message) {
  return Failure{ErrorKind::InvalidRequest, std::move(message), {}};
}

}  // namespace

Outcome<std::shared_ptr<AddressRanges>> AddressRanges::create(uint64_t base, uint64_t size,
                                                              uint64_t pageSize, uint64_t limit) {
  if (pageSize < MIN_PAGE_BYTES || pageSize > MAX_PAGE_BYTES || (pageSize & (pageSize - 1)) != 0)
    return invalid("page size " + std::to_string(pageSize) + " is not a power of two from " +
                   std::to_string(MIN_PAGE_BYTES) + " to " + std::to_string(MAX_PAGE_BYTES));
  if (size == 0 || base % pageSize != 0 || size % pageSize != 0 || base == 0 || base + size < base)
    return invalid("the client's reservation (base " + hex(base) + ", " + std::to_string(size) +
                   " bytes) is empty, not page-aligned or wraps around");
  return std::make_shared<AddressRanges>(base, size, pageSize, limit);
}

AddressRanges::AddressRanges(uint64_t base, uint64_t size, uint64_t pageSize, uint64_t limit)
    : base(base), size(size), pageSize(pageSize), limit(limit) {
  free.emplace(base, size);
}

std::optional<Failure> AddressRanges::checkSame(uint64_t b, uint64_t s, uint64_t p) const {
  if (b == base && s == size && p == pageSize)
    return std::nullopt;
  return invalid("a connection loads into one reservation, named by its first load; this "
                 "request names another (base " +
                 hex(b) + ")");
}

uint64_t AddressRanges::used() const {
  std::lock_guard<std::mutex> lock(mutex);
  return inUse;
}

Outcome<uint64_t> AddressRanges::reserve(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex);
  // Whole pages, so that every range starts page-aligned (each is mapped on its own). A size
  // whose rounding wraps around is over every limit.
  uint64_t pages = bytes / pageSize + (bytes % pageSize != 0 ? 1 : 0);
  uint64_t wanted = pages * pageSize;
  if (wanted / pageSize != pages || wanted > limit - inUse)
    return Failure{ErrorKind::TooLarge,
                   "the module needs " + std::to_string(bytes) +
                       " bytes of memory; this client's loaded modules hold " +
                       std::to_string(inUse) + " and rjitd allows a client " +
                       std::to_string(limit) + " (rjitd --max-client-memory); unload modules first",
                   {}};
  for (auto it = free.begin(); it != free.end(); ++it) {
    if (it->second < wanted)
      continue;
    uint64_t address = it->first, left = it->second - wanted;
    free.erase(it);
    if (left > 0)
      free.emplace(address + wanted, left);
    inUse += wanted;
    return address;
  }
  return Failure{ErrorKind::TooLarge,
                 "the module needs " + std::to_string(bytes) + " bytes of memory but the " +
                     std::to_string(size) +
                     "-byte reservation of this client (its memory quota, "
                     "RJIT_MEMORY_QUOTA) has " +
                     std::to_string(size - inUse) + " bytes free" +
                     (inUse < size ? " (not in one piece)" : "") +
                     "; unload modules or raise the quota",
                 {}};
}

void AddressRanges::release(uint64_t address, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex);
  uint64_t pages = bytes / pageSize + (bytes % pageSize != 0 ? 1 : 0);
  uint64_t freed = pages * pageSize;  // as reserve() rounded it
  inUse -= freed;
  auto it = free.emplace(address, freed).first;
  auto next = std::next(it);
  if (next != free.end() && it->first + it->second == next->first) {
    it->second += next->second;
    free.erase(next);
  }
  if (it != free.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      free.erase(it);
    }
  }
}

RangeLease::RangeLease(std::shared_ptr<AddressRanges> ranges, uint64_t address, uint64_t bytes)
    : ranges(std::move(ranges)), address(address), bytes(bytes) {}

RangeLease::RangeLease(RangeLease&& other) noexcept
    : ranges(std::move(other.ranges)), address(other.address), bytes(other.bytes) {}

RangeLease& RangeLease::operator=(RangeLease&& other) noexcept {
  reset();
  ranges = std::move(other.ranges);
  address = other.address;
  bytes = other.bytes;
  return *this;
}

RangeLease::~RangeLease() {
  reset();
}

void RangeLease::reset() {
  if (ranges)
    ranges->release(address, bytes);
  ranges = nullptr;
}

}  // namespace rjitd::service
