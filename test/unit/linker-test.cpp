// SPDX-License-Identifier: MIT
// Tests for src/linker: objects from the real compiler linked for an address range this test
// process reserved, then mapped here from the sealed memfd and called. Checks the image's shape
// (segments, protections, seals), imports and their resolution, constructor and destructor
// order by priority, the .eh_frame range, and every failure path.
#include "compiler.h"
#include "linker.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace rjitd::linker {
namespace {

using ::testing::HasSubstr;

constexpr const char* X86_64 = "x86_64-unknown-linux-gnu";

// Imports strlen and a host function; data, rodata and bss; constructors with priorities.
constexpr const char* MODULE_IR = R"(
@counter = global i32 5
@message = constant [6 x i8] c"hello\00"
@zeros = global [4096 x i32] zeroinitializer
@order = global i64 0
@llvm.global_ctors = appending global [3 x { i32, ptr, ptr }] [
  { i32, ptr, ptr } { i32 65535, ptr @ctorLast, ptr null },
  { i32, ptr, ptr } { i32 101, ptr @ctorFirst, ptr null },
  { i32, ptr, ptr } { i32 200, ptr @ctorMiddle, ptr null }]
@llvm.global_dtors = appending global [2 x { i32, ptr, ptr }] [
  { i32, ptr, ptr } { i32 101, ptr @dtorLast, ptr null },
  { i32, ptr, ptr } { i32 65535, ptr @dtorFirst, ptr null }]

declare i64 @strlen(ptr)
declare i32 @host_add(i32, i32)
declare extern_weak i32 @maybe_missing(i32)

define internal void @push(i64 %d) {
  %o = load i64, ptr @order
  %m = mul i64 %o, 10
  %n = add i64 %m, %d
  store i64 %n, ptr @order
  ret void
}
define internal void @ctorFirst() { call void @push(i64 1)  ret void }
define internal void @ctorMiddle() { call void @push(i64 2)  ret void }
define internal void @ctorLast() { call void @push(i64 3)  ret void }
define internal void @dtorFirst() { call void @push(i64 4)  ret void }
define internal void @dtorLast() { call void @push(i64 5)  ret void }

define i64 @message_length() {
  %n = call i64 @strlen(ptr @message)
  ret i64 %n
}
define i32 @use_host(i32 %x) {
  %r = call i32 @host_add(i32 %x, i32 100)
  %c = load i32, ptr @counter
  %s = add i32 %r, %c
  ret i32 %s
}
define i1 @has_maybe_missing() {
  %p = icmp ne ptr @maybe_missing, null
  ret i1 %p
}
define i32 @zero_sum() {
  %a = getelementptr [4096 x i32], ptr @zeros, i64 0, i64 4095
  %v = load i32, ptr %a
  store i32 7, ptr %a
  ret i32 %v
}
)";

extern "C" int hostAdd(int a, int b) {
  return a + b;
}

/// At -O0, so that nothing is folded away: no strlen of a constant, and no constructor that
/// GlobalOpt evaluates at compile time.
std::shared_ptr<const CompiledObject> compileIr(const std::string& ir, unsigned optLevel = 0) {
  compiler::CompileOptions options;
  options.triple = X86_64;
  options.optLevel = optLevel;
  options.moduleName = "test.ll";
  auto result = compiler::compile(ir, options);
  if (auto* f = std::get_if<Failure>(&result)) {
    ADD_FAILURE() << f->message;
    return nullptr;
  }
  return std::make_shared<const CompiledObject>(std::get<CompiledObject>(std::move(result)));
}

/// A PROT_NONE reservation standing in for a client's, with a bump allocator over it.
struct Reservation {
  explicit Reservation(uint64_t size) : size(size) {
    void* p = ::mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    base = reinterpret_cast<uint64_t>(p);
  }
  ~Reservation() { ::munmap(reinterpret_cast<void*>(base), size); }
  Reserve reserver() {
    return [this](uint64_t bytes) -> std::variant<uint64_t, LinkError> {
      if (used + bytes > size)
        return LinkError{ErrorKind::TooLarge, "reservation full", {}, {}};
      uint64_t at = base + used;
      used += bytes;
      return at;
    };
  }
  uint64_t base = 0, size = 0, used = 0;
};

