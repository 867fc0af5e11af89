// SPDX-License-Identifier: MIT
// `rjit info`'s JSON and text of a fixed ServerInfo and ServerStats: every figure under its key
// and on its line.
#include "info-render.h"

#include <gtest/gtest.h>

#include <string>

namespace rjitd::cli {
namespace {

/// Every figure distinct, so that a figure shown under another's label is caught.
rjit::ServerInfo fixedInfo() {
  rjit::ServerInfo info;
  info.endpoint = "unix:/run/rjitd.sock";
  info.protocolVersion = 3;
  info.rjitdVersion = "0.9.1";
  info.llvmVersion = "19.1.7";
  info.compilerIdentity = "rjitd-compiler/abc123";
  info.targets = {{"x86-64", "x86_64-pc-linux-gnu", {"x86_64", "amd64"}, "x86-64"},
                  {"aarch64", "aarch64-unknown-linux-gnu", {}, "generic"}};
  info.defaultTriple = "x86_64-pc-linux-gnu";
  info.maxModuleBytes = 67108864;
  return info;
}

rjit::ServerStats fixedStats() {
  rjit::ServerStats s;
  s.cacheEntries = 11;
  s.cacheBytes = 1202;
  s.cacheBudgetBytes = 1048576;
  s.cacheHits = 13;
  s.cacheMisses = 14;
  s.cacheEvictions = 15;
  s.compiles = 16;
  s.compileFailures = 17;
  s.compilesInFlight = 18;
  s.requests = 19;
  s.moduleBytesReceived = 20;
  s.lookups = 21;
  s.lookupHits = 22;
  s.sessions = 23;
  s.workers = 24;
  s.uptimeMillis = ((86400 + 2 * 3600 + 3 * 60 + 4) * 1000) + 5;  // 1d 2h 3m 4.005s
  s.connections = 25;
  s.compileWorkerRestarts = 26;
  s.loads = 27;
  s.links = 28;
  s.linkFailures = 29;
  s.loadedImages = 30;
  s.loadedImageBytes = 31;
  s.symbolQuestions = 32;
  s.requestCounts = {{"compile", "ok", 40},
                     {"compile", "invalid-module", 41},
                     {"lookup", "ok", 42},
                     {"load", "ok", 0}};
  s.errorCounts = {{"invalid-module", 41}, {"unavailable", 0}};
  s.executes = 50;
  s.executeFailures = 51;
  s.executors = 52;
  s.executorRestarts = 53;
  s.executeCounts = {{"x86_64-pc-linux-gnu", "ok", 54},
                     {"x86_64-pc-linux-gnu", "crashed", 55},
                     {"x86_64-pc-linux-gnu", "timeout", 0}};
  // Seconds chosen so that every mean (seconds * 1000 / count) is a short, exact decimal.
  s.targets = {{"x86_64", 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 0.124, 0.032, 0.0165, 0.68},
               {"aarch64", 70, 71, 72, 73, 0, 0, 0, 0, 0, 0, 0.18, 0, 0, 0}};
  return s;
}

TEST(InfoRender, JsonHasEveryFigureUnderItsStableKey) {
  nlohmann::json expected = nlohmann::json::parse(R"({
    "server": {
      "endpoint": "unix:/run/rjitd.sock",
      "rjitd_version": "0.9.1",
      "llvm_version": "19.1.7",
      "protocol_version": 3,
      "compiler_identity": "rjitd-compiler/abc123",
      "default_triple": "x86_64-pc-linux-gnu",
      "max_module_bytes": 67108864,
      "targets": [
        {"name": "x86-64", "triple": "x86_64-pc-linux-gnu", "aliases": ["x86_64", "amd64"],
         "default_cpu": "x86-64"},
        {"name": "aarch64", "triple": "aarch64-unknown-linux-gnu", "aliases": [],
         "default_cpu": "generic"}
      ]
    },
    "cache": {"entries": 11, "bytes": 1202, "budget_bytes": 1048576, "hits": 13, "misses": 14,
              "evictions": 15, "tiers": []},
    "compiles": {"total": 16, "failures": 17, "in_flight": 18},
    "requests": 19,
    "lookups": 21,
    "lookup_hits": 22,
    "module_bytes_received": 20,
    "sessions": 23,
    "connections": 25,
    "workers": 24,
    "compile_worker_restarts": 26,
    "uptime_ms": 93784005,
    "fast_path": {"loads": 27, "links": 28, "link_failures": 29, "loaded_modules": 30,
                  "loaded_bytes": 31, "symbol_questions": 32},
    "execute": {"total": 50, "failures": 51, "executors": 52, "executor_restarts": 53,
                "by_target": {"x86_64-pc-linux-gnu": {"ok": 54, "crashed": 55, "timeout": 0}}},
    "requests_by_method": {"compile": {"ok": 40, "invalid-module": 41}, "lookup": {"ok": 42},
                           "load": {"ok": 0}},
    "errors": {"invalid-module": 41, "unavailable": 0},
    "per_target": {
      "x86_64": {"cache": {"lookups": 60, "hits": 61},
                 "compiles": {"total": 62, "failures": 63, "mean_ms": 2.0},
                 "loads": {"total": 64, "failures": 65, "mean_ms": 0.5},
                 "links": {"total": 66, "failures": 67, "mean_ms": 0.25},
                 "executes": {"total": 68, "failures": 69, "mean_ms": 10.0}},
      "aarch64": {"cache": {"lookups": 70, "hits": 71},
                  "compiles": {"total": 72, "failures": 73, "mean_ms": 2.5},
                  "loads": {"total": 0, "failures": 0, "mean_ms": null},
                  "links": {"total": 0, "failures": 0, "mean_ms": null},
                  "executes": {"total": 0, "failures": 0, "mean_ms": null}}
    }
  })");
  EXPECT_EQ(infoJson(fixedInfo(), fixedStats()), expected)
      << infoJson(fixedInfo(), fixedStats()).dump(2);
}

TEST(InfoRender, TextHasEveryFigureOnItsLine) {
  // Zero counts are left out of "requests by method" and "errors"; labels are padded to 20.
  const char* expected = R"(server              unix:/run/rjitd.sock
rjitd version       0.9.1
LLVM version        19.1.7
protocol            3
compiler identity   rjitd-compiler/abc123
targets             x86-64   x86_64-pc-linux-gnu        cpu x86-64; aliases: x86_64, amd64
                    aarch64  aarch64-unknown-linux-gnu  cpu generic
default target      x86_64-pc-linux-gnu
max module bytes    67108864
cache entries       11
cache bytes         1202 of 1048576 budget
cache hits          13
cache misses        14
cache evictions     15
compiles            16 (17 failed, 18 in flight)
requests            19
lookups             21 (22 hits)
module bytes in     20
requests by method  compile: ok 40, invalid-module 41
                    lookup: ok 42
errors              invalid-module 41
loads               27 (28 links, 29 failed)
loaded modules      30 (31 bytes)
symbol questions    32 (round trips to clients during loads)
executes            50 (51 failed)
executors           52 (53 restarts)
executes by target  x86_64-pc-linux-gnu: ok 54, crashed 55
target x86_64       cache 60 lookups (61 hits)
                    compiles 62 (63 failed), mean 2.000 ms
                    loads 64 (65 failed), mean 0.500 ms
                    links 66 (67 failed), mean 0.250 ms
                    executes 68 (69 failed), mean 10.000 ms
target aarch64      cache 70 lookups (71 hits)
                    compiles 72 (73 failed), mean 2.500 ms
                    loads 0 (0 failed)
                    links 0 (0 failed)
                    executes 0 (0 failed)
sessions            23 (25 connections)
workers             24 (26 restarts)
uptime              1d 2h 3m 4s
)";
  EXPECT_EQ(infoText(fixedInfo(), fixedStats()), expected);
}

