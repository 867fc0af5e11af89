// SPDX-License-Identifier: MIT
// End to end through a real rjitd: compile clang-19 output, link the object with the system C
// compiler and run it against the native build; cache hits; hash-first; AArch64; TCP.
#include <elf.h>

#include <algorithm>
#include <regex>

#include "fixture.h"

namespace rjit::test {
namespace {

class CompileTest : public DaemonTest {
protected:
  /// Compiles `module` (a file in the build tree) at `optLevel`, links and runs the program and
  /// compares it with the native build of `program`.c.
  void expectSameAsNative(Client& client, const std::string& program, const std::string& module,
                          unsigned optLevel) {
    SCOPED_TRACE(module + " at -O" + std::to_string(optLevel));
    CompileRequest request;
    request.module = readFile(genPath(module));
    request.moduleName = module;
    request.optLevel = optLevel;
    auto object = client.compile(request);
    EXPECT_EQ(elfMachine(object.object), EM_X86_64);
    EXPECT_EQ(object.key.size(), 64u);
    EXPECT_TRUE(object.triple.starts_with("x86_64")) << object.triple;
    EXPECT_TRUE(std::any_of(object.defines.begin(), object.defines.end(), [](const Symbol& s) {
      return s.name == "main" && s.kind == Symbol::Kind::Function;
    })) << "main is not among the defined functions";

    auto native = runNative(work, program);
    auto linked =
        linkAndRun(work, program + "-O" + std::to_string(optLevel) + "-" + module, object.object);
    ASSERT_TRUE(linked.has_value());
    EXPECT_FALSE(native.out.empty());
    EXPECT_EQ(linked->out, native.out);
    EXPECT_EQ(linked->status.raw, native.status.raw)
        << "rjitd build: " << linked->status.describe() << ", native: " << native.status.describe();
  }
};

TEST_P(CompileTest, SieveTextIrRunsLikeNativeBuild) {
  Client client(clientOptions());
  expectSameAsNative(client, "sieve", "sieve.ll", 0);
  expectSameAsNative(client, "sieve", "sieve.ll", 2);
}

TEST_P(CompileTest, MathprogBitcodeRunsLikeNativeBuild) {
  Client client(clientOptions());
  expectSameAsNative(client, "mathprog", "mathprog.bc", 0);
  expectSameAsNative(client, "mathprog", "mathprog.bc", 2);
}

TEST_P(CompileTest, SecondIdenticalRequestIsCacheHit) {
  auto options = clientOptions();
  options.hashFirstBytes = UINT64_MAX;  // a plain compile both times; hash-first is tested below
  Client client(options);
  CompileRequest request;
  request.module = withNonce(readFile(genPath("sieve.ll")));
  request.moduleName = "sieve.ll";
  request.optLevel = 2;

  auto before = client.stats();
  auto first = client.compile(request);
  auto afterFirst = client.stats();
  EXPECT_FALSE(first.fromCache);
  EXPECT_EQ(afterFirst.compiles, before.compiles + 1);
  EXPECT_EQ(afterFirst.cacheEntries, before.cacheEntries + 1);

  auto second = client.compile(request);
  auto afterSecond = client.stats();
  EXPECT_TRUE(second.fromCache);
  EXPECT_EQ(second.key, first.key);
  EXPECT_EQ(second.object, first.object);
  EXPECT_EQ(afterSecond.cacheHits, afterFirst.cacheHits + 1);
  EXPECT_EQ(afterSecond.compiles, afterFirst.compiles);
  EXPECT_EQ(afterSecond.cacheEntries, afterFirst.cacheEntries);
}

TEST_P(CompileTest, HashFirstSendsBodyOnlyOnMiss) {
  auto options = clientOptions();
  options.hashFirstBytes = 0;  // every module goes hash-first
  CompileRequest request;
  request.module = withNonce(readFile(genPath("sieve.ll")));
  request.moduleName = "sieve.ll";
  request.optLevel = 1;

  Client observer(clientOptions());
  auto before = observer.stats();
  CompiledObject first;
  {
    Client client(options);
    first = client.compile(request);
  }
  auto afterFirst = observer.stats();
  EXPECT_TRUE(first.bodySent);
  EXPECT_FALSE(first.fromCache);
  EXPECT_EQ(afterFirst.moduleBytesReceived - before.moduleBytesReceived, request.module.size());
  EXPECT_EQ(afterFirst.lookups, before.lookups + 1);
  EXPECT_EQ(afterFirst.lookupHits, before.lookupHits);

  Client fresh(options);  // nothing remembered on the client side
  auto second = fresh.compile(request);
  auto afterSecond = observer.stats();
  EXPECT_FALSE(second.bodySent);
  EXPECT_TRUE(second.fromCache);
  EXPECT_EQ(second.key, first.key);
  EXPECT_EQ(second.object, first.object);
  EXPECT_EQ(afterSecond.moduleBytesReceived, afterFirst.moduleBytesReceived);
  EXPECT_EQ(afterSecond.lookups, afterFirst.lookups + 1);
  EXPECT_EQ(afterSecond.lookupHits, afterFirst.lookupHits + 1);
  EXPECT_EQ(afterSecond.compiles, afterFirst.compiles);
}

TEST_P(CompileTest, AArch64TargetProducesAArch64Object) {
  Client client(clientOptions());
  auto info = client.serverInfo();
  EXPECT_TRUE(std::any_of(info.targets.begin(), info.targets.end(), [](const TargetInfo& t) {
    return t.name == "aarch64";
  })) << "rjitd does not list an aarch64 target";

  CompileRequest request;
  request.module = readFile(genPath("checksum-aarch64.ll"));
  request.moduleName = "checksum-aarch64.ll";
  request.target = "aarch64";
  request.optLevel = 2;
  auto object = client.compile(request);
  EXPECT_EQ(elfMachine(object.object), EM_AARCH64);
  EXPECT_TRUE(object.triple.starts_with("aarch64")) << object.triple;
  for (const char* name : {"crc32", "messageChecksum"})
    EXPECT_TRUE(std::any_of(object.defines.begin(), object.defines.end(),
                            [&](const Symbol& s) { return s.name == name; }))
        << name << " is not defined";
}

TEST_P(CompileTest, ServerInfoDescribesDaemon) {
  Client client(clientOptions());
  auto info = client.serverInfo();
  EXPECT_EQ(info.endpoint, daemon->endpoint());
  EXPECT_EQ(info.protocolVersion, 1u);
  EXPECT_TRUE(info.llvmVersion.starts_with("19")) << info.llvmVersion;
  EXPECT_FALSE(info.rjitdVersion.empty());
  // The key's compiler identity names the build (issue 13): "rjitd/V llvm/V build/<40 hex>".
  EXPECT_TRUE(std::regex_match(info.compilerIdentity,
                               std::regex("rjitd/\\S+ llvm/19\\S* build/[0-9a-f]{40}")))
      << info.compilerIdentity;
  EXPECT_TRUE(info.defaultTriple.starts_with("x86_64")) << info.defaultTriple;
  EXPECT_GT(info.maxModuleBytes, 0u);
  EXPECT_TRUE(std::any_of(info.targets.begin(), info.targets.end(),
                          [](const TargetInfo& t) { return t.name == "x86_64"; }));
}

TEST_P(CompileTest, ServesUnixAndTcpTogether) {
  DaemonOptions options;
  options.tcpPort = freeTcpPort();
  ASSERT_NE(options.tcpPort, 0);
  auto both = startDaemon(options);
  ASSERT_NE(both, nullptr);

  CompileRequest request;
  request.module = tinyModule();
  request.optLevel = 2;
  ClientOptions tcpOptions;
  tcpOptions.servers = {both->tcpEndpoint()};
  Client overTcp(tcpOptions);
  auto viaTcp = overTcp.compile(request);
  EXPECT_EQ(overTcp.serverInfo().endpoint, both->tcpEndpoint());

  Client overUnix(clientOptions(both.get()));
  auto viaUnix = overUnix.compile(request);
  EXPECT_TRUE(viaUnix.fromCache) << "one daemon, one cache, whichever socket";
  EXPECT_EQ(viaUnix.object, viaTcp.object);

  if (both->mode() == DaemonMode::SocketActivated)
    both->waitReady();
  auto status = both->stop();
  EXPECT_TRUE(status.exitedWith(0)) << status.describe();
}

RJIT_INSTANTIATE_DAEMON_MODES(CompileTest);

}  // namespace
}  // namespace rjit::test
