// SPDX-License-Identifier: MIT
// Tests for src/client/client-core: how a call follows an `overloaded` answer's retry-after
// hint within its deadline, against a real Cap'n Proto server on a Unix socket (in this
// process, on the test's event loop) that counts the attempts it answers.
#include "client-core.h"

#include "temp-dir.h"

#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>

namespace rjit::detail {
namespace {

constexpr const char* TRIPLE = "x86_64-unknown-linux-gnu";

/// A Session whose compile answers `overloaded` with `retryAfterMillis` for the first
/// `overloadedAnswers` attempts (all of them when negative), then an object.
class OverloadedSession final : public proto::Session::Server {
public:
  OverloadedSession(int overloadedAnswers, uint32_t retryAfterMillis, unsigned& attempts)
      : overloadedAnswers(overloadedAnswers), retryAfterMillis(retryAfterMillis),
        attempts(attempts) {}

protected:
  kj::Promise<void> compile(CompileContext context) override {
    ++attempts;
    auto outcome = context.getResults().initOutcome();
    if (overloadedAnswers < 0 || attempts <= static_cast<unsigned>(overloadedAnswers)) {
      auto error = outcome.initError();
      error.setKind(proto::Error::Kind::OVERLOADED);
      error.setMessage("the queue for x86_64 is full");
      error.setRetryAfterMillis(retryAfterMillis);
      return kj::READY_NOW;
    }
    auto ok = outcome.initOk();
    ok.initKey(32);
    ok.setObject(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("obj"), 3));
    ok.setTriple(TRIPLE);
    return kj::READY_NOW;
  }

private:
  int overloadedAnswers;
  uint32_t retryAfterMillis;
  unsigned& attempts;
};

class TestRjitd final : public proto::Rjitd::Server {
public:
  TestRjitd(int overloadedAnswers, uint32_t retryAfterMillis, unsigned& attempts)
      : overloadedAnswers(overloadedAnswers), retryAfterMillis(retryAfterMillis),
        attempts(attempts) {}

protected:
  kj::Promise<void> hello(HelloContext context) override {
    auto results = context.getResults();
    auto server = results.initServer();
    server.setProtocolVersion(proto::PROTOCOL_VERSION);
    server.setRjitdVersion("test");
    server.setDefaultTriple(TRIPLE);
    auto target = server.initTargets(1)[0];
    target.setName("x86_64");
    target.setTriple(TRIPLE);
    target.setDefaultCpu("x86-64");
    server.initLimits().setMaxModuleBytes(1 << 20);
    results.setSession(kj::heap<OverloadedSession>(overloadedAnswers, retryAfterMillis, attempts));
    return kj::READY_NOW;
  }

private:
  int overloadedAnswers;
  uint32_t retryAfterMillis;
  unsigned& attempts;
};

class ClientCoreTest : public ::testing::Test {
protected:
  /// Serves a TestRjitd at a socket of the test's and returns a client configuration for it.
  Config serve(int overloadedAnswers, uint32_t retryAfterMillis,
               std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    std::string path = dir.file("rjitd.sock");
    serving->listener = serving->io.provider->getNetwork()
                            .parseAddress(kj::str("unix:", path.c_str()))
                            .wait(serving->io.waitScope)
                            ->listen();
    serving->server = kj::heap<capnp::TwoPartyServer>(
        kj::heap<TestRjitd>(overloadedAnswers, retryAfterMillis, attempts));
    serving->accepting = serving->server->listen(*serving->listener).eagerlyEvaluate(nullptr);
    Config config;
    rjitd::Endpoint endpoint;
    endpoint.kind = rjitd::Endpoint::Kind::Unix;
    endpoint.path = path;
    config.endpoints = {endpoint};
    config.timeout = timeout;
    config.clientName = "client-core-test";
    return config;
  }

  Result<CompiledObject> compile(const Config& config) {
    ClientCore core(serving->io, config);
    CompileRequest request;
    request.module = "define i32 @f() {\n  ret i32 0\n}\n";
    request.moduleName = "f.ll";
    Result<CompiledObject> result = core.compile(request).wait(serving->io.waitScope);
    core.shutdown();
    return result;
  }

  /// The test server's parts; behind a pointer because their destructors may throw
  /// (noexcept(false)), which a GoogleTest fixture's destructor may not.
  struct Serving {
    kj::AsyncIoContext io = kj::setupAsyncIo();  // first: outlives what runs on it
    kj::Own<kj::ConnectionReceiver> listener;
    kj::Own<capnp::TwoPartyServer> server;
    kj::Promise<void> accepting = nullptr;
  };

  rjit::test::TempDir dir;
  unsigned attempts = 0;
  std::unique_ptr<Serving> serving = std::make_unique<Serving>();
};

TEST_F(ClientCoreTest, OverloadedWithAHintIsRetriedAfterIt) {
  Result<CompiledObject> result = compile(serve(1, 5));
  Error* error = failed(result);
  EXPECT_EQ(error, nullptr) << error->what();
  EXPECT_EQ(attempts, 2u);
}

TEST_F(ClientCoreTest, AHintPastTheDeadlineIsReturnedAtOnceWithTheHint) {
  Result<CompiledObject> result = compile(serve(-1, 3'600'000, std::chrono::seconds(60)));
  Error* error = failed(result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->kind(), ErrorKind::Overloaded);
  EXPECT_EQ(error->retryAfter(), std::chrono::milliseconds(3'600'000));
  EXPECT_EQ(attempts, 1u);
}

TEST_F(ClientCoreTest, RetriesAfterOverloadedAreBounded) {
  Result<CompiledObject> result = compile(serve(-1, 1));
  Error* error = failed(result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->kind(), ErrorKind::Overloaded);
  EXPECT_EQ(attempts, 5u);  // the first attempt and RETRIES_AFTER_OVERLOADED retries
}

TEST_F(ClientCoreTest, OverloadedWithoutAHintIsNotRetried) {
  Result<CompiledObject> result = compile(serve(-1, 0));
  Error* error = failed(result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->kind(), ErrorKind::Overloaded);
  EXPECT_EQ(attempts, 1u);
}

}  // namespace
}  // namespace rjit::detail
