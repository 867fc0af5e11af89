// SPDX-License-Identifier: MIT
// Tests for src/compiler: every optimization level and both targets, the module policies
// (triple, datalayout, optnone, function attributes, emulated TLS), each bad-input path and
// concurrent, deterministic compiles.
#include "compiler.h"
#include "ir-signature.h"

#include <llvm/AsmParser/Parser.h>
#include <llvm/Bitcode/BitcodeWriter.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Support/SourceMgr.h>
#include <llvm/Support/raw_ostream.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace rjitd::compiler {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* X86_64 = "x86_64-unknown-linux-gnu";
constexpr const char* AARCH64 = "aarch64-unknown-linux-gnu";

constexpr uint16_t ET_REL_ = 1;
constexpr uint16_t EM_X86_64_ = 62;
constexpr uint16_t EM_AARCH64_ = 183;

// Sums 0..99 in a loop and calls abort() if the sum is not 4950. At -O2 the loop folds to a
// constant, the check with it, and abort() is no longer referenced; at -O0 it is.
constexpr const char* SUM_IR = R"(define i32 @sum() {
entry:
  br label %loop
loop:
  %i = phi i32 [ 0, %entry ], [ %next, %loop ]
  %acc = phi i32 [ 0, %entry ], [ %acc.next, %loop ]
  %acc.next = add i32 %acc, %i
  %next = add i32 %i, 1
  %done = icmp eq i32 %next, 100
  br i1 %done, label %exit, label %loop
exit:
  %ok = icmp eq i32 %acc.next, 4950
  br i1 %ok, label %good, label %bad
bad:
  call void @abort()
  unreachable
good:
  ret i32 %acc.next
}
declare void @abort()
)";

// The same function as clang -O0 emits it: optnone noinline.
constexpr const char* SUM_OPTNONE_IR = R"(define i32 @sum() #0 {
entry:
  br label %loop
loop:
  %i = phi i32 [ 0, %entry ], [ %next, %loop ]
  %acc = phi i32 [ 0, %entry ], [ %acc.next, %loop ]
  %acc.next = add i32 %acc, %i
  %next = add i32 %i, 1
  %done = icmp eq i32 %next, 100
  br i1 %done, label %exit, label %loop
exit:
  %ok = icmp eq i32 %acc.next, 4950
  br i1 %ok, label %good, label %bad
bad:
  call void @abort()
  unreachable
good:
  ret i32 %acc.next
}
declare void @abort()
attributes #0 = { noinline optnone }
)";

CompileOptions options(const char* triple = X86_64, unsigned optLevel = 2) {
  CompileOptions o;
  o.triple = triple;
  o.optLevel = optLevel;
  o.moduleName = "test.ll";
  return o;
}

/// The object, or a test failure naming the Failure.
CompiledObject compileOk(std::string_view ir, const CompileOptions& o) {
  CompileResult result = compile(ir, o);
  if (const Failure* failure = std::get_if<Failure>(&result)) {
    ADD_FAILURE() << "compile failed (" << errorKindName(failure->kind)
                  << "): " << failure->message;
    return {};
  }
  return std::get<CompiledObject>(std::move(result));
}

/// The failure, or a test failure if the compile succeeded.
Failure compileFails(std::string_view ir, const CompileOptions& o) {
  CompileResult result = compile(ir, o);
  if (std::holds_alternative<CompiledObject>(result)) {
    ADD_FAILURE() << "compile unexpectedly succeeded";
    return {};
  }
  return std::get<Failure>(std::move(result));
}

/// The names of the symbols the object's relocations refer to (the functions its code calls).
std::vector<std::string> relocationTargets(const std::string& object) {
  std::vector<std::string> names;
  llvm::Expected<std::unique_ptr<llvm::object::ObjectFile>> file =
      llvm::object::ObjectFile::createObjectFile(llvm::MemoryBufferRef(object, "object"));
  if (!file) {
    ADD_FAILURE() << llvm::toString(file.takeError());
    return names;
  }
  for (const llvm::object::SectionRef& section : (*file)->sections())
    for (const llvm::object::RelocationRef& relocation : section.relocations()) {
      llvm::object::symbol_iterator symbol = relocation.getSymbol();
      if (symbol == (*file)->symbol_end())
        continue;
      llvm::Expected<llvm::StringRef> name = symbol->getName();
      if (name)
        names.push_back(name->str());
      else
        llvm::consumeError(name.takeError());  // a section symbol without a name: not a call
    }
  return names;
}

