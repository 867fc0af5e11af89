// SPDX-License-Identifier: MIT
// Import resolution: what rjitd answers itself (and in which order), and the question to the
// client's SymbolResolver, served by a real capability on a real kj event loop, with a timer
// the test advances by hand (no waiting on the clock).
#include "symbol-resolver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <kj/async.h>
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

/// The client's side: answers from a table, or not at all, or with a wrong count.
class FakeResolver final : public proto::SymbolResolver::Server {
public:
  struct Answer {
    uint64_t address;
    bool stable;
  };
  FakeResolver(std::map<std::string, Answer> answers, int& calls, bool silent = false,
               bool wrongCount = false)
      : answers(std::move(answers)), calls(calls), silent(silent), wrongCount(wrongCount) {}

  kj::Promise<void> resolve(ResolveContext context) override {
    ++calls;
    if (silent)
      return kj::NEVER_DONE;
    auto names = context.getParams().getNames();
    size_t n = names.size() + (wrongCount ? 1 : 0);
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
  bool silent, wrongCount;
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
                                         bool silent = false, bool wrongCount = false) {
    return kj::heap<FakeResolver>(std::move(answers), calls, silent, wrongCount);
  }

  /// The kind of the exception `promise` rejects with (it must reject).
  kj::Exception::Type rejection(kj::Promise<void> promise) {
    kj::Exception::Type type = kj::Exception::Type::UNIMPLEMENTED;
    bool rejected = false;
    promise
        .then([]() {},
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
  askClient(cap, {"a", "b", "c", "d", "zero"}, r, client, env->timer, limits).wait(env->waitScope);
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
  askClient(cap, {}, r, client, env->timer, limits).wait(env->waitScope);
  EXPECT_EQ(calls, 0);
}

TEST_F(AskClientTest, AWrongNumberOfAddressesIsRefused) {
  auto r = std::make_shared<Resolution>();
  auto cap = resolver({{"a", {0x100, true}}}, false, true);
  EXPECT_EQ(rejection(askClient(cap, {"a"}, r, client, env->timer, limits)),
            kj::Exception::Type::FAILED);
  EXPECT_TRUE(r->addresses.empty());
  EXPECT_FALSE(client.processSymbol("a"));
}

TEST_F(AskClientTest, AClientThatNeverAnswersTimesOut) {
  auto r = std::make_shared<Resolution>();
  auto cap = resolver({}, true);
  auto promise = askClient(cap, {"a"}, r, client, env->timer, limits).fork();
  auto waiting = promise.addBranch();
  EXPECT_FALSE(waiting.poll(env->waitScope));
  EXPECT_EQ(calls, 1);
  env->timer.advanceTo(env->timer.now() + 999 * kj::MILLISECONDS);
  EXPECT_FALSE(waiting.poll(env->waitScope)) << "still within the time limit";
  env->timer.advanceTo(env->timer.now() + 1 * kj::MILLISECONDS);
  EXPECT_EQ(rejection(kj::mv(waiting)), kj::Exception::Type::FAILED);
}

}  // namespace
}  // namespace rjitd::service
