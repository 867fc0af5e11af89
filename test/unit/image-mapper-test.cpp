// SPDX-License-Identifier: MIT
// Tests for src/client/image-mapper: the checks of what rjitd says about an image, and mapping a
// real sealed memfd into a real reservation.
#include "image-mapper.h"

#include <cstring>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace rjit::detail {
namespace {

constexpr uint8_t R = SEGMENT_READ, W = SEGMENT_WRITE, X = SEGMENT_EXECUTE;

/// A reservation the crafted specs are checked against (never mapped: checkImage is pure).
constexpr uint64_t PAGE = 4096, ARENA_BASE = 0x40000000, ARENA_SIZE = 64 * PAGE;

/// Four pages at the arena's start: code, then read-only data, then writable data.
ImageSpec validSpec() {
  ImageSpec spec;
  spec.base = ARENA_BASE;
  spec.size = 4 * PAGE;
  spec.segments = {{ARENA_BASE, 0, PAGE, R | X},
                   {ARENA_BASE + PAGE, PAGE, PAGE, R},
                   {ARENA_BASE + 2 * PAGE, 2 * PAGE, 2 * PAGE, R | W}};
  spec.initializers = {ARENA_BASE + 16};
  spec.finalizers = {ARENA_BASE + PAGE - 1};
  spec.ehFrameAddress = ARENA_BASE + PAGE;
  spec.ehFrameSize = 64;
  return spec;
}

/// The kind `spec` is refused with; nullopt (and a test failure) when it passes.
std::optional<ErrorKind> refusal(const ImageSpec& spec) {
  Result<Done> checked = checkImage(spec, ARENA_BASE, ARENA_SIZE, PAGE);
  if (Error* error = failed(checked))
    return error->kind();
  ADD_FAILURE() << "the spec passed the checks";
  return std::nullopt;
}

TEST(CheckImageTest, AcceptsAWellFormedImage) {
  Result<Done> checked = checkImage(validSpec(), ARENA_BASE, ARENA_SIZE, PAGE);
  Error* error = failed(checked);
  EXPECT_EQ(error, nullptr) << (error ? error->what() : "");
}

TEST(CheckImageTest, RefusesAnImageOutsideTheReservation) {
  ImageSpec below = validSpec();
  below.base = ARENA_BASE - PAGE;
  EXPECT_EQ(refusal(below), ErrorKind::Load);
  ImageSpec beyond = validSpec();
  beyond.base = ARENA_BASE + ARENA_SIZE - PAGE;
  EXPECT_EQ(refusal(beyond), ErrorKind::Load);
  ImageSpec unaligned = validSpec();
  unaligned.size = 4 * PAGE + 1;
  EXPECT_EQ(refusal(unaligned), ErrorKind::Load);
  ImageSpec empty = validSpec();
  empty.size = 0;
  EXPECT_EQ(refusal(empty), ErrorKind::Load);
}

TEST(CheckImageTest, RefusesMisplacedSegments) {
  ImageSpec overlapping = validSpec();
  overlapping.segments[1].address = ARENA_BASE;  // on top of the code
  EXPECT_EQ(refusal(overlapping), ErrorKind::Load);
  ImageSpec outside = validSpec();
  outside.segments[2].size = 4 * PAGE;  // runs past the image's end
  EXPECT_EQ(refusal(outside), ErrorKind::Load);
  ImageSpec offsetPastEnd = validSpec();
  offsetPastEnd.segments[2].offset = 3 * PAGE;  // its bytes past the file's image
  EXPECT_EQ(refusal(offsetPastEnd), ErrorKind::Load);
  ImageSpec unaligned = validSpec();
  unaligned.segments[1].offset = PAGE + 8;
  EXPECT_EQ(refusal(unaligned), ErrorKind::Load);
}

TEST(CheckImageTest, RefusesWritableAndExecutableSegments) {
  ImageSpec spec = validSpec();
  spec.segments[0].protection = R | W | X;
  EXPECT_EQ(refusal(spec), ErrorKind::Load);
}

TEST(CheckImageTest, RefusesConstructorsDestructorsAndUnwindInfoOutOfPlace) {
  ImageSpec ctorInData = validSpec();
  ctorInData.initializers = {ARENA_BASE + PAGE};  // read-only data, not code
  EXPECT_EQ(refusal(ctorInData), ErrorKind::Load);
  ImageSpec dtorOutside = validSpec();
  dtorOutside.finalizers = {ARENA_BASE + 8 * PAGE};
  EXPECT_EQ(refusal(dtorOutside), ErrorKind::Load);
  ImageSpec ehBeyond = validSpec();
  ehBeyond.ehFrameAddress = ARENA_BASE + 4 * PAGE - 32;  // 64 bytes from 32 before the end
  EXPECT_EQ(refusal(ehBeyond), ErrorKind::Load);
}

// --- the real mechanism ---------------------------------------------------------------------

template <typename T> T valueOf(Result<T>&& result) {
  if (Error* error = failed(result)) {
    ADD_FAILURE() << error->what();
    return T();
  }
  return std::get<T>(std::move(result));
}

TEST(ImageFileTest, WritesWithinTheImageAndSeals) {
  uint64_t page = Arena::pageSize();
  std::unique_ptr<ImageFile> file = valueOf(ImageFile::create(2 * page));
  ASSERT_NE(file, nullptr);
  const char text[] = "loaded";
  Result<Done> inside = file->write(page - 2, text, sizeof(text));
  EXPECT_EQ(failed(inside), nullptr);
  Result<Done> past = file->write(2 * page - 2, text, sizeof(text));
  ASSERT_NE(failed(past), nullptr);
  EXPECT_EQ(failed(past)->kind(), ErrorKind::Load);
  kj::AutoCloseFd fd = valueOf(file->finish());
  ASSERT_GE(fd.get(), 0);
  int seals = ::fcntl(fd.get(), F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK),
            F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK);
  // Spent: nothing more goes in.
  Result<Done> after = file->write(0, text, sizeof(text));
  ASSERT_NE(failed(after), nullptr);
  EXPECT_EQ(failed(after)->kind(), ErrorKind::Load);
}