uint16_t readLe16(const std::string& bytes, size_t offset) {
  return static_cast<uint16_t>(static_cast<unsigned char>(bytes[offset]) |
                               static_cast<unsigned char>(bytes[offset + 1]) << 8);
}

/// Checks the ELF identification and returns e_machine (0 on a malformed header).
uint16_t elfRelocatableMachine(const std::string& object) {
  if (object.size() < 64 || object.compare(0, 4,
                                           "\x7f"
                                           "ELF") != 0) {
    ADD_FAILURE() << "not an ELF file";
    return 0;
  }
  EXPECT_EQ(object[4], 2) << "ELFCLASS64";
  EXPECT_EQ(object[5], 1) << "ELFDATA2LSB";
  EXPECT_EQ(readLe16(object, 16), ET_REL_) << "e_type";
  return readLe16(object, 18);
}

std::vector<std::string> defineNames(const CompiledObject& object) {
  std::vector<std::string> names;
  for (const ObjectSymbol& s : object.defines)
    names.push_back(s.name);
  return names;
}

const ObjectSymbol* findDefine(const CompiledObject& object, std::string_view name) {
  for (const ObjectSymbol& s : object.defines)
    if (s.name == name)
      return &s;
  return nullptr;
}

bool hasWarning(const std::vector<Diagnostic>& diagnostics, std::string_view text) {
  return std::any_of(diagnostics.begin(), diagnostics.end(), [&](const Diagnostic& d) {
    return d.severity == Diagnostic::Severity::Warning && d.message.find(text) != std::string::npos;
  });
}

/// Bitcode for textual IR, written by LLVM's own writer.
std::string toBitcode(const std::string& ir) {
  llvm::LLVMContext context;
  llvm::SMDiagnostic error;
  std::unique_ptr<llvm::Module> module = llvm::parseAssemblyString(ir, error, context);
  if (!module) {
    ADD_FAILURE() << "test IR does not parse: " << error.getMessage().str();
    return {};
  }
  std::string bytes;
  llvm::raw_string_ostream os(bytes);
  llvm::WriteBitcodeToFile(*module, os);
  os.flush();
  return bytes;
}

void appendLe32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

/// `bitcode` inside the 0x0B17C0DE wrapper header (as Darwin tools write it).
std::string wrapBitcode(const std::string& bitcode) {
  std::string out;
  appendLe32(out, 0x0B17C0DE);                             // magic
  appendLe32(out, 0);                                      // version
  appendLe32(out, 20);                                     // offset of the bitcode
  appendLe32(out, static_cast<uint32_t>(bitcode.size()));  // size
  appendLe32(out, 0);                                      // cputype
  return out + bitcode;
}

/// Runs `body` with stderr captured and returns what it printed.
template <typename Body> std::string stderrOf(Body&& body) {
  ::testing::internal::CaptureStderr();
  body();
  return ::testing::internal::GetCapturedStderr();
}

// --- identity --------------------------------------------------------------------------------

TEST(CompilerTest, ServesBothTargetsInKnownOrder) {
  std::vector<TargetName> served = servedTargets();
  ASSERT_EQ(served.size(), 2u);
  EXPECT_EQ(served[0].triple, X86_64);
  EXPECT_EQ(served[1].triple, AARCH64);
  EXPECT_EQ(defaultTriple(), X86_64);
  EXPECT_EQ(llvmVersion().substr(0, 3), "19.");
}

// --- optimization levels ---------------------------------------------------------------------

class OptLevelTest : public ::testing::TestWithParam<unsigned> {};

TEST_P(OptLevelTest, EmitsX86_64RelocatableDefiningTheFunction) {
  CompiledObject object = compileOk(SUM_IR, options(X86_64, GetParam()));
  EXPECT_EQ(elfRelocatableMachine(object.object), EM_X86_64_);
  EXPECT_EQ(object.triple, X86_64);
  const ObjectSymbol* sum = findDefine(object, "sum");
  ASSERT_NE(sum, nullptr);
  EXPECT_EQ(sum->kind, ObjectSymbol::Kind::Function);
  EXPECT_TRUE(object.diagnostics.empty());
  EXPECT_GT(object.compileMicros, 0u);
}

INSTANTIATE_TEST_SUITE_P(AllLevels, OptLevelTest, ::testing::Values(0u, 1u, 2u, 3u));

TEST(CompilerTest, O2FoldsTheLoopAndItsCheck) {
  CompiledObject o0 = compileOk(SUM_IR, options(X86_64, 0));
  CompiledObject o2 = compileOk(SUM_IR, options(X86_64, 2));
  EXPECT_THAT(o0.needs, Contains("abort"));
  EXPECT_THAT(o2.needs, Not(Contains("abort")));
  EXPECT_LT(o2.object.size(), o0.object.size());
}

