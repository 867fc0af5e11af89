// SPDX-License-Identifier: MIT
// Bad input and faults against a real rjitd: each gets a clear error of the right kind, and the
// daemon (and, where one is involved, the same client) goes on serving.
#include <arpa/inet.h>
#include <elf.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "compile-gate.h"
#include "fixture.h"
#include "rjit.capnp.h"

namespace rjit::test {
namespace {

using namespace std::chrono_literals;

class BadInputTest : public DaemonTest {
protected:
  /// The compile's rjit::Error, checked to be of `kind`; the same client then still compiles.
  std::optional<Error> expectCompileError(Client& client, const CompileRequest& request,
                                          ErrorKind kind) {
    auto error = catchError([&] { client.compile(request); });
    if (error) {
      EXPECT_EQ(error->kind(), kind)
          << "got " << errorKindName(error->kind()) << ": " << error->what();
      EXPECT_FALSE(std::string(error->what()).empty());
    }
    expectServes(client);
    return error;
  }
};

/// The malformed module and where LLVM reports its error (as llvm-as-19 prints it).
constexpr const char* MALFORMED_IR = "; malformed on purpose: %nosuchvalue is never defined\n"
                                     "define i32 @f(i32 %x) {\n"
                                     "entry:\n"
                                     "  %y = add i32 %x, %nosuchvalue\n"
                                     "  ret i32 %y\n"
                                     "}\n";
constexpr uint32_t MALFORMED_LINE = 4;
constexpr uint32_t MALFORMED_COLUMN = 20;

sockaddr_un unixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  EXPECT_LT(path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), std::min(path.size() + 1, sizeof addr.sun_path));
  return addr;
}

/// Connects a raw stream socket to rjitd's Unix socket.
kj::AutoCloseFd connectRaw(const std::string& path) {
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto addr = unixAddress(path);
  if (fd == nullptr || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    return kj::AutoCloseFd();
  }
  return fd;
}

void sendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    // The daemon may drop a connection it has judged malformed before reading everything.
    if (n <= 0)
      return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

/// A Cap'n Proto segment table: `segments` segments, the first of `words` words.
std::string frameHeader(uint32_t segments, uint32_t words) {
  uint32_t header[2] = {segments - 1, words};  // little-endian on every host we build for
  return std::string(reinterpret_cast<const char*>(header), sizeof header);
}

/// What the daemon answered to a compile sent over the raw protocol.
struct RawOutcome {
  bool ok = false;
  rjitd::proto::Error::Kind kind = rjitd::proto::Error::Kind::INTERNAL;
  std::string message;
  std::string exception;  ///< set when the call failed with an exception instead
};

/// Sends one compile request speaking the protocol directly, so that a check the client library
/// makes first (such as the module size limit) cannot hide the server's own.
RawOutcome rawCompile(const std::string& socketPath, const std::string& module) {
  RawOutcome result;
  auto io = kj::setupAsyncIo();
  auto& waitScope = io.waitScope;
  auto& timer = io.provider->getTimer();
  auto bound = SAFETY_BOUND.count() * kj::MILLISECONDS;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                 auto address = io.provider->getNetwork()
                                    .parseAddress(kj::str("unix:", socketPath.c_str()))
                                    .wait(waitScope);
                 auto stream = timer.timeoutAfter(bound, address->connect()).wait(waitScope);
                 capnp::TwoPartyClient rpc(*stream);
                 auto bootstrap = rpc.bootstrap().castAs<rjitd::proto::Rjitd>();
                 auto hello = bootstrap.helloRequest();
                 hello.initClient().setProtocolVersion(rjitd::proto::PROTOCOL_VERSION);
                 hello.getClient().setClientName("integration-test-raw");
                 auto session = hello.send().getSession();
                 auto compile = session.compileRequest();
                 auto request = compile.initRequest();
                 request.setModuleName("too-large.ll");
                 request.setOptLevel(0);
                 request.setFormat(rjitd::proto::IrFormat::TEXT);
                 request.setModule(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(module.data()),
                                                module.size()));
                 auto response = timer.timeoutAfter(bound, compile.send()).wait(waitScope);
                 auto outcome = response.getOutcome();
                 result.ok = outcome.isOk();
                 if (outcome.isError()) {
                   result.kind = outcome.getError().getKind();
                   result.message = outcome.getError().getMessage();
                 }
               })) {
    result.exception = exception->getDescription().cStr();
  }
  return result;
}

