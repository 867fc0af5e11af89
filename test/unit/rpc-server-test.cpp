// SPDX-License-Identifier: MIT
// The RPC edge (rpc-server.cpp) with the real service behind it, spoken to over Cap'n Proto on a
// real socket pair: a fault inside rjitd is answered and counted as `internal`, a client gone is
// not answered, and a client that answers rjitd's symbol question wrongly is the client's
// fault (`invalid-request`).
#include "compile-service.h"
#include "load-service.h"
#include "metrics.h"
#include "object-cache.h"
#include "rpc-server.h"
#include "worker-pool.h"

#include <capnp/any.h>
#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

namespace rjitd::service {
namespace {

using metrics::Method;

constexpr const char* ADD = "define i32 @add(i32 %a, i32 %b) {\n"
                            "  %s = add i32 %a, %b\n"
                            "  ret i32 %s\n"
                            "}\n";

/// A module with one import, so that its load asks the client about `ext`.
constexpr const char* IMPORTS_EXT = "declare i32 @ext()\n"
                                    "define i32 @callsExt() {\n"
                                    "  %r = call i32 @ext()\n"
                                    "  ret i32 %r\n"
                                    "}\n";

/// How the test's symbol resolver (the client's side of a load) answers.
enum class Answer { Right, WrongCount, Throws };

class TestResolver final : public proto::SymbolResolver::Server {
public:
  explicit TestResolver(Answer answer) : answer(answer) {}

  kj::Promise<void> resolve(ResolveContext context) override {
    if (answer == Answer::Throws)
      KJ_FAIL_REQUIRE("the client's resolver has a bug");
    auto names = context.getParams().getNames();
    size_t n = names.size() + (answer == Answer::WrongCount ? 1 : 0);
    auto addresses = context.getResults().initAddresses(n);
    for (size_t i = 0; i < n; ++i)
      addresses.set(i, 0x10000);  // never called: the test only loads
    return kj::READY_NOW;
  }

private:
  Answer answer;
};

class RpcServerTest : public ::testing::Test {
protected:
  // Held through a pointer: kj types have noexcept(false) destructors, which a gtest fixture
  // cannot have as direct members. Members are destroyed in reverse: the connection first.
  struct Env {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    cache::ObjectCache objects{64 << 20};
    metrics::Metrics metrics{{"test", "test", {"x86_64", "aarch64"}}, objects};
    InProcessBackend backend;
    WorkerPool compilePool{"test-compile", 1};
    WorkerPool hashPool{"test-hash", 1};
    WorkerPool linkPool{"test-link", 1};
    CompileService service{ServiceConfig{.compilerIdentity = "rjitd/test llvm/test"},
                           objects,
                           backend,
                           compilePool,
                           hashPool,
                           metrics};
    LoadLimits limits;
    LoadedTotals totals;
    LoadEnvironment load{service, linkPool, metrics, io.provider->getTimer(), limits, totals};
    DaemonState state{service, metrics, "test", "test"};
    kj::TwoWayPipe pipe = io.provider->newTwoWayPipe();
    kj::Own<capnp::TwoPartyServer> server;
    kj::Own<capnp::TwoPartyClient> client;
    kj::Maybe<proto::Session::Client> session;

    Env() {
      state.load = &load;
      server = kj::heap<capnp::TwoPartyServer>(newBootstrap(state, "test-peer"));
      server->accept(kj::mv(pipe.ends[0]));
      client = kj::heap<capnp::TwoPartyClient>(*pipe.ends[1]);
    }
  };
  std::unique_ptr<Env> env = std::make_unique<Env>();

  proto::Session::Client session() {
    KJ_IF_MAYBE (s, env->session)
      return *s;
    auto hello = env->client->bootstrap().castAs<proto::Rjitd>().helloRequest();
    hello.initClient().setProtocolVersion(proto::PROTOCOL_VERSION);
    hello.getClient().setClientName("rpc-server-test");
    auto s = hello.send().wait(env->io.waitScope).getSession();
    env->session = s;
    return s;
  }