TEST(CompilerTest, OptnoneFunctionsAreOptimizedFromO1) {
  // At -O0 the function stays as written; at -O2 optnone is dropped and the loop folds.
  CompiledObject o0 = compileOk(SUM_OPTNONE_IR, options(X86_64, 0));
  CompiledObject o2 = compileOk(SUM_OPTNONE_IR, options(X86_64, 2));
  EXPECT_THAT(o0.needs, Contains("abort"));
  EXPECT_THAT(o2.needs, Not(Contains("abort")));
}

TEST(CompilerTest, FunctionsReadingTheirFrameStayNoinlineFromO1) {
  // clang -O0 output: every function `optnone noinline`, the user's noinline indistinguishable
  // from clang's. From -O1 both go, except noinline on a function that reads its own return
  // address (or frame, or __builtin_longjmp buffer): inlined, it would read its caller's.
  constexpr const char* ir = R"(
declare ptr @llvm.returnaddress(i32)
declare void @observe()
define ptr @return_address() #0 {
  %a = call ptr @llvm.returnaddress(i32 0)
  ret ptr %a
}
define void @plain() #0 {
  call void @observe()
  ret void
}
define ptr @caller() #0 {
  call void @plain()
  %a = call ptr @return_address()
  ret ptr %a
}
attributes #0 = { noinline optnone }
)";
  for (unsigned level : {1u, 2u, 3u}) {
    std::vector<std::string> calls =
        relocationTargets(compileOk(ir, options(X86_64, level)).object);
    EXPECT_THAT(calls, Contains("return_address")) << "-O" << level;
    EXPECT_THAT(calls, Not(Contains("plain"))) << "-O" << level << ": plain() is inlined";
  }
}

TEST(CompilerTest, UndefBytesOfInitializersReadAsZerosAtEveryLevel) {
  // What clang 19 emits for `union U { int i, j[4]; } t = {};` then `t.j[1] + t.j[2] == 0`:
  // the bytes past the first member are undef in the constant copied into `t`. Optimized as
  // they are, the branch on them makes the whole function `unreachable` (neither call stays,
  // and running it crashes); read as the zeros the object file holds, only all_zero stays.
  constexpr const char* ir = R"(
@init = private unnamed_addr constant { i32, [12 x i8] } { i32 0, [12 x i8] undef }, align 4
declare void @abort()
declare void @all_zero()
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)
define void @check_tail() {
entry:
  %t = alloca [4 x i32], align 4
  call void @llvm.memcpy.p0.p0.i64(ptr align 4 %t, ptr align 4 @init, i64 16, i1 false)
  %p1 = getelementptr [4 x i32], ptr %t, i64 0, i64 1
  %v1 = load i32, ptr %p1
  %p2 = getelementptr [4 x i32], ptr %t, i64 0, i64 2
  %v2 = load i32, ptr %p2
  %s = add i32 %v1, %v2
  %zero = icmp eq i32 %s, 0
  br i1 %zero, label %good, label %bad
bad:
  call void @abort()
  unreachable
good:
  call void @all_zero()
  ret void
}
)";
  for (unsigned level : {1u, 2u, 3u}) {
    CompiledObject object = compileOk(ir, options(X86_64, level));
    EXPECT_THAT(object.needs, Contains("all_zero")) << "-O" << level;
    EXPECT_THAT(object.needs, Not(Contains("abort"))) << "-O" << level;
  }
}

