// SPDX-License-Identifier: MIT
// The real `rjit` binary against a real rjitd: what a user types and what they see (output
// text is the contract here, so these tests do check it).
#include <elf.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <kj/io.h>

#include <nlohmann/json.hpp>

#include "fixture.h"

namespace rjit::test {
namespace {

class CliTest : public DaemonTest {
protected:
  /// Runs `rjit ARGS...` with RJIT_SERVER set to `server` (default: the fixture's daemon).
  CommandResult rjit(std::vector<std::string> args, std::optional<std::string> server = {}) {
    const char* bin = std::getenv("RJIT_BIN");
    EXPECT_NE(bin, nullptr) << "RJIT_BIN is not set (run the tests through meson test)";
    args.insert(args.begin(), bin != nullptr ? bin : "rjit");
    auto env = environmentWith({{"RJIT_SERVER", server.value_or(daemon->endpoint())}},
                               {"RJIT_TIMEOUT_MS", "RJIT_HASH_FIRST_BYTES"});
    return runCommand(work, args, env);
  }

  static void expectError(const CommandResult& result) {
    EXPECT_TRUE(result.status.exitedWith(1)) << result.status.describe() << "\n" << result.err;
    EXPECT_TRUE(result.err.starts_with("error: ")) << "stderr: " << result.err;
  }

