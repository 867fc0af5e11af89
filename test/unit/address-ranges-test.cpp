// SPDX-License-Identifier: MIT
// AddressRanges: the first-fit allocator over a client's reservation, and RangeLease.
#include "address-ranges.h"

#include <gtest/gtest.h>

namespace rjitd::service {
namespace {

constexpr uint64_t PAGE = 4096;
constexpr uint64_t BASE = 0x7f0000000000;

std::shared_ptr<AddressRanges> make(uint64_t pages, uint64_t limit = UINT64_MAX) {
  auto created = AddressRanges::create(BASE, pages * PAGE, PAGE, limit);
  EXPECT_TRUE(std::holds_alternative<std::shared_ptr<AddressRanges>>(created))
      << std::get<Failure>(created).message;
  return std::get<std::shared_ptr<AddressRanges>>(created);
}

uint64_t reserved(AddressRanges& ranges, uint64_t bytes) {
  auto r = ranges.reserve(bytes);
  EXPECT_TRUE(std::holds_alternative<uint64_t>(r)) << std::get<Failure>(r).message;
  return std::holds_alternative<uint64_t>(r) ? std::get<uint64_t>(r) : 0;
}

ErrorKind refused(AddressRanges& ranges, uint64_t bytes) {
  auto r = ranges.reserve(bytes);
  EXPECT_TRUE(std::holds_alternative<Failure>(r)) << "reserved " << bytes << " bytes";
  return std::holds_alternative<Failure>(r) ? std::get<Failure>(r).kind : ErrorKind::Internal;
}

ErrorKind createFails(uint64_t base, uint64_t size, uint64_t pageSize) {
  auto created = AddressRanges::create(base, size, pageSize, UINT64_MAX);
  EXPECT_TRUE(std::holds_alternative<Failure>(created)) << base << " " << size << " " << pageSize;
  return std::holds_alternative<Failure>(created) ? std::get<Failure>(created).kind
                                                  : ErrorKind::Internal;
}

TEST(AddressRangesTest, BadReservationsAreRefused) {
  EXPECT_EQ(createFails(BASE, 16 * PAGE, 3000), ErrorKind::InvalidRequest);  // not a power of 2
  EXPECT_EQ(createFails(BASE, 16 * PAGE, 2048), ErrorKind::InvalidRequest);  // below 4 KiB
  EXPECT_EQ(createFails(BASE, 16 * PAGE, 128 * 1024), ErrorKind::InvalidRequest);  // above 64
  EXPECT_EQ(createFails(BASE, 0, PAGE), ErrorKind::InvalidRequest);                // empty
  EXPECT_EQ(createFails(BASE + 1, 16 * PAGE, PAGE), ErrorKind::InvalidRequest);    // unaligned
  EXPECT_EQ(createFails(BASE, 16 * PAGE + 1, PAGE), ErrorKind::InvalidRequest);    // part page
  EXPECT_EQ(createFails(0, 16 * PAGE, PAGE), ErrorKind::InvalidRequest);           // at 0
  // Wraps around the top of the address space.
  EXPECT_EQ(createFails(UINT64_MAX - PAGE + 1, 2 * PAGE, PAGE), ErrorKind::InvalidRequest);
  // 16 and 64 KiB pages are fine.
  EXPECT_TRUE(std::holds_alternative<std::shared_ptr<AddressRanges>>(
      AddressRanges::create(BASE, 1 << 20, 64 * 1024, UINT64_MAX)));
}

TEST(AddressRangesTest, FirstFitTakesTheLowestHoleThatIsLargeEnough) {
  auto ranges = make(16);
  EXPECT_EQ(reserved(*ranges, PAGE), BASE);
  EXPECT_EQ(reserved(*ranges, 2 * PAGE), BASE + PAGE);
  EXPECT_EQ(reserved(*ranges, PAGE), BASE + 3 * PAGE);
  ranges->release(BASE, PAGE);  // a one-page hole at the start
  EXPECT_EQ(reserved(*ranges, 2 * PAGE), BASE + 4 * PAGE) << "the hole is too small";
  EXPECT_EQ(reserved(*ranges, PAGE), BASE) << "the hole fits one page";
  EXPECT_EQ(ranges->used(), 6 * PAGE);
}

TEST(AddressRangesTest, RangesAreWholePagesAndPageAligned) {
  auto ranges = make(16);
  EXPECT_EQ(reserved(*ranges, 1), BASE);
  EXPECT_EQ(ranges->used(), PAGE);
  EXPECT_EQ(reserved(*ranges, PAGE + 1), BASE + PAGE);
  EXPECT_EQ(reserved(*ranges, PAGE), BASE + 3 * PAGE);
  EXPECT_EQ(ranges->used(), 4 * PAGE);
  ranges->release(BASE + PAGE, PAGE + 1);  // given back as reserved: two pages
  EXPECT_EQ(ranges->used(), 2 * PAGE);
  EXPECT_EQ(reserved(*ranges, 2 * PAGE), BASE + PAGE);
}

TEST(AddressRangesTest, AFullReservationAndTheClientLimitRefuseWithTooLarge) {
  auto ranges = make(4);
  EXPECT_EQ(reserved(*ranges, 4 * PAGE), BASE);
  EXPECT_EQ(refused(*ranges, 1), ErrorKind::TooLarge);
  ranges->release(BASE, 4 * PAGE);
  EXPECT_EQ(reserved(*ranges, 4 * PAGE), BASE) << "all of it is free again";

  auto limited = make(16, 3 * PAGE);  // rjitd --max-client-memory below the reservation
  EXPECT_EQ(reserved(*limited, 2 * PAGE), BASE);
  EXPECT_EQ(refused(*limited, 2 * PAGE), ErrorKind::TooLarge);
  EXPECT_EQ(reserved(*limited, PAGE), BASE + 2 * PAGE);
  EXPECT_EQ(refused(*limited, 1), ErrorKind::TooLarge);
}

TEST(AddressRangesTest, SizesThatWrapAroundAreRefused) {
  auto ranges = make(16);
  EXPECT_EQ(refused(*ranges, UINT64_MAX), ErrorKind::TooLarge);         // rounds up past 2^64
  EXPECT_EQ(refused(*ranges, UINT64_MAX - PAGE), ErrorKind::TooLarge);  // rounds to 2^64 - page
  EXPECT_EQ(refused(*ranges, uint64_t(1) << 63), ErrorKind::TooLarge);
  EXPECT_EQ(ranges->used(), 0u);
  EXPECT_EQ(reserved(*ranges, 16 * PAGE), BASE) << "nothing was lost to the refusals";
}

TEST(AddressRangesTest, FreedNeighboursMergeIntoOneRange) {
  // Free the middle last (merges both ways), then the left neighbour last (merges with the
  // next), then the right neighbour last (merges with the previous): each time the whole
  // reservation must come back in one piece.
  for (int last = 0; last < 3; ++last) {
    auto ranges = make(3);
    uint64_t a = reserved(*ranges, PAGE), b = reserved(*ranges, PAGE), c = reserved(*ranges, PAGE);
    uint64_t order[3][3] = {{a, c, b}, {b, c, a}, {a, b, c}};
    for (uint64_t address : order[last])
      ranges->release(address, PAGE);
    EXPECT_EQ(ranges->used(), 0u);
    EXPECT_EQ(reserved(*ranges, 3 * PAGE), BASE) << "case " << last;
  }
}

TEST(AddressRangesTest, ALeaseGivesItsRangeBackOnceWhereverItEnds) {
  auto ranges = make(4);
  {
    RangeLease lease(ranges, reserved(*ranges, 2 * PAGE), 2 * PAGE);
    RangeLease moved = std::move(lease);
    lease.reset();  // moved from: gives nothing back
    EXPECT_EQ(ranges->used(), 2 * PAGE);
    RangeLease other(ranges, reserved(*ranges, PAGE), PAGE);
    other = std::move(moved);  // `other`'s page goes back, `moved`'s two pages stay
    EXPECT_EQ(ranges->used(), 2 * PAGE);
  }
  EXPECT_EQ(ranges->used(), 0u);
  EXPECT_EQ(reserved(*ranges, 4 * PAGE), BASE);
}

TEST(AddressRangesTest, ALaterLoadMustNameTheSameReservation) {
  auto ranges = make(4);
  EXPECT_FALSE(ranges->checkSame(BASE, 4 * PAGE, PAGE));
  auto other = ranges->checkSame(BASE + PAGE, 4 * PAGE, PAGE);
  ASSERT_TRUE(other);
  EXPECT_EQ(other->kind, ErrorKind::InvalidRequest);
  EXPECT_TRUE(ranges->checkSame(BASE, 8 * PAGE, PAGE));
  EXPECT_TRUE(ranges->checkSame(BASE, 4 * PAGE, 16384));
}

}  // namespace
}  // namespace rjitd::service