TEST(CompilerTest, ClangO0BitcodeIsOptimizedAtO2) {
  // Real clang -O0 output (every function optnone noinline) from test/meson.build.
  // A missing input is a broken setup, not a reason to skip: the test fails and says which.
  const char* dir = std::getenv("RJIT_TEST_GEN");
  ASSERT_NE(dir, nullptr) << "RJIT_TEST_GEN is not set (run the test through meson test)";
  std::string path = std::string(dir) + "/sieve.bc";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path << " cannot be read (test/meson.build builds it before the tests run)";
  std::string bitcode((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CompiledObject o0 = compileOk(bitcode, options(X86_64, 0));
  CompiledObject o2 = compileOk(bitcode, options(X86_64, 2));
  EXPECT_THAT(defineNames(o2), Contains("main"));
  EXPECT_LT(o2.object.size(), o0.object.size());
}

// --- targets ---------------------------------------------------------------------------------

TEST(CompilerTest, Aarch64EmitsAarch64Relocatable) {
  CompiledObject object = compileOk(SUM_IR, options(AARCH64, 2));
  EXPECT_EQ(elfRelocatableMachine(object.object), EM_AARCH64_);
  EXPECT_EQ(object.triple, AARCH64);
  EXPECT_THAT(defineNames(object), Contains("sum"));
}

TEST(CompilerTest, ModuleTripleSpelledDifferentlyIsAccepted) {
  std::string ir = std::string("target triple = \"x86_64-pc-linux-gnu\"\n") + SUM_IR;
  CompiledObject object = compileOk(ir, options(X86_64, 2));
  EXPECT_EQ(object.triple, X86_64);
}

TEST(CompilerTest, X86ModuleForAarch64IsTargetMismatch) {
  std::string ir = std::string("target triple = \"x86_64-unknown-linux-gnu\"\n") + SUM_IR;
  Failure failure = compileFails(ir, options(AARCH64, 2));
  EXPECT_EQ(failure.kind, ErrorKind::TargetMismatch);
  EXPECT_THAT(failure.message, HasSubstr("'x86_64-unknown-linux-gnu'"));
  EXPECT_THAT(failure.message, HasSubstr("--target x86_64"));
}

TEST(CompilerTest, Aarch64ModuleForX86IsTargetMismatch) {
  std::string ir = std::string("target triple = \"aarch64-unknown-linux-gnu\"\n") + SUM_IR;
  Failure failure = compileFails(ir, options(X86_64, 2));
  EXPECT_EQ(failure.kind, ErrorKind::TargetMismatch);
  EXPECT_THAT(failure.message, HasSubstr("--target aarch64"));
}

TEST(CompilerTest, OtherOperatingSystemIsTargetMismatch) {
  std::string ir = std::string("target triple = \"x86_64-apple-macosx10.15.0\"\n") + SUM_IR;
  Failure failure = compileFails(ir, options(X86_64, 2));
  EXPECT_EQ(failure.kind, ErrorKind::TargetMismatch);
  EXPECT_THAT(failure.message, Not(HasSubstr("--target")));
}

TEST(CompilerTest, ForeignDatalayoutIsReplacedWithAWarning) {
  // LLVM 14's x86_64 datalayout (no i128 alignment); LLVM 19's differs.
  std::string ir = std::string("target datalayout = \"e-m:e-i64:64-f80:128-n8:16:32:64-S128\"\n"
                               "target triple = \"x86_64-pc-linux-gnu\"\n") +
                   SUM_IR;
  CompiledObject object = compileOk(ir, options(X86_64, 2));
  EXPECT_TRUE(hasWarning(object.diagnostics, "datalayout"));
  EXPECT_THAT(defineNames(object), Contains("sum"));
}

TEST(CompilerTest, UnknownTarget) {
  Failure failure = compileFails(SUM_IR, options("riscv64-unknown-linux-gnu"));
  EXPECT_EQ(failure.kind, ErrorKind::UnknownTarget);
  EXPECT_THAT(failure.message, HasSubstr("riscv64"));
  EXPECT_THAT(failure.message, HasSubstr("x86_64 (x86_64-unknown-linux-gnu)"));
  EXPECT_THAT(failure.message, HasSubstr("aarch64 (aarch64-unknown-linux-gnu)"));
}

TEST(CompilerTest, TargetAliasIsNotACanonicalTriple) {
  // Callers resolve names first (rjitd::resolveTarget): the cache key holds the canonical one.
  Failure failure = compileFails(SUM_IR, options("x86_64"));
  EXPECT_EQ(failure.kind, ErrorKind::UnknownTarget);
  EXPECT_THAT(failure.message, HasSubstr("x86_64-unknown-linux-gnu"));
  failure = compileFails(SUM_IR, options(""));
  EXPECT_EQ(failure.kind, ErrorKind::UnknownTarget);
  EXPECT_THAT(failure.message, HasSubstr("no target"));
}

// --- request options -------------------------------------------------------------------------

TEST(CompilerTest, OptLevelAboveThreeIsInvalidRequest) {
  Failure failure = compileFails(SUM_IR, options(X86_64, 4));
  EXPECT_EQ(failure.kind, ErrorKind::InvalidRequest);
  EXPECT_THAT(failure.message, HasSubstr("4"));
}

TEST(CompilerTest, UnknownCpuIsInvalidRequestAndPrintsNothing) {
  CompileOptions o = options();
  o.cpu = "not-a-cpu";
  Failure failure;
  EXPECT_EQ(stderrOf([&] { failure = compileFails(SUM_IR, o); }), "");
  EXPECT_EQ(failure.kind, ErrorKind::InvalidRequest);
  EXPECT_THAT(failure.message, HasSubstr("'not-a-cpu'"));

  // An x86 CPU is unknown to AArch64.
  CompileOptions a = options(AARCH64);
  a.cpu = "skylake";
  EXPECT_EQ(stderrOf([&] { failure = compileFails(SUM_IR, a); }), "");
  EXPECT_EQ(failure.kind, ErrorKind::InvalidRequest);
}

TEST(CompilerTest, UnknownFeatureIsInvalidRequestAndPrintsNothing) {
  CompileOptions o = options();
  o.features = "+sse2,+no-such-feature";
  Failure failure;
  EXPECT_EQ(stderrOf([&] { failure = compileFails(SUM_IR, o); }), "");
  EXPECT_EQ(failure.kind, ErrorKind::InvalidRequest);
  EXPECT_THAT(failure.message, HasSubstr("'no-such-feature'"));

  o.features = "avx2";  // no sign
  failure = compileFails(SUM_IR, o);
  EXPECT_EQ(failure.kind, ErrorKind::InvalidRequest);
  EXPECT_THAT(failure.message, HasSubstr("'avx2'"));
}

TEST(CompilerTest, KnownCpuAndFeaturesCompile) {
  CompileOptions o = options();
  o.cpu = "skylake";
  o.features = "+avx2,-avx512f";
  std::string err = stderrOf([&] { compileOk(SUM_IR, o); });
  EXPECT_EQ(err, "");

  CompileOptions a = options(AARCH64);
  a.cpu = "cortex-a72";
  a.features = "+neon";
  compileOk(SUM_IR, a);
}

TEST(CompilerTest, UnknownFunctionFeatureIsIgnoredWithAWarning) {
  std::string ir = std::string(R"(define i32 @f() #0 {
  ret i32 1
}
attributes #0 = { "target-cpu"="no-such-cpu" "target-features"="+sse2,+bogus-feature" }
)");
  CompiledObject object;
  std::string err = stderrOf([&] { object = compileOk(ir, options()); });
  EXPECT_EQ(err, "");
  EXPECT_TRUE(hasWarning(object.diagnostics, "bogus-feature"));
  EXPECT_TRUE(hasWarning(object.diagnostics, "no-such-cpu"));
  EXPECT_THAT(defineNames(object), Contains("f"));
}

TEST(CompilerTest, CpuOrFeaturesWithoutTheAbiBaselineAreInvalidRequests) {
  // LLVM itself ends the process for these ("64-bit code requested on a subtarget that doesn't
  // support it!", "Cannot select") or emits soft-float code the client cannot call.
  struct Case {
    const char* triple;
    const char* cpu;
    const char* features;
  };
  for (const Case& c :
       {Case{X86_64, "i386", ""}, Case{X86_64, "pentium4", ""}, Case{X86_64, "", "-sse2"},
        Case{X86_64, "", "-x87"}, Case{X86_64, "", "+soft-float"}, Case{X86_64, "", "-64bit"},
        Case{AARCH64, "", "-neon"}, Case{AARCH64, "", "-fp-armv8"}}) {
    SCOPED_TRACE(std::string(c.triple) + " cpu '" + c.cpu + "' features '" + c.features + "'");
    CompileOptions o = options(c.triple);
    o.cpu = c.cpu;
    o.features = c.features;
    Failure failure;
    EXPECT_EQ(stderrOf([&] { failure = compileFails(SUM_IR, o); }), "");
    EXPECT_EQ(failure.kind, ErrorKind::InvalidRequest);
    EXPECT_THAT(failure.message, HasSubstr("ABI baseline"));
  }
}

TEST(CompilerTest, RequestedCpuReplacesTheFunctionsOwn) {
  // clang writes "target-cpu"="x86-64"; an explicit request for skylake (which has popcnt)
  // must still change the code.
  const char* ir = R"(define i64 @bits(i64 %x) #0 {
  %n = call i64 @llvm.ctpop.i64(i64 %x)
  ret i64 %n
}
declare i64 @llvm.ctpop.i64(i64)
attributes #0 = { "target-cpu"="x86-64" "target-features"="+sse2" }
)";
  CompiledObject plain = compileOk(ir, options());
  CompileOptions o = options();
  o.cpu = "skylake";
  CompiledObject skylake = compileOk(ir, o);
  EXPECT_NE(plain.object, skylake.object);
  o.cpu = "";
  o.features = "+popcnt";
  CompiledObject popcnt = compileOk(ir, o);
  EXPECT_NE(plain.object, popcnt.object);
}