/// Maps every segment of `image` at its address, as the client library does.
void mapImage(const LinkedImage& image) {
  for (const Segment& s : image.segments) {
    int prot = PROT_READ | ((s.protection & WRITE) ? PROT_WRITE : 0) |
               ((s.protection & EXEC) ? PROT_EXEC : 0);
    int flags = MAP_FIXED | ((s.protection & WRITE) ? MAP_PRIVATE : MAP_SHARED);
    void* p = ::mmap(reinterpret_cast<void*>(s.address), s.size, prot, flags, image.memfd.get(),
                     static_cast<off_t>(s.offset));
    ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  }
}

uint64_t symbol(const LinkedImage& image, const std::string& name) {
  for (const auto& s : image.symbols)
    if (s.name == name)
      return s.address;
  ADD_FAILURE() << "no symbol " << name;
  return 0;
}

std::unordered_map<std::string, uint64_t> resolveHere(const PreparedObject& prepared) {
  std::unordered_map<std::string, uint64_t> out;
  for (const Import& import : prepared.imports()) {
    if (import.name == "host_add")
      out[import.name] = reinterpret_cast<uint64_t>(&hostAdd);
    else if (void* p = ::dlsym(RTLD_DEFAULT, import.name.c_str()))
      out[import.name] = reinterpret_cast<uint64_t>(p);
  }
  return out;
}

TEST(LinkerTest, LinksForAnotherAddressRangeIntoASealedMemfd) {
  auto object = compileIr(MODULE_IR);
  ASSERT_TRUE(object);
  auto prepared = prepare(object, "test.ll");
  ASSERT_TRUE(std::holds_alternative<PreparedObject>(prepared))
      << std::get<LinkError>(prepared).message;
  auto& p = std::get<PreparedObject>(prepared);
  std::vector<std::string> names;
  for (const Import& i : p.imports())
    names.push_back(i.name + (i.weak ? "(weak)" : ""));
  EXPECT_EQ(names, (std::vector<std::string>{"host_add", "maybe_missing(weak)", "strlen"}));

  Reservation reservation(64 << 20);
  auto resolved = resolveHere(p);
  auto linked = link(std::move(p), resolved, 4096, reservation.reserver());
  ASSERT_TRUE(std::holds_alternative<LinkedImage>(linked)) << std::get<LinkError>(linked).message;
  LinkedImage& image = std::get<LinkedImage>(linked);

  EXPECT_EQ(image.base, reservation.base);
  EXPECT_EQ(image.size % 4096, 0u);
  EXPECT_GE(image.size, 4096u * 4);  // 16 KiB of zeros at least
  int seals = ::fcntl(image.memfd.get(), F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL),
            F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
  EXPECT_EQ(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, image.memfd.get(), 0),
            MAP_FAILED);
  bool code = false;
  uint64_t end = image.base;
  for (const Segment& s : image.segments) {
    EXPECT_FALSE((s.protection & WRITE) && (s.protection & EXEC));
    EXPECT_EQ(s.address % 4096, 0u);
    EXPECT_EQ(s.address - image.base, s.offset);
    EXPECT_EQ(s.address, end) << "segments are contiguous";
    end = s.address + s.size;
    code = code || (s.protection & EXEC);
  }
  EXPECT_EQ(end, image.base + image.size);
  EXPECT_TRUE(code);

  mapImage(image);
  ASSERT_EQ(image.initializers.size(), 3u);
  for (uint64_t init : image.initializers)
    reinterpret_cast<void (*)()>(init)();
  auto order = reinterpret_cast<int64_t*>(symbol(image, "order"));
  EXPECT_EQ(*order, 123) << "constructors run by priority, lowest first";
  ASSERT_EQ(image.finalizers.size(), 2u);
  for (uint64_t fini : image.finalizers)
    reinterpret_cast<void (*)()>(fini)();
  EXPECT_EQ(*order, 12345) << "destructors run by priority, highest first";

  EXPECT_EQ(reinterpret_cast<int64_t (*)()>(symbol(image, "message_length"))(), 5);
  EXPECT_EQ(reinterpret_cast<int (*)(int)>(symbol(image, "use_host"))(1), 106);
  EXPECT_FALSE(reinterpret_cast<bool (*)()>(symbol(image, "has_maybe_missing"))());
  auto zeroSum = reinterpret_cast<int (*)()>(symbol(image, "zero_sum"));
  EXPECT_EQ(zeroSum(), 0);
  EXPECT_EQ(zeroSum(), 7);
  for (const auto& s : image.symbols)
    EXPECT_TRUE(s.address >= image.base && s.address < image.base + image.size) << s.name;
}