  static void expectSuccess(const CommandResult& result) {
    EXPECT_TRUE(result.status.exitedWith(0)) << result.status.describe() << "\n" << result.err;
    EXPECT_EQ(result.err.find("error:"), std::string::npos) << "stderr: " << result.err;
  }
};

TEST_P(CliTest, CompileWritesObjectThatRunsLikeNativeBuild) {
  std::string out = work.file("sieve-cli.o");
  auto result = rjit({"compile", genPath("sieve.ll"), "-o", out, "-O2"});
  expectSuccess(result);
  auto object = readFile(out);
  EXPECT_EQ(elfMachine(object), EM_X86_64);

  auto native = runNative(work, "sieve");
  auto linked = linkAndRun(work, "sieve-cli", object);
  ASSERT_TRUE(linked.has_value());
  EXPECT_EQ(linked->out, native.out);
  EXPECT_EQ(linked->status.raw, native.status.raw);
}

TEST_P(CliTest, CompileForAArch64) {
  std::string out = work.file("checksum.o");
  auto result =
      rjit({"compile", genPath("checksum-aarch64.ll"), "--target", "aarch64", "-O1", "-o", out});
  expectSuccess(result);
  EXPECT_EQ(elfMachine(readFile(out)), EM_AARCH64);
}

TEST_P(CliTest, MalformedIrReportsFileLineAndColumn) {
  std::string file = work.file("malformed.ll");
  writeFile(file, "; malformed on purpose: %nosuchvalue is never defined\n"
                  "define i32 @f(i32 %x) {\n"
                  "entry:\n"
                  "  %y = add i32 %x, %nosuchvalue\n"
                  "  ret i32 %y\n"
                  "}\n");
  auto result = rjit({"compile", file, "-o", work.file("malformed.o")});
  expectError(result);
  EXPECT_NE(result.err.find(file + ":4:20"), std::string::npos) << "stderr: " << result.err;
  EXPECT_NE(result.err.find("nosuchvalue"), std::string::npos) << "stderr: " << result.err;
}

TEST_P(CliTest, UnknownTargetIsAnError) {
  auto result =
      rjit({"compile", genPath("sieve.ll"), "--target", "no-such-target", "-o", work.file("x.o")});
  expectError(result);
  EXPECT_NE(result.err.find("no-such-target"), std::string::npos) << "stderr: " << result.err;
}

TEST_P(CliTest, MissingInputFileIsAnError) {
  auto result = rjit({"compile", work.file("does-not-exist.ll"), "-o", work.file("x.o")});
  expectError(result);
  EXPECT_NE(result.err.find("does-not-exist.ll"), std::string::npos) << "stderr: " << result.err;
}

TEST_P(CliTest, InfoJsonShowsCacheHitAfterRepeatedCompile) {
  for (int i = 0; i < 2; ++i)
    expectSuccess(rjit({"compile", genPath("mathprog.bc"), "-O1", "-o", work.file("m.o")}));

  auto result = rjit({"info", "--json"});
  expectSuccess(result);
  auto info = nlohmann::json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(info.is_discarded()) << "not JSON: " << result.out;

  for (const char* key : {"server", "cache", "compiles", "requests", "lookups", "lookup_hits",
                          "module_bytes_received", "sessions", "workers", "uptime_ms"})
    EXPECT_TRUE(info.contains(key)) << "missing \"" << key << "\" in " << result.out;
  for (const char* key : {"endpoint", "rjitd_version", "llvm_version", "protocol_version",
                          "compiler_identity", "default_triple", "max_module_bytes", "targets"})
    EXPECT_TRUE(info["server"].contains(key)) << "missing server." << key;
  for (const char* key : {"entries", "bytes", "budget_bytes", "hits", "misses", "evictions"})
    EXPECT_TRUE(info["cache"].contains(key)) << "missing cache." << key;
  for (const char* key : {"total", "failures", "in_flight"})
    EXPECT_TRUE(info["compiles"].contains(key)) << "missing compiles." << key;
  if (testing::Test::HasFailure())
    return;

  EXPECT_EQ(info["server"]["endpoint"], daemon->endpoint());
  EXPECT_TRUE(info["server"]["llvm_version"].get<std::string>().starts_with("19"));
  EXPECT_TRUE(info["server"]["targets"].is_array());
  EXPECT_FALSE(info["server"]["targets"].empty());
  EXPECT_GE(info["cache"]["hits"].get<uint64_t>(), 1u);
  EXPECT_EQ(info["cache"]["entries"].get<uint64_t>(), 1u);
  EXPECT_EQ(info["compiles"]["total"].get<uint64_t>(), 1u);
  EXPECT_EQ(info["compiles"]["failures"].get<uint64_t>(), 0u);
}

TEST_P(CliTest, InfoShowsFiguresPerTarget) {
  // x86_64: a compile and a load (rjit run without --remote loads through the fast path);
  // aarch64: a compile only.
  std::string file = work.file("main0.ll");
  writeFile(file, "define i32 @main() {\n  ret i32 7\n}\n");
  auto run = rjit({"run", file});
  EXPECT_TRUE(run.status.exitedWith(7)) << run.status.describe() << "\n" << run.err;
  expectSuccess(rjit({"compile", genPath("checksum-aarch64.ll"), "--target", "aarch64", "-O1", "-o",
                      work.file("checksum.o")}));

  auto result = rjit({"info", "--json"});
  expectSuccess(result);
  auto info = nlohmann::json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(info.is_discarded()) << "not JSON: " << result.out;
  ASSERT_TRUE(info["per_target"].contains("x86_64")) << result.out;
  ASSERT_TRUE(info["per_target"].contains("aarch64")) << result.out;
  const auto& x86 = info["per_target"]["x86_64"];
  EXPECT_EQ(x86["compiles"]["total"], 1) << result.out;
  EXPECT_EQ(x86["compiles"]["failures"], 0) << result.out;
  EXPECT_EQ(x86["loads"]["total"], 1) << result.out;
  EXPECT_EQ(x86["links"]["total"], 1) << result.out;
  EXPECT_EQ(x86["links"]["failures"], 0) << result.out;
  EXPECT_EQ(x86["cache"]["lookups"], 1) << result.out;  // the load's, a miss
  EXPECT_EQ(x86["cache"]["hits"], 0) << result.out;
  EXPECT_EQ(x86["executes"]["total"], 0) << result.out;
  for (const char* figure : {"compiles", "loads", "links"})
    EXPECT_GT(x86[figure]["mean_ms"].get<double>(), 0) << figure << ": " << result.out;
  EXPECT_TRUE(x86["executes"]["mean_ms"].is_null()) << result.out;
  const auto& arm = info["per_target"]["aarch64"];
  EXPECT_EQ(arm["compiles"]["total"], 1) << result.out;
  EXPECT_EQ(arm["compiles"]["failures"], 0) << result.out;
  EXPECT_GT(arm["compiles"]["mean_ms"].get<double>(), 0) << result.out;
  EXPECT_EQ(arm["cache"]["lookups"], 1) << result.out;
  EXPECT_EQ(arm["cache"]["hits"], 0) << result.out;
  EXPECT_EQ(arm["loads"]["total"], 0) << result.out;
  EXPECT_EQ(arm["links"]["total"], 0) << result.out;

  auto text = rjit({"info"});
  expectSuccess(text);
  EXPECT_NE(text.out.find("\ntarget aarch64      cache 1 lookups (0 hits)\n"
                          "                    compiles 1 (0 failed), mean "),
            std::string::npos)
      << text.out;
}

TEST_P(CliTest, InfoTextShowsVersions) {
  auto jsonResult = rjit({"info", "--json"});
  expectSuccess(jsonResult);
  auto json = nlohmann::json::parse(jsonResult.out, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << "not JSON: " << jsonResult.out;
  ASSERT_TRUE(json.contains("server")) << jsonResult.out;
  ASSERT_TRUE(json["server"]["llvm_version"].is_string()) << jsonResult.out;
  ASSERT_TRUE(json["server"]["rjitd_version"].is_string()) << jsonResult.out;
  std::string llvmVersion = json["server"]["llvm_version"];
  std::string rjitdVersion = json["server"]["rjitd_version"];
  EXPECT_TRUE(llvmVersion.starts_with("19")) << llvmVersion;
  EXPECT_FALSE(rjitdVersion.empty());

  auto result = rjit({"info"});
  expectSuccess(result);
  EXPECT_NE(result.out.find(llvmVersion), std::string::npos) << result.out;
  EXPECT_NE(result.out.find(rjitdVersion), std::string::npos) << result.out;
}

TEST_P(CliTest, UnreachableServerIsAnError) {
  std::string dead = "unix:" + work.file("nobody-listens.sock");
  expectError(rjit({"info"}, dead));
  expectError(rjit({"info", "--json"}, dead));
  expectError(rjit({"compile", genPath("sieve.ll"), "-o", work.file("x.o")}, dead));
  // After all that, the real daemon answers.
  expectSuccess(rjit({"info"}));
}

TEST_P(CliTest, ServerFlagWinsOverEnvironment) {
  std::string dead = "unix:" + work.file("nobody-listens.sock");
  expectSuccess(rjit({"info", "--server", daemon->endpoint()}, dead));
  // A list fails over from the dead address to the daemon.
  expectSuccess(rjit({"compile", genPath("sieve.ll"), "--server", dead + "," + daemon->endpoint(),
                      "-o", work.file("x.o")},
                     dead));
}

TEST_P(CliTest, HungServerTimesOut) {
  // A socket that listens but never accepts: connect() succeeds, no answer ever comes.
  std::string path = work.file("hung.sock");
  kj::AutoCloseFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 16), 0);
  auto result = rjit({"info", "--timeout-ms", "300"}, "unix:" + path);
  // The timeout, and nothing else (not "cannot connect", not another kind), exit status 1.
  EXPECT_TRUE(result.status.exitedWith(1)) << result.status.describe() << "\n" << result.err;
  EXPECT_EQ(result.err,
            "error: no answer from rjitd at unix:" + path + " within 300 ms (RJIT_TIMEOUT_MS)\n");
  EXPECT_TRUE(result.out.empty()) << result.out;
}

// --- rjit run: the forms of main ---------------------------------------------------------------

TEST_P(CliTest, RunCallsMainWithoutParameters) {
  std::string file = work.file("main0.ll");
  writeFile(file, "define i32 @main() {\n  ret i32 7\n}\n");
  auto result = rjit({"run", file, "--", "ignored"});
  EXPECT_TRUE(result.status.exitedWith(7)) << result.status.describe() << "\n" << result.err;
}

TEST_P(CliTest, RunCallsMainWithArgcOnly) {
  std::string file = work.file("main1.ll");
  writeFile(file, "define i32 @main(i32 %argc) {\n  ret i32 %argc\n}\n");
  auto result = rjit({"run", file, "--", "a", "b"});
  EXPECT_TRUE(result.status.exitedWith(3)) << result.status.describe() << "\n" << result.err;
}

TEST_P(CliTest, RunCallsMainWithArgcAndArgv) {
  std::string file = work.file("main2.ll");
  writeFile(file, R"(declare i32 @puts(ptr)
define i32 @main(i32 %argc, ptr %argv) {
  %slot = getelementptr ptr, ptr %argv, i64 1
  %first = load ptr, ptr %slot
  %r = call i32 @puts(ptr %first)
  ret i32 %argc
}
)");
  auto result = rjit({"run", file, "--", "first argument", "b"});
  EXPECT_TRUE(result.status.exitedWith(3)) << result.status.describe() << "\n" << result.err;
  EXPECT_EQ(result.out, "first argument\n");
}

TEST_P(CliTest, RunPassesTheEnvironmentToMainsThirdParameter) {
  std::string file = work.file("main3.ll");
  // Prints every envp entry, one a line.
  writeFile(file, R"(declare i32 @puts(ptr)
define i32 @main(i32 %argc, ptr %argv, ptr %envp) {
entry:
  br label %loop
loop:
  %p = phi ptr [ %envp, %entry ], [ %next, %body ]
  %s = load ptr, ptr %p
  %done = icmp eq ptr %s, null
  br i1 %done, label %exit, label %body
body:
  %r = call i32 @puts(ptr %s)
  %next = getelementptr ptr, ptr %p, i64 1
  br label %loop
exit:
  ret i32 %argc
}
)");
  auto result = rjit({"run", file, "--", "x"});
  EXPECT_TRUE(result.status.exitedWith(2)) << result.status.describe() << "\n" << result.err;
  EXPECT_NE(result.out.find("\nRJIT_SERVER=" + daemon->endpoint() + "\n"), std::string::npos)
      << result.out;
}

TEST_P(CliTest, RunRefusesOtherMains) {
  const std::pair<const char*, const char*> mains[] = {
      {"define i32 @main(ptr %p) {\n  ret i32 0\n}\n", "i32(ptr)"},
      {"define i64 @main() {\n  ret i64 0\n}\n", "i64()"},
      {"define i32 @main(i32 %c, ptr %v, ptr %e, ptr %a) {\n  ret i32 0\n}\n",
       "i32(i32,ptr,ptr,ptr)"},
      {"define i32 @main(i32 %c, ...) {\n  ret i32 0\n}\n", "i32(i32,...)"},
  };
  for (const auto& [ir, type] : mains) {
    std::string file = work.file("bad-main.ll");
    writeFile(file, ir);
    auto result = rjit({"run", file});
    EXPECT_TRUE(result.status.exitedWith(1)) << result.status.describe() << "\n" << result.err;
    EXPECT_EQ(result.err, "error: " + file + ": 'main' has type " + type +
                              "; expected int main(void), int main(int), int main(int, char**) "
                              "or int main(int, char**, char**)\n");
  }
}

// --- rjit call: arguments by signature --------------------------------------------------------

constexpr const char* CALL_IR = R"(declare i64 @strlen(ptr)
define i64 @half(i64 %x) {
  %r = udiv i64 %x, 2
  ret i64 %r
}
define zeroext i8 @inc(i8 zeroext %x) {
  %r = add i8 %x, 1
  ret i8 %r
}
define double @scale(double %x, float %y) {
  %e = fpext float %y to double
  %r = fmul double %x, %e
  ret double %r
}
define i64 @len(ptr %s) {
  %n = call i64 @strlen(ptr %s)
  ret i64 %n
}
define void @nothing() {
  ret void
}
define i32 @first(i32 %a, ...) {
  ret i32 %a
}
)";