TEST(CompilerTest, FunctionCpuWithoutTheAbiBaselineIsInvalidModule) {
  const char* i686 = R"(define i32 @f() #0 {
  ret i32 1
}
attributes #0 = { "target-cpu"="i686" }
)";
  Failure failure;
  EXPECT_EQ(stderrOf([&] { failure = compileFails(i686, options()); }), "");
  EXPECT_EQ(failure.kind, ErrorKind::InvalidModule);
  EXPECT_THAT(failure.message, HasSubstr("'f'"));
  EXPECT_THAT(failure.message, HasSubstr("'i686'"));

  const char* softFloat = R"(define float @g(float %x) #0 {
  ret float %x
}
attributes #0 = { "use-soft-float"="true" }
)";
  EXPECT_EQ(compileFails(softFloat, options()).kind, ErrorKind::InvalidModule);
}

// --- bad modules -----------------------------------------------------------------------------

TEST(CompilerTest, MalformedTextGivesLineAndColumn) {
  const char* ir = "define i32 @f() {\n"
                   "  ret i32 %nope\n"
                   "}\n";
  Failure failure = compileFails(ir, options());
  EXPECT_EQ(failure.kind, ErrorKind::InvalidModule);
  EXPECT_THAT(failure.message, HasSubstr("test.ll:2:11: error: use of undefined value '%nope'"));
  ASSERT_EQ(failure.diagnostics.size(), 1u);
  EXPECT_EQ(failure.diagnostics[0].severity, Diagnostic::Severity::Error);
  EXPECT_EQ(failure.diagnostics[0].line, 2u);
  EXPECT_EQ(failure.diagnostics[0].column, 11u);
  EXPECT_THAT(failure.diagnostics[0].message, HasSubstr("%nope"));
}

