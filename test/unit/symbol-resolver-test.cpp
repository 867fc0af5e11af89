// SPDX-License-Identifier: MIT
// Import resolution: what rjitd answers itself (and in which order), and the question to the
// client's SymbolResolver, served by a real capability on a real kj event loop, with a timer
// the test advances by hand (no waiting on the clock).
#include "symbol-resolver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <kj/async.h>
#include <kj/debug.h>
#include <kj/timer.h>
#include <map>

namespace rjitd::service {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

TEST(ResolveKnownTest, TheOfferComesFirstThenLoadedModulesThenProcessSymbols) {
  ClientSymbols client;
  uint64_t module = client.add("lib.ll", 0x10000,
                               {{"both", 0x10010, true, false}, {"loaded", 0x10020, true, false}});
  client.rememberProcessSymbol("both", 0x30000, 10, 100);
  client.rememberProcessSymbol("loaded", 0x30010, 10, 100);
  client.rememberProcessSymbol("puts", 0x30020, 10, 100);
  std::unordered_map<std::string, uint64_t> offered{{"both", 0x50000}, {"mine", 0x50010}};

  Resolution r;
  auto rest = resolveKnown({offered, client, true}, r,
                           {"both", "loaded", "puts", "mine", "unknown", "__dso_handle"});
  EXPECT_THAT(rest, ElementsAre("unknown")) << "__dso_handle is the linker's own";
  EXPECT_THAT(r.addresses, UnorderedElementsAre(Pair("both", 0x50000), Pair("loaded", 0x10020),
                                                Pair("puts", 0x30020), Pair("mine", 0x50010)));
  EXPECT_THAT(r.modules, ElementsAre(module));
}

TEST(ResolveKnownTest, WithoutProcessSymbolsTheClientIsAskedAgain) {
  ClientSymbols client;
  client.rememberProcessSymbol("puts", 0x30020, 10, 100);
  std::unordered_map<std::string, uint64_t> offered;
  Resolution r;
  EXPECT_THAT(resolveKnown({offered, client, false}, r, {"puts"}), ElementsAre("puts"));
  EXPECT_TRUE(r.addresses.empty());
}

TEST(ResolveKnownTest, NamesResolvedOrAskedAlreadyAreNotReturned) {
  ClientSymbols client;
  std::unordered_map<std::string, uint64_t> offered;
  Resolution r;
  r.addresses.emplace("done", 1);
  r.asked.insert("answeredZero");
  EXPECT_THAT(resolveKnown({offered, client, true}, r, {"done", "answeredZero", "new"}),
              ElementsAre("new"));
}

/// How the fake client answers.
enum class Behaviour { Answer, Silent, WrongCount, Fail, Gone };

/// The client's side: answers from a table, or not at all, or with a wrong count, or fails
/// (its resolver throws), or is gone (the call fails with DISCONNECTED).
class FakeResolver final : public proto::SymbolResolver::Server {
public:
  struct Answer {
    uint64_t address;
    bool stable;
  };
  FakeResolver(std::map<std::string, Answer> answers, int& calls, Behaviour behaviour)
      : answers(std::move(answers)), calls(calls), behaviour(behaviour) {}

  kj::Promise<void> resolve(ResolveContext context) override {
    ++calls;
    switch (behaviour) {
    case Behaviour::Silent: return kj::NEVER_DONE;
    case Behaviour::Fail: KJ_FAIL_REQUIRE("the client's resolver has a bug");
    case Behaviour::Gone: return KJ_EXCEPTION(DISCONNECTED, "the client went away");
    case Behaviour::Answer:
    case Behaviour::WrongCount: break;
    }
    auto names = context.getParams().getNames();
    size_t n = names.size() + (behaviour == Behaviour::WrongCount ? 1 : 0);
    auto addresses = context.getResults().initAddresses(n);
    auto stable = context.getResults().initStable(n);
    for (size_t i = 0; i < names.size(); ++i) {
      auto it = answers.find(names[i].cStr());
      addresses.set(i, it == answers.end() ? 0 : it->second.address);
      stable.set(i, it != answers.end() && it->second.stable);
    }
    return kj::READY_NOW;
  }

private:
  std::map<std::string, Answer> answers;
  int& calls;
  Behaviour behaviour;
};

class AskClientTest : public ::testing::Test {
protected:
  // Held through a pointer: kj types have noexcept(false) destructors, which a gtest fixture
  // cannot have as direct members.
  struct Loop {
    kj::EventLoop loop;
    kj::WaitScope waitScope{loop};
    kj::TimerImpl timer{kj::origin<kj::TimePoint>()};
  };
  std::unique_ptr<Loop> env = std::make_unique<Loop>();
  ClientSymbols client;
  int calls = 0;
  QuestionLimits limits{std::chrono::milliseconds(1000), 2, 100};

