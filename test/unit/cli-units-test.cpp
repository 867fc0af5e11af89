// SPDX-License-Identifier: MIT
// The rjit CLI's parts in-process: which forms of `main` `rjit run` calls (program-main), the
// files it reads and writes (file-io), and `rjit info`'s JSON and text (info-render).
#include "file-io.h"
#include "info-render.h"
#include "program-main.h"
#include "temp-dir.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <set>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

namespace rjitd::cli {
namespace {

// ---- program-main ----------------------------------------------------------------------------

/// What mainParameterCount refuses a well-formed signature with.
std::string refusal(const std::string& signature) {
  return "'main' has type " + signature +
         "; expected int main(void), int main(int), int main(int, char**) or "
         "int main(int, char**, char**)";
}

TEST(ProgramMain, AcceptsEveryPrefixOfTheHostedForm) {
  struct Case {
    const char* signature;
    size_t count;
  };
  const Case cases[] = {
      {"i32()", 0},
      {"i32(i32)", 1},
      {"i32(i32,ptr)", 2},
      {"i32(i32,ptr,ptr)", 3},
      // signext/zeroext on an int: what targets whose ABI extends it write.
      {"signext i32(signext i32,ptr)", 2},
  };
  for (const Case& c : cases) {
    auto result = mainParameterCount(c.signature);
    ASSERT_TRUE(std::holds_alternative<size_t>(result))
        << c.signature << ": " << std::get<std::string>(result);
    EXPECT_EQ(std::get<size_t>(result), c.count) << c.signature;
  }
}

TEST(ProgramMain, RefusesOtherTypesWithTheAcceptedForms) {
  const char* refused[] = {
      "i32(i32,ptr,ptr,ptr)",  // a fourth parameter
      "i32(ptr)",              // argv without argc
      "i32(i64)",              // argc of the wrong width
      "i32(i32,i32)",          // argv not a pointer
      "i32(i32,ptr,double)",   // envp not a pointer
      "i32(...)",              // variadic
      "i32(i32,...)",          // variadic after argc
      "i64()",                 // a result other than int
      "void()",                // no result
      "i32({ i32, i32 })",     // a type the parser keeps as Other
  };
  for (const char* signature : refused) {
    auto result = mainParameterCount(signature);
    ASSERT_TRUE(std::holds_alternative<std::string>(result)) << signature;
    EXPECT_EQ(std::get<std::string>(result), refusal(signature));
  }
}

TEST(ProgramMain, SaysWhyASignatureDoesNotParse) {
  auto result = mainParameterCount("i32(i32");
  ASSERT_TRUE(std::holds_alternative<std::string>(result));
  EXPECT_EQ(std::get<std::string>(result),
            "'main' has an unreadable type: malformed IR signature 'i32(i32' at offset 7: "
            "expected ')'");
}

int mainOfNone() {
  return 40;
}
int mainOfArgc(int argc) {
  return 41 + argc;
}
int mainOfArgv(int argc, char** argv) {
  return argc == 2 && std::strcmp(argv[1], "two") == 0 && argv[2] == nullptr ? 42 : -1;
}
int mainOfEnvp(int argc, char** argv, char** envp) {
  return argc == 2 && std::strcmp(argv[0], "one") == 0 && std::strcmp(envp[0], "K=V") == 0 &&
                 envp[1] == nullptr
             ? 43
             : -1;
}

TEST(ProgramMain, CallsEachFormWithItsArguments) {
  char one[] = "one", two[] = "two", kv[] = "K=V";
  char* argv[] = {one, two, nullptr};
  char* envp[] = {kv, nullptr};
  EXPECT_EQ(callMain(reinterpret_cast<void*>(&mainOfNone), 0, 2, argv, envp), 40);
  EXPECT_EQ(callMain(reinterpret_cast<void*>(&mainOfArgc), 1, 2, argv, envp), 43);
  EXPECT_EQ(callMain(reinterpret_cast<void*>(&mainOfArgv), 2, 2, argv, envp), 42);
  EXPECT_EQ(callMain(reinterpret_cast<void*>(&mainOfEnvp), 3, 2, argv, envp), 43);
}

// ---- file-io ---------------------------------------------------------------------------------

/// The file's bytes, through the function under test (checked separately below).
std::string contents(const std::string& path) {
  auto result = readFile(path);
  if (auto* error = std::get_if<FileError>(&result))
    ADD_FAILURE() << error->message;
  return std::holds_alternative<std::string>(result) ? std::get<std::string>(result) : "";
}

/// Creates `path` with `bytes` (plain POSIX calls: independent of the code under test).
void plant(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ASSERT_EQ(::close(fd), 0);
}

/// The names in `dir`, without "." and "..".
std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    ADD_FAILURE() << dir << ": " << std::strerror(errno);
    return names;
  }
  while (struct dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
      names.insert(e->d_name);
  ::closedir(d);
  return names;
}

TEST(FileIo, ReadsAWholeFile) {
  rjit::test::TempDir dir;
  std::string bytes(200000, 'x');  // more than one read buffer
  bytes[0] = 'a';
  bytes.back() = 'z';
  plant(dir.file("m.ll"), bytes);
  EXPECT_EQ(contents(dir.file("m.ll")), bytes);
}

TEST(FileIo, ReadOfAMissingFileNamesIt) {
  rjit::test::TempDir dir;
  auto result = readFile(dir.file("missing.ll"));
  ASSERT_TRUE(std::holds_alternative<FileError>(result));
  EXPECT_EQ(std::get<FileError>(result).message,
            "cannot read " + dir.file("missing.ll") + ": No such file or directory");
}

TEST(FileIo, ReadOfADirectoryNamesIt) {
  rjit::test::TempDir dir;
  auto result = readFile(dir.path());
  ASSERT_TRUE(std::holds_alternative<FileError>(result));
  EXPECT_EQ(std::get<FileError>(result).message, "cannot read " + dir.path() + ": Is a directory");
}

TEST(FileIo, WritesANewFileWithTheUmasksMode) {
  rjit::test::TempDir dir;
  mode_t old = ::umask(022);
  auto problem = writeOutput(dir.file("out.o"), "object bytes");
  ::umask(old);
  ASSERT_FALSE(problem) << problem->message;
  EXPECT_EQ(contents(dir.file("out.o")), "object bytes");
  struct stat st;
  ASSERT_EQ(::stat(dir.file("out.o").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"out.o"});  // no temporary left
}

TEST(FileIo, ReplacesARegularFileAsAWhole) {
  rjit::test::TempDir dir;
  plant(dir.file("out.o"), "the old, longer contents");
  // A second name of the old file: a replacement by rename leaves it as it was, a write in
  // place would change it.
  ASSERT_EQ(::link(dir.file("out.o").c_str(), dir.file("old").c_str()), 0);
  auto problem = writeOutput(dir.file("out.o"), "new");
  ASSERT_FALSE(problem) << problem->message;
  EXPECT_EQ(contents(dir.file("out.o")), "new");
  EXPECT_EQ(contents(dir.file("old")), "the old, longer contents");
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"old", "out.o"}));
}