TEST(CompilerTest, GarbageAfterBitcodeMagicIsInvalidModule) {
  std::string garbage = std::string("BC\xC0\xDE", 4) + std::string(60, '\x5a');
  Failure failure = compileFails(garbage, options());
  EXPECT_EQ(failure.kind, ErrorKind::InvalidModule);
  EXPECT_THAT(failure.message, HasSubstr("invalid bitcode"));
  EXPECT_FALSE(failure.diagnostics.empty());
}

TEST(CompilerTest, TextDeclaredAsBitcodeIsInvalidModule) {
  CompileOptions o = options();
  o.format = IrFormat::Bitcode;
  Failure failure = compileFails(SUM_IR, o);
  EXPECT_EQ(failure.kind, ErrorKind::InvalidModule);
  EXPECT_THAT(failure.message, HasSubstr("invalid bitcode"));
}

TEST(CompilerTest, TruncatedBitcodeIsInvalidModule) {
  std::string bitcode = toBitcode(SUM_IR);
  ASSERT_GT(bitcode.size(), 64u);
  Failure failure = compileFails(bitcode.substr(0, bitcode.size() / 2 & ~size_t{3}), options());
  EXPECT_EQ(failure.kind, ErrorKind::InvalidModule);
}

TEST(CompilerTest, EmptyModuleIsInvalidRequest) {
  EXPECT_EQ(compileFails("", options()).kind, ErrorKind::InvalidRequest);
}

TEST(CompilerTest, VerifierFailureIsInvalidModule) {
  // %x does not dominate its use. The debug-info version flag used to make LLVM's reader
  // verify the module itself and abort the process.
  const char* ir = R"(define i32 @f(i1 %c) {
entry:
  br i1 %c, label %a, label %b
a:
  %x = add i32 1, 2
  br label %b
b:
  ret i32 %x
}
!llvm.module.flags = !{!0}
!0 = !{i32 2, !"Debug Info Version", i32 3}
)";
  Failure failure = compileFails(ir, options());
  EXPECT_EQ(failure.kind, ErrorKind::InvalidModule);
  EXPECT_THAT(failure.message, HasSubstr("does not dominate"));

  // The same module as bitcode goes through the bitcode reader's upgrade path.
  failure = compileFails(toBitcode(ir), options());
  EXPECT_EQ(failure.kind, ErrorKind::InvalidModule);
  EXPECT_THAT(failure.message, HasSubstr("does not dominate"));
}

TEST(CompilerTest, BrokenDebugInfoIsStrippedWithAWarning) {
  std::string ir = std::string(SUM_IR) + R"(!llvm.module.flags = !{!0}
!llvm.dbg.cu = !{!1}
!0 = !{i32 2, !"Debug Info Version", i32 3}
!1 = !DIFile(filename: "broken", directory: "")
)";
  CompiledObject object = compileOk(ir, options());
  EXPECT_TRUE(hasWarning(object.diagnostics, "debug info"));
  EXPECT_THAT(defineNames(object), Contains("sum"));
}

