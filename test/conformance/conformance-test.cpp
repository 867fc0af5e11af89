// SPDX-License-Identifier: MIT
// Conformance of `rjit run` (the same-host fast path) and `rjit run --remote` (remote execute,
// in one of rjitd's sandboxed executors): each program in test/conformance, built natively by
// clang-19 and compiled to IR by clang-19, must behave the same when rjit runs its IR through a
// real rjitd — the same exit status, stdout and stderr, byte for byte. Every program is run at -O0
// and at -O2, twice each: the first run compiles, the second is served from rjitd's cache.
//
// The generated files (PROGRAM.ll, PROGRAM.bc, PROGRAM-O0.ll, PROGRAM-native) are looked up
// next to this executable (meson builds them into the same directory), or in
// $RJIT_CONFORMANCE_DIR.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "daemon-process.h"
#include "temp-dir.h"

namespace rjit::test {
namespace {

/// One program of the suite and the exit status its native build gives with PROGRAM_ARGS.
struct Program {
  const char* name;
  int exitCode;
};

/// Must list exactly the programs of test/conformance/meson.build (checked below).
constexpr Program PROGRAMS[] = {
    {"strings", 0},       {"recursion", 0},     {"floating_point", 0}, {"function_pointers", 0},
    {"qsort_bsearch", 0}, {"varargs", 2},       {"static_init", 0},    {"argv", 3},
    {"malloc_heavy", 0},  {"thread_local", 0},  {"exit_atexit", 7},    {"exceptions", 0},
    {"virtual_calls", 0}, {"std_library", 0},   {"static_objects", 0}, {"zero_sized", 0},
    {"union_init", 0},    {"frame_address", 0}, {"builtin_setjmp", 0},
};

/// The programs also run from bitcode (conformance_bitcode in meson.build).
constexpr const char* BITCODE_PROGRAMS[] = {"static_init", "thread_local", "exceptions",
                                            "static_objects"};

/// The programs also run from `clang -O0` IR, PROGRAM-O0.ll (conformance_clang_o0 in
/// meson.build).
constexpr const char* CLANG_O0_PROGRAMS[] = {"frame_address", "builtin_setjmp", "union_init"};

/// The optimization levels every case runs at (`rjit run -O<level>`).
constexpr unsigned OPT_LEVELS[] = {0, 2};

/// The arguments every program gets (after argv[0]).
const std::vector<std::string> PROGRAM_ARGS = {"alpha", "two words", "3"};

/// A test case: a program, the IR file `rjit run` gets (".ll", ".bc" or "-O0.ll") and the
/// optimization level it asks rjitd for.
struct Case {
  Program program;
  std::string irExtension;
  unsigned optLevel;
};

/// How GoogleTest shows a Case (instead of its bytes).
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.program.name << c.irExtension << " at -O" << c.optLevel;
}

std::string conformanceDir() {
  if (const char* dir = std::getenv("RJIT_CONFORMANCE_DIR"); dir != nullptr && dir[0] != '\0')
    return dir;
  std::error_code error;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::string(".") : exe.parent_path().string();
}

std::string generated(std::string_view name) {
  return conformanceDir() + "/" + std::string(name);
}

std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  if (!text.empty() && text.back() != '\n')
    lines.back() += "\\ (no newline at end)";
  return lines;
}