TEST_P(CliTest, CallConvertsArgumentsByTheSignature) {
  std::string file = work.file("call.ll");
  writeFile(file, CALL_IR);
  auto call = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"call", file});
    return rjit(args);
  };
  auto half = call({"half", "18446744073709551615"});  // a u64 for an i64
  expectSuccess(half);
  EXPECT_EQ(half.out, "9223372036854775807\n");
  auto negative = call({"half", "--", "-4"});
  expectSuccess(negative);
  EXPECT_EQ(negative.out, "9223372036854775806\n");  // udiv of 2^64-4: IR says unsigned division
  auto inc = call({"inc", "255"});
  expectSuccess(inc);
  EXPECT_EQ(inc.out, "0\n");
  auto scale = call({"scale", "1.5", "0.5"});
  expectSuccess(scale);
  EXPECT_EQ(scale.out, "0.75\n");
  auto len = call({"len", "hello world"});
  expectSuccess(len);
  EXPECT_EQ(len.out, "11\n");
  auto nothing = call({"nothing"});
  expectSuccess(nothing);
  EXPECT_EQ(nothing.out, "");
}

TEST_P(CliTest, CallRefusalsNameTheFunctionAndTheArgument) {
  std::string file = work.file("call.ll");
  writeFile(file, CALL_IR);
  auto refused = [&](std::vector<std::string> args, const std::string& message) {
    args.insert(args.begin(), {"call", file});
    auto result = rjit(args);
    EXPECT_TRUE(result.status.exitedWith(1)) << result.status.describe() << "\n" << result.err;
    EXPECT_EQ(result.err, "error: " + message + "\n");
  };
  refused({"inc", "256"}, "argument 1 '256' of 'inc' (zeroext i8(zeroext i8)): expected an "
                          "integer in [0, 255] for zeroext i8");
  refused({"half", "18446744073709551616"},
          "argument 1 '18446744073709551616' of 'half' (i64(i64)): expected an integer in "
          "[-9223372036854775808, 18446744073709551615] for i64");
  refused({"scale", "1", "x"},
          "argument 2 'x' of 'scale' (double(double,float)): expected a number for float");
  refused({"half"}, "'half' (i64(i64)) takes 1 argument; 0 given");
  refused({"first", "1"}, "'first' (i32(i32,...)) takes variable arguments; only functions with "
                          "a fixed parameter list can be called by signature");
  refused({"nosuch"}, file + " defines no global symbol 'nosuch'");
}

