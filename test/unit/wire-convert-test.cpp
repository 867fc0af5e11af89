// SPDX-License-Identifier: MIT
// Tests for src/client/wire-convert and result.h: the server's errors become rjit::Errors of the
// same kind, through the shared wire table and the public cast, with an overloaded answer's
// retry-after hint; Cap'n Proto's size-limit errors become TooLarge naming rjitd's limits.
#include "wire-convert.h"

#include "wire-enums.h"

#include <capnp/message.h>
#include <chrono>
#include <gtest/gtest.h>
#include <kj/string.h>

namespace rjit::detail {
namespace {

TEST(WireConvertTest, ServerErrorsKeepTheirKindAndDiagnostics) {
  for (const auto& [wire, shared] : rjitd::WIRE_ERROR_KINDS) {
    capnp::MallocMessageBuilder message;
    auto outcome = message.initRoot<proto::CompileOutcome>();
    proto::Error::Builder e = outcome.initError();
    e.setKind(wire);
    e.setMessage("what went wrong");
    auto diagnostics = e.initDiagnostics(1);
    diagnostics[0].setSeverity(proto::Diagnostic::Severity::WARNING);
    diagnostics[0].setLine(3);
    Result<CompiledObject> result = toCompiledObject(outcome.asReader(), true);
    Error* error = failed(result);
    ASSERT_NE(error, nullptr);
    EXPECT_EQ(error->kind(), toPublicKind(shared)) << rjitd::errorKindName(shared);
    EXPECT_STREQ(errorKindName(error->kind()), rjitd::errorKindName(shared));
    ASSERT_EQ(error->diagnostics().size(), 1u);
    EXPECT_EQ(error->diagnostics()[0].severity, Diagnostic::Severity::Warning);
    EXPECT_EQ(error->diagnostics()[0].line, 3u);
  }
}

TEST(WireConvertTest, ServerStatsCarryTheExecuteFigures) {
  capnp::MallocMessageBuilder message;
  auto s = message.initRoot<proto::ServerStats>();
  s.setExecutes(7);
  s.setExecuteFailures(2);
  s.setExecutors(3);
  s.setExecutorRestarts(1);
  auto counts = s.initExecuteCounts(2);
  counts[0].setMethod("x86_64-unknown-linux-gnu");
  counts[0].setResult("ok");
  counts[0].setCount(5);
  counts[1].setMethod("x86_64-unknown-linux-gnu");
  counts[1].setResult("crashed");
  counts[1].setCount(2);
  ServerStats stats = toServerStats(s.asReader());
  EXPECT_EQ(stats.executes, 7u);
  EXPECT_EQ(stats.executeFailures, 2u);
  EXPECT_EQ(stats.executors, 3u);
  EXPECT_EQ(stats.executorRestarts, 1u);
  ASSERT_EQ(stats.executeCounts.size(), 2u);
  EXPECT_EQ(stats.executeCounts[1].method, "x86_64-unknown-linux-gnu");
  EXPECT_EQ(stats.executeCounts[1].result, "crashed");
  EXPECT_EQ(stats.executeCounts[1].count, 2u);
}

TEST(WireConvertTest, ServerStatsCarryEveryPerTargetFigure) {
  // Every figure distinct, so that one converted into another's field is caught.
  capnp::MallocMessageBuilder message;
  auto s = message.initRoot<proto::ServerStats>();
  auto targets = s.initTargets(2);
  targets[0].setTarget("x86_64");
  targets[1].setTarget("aarch64");
  auto t = targets[1];
  t.setCacheLookups(1);
  t.setCacheHits(2);
  t.setCompiles(3);
  t.setCompileFailures(4);
  t.setLoads(5);
  t.setLoadFailures(6);
  t.setLinks(7);
  t.setLinkFailures(8);
  t.setExecutes(9);
  t.setExecuteFailures(10);
  t.setCompileSeconds(11.5);
  t.setLoadSeconds(12.5);
  t.setLinkSeconds(13.5);
  t.setExecuteSeconds(14.5);
  ServerStats stats = toServerStats(s.asReader());
  ASSERT_EQ(stats.targets.size(), 2u);
  EXPECT_EQ(stats.targets[0].target, "x86_64");
  EXPECT_EQ(stats.targets[0].compiles, 0u);
  const ServerStats::TargetStats& a = stats.targets[1];
  EXPECT_EQ(a.target, "aarch64");
  EXPECT_EQ(a.cacheLookups, 1u);
  EXPECT_EQ(a.cacheHits, 2u);
  EXPECT_EQ(a.compiles, 3u);
  EXPECT_EQ(a.compileFailures, 4u);
  EXPECT_EQ(a.loads, 5u);
  EXPECT_EQ(a.loadFailures, 6u);
  EXPECT_EQ(a.links, 7u);
  EXPECT_EQ(a.linkFailures, 8u);
  EXPECT_EQ(a.executes, 9u);
  EXPECT_EQ(a.executeFailures, 10u);
  EXPECT_EQ(a.compileSeconds, 11.5);
  EXPECT_EQ(a.loadSeconds, 12.5);
  EXPECT_EQ(a.linkSeconds, 13.5);
  EXPECT_EQ(a.executeSeconds, 14.5);
}

TEST(WireConvertTest, LinkFailedIsLinkFailed) {
  // The wire, shared and public enums number this kind differently.
  capnp::MallocMessageBuilder message;
  auto e = message.initRoot<proto::Error>();
  e.setKind(proto::Error::Kind::LINK_FAILED);
  EXPECT_EQ(toError(e.asReader()).kind(), ErrorKind::LinkFailed);
}

TEST(WireConvertTest, AMalformedKeyIsInternal) {
  capnp::MallocMessageBuilder message;
  auto outcome = message.initRoot<proto::CompileOutcome>();
  outcome.initOk().initKey(5);
  Result<CompiledObject> result = toCompiledObject(outcome.asReader(), true);
  ASSERT_NE(failed(result), nullptr);
  EXPECT_EQ(failed(result)->kind(), ErrorKind::Internal);
}

TEST(WireConvertTest, PublicKindsHaveTheSharedNames) {
  for (int i = 0; i <= static_cast<int>(ErrorKind::Load); ++i)
    EXPECT_STREQ(errorKindName(static_cast<ErrorKind>(i)),
                 rjitd::errorKindName(static_cast<rjitd::ErrorKind>(i)));
  EXPECT_STREQ(errorKindName(ErrorKind::Load), "load");
  EXPECT_STREQ(errorKindName(ErrorKind::LinkFailed), "link-failed");
}

TEST(WireConvertTest, AnOverloadedAnswerKeepsItsRetryAfterHint) {
  capnp::MallocMessageBuilder message;
  proto::Error::Builder e = message.initRoot<proto::Error>();
  e.setKind(proto::Error::Kind::OVERLOADED);
  e.setMessage("the queue for x86_64 is full");
  e.setRetryAfterMillis(250);
  Error error = toError(e.asReader());
  EXPECT_EQ(error.kind(), ErrorKind::Overloaded);
  EXPECT_EQ(error.retryAfter(), std::chrono::milliseconds(250));
}

TEST(WireConvertTest, CapnpSizeLimitsBecomeTooLargeNotTransportText) {
  kj::Exception sent(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                     kj::str("remote exception: Trying to send Cap'n Proto message larger than "
                             "our single-message size limit."));
  Error error = toError(sent, "unix:/run/rjitd/rjitd.sock");
  EXPECT_EQ(error.kind(), ErrorKind::TooLarge);
  EXPECT_NE(std::string(error.what()).find("--max-object-bytes"), std::string::npos);
  kj::Exception read(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                     kj::str("Message is too large. To increase the limit on the receiving end, "
                             "see capnp::ReaderOptions."));
  EXPECT_EQ(toError(read, "").kind(), ErrorKind::TooLarge);
}

}  // namespace
}  // namespace rjit::detail
