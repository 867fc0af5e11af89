// SPDX-License-Identifier: MIT
// rjitd's question to a client for its symbols' addresses, asked of a client that speaks the
// protocol directly and answers wrongly: the load fails as the client's fault
// (`invalid-request`, counted so in rjitd's stats), never as an unexplained exception, and the
// daemon goes on serving.
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include "fixture.h"
#include "rjit.capnp.h"

namespace rjit::test {
namespace {

/// A module with one import nobody defines but the client, so that its load asks about it.
constexpr const char* IMPORTS_EXT = "declare i32 @ext()\n"
                                    "define i32 @callsExt() {\n"
                                    "  %r = call i32 @ext()\n"
                                    "  ret i32 %r\n"
                                    "}\n";

/// How the raw client's symbol resolver answers.
enum class Answer { WrongCount, Throws };

class RawResolver final : public rjitd::proto::SymbolResolver::Server {
public:
  explicit RawResolver(Answer answer) : answer(answer) {}

  kj::Promise<void> resolve(ResolveContext context) override {
    if (answer == Answer::Throws)
      KJ_FAIL_REQUIRE("the client's resolver has a bug");
    // One address more than rjitd asked for.
    context.getResults().initAddresses(context.getParams().getNames().size() + 1);
    return kj::READY_NOW;
  }

private:
  Answer answer;
};

/// What rjitd answered to a raw load, and its rjitd_requests_total{method="load"} afterwards.
struct RawLoad {
  bool ok = false;
  bool error = false;
  rjitd::proto::Error::Kind kind = rjitd::proto::Error::Kind::INTERNAL;
  std::string exception;  ///< set when a call failed with an exception instead
  uint64_t invalidRequests = 0, internals = 0;
};

RawLoad rawLoad(const std::string& socketPath, Answer answer) {
  RawLoad result;
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
                 auto hello = rpc.bootstrap().castAs<rjitd::proto::Rjitd>().helloRequest();
                 hello.initClient().setProtocolVersion(rjitd::proto::PROTOCOL_VERSION);
                 hello.getClient().setClientName("integration-test-raw");
                 auto session = hello.send().getSession();

                 auto load = session.loadRequest();
                 auto request = load.initRequest();
                 auto compile = request.initCompile();
                 compile.setModuleName("imports-ext.ll");
                 compile.setFormat(rjitd::proto::IrFormat::TEXT);
                 compile.setModule(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(IMPORTS_EXT),
                                                strlen(IMPORTS_EXT)));
                 // Addresses only: rjitd never touches the client's memory.
                 auto arena = request.initArena();
                 arena.setBase(0x7f0000000000);
                 arena.setSize(1 << 30);
                 arena.setPageSize(4096);
                 request.setResolver(kj::heap<RawResolver>(answer));
                 auto response = timer.timeoutAfter(bound, load.send()).wait(waitScope);
                 auto outcome = response.getOutcome();
                 result.ok = outcome.isOk();
                 if (outcome.isError()) {
                   result.error = true;
                   result.kind = outcome.getError().getKind();
                 }

                 // The response owns the message the stats are read from: keep it alive.
                 auto statsResponse =
                     timer.timeoutAfter(bound, session.statsRequest().send()).wait(waitScope);
                 auto stats = statsResponse.getStats();
                 for (auto count : stats.getRequestCounts()) {
                   if (count.getMethod() != "load")
                     continue;
                   if (count.getResult() == "invalid-request")
                     result.invalidRequests = count.getCount();
                   if (count.getResult() == "internal")
                     result.internals = count.getCount();
                 }
               })) {
    result.exception = exception->getDescription().cStr();
  }
  return result;
}

class SymbolQuestionTest : public DaemonTest {};

TEST_P(SymbolQuestionTest, AWrongNumberOfAddressesIsAnInvalidRequest) {
  RawLoad load = rawLoad(daemon->socketPath(), Answer::WrongCount);
  EXPECT_EQ(load.exception, "");
  ASSERT_TRUE(load.error);
  EXPECT_EQ(load.kind, rjitd::proto::Error::Kind::INVALID_REQUEST);
  EXPECT_EQ(load.invalidRequests, 1u);
  EXPECT_EQ(load.internals, 0u);
  expectServes();
}

TEST_P(SymbolQuestionTest, AResolverThatFailsIsAnInvalidRequest) {
  RawLoad load = rawLoad(daemon->socketPath(), Answer::Throws);
  EXPECT_EQ(load.exception, "");
  ASSERT_TRUE(load.error);
  EXPECT_EQ(load.kind, rjitd::proto::Error::Kind::INVALID_REQUEST);
  EXPECT_EQ(load.invalidRequests, 1u);
  EXPECT_EQ(load.internals, 0u);
  expectServes();
}

RJIT_INSTANTIATE_DAEMON_MODES(SymbolQuestionTest);

}  // namespace
}  // namespace rjit::test