/// A unified diff (3 lines of context) of `expected` against `actual`, line-based (LCS).
std::string unifiedDiff(const std::string& expected, const std::string& actual,
                        std::string_view expectedLabel, std::string_view actualLabel) {
  auto a = splitLines(expected);
  auto b = splitLines(actual);
  constexpr size_t MAX_LINES = 2000;  // the DP table is (n+1)*(m+1); programs print far less
  if (a.size() > MAX_LINES || b.size() > MAX_LINES)
    return "(outputs too long to diff: " + std::to_string(a.size()) + " vs " +
           std::to_string(b.size()) + " lines)\n";
  // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
  std::vector<std::vector<unsigned>> lcs(a.size() + 1, std::vector<unsigned>(b.size() + 1, 0));
  for (size_t i = a.size(); i-- > 0;)
    for (size_t j = b.size(); j-- > 0;)
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
  struct Line {
    char tag;  // ' ', '-', '+'
    size_t aIndex, bIndex;
    const std::string* text;
  };
  std::vector<Line> script;
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (i < a.size() && j < b.size() && a[i] == b[j]) {
      script.push_back({' ', i, j, &a[i]});
      ++i, ++j;
    } else if (i < a.size() && (j == b.size() || lcs[i + 1][j] >= lcs[i][j + 1])) {
      script.push_back({'-', i, j, &a[i]});
      ++i;
    } else {
      script.push_back({'+', i, j, &b[j]});
      ++j;
    }
  }
  constexpr size_t CONTEXT = 3;
  std::vector<size_t> changes;
  for (size_t t = 0; t < script.size(); ++t)
    if (script[t].tag != ' ')
      changes.push_back(t);
  std::ostringstream out;
  out << "--- " << expectedLabel << "\n+++ " << actualLabel << "\n";
  for (size_t c = 0; c < changes.size();) {
    // One hunk: changes closer than 2*CONTEXT unchanged lines share it.
    size_t first = changes[c], last = first;
    while (c + 1 < changes.size() && changes[c + 1] - last <= 2 * CONTEXT + 1)
      last = changes[++c];
    ++c;
    size_t begin = first >= CONTEXT ? first - CONTEXT : 0;
    size_t end = std::min(script.size(), last + 1 + CONTEXT);
    size_t aCount = 0, bCount = 0;
    for (size_t t = begin; t < end; ++t) {
      aCount += script[t].tag != '+';
      bCount += script[t].tag != '-';
    }
    out << "@@ -" << script[begin].aIndex + (aCount > 0 ? 1 : 0) << ',' << aCount << " +"
        << script[begin].bIndex + (bCount > 0 ? 1 : 0) << ',' << bCount << " @@\n";
    for (size_t t = begin; t < end; ++t)
      out << script[t].tag << *script[t].text << '\n';
  }
  return out.str();
}

/// Compares one stream of a run with the native build's, with a diff on mismatch.
void expectSameOutput(std::string_view stream, const std::string& native, const std::string& jitted,
                      std::string_view what) {
  if (native == jitted)
    return;
  ADD_FAILURE() << what << ": " << stream << " differs from the native build's\n"
                << unifiedDiff(native, jitted, std::string("native ") + std::string(stream),
                               std::string(what) + " " + std::string(stream));
}

class RunConformance : public ::testing::TestWithParam<Case> {
protected:
  void SetUp() override {
    daemon = DaemonProcess::start();
    ASSERT_NE(daemon, nullptr);
  }

  void TearDown() override {
    if (daemon == nullptr)
      return;
    EXPECT_TRUE(daemon->running()) << "rjitd exited during the test:\n" << daemon->log();
    if (daemon->running()) {
      ExitStatus status = daemon->stop();
      EXPECT_TRUE(status.exitedWith(0)) << "rjitd on SIGTERM: " << status.describe();
    }
  }

  /// `rjit run [--remote] -O<optLevel> IR -- PROGRAM_ARGS` against the fixture's daemon.
  CommandResult rjitRun(const std::string& ir, unsigned optLevel, bool remote = false) {
    const char* bin = std::getenv("RJIT_BIN");
    EXPECT_NE(bin, nullptr) << "RJIT_BIN is not set (run the tests through meson test)";
    std::vector<std::string> argv = {bin != nullptr ? bin : "rjit", "run"};
    if (remote)
      argv.push_back("--remote");
    argv.insert(argv.end(), {"-O" + std::to_string(optLevel), ir, "--"});
    argv.insert(argv.end(), PROGRAM_ARGS.begin(), PROGRAM_ARGS.end());
    auto env = environmentWith({{"RJIT_SERVER", daemon->endpoint()}},
                               {"RJIT_TIMEOUT_MS", "RJIT_HASH_FIRST_BYTES"});
    return runCommand(work, argv, env);
  }

  /// The native build's run with PROGRAM_ARGS, checked against the exit status the table
  /// expects (a wrong native build would make every comparison meaningless).
  std::optional<CommandResult> runNativeReference(const Case& c) {
    std::string native = generated(std::string(c.program.name) + "-native");
    EXPECT_TRUE(std::filesystem::exists(native)) << native << " is missing (built by meson)";
    std::vector<std::string> nativeArgv = {native};
    nativeArgv.insert(nativeArgv.end(), PROGRAM_ARGS.begin(), PROGRAM_ARGS.end());
    CommandResult expected = runCommand(work, nativeArgv);
    if (!expected.status.exitedWith(c.program.exitCode)) {
      ADD_FAILURE() << "native " << c.program.name << ": " << expected.status.describe()
                    << ", expected exit " << c.program.exitCode << "\nstderr:\n"
                    << expected.err;
      return std::nullopt;
    }
    return expected;
  }