  /// What one call of `method` answered: ok, an Error of some kind, or an exception.
  struct Answered {
    bool ok = false;
    kj::Maybe<proto::Error::Kind> error;
    kj::Maybe<kj::Exception::Type> exception;
  };

  template <typename Results> Answered outcomeOf(capnp::Response<Results>&& response) {
    Answered a;
    auto outcome = response.getOutcome();
    a.ok = outcome.isOk();
    if (outcome.isError())
      a.error = outcome.getError().getKind();
    return a;
  }

  template <typename Request, typename Settle> Answered call(Request&& request, Settle settle) {
    Answered a;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                        [&]() { a = settle(request.send().wait(env->io.waitScope)); })) {
      a.exception = e->getType();
    }
    return a;
  }

  Answered compile(const char* module) {
    auto request = session().compileRequest();
    auto r = request.initRequest();
    r.setModuleName("test.ll");
    r.setFormat(proto::IrFormat::TEXT);
    r.setModule(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(module), strlen(module)));
    return call(kj::mv(request), [this](auto&& response) { return outcomeOf(kj::mv(response)); });
  }

  /// A compile whose moduleName (pointer 0 of CompileRequest) is a struct, not text: a
  /// malformed message that Cap'n Proto rejects only when the field is read.
  Answered malformedCompile() {
    auto request = session().compileRequest();
    auto r = request.initRequest();
    r.setModule(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(ADD), strlen(ADD)));
    capnp::AnyStruct::Builder any = capnp::toAny(r);
    any.getPointerSection()[0].initAs<proto::Arena>().setPageSize(4096);
    return call(kj::mv(request), [this](auto&& response) { return outcomeOf(kj::mv(response)); });
  }

  /// A load whose compile's target (pointer 1 of CompileRequest) is text, not a TargetSpec.
  Answered malformedLoad() {
    auto request = session().loadRequest();
    auto r = request.initRequest();
    auto c = r.initCompile();
    c.setModule(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(ADD), strlen(ADD)));
    capnp::AnyStruct::Builder any = capnp::toAny(c);
    any.getPointerSection()[1].setAs<capnp::Text>("x86_64");
    r.setResolver(kj::heap<TestResolver>(Answer::Right));
    return call(kj::mv(request), [this](auto&& response) { return outcomeOf(kj::mv(response)); });
  }

  Answered lookup() {
    auto request = session().lookupRequest();
    request.initRequest().initKey(32);
    return call(kj::mv(request), [this](auto&& response) { return outcomeOf(kj::mv(response)); });
  }

  Answered load(const char* module, Answer answer) {
    auto request = session().loadRequest();
    auto r = request.initRequest();
    auto c = r.initCompile();
    c.setModuleName("load.ll");
    c.setFormat(proto::IrFormat::TEXT);
    c.setModule(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(module), strlen(module)));
    auto arena = r.initArena();
    arena.setBase(0x7f0000000000);
    arena.setSize(1 << 30);
    arena.setPageSize(4096);
    r.setResolver(kj::heap<TestResolver>(answer));
    return call(kj::mv(request), [this](auto&& response) { return outcomeOf(kj::mv(response)); });
  }

  Answered stats() {
    auto request = session().statsRequest();
    return call(kj::mv(request), [](auto&&) { return Answered{.ok = true}; });
  }

  /// rjitd_requests_total{method, result}.
  uint64_t requests(Method method, const std::string& result) const {
    for (const auto& c : env->metrics.totals().requestCounts)
      if (c.method == metrics::methodName(method) && c.result == result)
        return c.count;
    return 0;
  }

  /// Every request of `method` raises a fault of `type` inside rjitd's edge.
  void injectFault(Method faulty, kj::Exception::Type type = kj::Exception::Type::FAILED) {
    env->state.faultForTest = [faulty, type](Method method) {
      if (method == faulty)
        kj::throwFatalException(kj::Exception(type, __FILE__, __LINE__, kj::str("injected")));
    };
  }

  static proto::Error::Kind kindOf(const Answered& a) {
    EXPECT_FALSE(a.ok);
    EXPECT_EQ(a.exception, nullptr) << "an exception, not an Error outcome";
    KJ_IF_MAYBE (kind, a.error)
      return *kind;
    ADD_FAILURE() << "no Error in the outcome";
    return proto::Error::Kind::PROTOCOL_MISMATCH;
  }
};