TEST(FileIo, WritesIntoAFifoInPlace) {
  rjit::test::TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("pipe").c_str(), 0600), 0);
  // The read end first (non-blocking, so this open does not wait for a writer); the bytes fit
  // in the pipe's buffer, so the write does not wait for the reader either.
  int reader = ::open(dir.file("pipe").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0) << std::strerror(errno);
  auto problem = writeOutput(dir.file("pipe"), "through the pipe");
  EXPECT_FALSE(problem) << problem->message;
  char buffer[64];
  ssize_t n = ::read(reader, buffer, sizeof(buffer));
  ::close(reader);
  EXPECT_EQ(std::string(buffer, n > 0 ? static_cast<size_t>(n) : 0), "through the pipe");
  struct stat st;
  ASSERT_EQ(::lstat(dir.file("pipe").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced";
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"pipe"});
}

TEST(FileIo, WritesToDevNullInPlace) {
  auto problem = writeOutput("/dev/null", "discarded");
  ASSERT_FALSE(problem) << problem->message;
  struct stat st;
  ASSERT_EQ(::lstat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

TEST(FileIo, WritesThroughASymlinkToDevNull) {
  rjit::test::TempDir dir;
  ASSERT_EQ(::symlink("/dev/null", dir.file("sink").c_str()), 0);
  auto problem = writeOutput(dir.file("sink"), "discarded");
  ASSERT_FALSE(problem) << problem->message;
  struct stat st;
  ASSERT_EQ(::lstat(dir.file("sink").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the symlink was replaced";
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"sink"});
}

TEST(FileIo, WriteIntoAMissingDirectoryNamesThePath) {
  rjit::test::TempDir dir;
  std::string path = dir.file("no-such-dir/out.o");
  auto problem = writeOutput(path, "bytes");
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->message, "cannot write " + path + ": No such file or directory");
}

// A write that fails part-way (here: beyond RLIMIT_FSIZE, with SIGXFSZ ignored so the write
// returns EFBIG) leaves the old file as it was and no temporary behind.
TEST(FileIo, FailedWriteLeavesTheOldFileAndNoTemporary) {
  rjit::test::TempDir dir;
  std::string path = dir.file("out.o");
  plant(path, "old");
  struct rlimit old;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = 4;
  auto previous = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  auto problem = writeOutput(path, std::string(100, 'x'));
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, previous);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->message, "cannot write " + path + ": File too large");
  EXPECT_EQ(contents(path), "old");
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"out.o"});
}