TEST(LinkerTest, UnresolvedImportsAreNamedAndNothingIsReserved) {
  auto object = compileIr(MODULE_IR);
  ASSERT_TRUE(object);
  auto prepared = prepare(object, "test.ll");
  ASSERT_TRUE(std::holds_alternative<PreparedObject>(prepared));
  Reservation reservation(64 << 20);
  auto linked =
      link(std::move(std::get<PreparedObject>(prepared)), {}, 4096, reservation.reserver());
  ASSERT_TRUE(std::holds_alternative<LinkError>(linked));
  const LinkError& f = std::get<LinkError>(linked);
  EXPECT_EQ(f.kind, ErrorKind::LinkFailed);
  EXPECT_THAT(f.message, HasSubstr("'host_add', 'strlen'"));
  EXPECT_THAT(f.message, HasSubstr("test.ll"));
  EXPECT_THAT(f.message, ::testing::Not(HasSubstr("maybe_missing")));  // weak: may stay unset
  // The names travel as data too, for callers that act on them rather than print them.
  EXPECT_THAT(f.unresolved, ::testing::ElementsAre("host_add", "strlen"));
  EXPECT_TRUE(f.duplicates.empty());
}

TEST(LinkerTest, AFullReservationFailsWithTheReservationsReason) {
  auto object = compileIr(MODULE_IR);
  ASSERT_TRUE(object);
  auto prepared = prepare(object, "test.ll");
  ASSERT_TRUE(std::holds_alternative<PreparedObject>(prepared));
  auto& p = std::get<PreparedObject>(prepared);
  auto resolved = resolveHere(p);
  Reservation reservation(8192);  // far too small
  auto linked = link(std::move(p), resolved, 4096, reservation.reserver());
  ASSERT_TRUE(std::holds_alternative<LinkError>(linked));
  EXPECT_EQ(std::get<LinkError>(linked).kind, ErrorKind::TooLarge);
  EXPECT_EQ(std::get<LinkError>(linked).message, "reservation full");
}

TEST(LinkerTest, SectionsWhoseSizesWrapAroundAreRefused) {
  // 1 MiB of data and 16 bss sections of 2^60 bytes: their sum wraps past 2^64. Unchecked, the
  // layout would come out a few pages long and the data would be copied beyond it.
  std::string ir = "@data = global [1048576 x i8] c\"" + std::string(1048576 / 4, 'x') +
                   std::string(1048576 / 4 * 3, 'y') + "\"\n";
  for (int i = 0; i < 16; ++i)
    ir += "@b" + std::to_string(i) +
          " = global [1152921504606846976 x i8] zeroinitializer, section \".bss.b" +
          std::to_string(i) + "\"\n";
  ir += "define ptr @f() { ret ptr @data }\n";
  auto object = compileIr(ir);
  ASSERT_TRUE(object);
  auto prepared = prepare(object, "huge.ll");
  ASSERT_TRUE(std::holds_alternative<PreparedObject>(prepared));
  Reservation reservation(64 << 20);
  auto linked =
      link(std::move(std::get<PreparedObject>(prepared)), {}, 4096, reservation.reserver());
  ASSERT_TRUE(std::holds_alternative<LinkError>(linked));
  EXPECT_EQ(std::get<LinkError>(linked).kind, ErrorKind::TooLarge);
  EXPECT_THAT(std::get<LinkError>(linked).message, HasSubstr("GiB"));
  EXPECT_EQ(reservation.used, 0u) << "nothing was reserved for it";
}

TEST(LinkerTest, BadObjectsAndPageSizesAreRefused) {
  auto junk = std::make_shared<CompiledObject>();
  junk->object = "not an ELF file";
  auto prepared = prepare(junk, "junk.o");
  ASSERT_TRUE(std::holds_alternative<LinkError>(prepared));
  EXPECT_EQ(std::get<LinkError>(prepared).kind, ErrorKind::LinkFailed);
  EXPECT_THAT(std::get<LinkError>(prepared).message, HasSubstr("junk.o"));

  auto object = compileIr("define i32 @f() { ret i32 1 }");
  ASSERT_TRUE(object);
  auto ok = prepare(object, "f.ll");
  ASSERT_TRUE(std::holds_alternative<PreparedObject>(ok));
  Reservation reservation(1 << 20);
  auto linked = link(std::move(std::get<PreparedObject>(ok)), {}, 3000, reservation.reserver());
  ASSERT_TRUE(std::holds_alternative<LinkError>(linked));
  EXPECT_EQ(std::get<LinkError>(linked).kind, ErrorKind::InvalidRequest);
  EXPECT_THAT(std::get<LinkError>(linked).message, HasSubstr("power of two"));
}

