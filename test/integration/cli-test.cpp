// SPDX-License-Identifier: MIT
// The real `rjit` binary against a real rjitd: what a user types and what they see (output
// text is the contract here, so these tests do check it).
#include <elf.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

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

TEST_P(CliTest, InfoTextShowsVersions) {
  auto json = nlohmann::json::parse(rjit({"info", "--json"}).out, nullptr, false);
  auto result = rjit({"info"});
  expectSuccess(result);
  EXPECT_FALSE(result.out.empty());
  if (!json.is_discarded() && json.contains("server")) {
    EXPECT_NE(result.out.find(json["server"]["llvm_version"].get<std::string>()), std::string::npos)
        << result.out;
    EXPECT_NE(result.out.find(json["server"]["rjitd_version"].get<std::string>()),
              std::string::npos)
        << result.out;
  }
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
  std::string path = work.file("hung.sock");
  kj::AutoCloseFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 16), 0);
  auto result = rjit({"info", "--timeout-ms", "300"}, "unix:" + path);
  expectError(result);
}

RJIT_INSTANTIATE_DAEMON_MODES(CliTest);

}  // namespace
}  // namespace rjit::test