  proto::SymbolResolver::Client resolver(std::map<std::string, FakeResolver::Answer> answers,
                                         Behaviour behaviour = Behaviour::Answer) {
    return kj::heap<FakeResolver>(std::move(answers), calls, behaviour);
  }

  /// The kind of the Failure `promise` resolves to (it must resolve to one).
  ErrorKind failure(kj::Promise<Outcome<Done>> promise) {
    Outcome<Done> outcome = promise.wait(env->waitScope);
    const Failure* f = failureOf(outcome);
    EXPECT_NE(f, nullptr) << "expected a failure";
    return f != nullptr ? f->kind : ErrorKind::Internal;
  }

  /// The kind of the exception `promise` rejects with (it must reject).
  kj::Exception::Type rejection(kj::Promise<Outcome<Done>> promise) {
    kj::Exception::Type type = kj::Exception::Type::UNIMPLEMENTED;
    bool rejected = false;
    promise
        .then([](Outcome<Done>&&) {},
              [&](kj::Exception&& e) {
                rejected = true;
                type = e.getType();
              })
        .wait(env->waitScope);
    EXPECT_TRUE(rejected);
    return type;
  }
};

TEST_F(AskClientTest, AnswersAreRecordedAndStableOnesRememberedWithinTheLimits) {
  auto r = std::make_shared<Resolution>();
  auto cap = resolver(
      {{"a", {0x100, true}}, {"b", {0x200, false}}, {"c", {0x300, true}}, {"d", {0x400, true}}});
  auto outcome = askClient(cap, {"a", "b", "c", "d", "zero"}, r, client, env->timer, limits)
                     .wait(env->waitScope);
  EXPECT_EQ(failureOf(outcome), nullptr);
  EXPECT_EQ(calls, 1);
  EXPECT_THAT(r->addresses, UnorderedElementsAre(Pair("a", 0x100), Pair("b", 0x200),
                                                 Pair("c", 0x300), Pair("d", 0x400)));
  EXPECT_THAT(r->asked, ElementsAre("a", "b", "c", "d", "zero")) << "zero: asked, not resolved";
  EXPECT_EQ(client.processSymbol("a"), 0x100u);
  EXPECT_FALSE(client.processSymbol("b")) << "not stable";
  EXPECT_EQ(client.processSymbol("c"), 0x300u);
  EXPECT_FALSE(client.processSymbol("d")) << "past maxRememberedSymbols (2)";
}

TEST_F(AskClientTest, NoNamesNoQuestion) {
  auto r = std::make_shared<Resolution>();
  auto cap = resolver({});
  auto outcome = askClient(cap, {}, r, client, env->timer, limits).wait(env->waitScope);
  EXPECT_EQ(failureOf(outcome), nullptr);
  EXPECT_EQ(calls, 0);
}

TEST_F(AskClientTest, AWrongNumberOfAddressesIsAnInvalidRequest) {
  auto r = std::make_shared<Resolution>();
  auto cap = resolver({{"a", {0x100, true}}}, Behaviour::WrongCount);
  EXPECT_EQ(failure(askClient(cap, {"a"}, r, client, env->timer, limits)),
            ErrorKind::InvalidRequest);
  EXPECT_TRUE(r->addresses.empty());
  EXPECT_FALSE(client.processSymbol("a"));
}

TEST_F(AskClientTest, AResolverThatFailsIsAnInvalidRequest) {
  auto r = std::make_shared<Resolution>();
  auto cap = resolver({}, Behaviour::Fail);
  EXPECT_EQ(failure(askClient(cap, {"a"}, r, client, env->timer, limits)),
            ErrorKind::InvalidRequest);
}

TEST_F(AskClientTest, AClientGoneRejectsWithDisconnected) {
  auto r = std::make_shared<Resolution>();
  auto cap = resolver({}, Behaviour::Gone);
  EXPECT_EQ(rejection(askClient(cap, {"a"}, r, client, env->timer, limits)),
            kj::Exception::Type::DISCONNECTED);
}

TEST_F(AskClientTest, AClientThatNeverAnswersFailsTheLinkAtTheTimeout) {
  auto r = std::make_shared<Resolution>();
  auto cap = resolver({}, Behaviour::Silent);
  auto promise = askClient(cap, {"a"}, r, client, env->timer, limits).fork();
  auto waiting = promise.addBranch();
  EXPECT_FALSE(waiting.poll(env->waitScope));
  EXPECT_EQ(calls, 1);
  env->timer.advanceTo(env->timer.now() + 999 * kj::MILLISECONDS);
  EXPECT_FALSE(waiting.poll(env->waitScope)) << "still within the time limit";
  env->timer.advanceTo(env->timer.now() + 1 * kj::MILLISECONDS);
  EXPECT_EQ(failure(kj::mv(waiting)), ErrorKind::LinkFailed);
}

}  // namespace
}  // namespace rjitd::service