/// Checks the layout every client accepts: page-aligned, contiguous, non-empty segments that
/// cover the image, none writable and executable.
void expectValidLayout(const LinkedImage& image) {
  uint64_t end = image.base;
  for (const Segment& s : image.segments) {
    EXPECT_GT(s.size, 0u) << "an empty segment at " << s.address;
    EXPECT_FALSE((s.protection & WRITE) && (s.protection & EXEC));
    EXPECT_EQ(s.address % 4096, 0u);
    EXPECT_EQ(s.size % 4096, 0u);
    EXPECT_EQ(s.address - image.base, s.offset);
    EXPECT_EQ(s.address, end) << "segments are contiguous";
    end = s.address + s.size;
  }
  EXPECT_EQ(end, image.base + image.size);
}

TEST(LinkerTest, ZeroSizedAndEmptySectionsLinkIntoAValidLayout) {
  // Zero-sized globals (`unsigned char foo[1][0];`, `static int d[][8] = {};`) make empty
  // .bss, .data and .rodata sections. When nothing else is writable, the read-write segment
  // came out empty, and clients refuse a 0-byte segment. Each module here has one kind of empty
  // section and nothing else of its protection.
  const char* modules[] = {
      "@foo = global [1 x [0 x i8]] zeroinitializer, align 1\n"
      "@d = internal global [0 x [8 x i32]] zeroinitializer, align 16\n"
      "define ptr @address() { %p = getelementptr i8, ptr @d, i64 0\n"
      "  %q = select i1 true, ptr @foo, ptr %p\n  ret ptr %q }\n",
      "@e = global [0 x i32] zeroinitializer, section \".data.empty\"\n"
      "define ptr @address() { ret ptr @e }\n",
      "@r = constant [0 x i64] zeroinitializer, section \".rodata.empty\"\n"
      "define ptr @address() { ret ptr @r }\n",
      "@t = thread_local global [0 x i32] zeroinitializer\n"
      "define ptr @address() { ret ptr @t }\n",
      "@i = global [0 x ptr] zeroinitializer, section \".init_array\"\n"
      "@f = global [0 x ptr] zeroinitializer, section \".fini_array.00100\"\n"
      "@z = constant <4 x i32> zeroinitializer, section \".rodata.cst16\"\n"
      "@zz = constant [0 x <8 x i32>] zeroinitializer, section \".rodata.cst32\"\n"
      "define ptr @address() { %a = select i1 true, ptr @i, ptr @f\n"
      "  %b = select i1 true, ptr @zz, ptr %a\n  ret ptr %b }\n",
  };
  for (const char* ir : modules) {
    for (unsigned optLevel : {0u, 2u}) {
      SCOPED_TRACE(std::string(ir) + " at -O" + std::to_string(optLevel));
      auto object = compileIr(ir, optLevel);
      ASSERT_TRUE(object);
      auto prepared = prepare(object, "zero.ll");
      ASSERT_TRUE(std::holds_alternative<PreparedObject>(prepared))
          << std::get<LinkError>(prepared).message;
      auto& p = std::get<PreparedObject>(prepared);
      Reservation reservation(1 << 20);
      auto linked = link(std::move(p), resolveHere(p), 4096, reservation.reserver());
      ASSERT_TRUE(std::holds_alternative<LinkedImage>(linked))
          << std::get<LinkError>(linked).message;
      const LinkedImage& image = std::get<LinkedImage>(linked);
      expectValidLayout(image);
      if (::testing::Test::HasFailure())
        return;  // a layout the client would refuse: mapping it here could crash the test
      ASSERT_NO_FATAL_FAILURE(mapImage(image));
      // A zero-sized object may sit at the end of the image (as ld places it), never beyond.
      // Called on a thread of its own: emulated TLS (libgcc's __emutls_get_address) allocates
      // a thread's block on first use and frees it when the thread ends, which the main
      // thread never does before LeakSanitizer looks.
      uint64_t address = 0;
      std::thread([&]() {
        address = reinterpret_cast<uint64_t (*)()>(symbol(image, "address"))();
      }).join();
      if (std::string(ir).find("thread_local") == std::string::npos) {
        EXPECT_GE(address, image.base);
        EXPECT_LE(address, image.base + image.size);
      }
    }
  }
}