TEST_P(BadInputTest, MalformedTextIrReportsLineAndColumn) {
  Client client(clientOptions());
  CompileRequest request;
  request.module = MALFORMED_IR;
  request.moduleName = "malformed.ll";
  auto error = expectCompileError(client, request, ErrorKind::InvalidModule);
  ASSERT_TRUE(error.has_value());
  bool located = false;
  for (const auto& d : error->diagnostics())
    located = located || (d.severity == Diagnostic::Severity::Error && d.line == MALFORMED_LINE &&
                          d.column == MALFORMED_COLUMN);
  EXPECT_TRUE(located) << "no error diagnostic at " << MALFORMED_LINE << ":" << MALFORMED_COLUMN
                       << "; message: " << error->what();
  EXPECT_NE(std::string(error->what()).find("4:20"), std::string::npos) << error->what();
  EXPECT_NE(std::string(error->what()).find("nosuchvalue"), std::string::npos) << error->what();
}

TEST_P(BadInputTest, IrFailingVerificationIsInvalidModule) {
  Client client(clientOptions());
  CompileRequest request;
  request.module = "define i32 @f() {\n"
                   "entry:\n"
                   "  %x = add i32 %x, 1\n"
                   "  ret i32 %x\n"
                   "}\n";
  auto error = expectCompileError(client, request, ErrorKind::InvalidModule);
  ASSERT_TRUE(error.has_value());
  EXPECT_FALSE(error->diagnostics().empty()) << error->what();
}

TEST_P(BadInputTest, GarbageBitcodeIsInvalidModule) {
  Client client(clientOptions());
  std::string garbage("BC\xC0\xDE", 4);
  for (unsigned i = 0; i < 512; ++i)
    garbage += static_cast<char>((i * 167 + 13) & 0xFF);
  CompileRequest request;
  request.module = garbage;
  request.moduleName = "garbage.bc";
  expectCompileError(client, request, ErrorKind::InvalidModule);
  request.format = IrFormat::Bitcode;
  expectCompileError(client, request, ErrorKind::InvalidModule);
  // Bitcode truncated in the middle of a real module.
  request.module = readFile(genPath("mathprog.bc"));
  request.module.resize(request.module.size() / 2);
  expectCompileError(client, request, ErrorKind::InvalidModule);
}

TEST_P(BadInputTest, UnknownTargetIsReported) {
  Client client(clientOptions());
  CompileRequest request;
  request.module = tinyModule();
  request.target = "no-such-target";
  expectCompileError(client, request, ErrorKind::UnknownTarget);
  request.target = "sparc64-unknown-linux-gnu";  // real LLVM target, not one rjitd serves
  expectCompileError(client, request, ErrorKind::UnknownTarget);
}

TEST_P(BadInputTest, ModuleThatMakesLlvmAbortFailsOnlyThatRequest) {
  // An AArch64 intrinsic whose feature (+crc) the request does not enable: LLVM's instruction
  // selector ends its process with a fatal error. That process is a compile worker, so the
  // request fails with a clear error and rjitd goes on serving (expectCompileError checks).
  Client client(clientOptions());
  CompileRequest request;
  request.module = R"(declare i32 @llvm.aarch64.crc32b(i32, i32)
define i32 @f(i32 %a, i32 %b) {
  %c = call i32 @llvm.aarch64.crc32b(i32 %a, i32 %b)
  ret i32 %c
}
)";
  request.moduleName = "crc.ll";
  request.target = "aarch64";
  auto error = expectCompileError(client, request, ErrorKind::InvalidModule);
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(std::string(error->what()).find("crc.ll"), std::string::npos) << error->what();
  // The same module with the feature enabled compiles on a fresh worker.
  request.features = "+crc";
  EXPECT_FALSE(client.compile(request).object.empty());
}

TEST_P(BadInputTest, ModuleForAnotherTargetIsNotRetargeted) {
  Client client(clientOptions());
  CompileRequest request;
  request.module = readFile(genPath("sieve.ll"));  // says x86_64-pc-linux-gnu
  request.moduleName = "sieve.ll";
  request.target = "aarch64";
  expectCompileError(client, request, ErrorKind::TargetMismatch);
}

TEST_P(BadInputTest, OptLevelOutOfRangeIsInvalidRequest) {
  Client client(clientOptions());
  CompileRequest request;
  request.module = tinyModule();
  request.optLevel = 7;
  expectCompileError(client, request, ErrorKind::InvalidRequest);
}