TEST(InfoRender, TextOfAServerWithNothingToReport) {
  std::string text = infoText(rjit::ServerInfo{}, rjit::ServerStats{});
  EXPECT_NE(text.find("\ntargets             none\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nerrors              none\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("requests by method"), std::string::npos) << text;
  EXPECT_EQ(text.find("executes by target"), std::string::npos) << text;
  EXPECT_EQ(text.find("\ntarget "), std::string::npos) << text;  // an older rjitd sends none
  EXPECT_NE(text.find("\nexecutes            0 (0 failed)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nuptime              0s\n"), std::string::npos) << text;
}

TEST(InfoRender, EveryCacheTierHasItsLineAndJson) {
  rjit::ServerStats s;
  s.tiers = {{"memory", "", 1, 2, 3, 4, 5, 6, 0, 0, 0, true},
             {"disk", "/var/cache/rjitd", 11, 12, 13, 14, 15, 16, 17, 18, 19, true},
             {"shared", "unix:/run/redis.sock", 0, 0, 0, 24, 25, 0, 27, 28, 29, false}};
  std::string text = infoText(rjit::ServerInfo{}, s);
  EXPECT_NE(text.find("\ncache disk          /var/cache/rjitd: 14 hits, 15 misses, 17 stored, 18 "
                      "rejected, 19 errors; 11 entries, 12 of 13 bytes, 16 evictions\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\ncache shared        unix:/run/redis.sock: 24 hits, 25 misses, 27 stored, "
                      "28 rejected, 29 errors; unavailable (backing off after errors)\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("cache memory"), std::string::npos) << text;  // the cache lines say it
  nlohmann::json json = infoJson(rjit::ServerInfo{}, s);
  const nlohmann::json& tiers = json["cache"]["tiers"];
  ASSERT_EQ(tiers.size(), 3u) << json.dump();
  EXPECT_EQ(tiers[1]["tier"], "disk");
  EXPECT_EQ(tiers[1]["address"], "/var/cache/rjitd");
  EXPECT_EQ(tiers[1]["rejected"], 18);
  EXPECT_EQ(tiers[2]["available"], false);
  EXPECT_EQ(tiers[2]["stored"], 27);
}

}  // namespace
}  // namespace rjitd::cli