TEST(CompilerTest, AnotherTargetsIntrinsicIsInvalidModule) {
  // Code generation would end the process with "Cannot select: intrinsic".
  const char* ir = R"(declare i32 @llvm.aarch64.crc32b(i32, i32)
define i32 @f(i32 %a, i32 %b) {
  %c = call i32 @llvm.aarch64.crc32b(i32 %a, i32 %b)
  ret i32 %c
}
)";
  Failure failure = compileFails(ir, options(X86_64));
  EXPECT_EQ(failure.kind, ErrorKind::InvalidModule);
  EXPECT_THAT(failure.message, HasSubstr("llvm.aarch64.crc32b"));
  // Its own target compiles it, given the CRC extension the intrinsic needs (without it LLVM
  // ends the process: a same-target intrinsic is not checked against the features).
  CompileOptions a = options(AARCH64);
  a.features = "+crc";
  EXPECT_THAT(defineNames(compileOk(ir, a)), Contains("f"));
}

TEST(CompilerTest, BadInlineAssemblyIsInvalidModule) {
  const char* good = R"(define void @f() {
  call void asm sideeffect "nop", ""()
  ret void
}
)";
  compileOk(good, options());
  const char* bad = R"(define void @f() {
  call void asm sideeffect "no_such_instruction %eax", ""()
  ret void
}
)";
  Failure failure = compileFails(bad, options());
  EXPECT_EQ(failure.kind, ErrorKind::InvalidModule);
  EXPECT_THAT(failure.message, HasSubstr("no_such_instruction"));
}

// --- bitcode ---------------------------------------------------------------------------------

TEST(CompilerTest, BitcodeIsDetectedRawAndWrapped) {
  std::string bitcode = toBitcode(SUM_IR);
  CompiledObject fromText = compileOk(SUM_IR, options());
  CompiledObject raw = compileOk(bitcode, options());
  CompiledObject wrapped = compileOk(wrapBitcode(bitcode), options());
  CompileOptions explicitFormat = options();
  explicitFormat.format = IrFormat::Bitcode;
  CompiledObject declared = compileOk(bitcode, explicitFormat);
  EXPECT_THAT(defineNames(raw), Contains("sum"));
  EXPECT_THAT(defineNames(wrapped), Contains("sum"));
  EXPECT_EQ(raw.object, wrapped.object);
  EXPECT_EQ(raw.object, declared.object);

  CompileOptions asText = options();
  asText.format = IrFormat::Text;
  EXPECT_EQ(compileFails(bitcode, asText).kind, ErrorKind::InvalidModule);
}

// --- symbols ---------------------------------------------------------------------------------

TEST(CompilerTest, DefinesAndNeeds) {
  const char* ir = R"(@table = global [4 x i32] [i32 1, i32 2, i32 3, i32 4]
@msg = private constant [3 x i8] c"hi\00"
declare double @sin(double)
declare i32 @puts(ptr)
define internal i32 @helper(i32 %x) {
  ret i32 %x
}
define weak void @overridable() {
  ret void
}
define double @g(double %x) {
  %a = call double @sin(double %x)
  %b = call double @sin(double %a)
  %c = call i32 @puts(ptr @msg)
  %d = call i32 @helper(i32 %c)
  ret double %b
}
)";
  CompiledObject object = compileOk(ir, options(X86_64, 0));
  EXPECT_THAT(object.needs, ElementsAre("puts", "sin"));
  EXPECT_THAT(defineNames(object), ElementsAre("g", "overridable", "table"));
  EXPECT_EQ(findDefine(object, "g")->kind, ObjectSymbol::Kind::Function);
  EXPECT_EQ(findDefine(object, "overridable")->kind, ObjectSymbol::Kind::Function);
  EXPECT_EQ(findDefine(object, "table")->kind, ObjectSymbol::Kind::Data);
}