// --- rjit compile -o: devices and FIFOs ---------------------------------------------------------

TEST_P(CliTest, CompileToDevNullLeavesTheDevice) {
  struct stat before;
  ASSERT_EQ(::stat("/dev/null", &before), 0);
  ASSERT_TRUE(S_ISCHR(before.st_mode));
  expectSuccess(rjit({"compile", genPath("sieve.ll"), "-o", "/dev/null"}));
  struct stat after;
  ASSERT_EQ(::stat("/dev/null", &after), 0);
  EXPECT_TRUE(S_ISCHR(after.st_mode));
  EXPECT_EQ(after.st_rdev, before.st_rdev);
  EXPECT_EQ(after.st_ino, before.st_ino);
}

TEST_P(CliTest, CompileIntoADeviceNodeWritesInPlace) {
  // A null device of our own, so that a regression replaces it and not the system's.
  std::string device = work.file("null");
  if (::mknod(device.c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0)
    GTEST_SKIP() << "cannot create a device node here (not root, or no CAP_MKNOD): "
                 << std::strerror(errno);
  if (kj::AutoCloseFd probe(::open(device.c_str(), O_WRONLY | O_CLOEXEC)); probe.get() < 0)
    GTEST_SKIP() << "device nodes do not open here (a nodev mount?): " << std::strerror(errno);
  expectSuccess(rjit({"compile", genPath("sieve.ll"), "-o", device}));
  struct stat st;
  ASSERT_EQ(::stat(device.c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
}

TEST_P(CliTest, CompileIntoAFifoWritesThroughIt) {
  std::string regular = work.file("sieve-regular.o");
  expectSuccess(rjit({"compile", genPath("sieve.ll"), "-o", regular}));
  std::string expected = readFile(regular);
  ASSERT_FALSE(expected.empty());

  std::string fifo = work.file("object.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  // The read end first (O_NONBLOCK: there is no writer yet), then a writer of our own held
  // until rjit has exited: the reader sees end-of-file only after rjit is done, whether rjit
  // wrote into the FIFO or (the bug) renamed a file over it and wrote nothing.
  kj::AutoCloseFd reader(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_GE(reader.get(), 0) << std::strerror(errno);
  ASSERT_EQ(::fcntl(reader.get(), F_SETFL, 0), 0);  // blocking reads from here on
  kj::AutoCloseFd holder(::open(fifo.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_GE(holder.get(), 0) << std::strerror(errno);
  std::string received;
  // A thread, because an object is bigger than a pipe's buffer: rjit blocks until it is read.
  std::thread drain([&] {
    char buffer[1 << 16];
    ssize_t n;
    while ((n = ::read(reader.get(), buffer, sizeof(buffer))) > 0)
      received.append(buffer, static_cast<size_t>(n));
  });
  auto result = rjit({"compile", genPath("sieve.ll"), "-o", fifo});
  holder = nullptr;
  drain.join();
  expectSuccess(result);
  EXPECT_EQ(received.size(), expected.size());
  EXPECT_TRUE(received == expected) << "the FIFO received other bytes than the regular file";
  struct stat st;
  ASSERT_EQ(::stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

TEST_P(CliTest, CompileReplacesARegularFileAndLeavesNoTemporary) {
  std::string out = work.file("replaced.o");
  writeFile(out, "old contents");
  expectSuccess(rjit({"compile", genPath("sieve.ll"), "-o", out}));
  EXPECT_EQ(elfMachine(readFile(out)), EM_X86_64);
  auto listing = runCommand(work, {"/bin/ls", "-a", work.path()});
  EXPECT_EQ(listing.out.find(".tmp."), std::string::npos) << listing.out;
}

RJIT_INSTANTIATE_DAEMON_MODES(CliTest);

}  // namespace
}  // namespace rjit::test