TEST_F(RpcServerTest, AFaultInCompileIsAnsweredAndCountedAsInternal) {
  injectFault(Method::Compile);
  EXPECT_EQ(kindOf(compile(ADD)), proto::Error::Kind::INTERNAL);
  EXPECT_EQ(requests(Method::Compile, "internal"), 1u);
  EXPECT_EQ(requests(Method::Compile, "invalid-request"), 0u);
  env->state.faultForTest = nullptr;
  EXPECT_TRUE(compile(ADD).ok) << "the session goes on serving";
  EXPECT_EQ(requests(Method::Compile, "ok"), 1u);
}

TEST_F(RpcServerTest, AMalformedMessageIsTheClientsFaultNotAnInternalOne) {
  EXPECT_EQ(kindOf(malformedCompile()), proto::Error::Kind::INVALID_REQUEST);
  EXPECT_EQ(requests(Method::Compile, "invalid-request"), 1u);
  EXPECT_EQ(kindOf(malformedLoad()), proto::Error::Kind::INVALID_REQUEST);
  EXPECT_EQ(requests(Method::Load, "invalid-request"), 1u);
  EXPECT_EQ(requests(Method::Compile, "internal"), 0u);
  EXPECT_EQ(requests(Method::Load, "internal"), 0u);
  EXPECT_TRUE(compile(ADD).ok) << "the session goes on serving";
}

TEST_F(RpcServerTest, AFaultInLookupIsAnsweredAndCountedAsInternal) {
  injectFault(Method::Lookup);
  EXPECT_EQ(kindOf(lookup()), proto::Error::Kind::INTERNAL);
  EXPECT_EQ(requests(Method::Lookup, "internal"), 1u);
}

TEST_F(RpcServerTest, AFaultInLoadIsAnsweredAndCountedAsInternal) {
  injectFault(Method::Load);
  EXPECT_EQ(kindOf(load(ADD, Answer::Right)), proto::Error::Kind::INTERNAL);
  EXPECT_EQ(requests(Method::Load, "internal"), 1u);
  EXPECT_EQ(env->state.requests.inProgress(), 0u);
}

TEST_F(RpcServerTest, AFaultInStatsIsCountedAndAnExceptionForTheClient) {
  session();
  injectFault(Method::Stats);
  // ServerStats has no Error: the client learns of the fault as an exception.
  Answered a = stats();
  EXPECT_EQ(a.exception, kj::Exception::Type::FAILED);
  EXPECT_EQ(requests(Method::Stats, "internal"), 1u);
}

TEST_F(RpcServerTest, AClientGoneIsNotAnsweredNorCountedAsAnswered) {
  injectFault(Method::Compile, kj::Exception::Type::DISCONNECTED);
  Answered a = compile(ADD);
  EXPECT_EQ(a.exception, kj::Exception::Type::DISCONNECTED);
  EXPECT_EQ(requests(Method::Compile, "internal"), 0u);
}

TEST_F(RpcServerTest, LoadAsksTheClientAndLinks) {
  Answered a = load(IMPORTS_EXT, Answer::Right);
  EXPECT_TRUE(a.ok);
  EXPECT_EQ(requests(Method::Load, "ok"), 1u);
}

TEST_F(RpcServerTest, AWrongNumberOfAnswersIsTheClientsFault) {
  EXPECT_EQ(kindOf(load(IMPORTS_EXT, Answer::WrongCount)), proto::Error::Kind::INVALID_REQUEST);
  EXPECT_EQ(requests(Method::Load, "invalid-request"), 1u);
  EXPECT_EQ(requests(Method::Load, "internal"), 0u);
}

TEST_F(RpcServerTest, AResolverThatThrowsIsTheClientsFault) {
  EXPECT_EQ(kindOf(load(IMPORTS_EXT, Answer::Throws)), proto::Error::Kind::INVALID_REQUEST);
  EXPECT_EQ(requests(Method::Load, "invalid-request"), 1u);
}

}  // namespace
}  // namespace rjitd::service