TEST(MappedImageTest, MapsASealedImageWithItsProtections) {
  uint64_t page = Arena::pageSize();
  std::shared_ptr<Arena> arena = valueOf(Arena::create(16 * page));
  ASSERT_NE(arena, nullptr);
  std::unique_ptr<ImageFile> file = valueOf(ImageFile::create(2 * page));
  ASSERT_NE(file, nullptr);
  const char constant[] = "read-only", variable[] = "writable";
  Result<Done> first = file->write(0, constant, sizeof(constant));
  ASSERT_EQ(failed(first), nullptr);
  Result<Done> second = file->write(page, variable, sizeof(variable));
  ASSERT_EQ(failed(second), nullptr);
  kj::AutoCloseFd fd = valueOf(file->finish());

  ImageSpec spec;
  spec.base = arena->base() + 2 * page;
  spec.size = 2 * page;
  spec.segments = {{spec.base, 0, page, R}, {spec.base + page, page, page, R | W}};
  std::unique_ptr<MappedImage> image = valueOf(MappedImage::create(arena, fd.get(), spec));
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->base(), spec.base);
  EXPECT_STREQ(reinterpret_cast<const char*>(spec.base), constant);
  char* data = reinterpret_cast<char*>(spec.base + page);
  EXPECT_STREQ(data, variable);
  EXPECT_EQ(mappedImageContaining(spec.base + page + 3), spec.base);
  // Writable data is this process's private copy: the sealed file keeps its bytes.
  data[0] = 'W';
  char inFile = 0;
  ASSERT_EQ(::pread(fd.get(), &inFile, 1, static_cast<off_t>(page)), 1);
  EXPECT_EQ(inFile, 'w');
  image.reset();
  EXPECT_EQ(mappedImageContaining(spec.base), 0u);
}

TEST(MappedImageTest, RefusesAnUnsealedFile) {
  uint64_t page = Arena::pageSize();
  std::shared_ptr<Arena> arena = valueOf(Arena::create(16 * page));
  ASSERT_NE(arena, nullptr);
  kj::AutoCloseFd fd(::memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_GE(fd.get(), 0);
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(page)), 0);
  ImageSpec spec;
  spec.base = arena->base();
  spec.size = page;
  spec.segments = {{spec.base, 0, page, R}};
  Result<std::unique_ptr<MappedImage>> image = MappedImage::create(arena, fd.get(), spec);
  ASSERT_NE(failed(image), nullptr);
  EXPECT_EQ(failed(image)->kind(), ErrorKind::Load);
  EXPECT_EQ(mappedImageContaining(spec.base), 0u);
}

}  // namespace
}  // namespace rjit::detail