TEST_P(BadInputTest, ModuleOverSizeLimitIsTooLarge) {
  DaemonOptions options;
  options.extraArgs = {"--max-module-bytes", "4096"};
  auto limited = startDaemon(options);
  ASSERT_NE(limited, nullptr);
  CompileRequest request;
  request.module = generatedModule(5);
  ASSERT_GT(request.module.size(), 4096u);

  Client client(clientOptions(limited.get()));
  EXPECT_EQ(client.serverInfo().maxModuleBytes, 4096u);
  expectCompileError(client, request, ErrorKind::TooLarge);

  auto hashFirst = clientOptions(limited.get());
  hashFirst.hashFirstBytes = 0;
  Client hashFirstClient(hashFirst);
  expectCompileError(hashFirstClient, request, ErrorKind::TooLarge);

  // The server's own check, without the client library's in front of it.
  auto raw = rawCompile(limited->socketPath(), request.module);
  EXPECT_TRUE(raw.exception.empty()) << raw.exception;
  EXPECT_FALSE(raw.ok);
  EXPECT_EQ(raw.kind, rjitd::proto::Error::Kind::TOO_LARGE) << raw.message;
  expectServes(client);

  if (limited->mode() == DaemonMode::SocketActivated)
    limited->waitReady();
  auto status = limited->stop();
  EXPECT_TRUE(status.exitedWith(0)) << status.describe();
}

TEST_P(BadInputTest, ClientVanishingMidCompileLeavesDaemonServing) {
  // A daemon whose compiles wait at a gate this test holds: the client certainly vanishes while
  // rjitd compiles for it, however fast the machine compiles the module.
  auto gate = CompileGate::create(work.file("compile-gate.sock"));
  ASSERT_NE(gate, nullptr);
  auto gated = startGated(*gate);
  ASSERT_NE(gated, nullptr);

  CompileRequest request;
  request.module = generatedModule(8);
  request.moduleName = "held.ll";
  request.optLevel = 2;
  {
    auto client = std::make_unique<Client>(clientOptions(gated.get()));
    auto future = client->compileAsync(request);
    ASSERT_EQ(gate->waitArrival(), "held.ll");
    client.reset();  // disconnects while rjitd compiles for it
    // The abandoned call ends, failed as the closed client's.
    ASSERT_EQ(future.wait_for(SAFETY_BOUND), std::future_status::ready);
    auto error = catchError([&] { future.get(); });
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->kind(), ErrorKind::Connection) << error->what();
  }
  // rjitd goes on with the compile for nobody once the test lets it go, and serves the module
  // (from that compile, or its cache) to a new client.
  gate->open();
  Client again(clientOptions(gated.get()));
  auto object = again.compile(request);
  EXPECT_EQ(elfMachine(object.object), EM_X86_64);
  expectServes(again);
}

TEST_P(BadInputTest, HalfFramesAndGarbageOnTheSocketLeaveDaemonServing) {
  {
    // Half a Cap'n Proto frame: a segment table promising 1000 words, then 64 bytes, then EOF.
    auto fd = connectRaw(daemon->socketPath());
    ASSERT_NE(fd.get(), -1);
    sendAll(fd.get(), frameHeader(1, 1000) + std::string(64, '\0'));
  }
  expectServes();
  {
    // A segment table claiming far more segments than any message may have.
    auto fd = connectRaw(daemon->socketPath());
    ASSERT_NE(fd.get(), -1);
    sendAll(fd.get(), frameHeader(0xFFFFFFFFu, 0xFFFFFFFFu) + std::string(64, '\x55'));
  }
  expectServes();
  {
    // Noise, and the connection stays open (half-open peer) while others are served.
    auto fd = connectRaw(daemon->socketPath());
    ASSERT_NE(fd.get(), -1);
    std::string noise;
    for (unsigned i = 0; i < 4096; ++i)
      noise += static_cast<char>((i * 31 + 7) & 0xFF);
    sendAll(fd.get(), noise);
    expectServes();
  }
  expectServes();
}

TEST_P(BadInputTest, UnreachableServerIsConnectionError) {
  CompileRequest request;
  request.module = tinyModule();
  std::string dead = "unix:" + work.file("nobody-listens.sock");
  {
    ScopedEnv env("RJIT_SERVER", dead);
    Client fromEnvironment;
    auto error = catchError([&] { fromEnvironment.compile(request); });
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->kind(), ErrorKind::Connection) << error->what();
    EXPECT_NE(std::string(error->what()).find("nobody-listens.sock"), std::string::npos)
        << "the message should name the address: " << error->what();
  }
  ClientOptions tcp;
  tcp.servers = {"tcp:127.0.0.1:" + std::to_string(freeTcpPort())};
  Client overTcp(tcp);
  auto error = catchError([&] { overTcp.compile(request); });
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), ErrorKind::Connection) << error->what();
  expectServes();
}