TEST(LinkerTest, ModulesWithoutCodeOrDataGetOnePageAndNoSegments) {
  // Nothing but zero-sized globals, or nothing at all: every section is empty.
  for (const char* ir : {"", "@foo = global [1 x [0 x i8]] zeroinitializer\n"
                             "@e = global [0 x i32] zeroinitializer, section \".data.empty\"\n"}) {
    for (unsigned optLevel : {0u, 2u}) {
      SCOPED_TRACE("'" + std::string(ir) + "' at -O" + std::to_string(optLevel));
      auto object = compileIr(std::string("; nothing else\n") + ir, optLevel);
      ASSERT_TRUE(object);
      auto prepared = prepare(object, "empty.ll");
      ASSERT_TRUE(std::holds_alternative<PreparedObject>(prepared))
          << std::get<LinkError>(prepared).message;
      Reservation reservation(1 << 20);
      auto linked =
          link(std::move(std::get<PreparedObject>(prepared)), {}, 4096, reservation.reserver());
      ASSERT_TRUE(std::holds_alternative<LinkedImage>(linked))
          << std::get<LinkError>(linked).message;
      const LinkedImage& image = std::get<LinkedImage>(linked);
      EXPECT_EQ(image.size, 4096u) << "a page, so that the module has its own __dso_handle";
      EXPECT_TRUE(image.segments.empty());
      EXPECT_TRUE(image.initializers.empty());
      for (const auto& s : image.symbols)
        EXPECT_TRUE(s.address >= image.base && s.address <= image.base + image.size) << s.name;
    }
  }
}

TEST(LinkerTest, ZeroSizedGlobalsLinkForAarch64) {
  // Linked only (this test runs on x86_64): the layout is the same for every target.
  compiler::CompileOptions options;
  options.triple = "aarch64-unknown-linux-gnu";
  options.optLevel = 2;
  options.moduleName = "zero.ll";
  auto result = compiler::compile("@foo = global [1 x [0 x i8]] zeroinitializer\n"
                                  "define ptr @address() { ret ptr @foo }\n",
                                  options);
  ASSERT_TRUE(std::holds_alternative<CompiledObject>(result)) << std::get<Failure>(result).message;
  auto object = std::make_shared<const CompiledObject>(std::get<CompiledObject>(std::move(result)));
  auto prepared = prepare(object, "zero.ll");
  ASSERT_TRUE(std::holds_alternative<PreparedObject>(prepared))
      << std::get<LinkError>(prepared).message;
  Reservation reservation(1 << 20);
  auto linked =
      link(std::move(std::get<PreparedObject>(prepared)), {}, 4096, reservation.reserver());
  ASSERT_TRUE(std::holds_alternative<LinkedImage>(linked)) << std::get<LinkError>(linked).message;
  expectValidLayout(std::get<LinkedImage>(linked));
}

TEST(LinkerTest, CxxObjectsRecordTheirEhFrame) {
  // A function with a landing pad: the object has .eh_frame and .gcc_except_table.
  constexpr const char* ir = R"(
declare i32 @__gxx_personality_v0(...)
declare void @may_throw()
define i32 @guarded() personality ptr @__gxx_personality_v0 {
  invoke void @may_throw() to label %ok unwind label %pad
ok:
  ret i32 0
pad:
  %lp = landingpad { ptr, i32 } catch ptr null
  ret i32 1
}
)";
  auto object = compileIr(ir);
  ASSERT_TRUE(object);
  auto prepared = prepare(object, "eh.ll");
  ASSERT_TRUE(std::holds_alternative<PreparedObject>(prepared));
  auto& p = std::get<PreparedObject>(prepared);
  std::unordered_map<std::string, uint64_t> resolved = {{"__gxx_personality_v0", 0x1000},
                                                        {"may_throw", 0x2000}};
  Reservation reservation(1 << 20);
  auto linked = link(std::move(p), resolved, 4096, reservation.reserver());
  ASSERT_TRUE(std::holds_alternative<LinkedImage>(linked)) << std::get<LinkError>(linked).message;
  const LinkedImage& image = std::get<LinkedImage>(linked);
  EXPECT_NE(image.ehFrameAddress, 0u);
  EXPECT_GT(image.ehFrameSize, 0u);
  EXPECT_GE(image.ehFrameAddress, image.base);
  EXPECT_LE(image.ehFrameAddress + image.ehFrameSize, image.base + image.size);
}

}  // namespace
}  // namespace rjitd::linker