  /// Runs the case's IR twice through `rjit run` (with `remote`: `rjit run --remote`) and
  /// compares each run with the native build's.
  void expectBehavesLikeNativeBuild(bool remote) {
    const Case& c = GetParam();
    std::string ir = generated(std::string(c.program.name) + c.irExtension);
    ASSERT_TRUE(std::filesystem::exists(ir)) << ir << " is missing (built by meson)";
    auto expected = runNativeReference(c);
    ASSERT_TRUE(expected.has_value());
    const char* runs[2][2] = {{"rjit run (first)", "rjit run (again, cached)"},
                              {"rjit run --remote (first)", "rjit run --remote (again, cached)"}};
    for (const char* what : runs[remote ? 1 : 0]) {
      CommandResult actual = rjitRun(ir, c.optLevel, remote);
      EXPECT_EQ(actual.status.describe(), expected->status.describe())
          << what << ": exit status differs from the native build's";
      expectSameOutput("stdout", expected->out, actual.out, what);
      expectSameOutput("stderr", expected->err, actual.err, what);
    }
  }

  TempDir work;
  std::unique_ptr<DaemonProcess> daemon;
};

TEST_P(RunConformance, BehavesLikeNativeBuild) {
  expectBehavesLikeNativeBuild(/*remote=*/false);
}

/// The same program in one of rjitd's sandboxed executors (`rjit run --remote`): argv, the
/// environment, stdout, stderr and the exit status are the program's.
TEST_P(RunConformance, RemoteBehavesLikeNativeBuild) {
  expectBehavesLikeNativeBuild(/*remote=*/true);
}

/// Each program of PROGRAMS that `wanted` accepts, from its IR file ending in `irExtension`, at
/// every level of OPT_LEVELS.
template <typename Wanted> std::vector<Case> casesOf(Wanted&& wanted, const char* irExtension) {
  std::vector<Case> cases;
  for (const Program& p : PROGRAMS)
    if (wanted(p))
      for (unsigned level : OPT_LEVELS)
        cases.push_back({p, irExtension, level});
  return cases;
}

/// Whether `program` is one of `names`.
template <typename Names> auto oneOf(const Names& names) {
  return [&names](const Program& program) {
    return std::any_of(std::begin(names), std::end(names),
                       [&](const char* name) { return std::string_view(program.name) == name; });
  };
}

std::string caseName(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.program.name) + "_O" + std::to_string(info.param.optLevel);
}

INSTANTIATE_TEST_SUITE_P(TextualIr, RunConformance,
                         ::testing::ValuesIn(casesOf([](const Program&) { return true; }, ".ll")),
                         caseName);
INSTANTIATE_TEST_SUITE_P(Bitcode, RunConformance,
                         ::testing::ValuesIn(casesOf(oneOf(BITCODE_PROGRAMS), ".bc")), caseName);
INSTANTIATE_TEST_SUITE_P(ClangO0Ir, RunConformance,
                         ::testing::ValuesIn(casesOf(oneOf(CLANG_O0_PROGRAMS), "-O0.ll")),
                         caseName);

/// The program table above and the files meson generated agree: every generated IR file is a
/// case, and every case has its files.
TEST(ConformanceSuite, CoversEveryGeneratedProgram) {
  std::set<std::string> expected;
  for (const Program& p : PROGRAMS)
    expected.insert(std::string(p.name) + ".ll");
  auto isProgram = [](const char* name) {
    return std::any_of(std::begin(PROGRAMS), std::end(PROGRAMS),
                       [&](const Program& p) { return std::string_view(p.name) == name; });
  };
  for (const char* name : BITCODE_PROGRAMS) {
    expected.insert(std::string(name) + ".bc");
    EXPECT_TRUE(isProgram(name)) << name << " is in BITCODE_PROGRAMS but not in PROGRAMS";
  }
  for (const char* name : CLANG_O0_PROGRAMS) {
    expected.insert(std::string(name) + "-O0.ll");
    EXPECT_TRUE(isProgram(name)) << name << " is in CLANG_O0_PROGRAMS but not in PROGRAMS";
  }
  std::set<std::string> found;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(conformanceDir(), error)) {
    std::string file = entry.path().filename().string();
    if (file.ends_with(".ll") || file.ends_with(".bc"))
      found.insert(file);
  }
  ASSERT_FALSE(error) << conformanceDir() << ": " << error.message();
  EXPECT_EQ(found, expected) << "test/conformance/meson.build and conformance-test.cpp list "
                                "different programs";
  for (const Program& p : PROGRAMS)
    EXPECT_TRUE(std::filesystem::exists(generated(std::string(p.name) + "-native")))
        << p.name << "-native is missing";
}

}  // namespace
}  // namespace rjit::test