TEST_P(BadInputTest, FailsOverToNextServer) {
  std::string dead = "unix:" + work.file("nobody-listens.sock");
  {
    ClientOptions options;
    options.servers = {dead, daemon->endpoint()};
    Client client(options);
    expectServes(client);
    EXPECT_EQ(client.serverInfo().endpoint, daemon->endpoint());
  }
  // Only now, with no client thread running, is it safe to change the environment.
  ScopedEnv env("RJIT_SERVER", dead + "," + daemon->endpoint());
  Client fromEnvironment;
  expectServes(fromEnvironment);
  EXPECT_EQ(fromEnvironment.serverInfo().endpoint, daemon->endpoint());
}

TEST_P(BadInputTest, HungUnixServerTimesOut) {
  // A socket that listens but never accepts: connect() succeeds, no answer ever comes.
  std::string path = work.file("hung.sock");
  kj::AutoCloseFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto addr = unixAddress(path);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 16), 0);

  ClientOptions options;
  options.servers = {"unix:" + path};
  options.timeout = 300ms;
  Client client(options);
  CompileRequest request;
  request.module = tinyModule();
  auto future = client.compileAsync(request);
  ASSERT_EQ(future.wait_for(SAFETY_BOUND), std::future_status::ready);
  auto error = catchError([&] { future.get(); });
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), ErrorKind::Timeout) << error->what();
  expectServes();
}

TEST_P(BadInputTest, HungTcpServerTimesOut) {
  // A TCP server that accepts the connection and never says a word.
  kj::AutoCloseFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 16), 0);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);

  ClientOptions options;
  options.servers = {"tcp:127.0.0.1:" + std::to_string(ntohs(addr.sin_port))};
  options.timeout = 300ms;
  Client client(options);
  CompileRequest request;
  request.module = tinyModule();
  auto future = client.compileAsync(request);

  pollfd p{listener.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, static_cast<int>(SAFETY_BOUND.count())), 1) << "the client never came";
  kj::AutoCloseFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_NE(accepted.get(), -1);

  ASSERT_EQ(future.wait_for(SAFETY_BOUND), std::future_status::ready);
  auto error = catchError([&] { future.get(); });
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), ErrorKind::Timeout) << error->what();
  expectServes();
}

TEST_P(BadInputTest, SigtermLetsInFlightCompileFinish) {
  // A daemon whose compiles wait at a gate this test holds: the compile is in flight when
  // SIGTERM arrives however fast the machine compiles it.
  auto gate = CompileGate::create(work.file("compile-gate.sock"));
  ASSERT_NE(gate, nullptr);
  auto gated = startGated(*gate);
  ASSERT_NE(gated, nullptr);

  CompileRequest request;
  request.module = tinyModule();
  request.moduleName = "held.ll";
  request.optLevel = 2;
  Client client(clientOptions(gated.get()));
  Client late(clientOptions(gated.get()));
  late.serverInfo();  // connected before SIGTERM: its next request reaches the draining rjitd
  auto future = client.compileAsync(request);
  ASSERT_EQ(gate->waitArrival(), "held.ll");
  if (gated->mode() == DaemonMode::SocketActivated)
    gated->waitReady();

  ASSERT_EQ(::kill(gated->pid(), SIGTERM), 0);
  ASSERT_TRUE(gated->waitStopping());
  // A new request is refused as shutting-down (the client retries elsewhere, finds no rjitd
  // listening any more, and reports what the draining one said).
  CompileRequest another;
  another.module = tinyModule();
  another.moduleName = "late.ll";
  auto refused = catchError([&] { late.compile(another); });
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->kind(), ErrorKind::ShuttingDown) << refused->what();
  EXPECT_EQ(gate->held(), 1u);
  EXPECT_FALSE(gate->arrivalPending()) << "the refused request started a compile";

  gate->releaseHeld();
  ASSERT_EQ(future.wait_for(SAFETY_BOUND), std::future_status::ready);
  try {
    auto object = future.get();
    EXPECT_EQ(elfMachine(object.object), EM_X86_64);
    EXPECT_FALSE(object.fromCache);
  } catch (const Error& e) {
    ADD_FAILURE() << "the in-flight compile failed: " << errorKindName(e.kind()) << ": "
                  << e.what();
  }
  auto status = gated->stop();
  EXPECT_TRUE(status.exitedWith(0)) << "rjitd after SIGTERM: " << status.describe();
  // The daemon is gone now: a new request is a clear connection error, not a hang.
  auto error = catchError([&] { client.compile(request); });
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), ErrorKind::Connection) << error->what();
}

RJIT_INSTANTIATE_DAEMON_MODES(BadInputTest);

}  // namespace
}  // namespace rjit::test