// The temporary file's name must not be one another user can plant a symlink at: as root, in a
// directory others can write, following it would truncate and overwrite the symlink's target.
// The name the old scheme used (PATH.tmp.PID) is the one this process would pick.
TEST(FileIo, TemporaryFileDoesNotFollowAPlantedSymlink) {
  rjit::test::TempDir dir;
  std::string path = dir.file("out.o");
  plant(dir.file("victim"), "precious");
  std::string predictable = path + ".tmp." + std::to_string(::getpid());
  ASSERT_EQ(::symlink(dir.file("victim").c_str(), predictable.c_str()), 0);
  auto problem = writeOutput(path, "object bytes");
  ASSERT_FALSE(problem) << problem->message;
  EXPECT_EQ(contents(dir.file("victim")), "precious");
  EXPECT_EQ(contents(path), "object bytes");
  struct stat st;
  ASSERT_EQ(::lstat(predictable.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the planted symlink was replaced";
  EXPECT_EQ(entries(dir.path()),
            (std::set<std::string>{"out.o", "victim", "out.o.tmp." + std::to_string(::getpid())}));
}

// ---- info-render -----------------------------------------------------------------------------

/// Every figure distinct, so that a figure shown under another's label is caught.
rjit::ServerInfo fixedInfo() {
  rjit::ServerInfo info;
  info.endpoint = "unix:/run/rjitd.sock";
  info.protocolVersion = 3;
  info.rjitdVersion = "0.9.1";
  info.llvmVersion = "19.1.7";
  info.compilerIdentity = "rjitd-compiler/abc123";
  info.targets = {{"x86-64", "x86_64-pc-linux-gnu", {"x86_64", "amd64"}, "x86-64"},
                  {"aarch64", "aarch64-unknown-linux-gnu", {}, "generic"}};
  info.defaultTriple = "x86_64-pc-linux-gnu";
  info.maxModuleBytes = 67108864;
  return info;
}

rjit::ServerStats fixedStats() {
  rjit::ServerStats s;
  s.cacheEntries = 11;
  s.cacheBytes = 1202;
  s.cacheBudgetBytes = 1048576;
  s.cacheHits = 13;
  s.cacheMisses = 14;
  s.cacheEvictions = 15;
  s.compiles = 16;
  s.compileFailures = 17;
  s.compilesInFlight = 18;
  s.requests = 19;
  s.moduleBytesReceived = 20;
  s.lookups = 21;
  s.lookupHits = 22;
  s.sessions = 23;
  s.workers = 24;
  s.uptimeMillis = ((86400 + 2 * 3600 + 3 * 60 + 4) * 1000) + 5;  // 1d 2h 3m 4.005s
  s.connections = 25;
  s.compileWorkerRestarts = 26;
  s.loads = 27;
  s.links = 28;
  s.linkFailures = 29;
  s.loadedImages = 30;
  s.loadedImageBytes = 31;
  s.symbolQuestions = 32;
  s.requestCounts = {{"compile", "ok", 40},
                     {"compile", "invalid-module", 41},
                     {"lookup", "ok", 42},
                     {"load", "ok", 0}};
  s.errorCounts = {{"invalid-module", 41}, {"unavailable", 0}};
  return s;
}

TEST(InfoRender, JsonHasEveryFigureUnderItsStableKey) {
  nlohmann::json expected = nlohmann::json::parse(R"({
    "server": {
      "endpoint": "unix:/run/rjitd.sock",
      "rjitd_version": "0.9.1",
      "llvm_version": "19.1.7",
      "protocol_version": 3,
      "compiler_identity": "rjitd-compiler/abc123",
      "default_triple": "x86_64-pc-linux-gnu",
      "max_module_bytes": 67108864,
      "targets": [
        {"name": "x86-64", "triple": "x86_64-pc-linux-gnu", "aliases": ["x86_64", "amd64"],
         "default_cpu": "x86-64"},
        {"name": "aarch64", "triple": "aarch64-unknown-linux-gnu", "aliases": [],
         "default_cpu": "generic"}
      ]
    },
    "cache": {"entries": 11, "bytes": 1202, "budget_bytes": 1048576, "hits": 13, "misses": 14,
              "evictions": 15},
    "compiles": {"total": 16, "failures": 17, "in_flight": 18},
    "requests": 19,
    "lookups": 21,
    "lookup_hits": 22,
    "module_bytes_received": 20,
    "sessions": 23,
    "connections": 25,
    "workers": 24,
    "compile_worker_restarts": 26,
    "uptime_ms": 93784005,
    "fast_path": {"loads": 27, "links": 28, "link_failures": 29, "loaded_modules": 30,
                  "loaded_bytes": 31, "symbol_questions": 32},
    "requests_by_method": {"compile": {"ok": 40, "invalid-module": 41}, "lookup": {"ok": 42},
                           "load": {"ok": 0}},
    "errors": {"invalid-module": 41, "unavailable": 0}
  })");
  EXPECT_EQ(infoJson(fixedInfo(), fixedStats()), expected)
      << infoJson(fixedInfo(), fixedStats()).dump(2);
}

TEST(InfoRender, TextHasEveryFigureOnItsLine) {
  // Zero counts are left out of "requests by method" and "errors"; labels are padded to 20.
  const char* expected = R"(server              unix:/run/rjitd.sock
rjitd version       0.9.1
LLVM version        19.1.7
protocol            3
compiler identity   rjitd-compiler/abc123
targets             x86-64   x86_64-pc-linux-gnu        cpu x86-64; aliases: x86_64, amd64
                    aarch64  aarch64-unknown-linux-gnu  cpu generic
default target      x86_64-pc-linux-gnu
max module bytes    67108864
cache entries       11
cache bytes         1202 of 1048576 budget
cache hits          13
cache misses        14
cache evictions     15
compiles            16 (17 failed, 18 in flight)
requests            19
lookups             21 (22 hits)
module bytes in     20
requests by method  compile: ok 40, invalid-module 41
                    lookup: ok 42
errors              invalid-module 41
loads               27 (28 links, 29 failed)
loaded modules      30 (31 bytes)
symbol questions    32 (round trips to clients during loads)
sessions            23 (25 connections)
workers             24 (26 restarts)
uptime              1d 2h 3m 4s
)";
  EXPECT_EQ(infoText(fixedInfo(), fixedStats()), expected);
}

TEST(InfoRender, TextOfAServerWithNothingToReport) {
  std::string text = infoText(rjit::ServerInfo{}, rjit::ServerStats{});
  EXPECT_NE(text.find("\ntargets             none\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nerrors              none\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("requests by method"), std::string::npos) << text;
  EXPECT_NE(text.find("\nuptime              0s\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace rjitd::cli