TEST(CompilerTest, SignaturesAreWrittenInTheIrSignatureFormat) {
  // One function per kind of type the compiler may record; each signature must read back
  // through parseIrSignature to the same text (rjit run and rjit call parse them).
  const char* ir = R"(%pair = type { i64, i64 }
define void @v() {
  ret void
}
define zeroext i1 @b(i1 zeroext %x) {
  ret i1 %x
}
define signext i8 @s8(i8 signext %x, i8 zeroext %y) {
  ret i8 %x
}
define zeroext i16 @u16(i16 signext %x, i16 %y) {
  ret i16 %y
}
define i32 @mixed(i32 %a, i64 %b, float %c, double %d, ptr %e) {
  ret i32 %a
}
define i64 @variadic(i32 %n, ...) {
  ret i64 0
}
define ptr @onlyvariadic(...) {
  ret ptr null
}
define i128 @wide(i128 %x) {
  ret i128 %x
}
define %pair @pairs(<4 x float> %v, [2 x i32] %a, half %h, ptr addrspace(1) %p) {
  ret %pair zeroinitializer
}
define { i32, double } @literal(x86_fp80 %x) {
  ret { i32, double } zeroinitializer
}
)";
  CompiledObject object = compileOk(ir, options(X86_64, 0));
  const std::pair<const char*, const char*> expected[] = {
      {"v", "void()"},
      {"b", "zeroext i1(zeroext i1)"},
      {"s8", "signext i8(signext i8,zeroext i8)"},
      {"u16", "zeroext i16(signext i16,i16)"},
      {"mixed", "i32(i32,i64,float,double,ptr)"},
      {"variadic", "i64(i32,...)"},
      {"onlyvariadic", "ptr(...)"},
      {"wide", "i128(i128)"},
      // LLVM prints a named struct with its body; kept as it always was written.
      {"pairs", "%pair = type { i64, i64 }(<4 x float>,[2 x i32],half,ptr addrspace(1))"},
      {"literal", "{ i32, double }(x86_fp80)"},
  };
  for (const auto& [name, signature] : expected) {
    const ObjectSymbol* symbol = findDefine(object, name);
    ASSERT_NE(symbol, nullptr) << name;
    EXPECT_EQ(symbol->signature, signature) << name;
    auto parsed = parseIrSignature(symbol->signature);
    ASSERT_TRUE(std::holds_alternative<IrSignature>(parsed))
        << std::get<IrSignatureError>(parsed).describe();
    EXPECT_EQ(formatIrSignature(std::get<IrSignature>(parsed)), signature);
  }
  auto mixed = std::get<IrSignature>(parseIrSignature(findDefine(object, "mixed")->signature));
  EXPECT_EQ(mixed.params,
            (std::vector<IrType>{IrType::integer(32), IrType::integer(64), IrType::floatType(),
                                 IrType::doubleType(), IrType::pointer()}));
}

TEST(CompilerTest, ThreadLocalUsesEmulatedTls) {
  const char* ir = R"(@counter = thread_local global i32 0
define i32 @bump() {
  %v = load i32, ptr @counter
  %n = add i32 %v, 1
  store i32 %n, ptr @counter
  ret i32 %n
}
)";
  for (const char* triple : {X86_64, AARCH64}) {
    SCOPED_TRACE(triple);
    CompiledObject object = compileOk(ir, options(triple, 2));
    EXPECT_THAT(object.needs, Contains("__emutls_get_address"));
    EXPECT_THAT(defineNames(object), Contains("bump"));
  }
}

// --- concurrency and determinism -------------------------------------------------------------

TEST(CompilerTest, ConcurrentCompilesAreIdenticalAndIndependentOfTheName) {
  const CompiledObject x86 = compileOk(SUM_OPTNONE_IR, options(X86_64, 2));
  const CompiledObject arm = compileOk(SUM_OPTNONE_IR, options(AARCH64, 2));
  ASSERT_FALSE(x86.object.empty());
  ASSERT_FALSE(arm.object.empty());

  constexpr int THREADS = 4;
  constexpr int ROUNDS = 3;
  std::vector<std::vector<CompileResult>> results(THREADS);
  std::vector<std::thread> threads;
  for (int t = 0; t < THREADS; ++t) {
    threads.emplace_back([&results, t] {
      for (int r = 0; r < ROUNDS; ++r) {
        CompileOptions o = options(t % 2 == 0 ? X86_64 : AARCH64, 2);
        o.moduleName = "thread-" + std::to_string(t) + ".ll";
        results[t].push_back(compile(SUM_OPTNONE_IR, o));
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();

  for (int t = 0; t < THREADS; ++t) {
    const CompiledObject& expected = t % 2 == 0 ? x86 : arm;
    for (const CompileResult& result : results[t]) {
      const auto* object = std::get_if<CompiledObject>(&result);
      ASSERT_NE(object, nullptr) << std::get<Failure>(result).message;
      EXPECT_EQ(object->object, expected.object) << "thread " << t;
      EXPECT_EQ(defineNames(*object), defineNames(expected));
      EXPECT_EQ(object->needs, expected.needs);
    }
  }
}

}  // namespace
}  // namespace rjitd::compiler
