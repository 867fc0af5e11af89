// SPDX-License-Identifier: MIT
// The persistent cache tiers against real rjitd processes (issue 13): the disk tier survives
// restarts and crashes and never serves a damaged file; bad tier options are clear errors.
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>

#include "fixture.h"
#include "tier-helpers.h"

namespace rjit::test {
namespace {

using rjitd::process::CommandResult;

/// The file the disk tier keeps `key` (64 hex digits) in, under rjitd's --cache-dir `dir`.
std::string diskFile(const std::string& dir, const std::string& key) {
  return dir + "/v1/objects/" + key.substr(0, 2) + "/" + key;
}

/// A daemon whose socket the harness holds (as systemd does), so that it can be stopped or
/// killed and started again on the same socket and the same --cache-dir.
std::unique_ptr<DaemonProcess> startHeld(std::vector<std::string> extra = {}) {
  DaemonOptions options;
  options.mode = DaemonMode::HeldSocket;
  options.extraArgs = std::move(extra);
  return DaemonProcess::start(options);
}

TEST(DiskTierTest, RestartWithAWarmDiskCacheServesHitsAtOnce) {
  auto daemon = startHeld();
  ASSERT_NE(daemon, nullptr);
  CompileRequest request = freshModule(4, "warm.ll");
  CompiledObject first;
  {
    Client client(clientOf(*daemon));
    first = client.compile(request);
    EXPECT_FALSE(first.fromCache);
  }
  // The drain waits for the disk write; the file is there once rjitd has exited.
  daemon->stop();
  std::string cacheDir = daemon->dir().file("cache");
  ASSERT_TRUE(std::filesystem::exists(diskFile(cacheDir, first.key))) << first.key;

  ASSERT_TRUE(daemon->startAgain());
  Client client(clientOf(*daemon));
  CompiledObject again = client.compile(request);
  EXPECT_TRUE(again.fromCache);
  EXPECT_EQ(again.key, first.key);
  EXPECT_EQ(again.object, first.object);
  ServerStats stats = client.stats();
  EXPECT_EQ(stats.compiles, 0u);
  const ServerStats::TierStats* disk = tier(stats, "disk");
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->hits, 1u);
  EXPECT_EQ(disk->address, cacheDir);
  // Promoted: the next request is a memory hit, the disk is not asked again.
  EXPECT_TRUE(client.compile(request).fromCache);
  stats = client.stats();
  EXPECT_EQ(tier(stats, "disk")->hits, 1u);
  EXPECT_EQ(stats.cacheHits, 1u);
}

TEST(DiskTierTest, DamagedFilesAreDetectedCountedAndRecompiled) {
  auto daemon = startHeld();
  ASSERT_NE(daemon, nullptr);
  CompileRequest flipped = freshModule(4, "flipped.ll");
  CompileRequest truncated = freshModule(5, "truncated.ll");
  CompileRequest foreign = freshModule(6, "foreign.ll");
  std::map<std::string, CompiledObject> first;
  {
    Client client(clientOf(*daemon));
    for (const CompileRequest* r : {&flipped, &truncated, &foreign})
      first[r->moduleName] = client.compile(*r);
  }
  daemon->stop();
  std::string cacheDir = daemon->dir().file("cache");
  auto fileOf = [&](const CompileRequest& r) {
    return diskFile(cacheDir, first[r.moduleName].key);
  };
  // A bit flipped in the middle of the object, a file cut short (a torn write), and another
  // key's whole, valid file put under this key's name.
  {
    std::string bytes = readFile(fileOf(flipped));
    ASSERT_GT(bytes.size(), 200u);
    bytes[bytes.size() / 2] ^= 0x10;
    writeFile(fileOf(flipped), bytes);
  }
  std::filesystem::resize_file(fileOf(truncated),
                               std::filesystem::file_size(fileOf(truncated)) / 2);
  std::filesystem::copy_file(fileOf(flipped) + "", fileOf(foreign),
                             std::filesystem::copy_options::overwrite_existing);

  ASSERT_TRUE(daemon->startAgain());
  Client client(clientOf(*daemon));
  for (const CompileRequest* r : {&flipped, &truncated, &foreign}) {
    CompiledObject again = client.compile(*r);
    EXPECT_FALSE(again.fromCache) << r->moduleName << ": a damaged file was served";
    EXPECT_EQ(again.object, first[r->moduleName].object) << r->moduleName;
  }
  ServerStats stats = client.stats();
  EXPECT_EQ(stats.compiles, 3u);
  const ServerStats::TierStats* disk = tier(stats, "disk");
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->rejected, 3u);
  EXPECT_EQ(disk->hits, 0u);
}

TEST(DiskTierTest, KilledDuringDiskWritesNeverServesADamagedObject) {
  // Each round compiles new modules and SIGKILLs rjitd as soon as they are answered, while
  // their disk writes are under way; the next rjitd must serve every module of every round
  // with exactly the object first compiled (from disk when its file is whole, recompiled when
  // the kill came first).
  constexpr unsigned ROUNDS = 8;
  constexpr unsigned PER_ROUND = 4;
  auto daemon = startHeld();
  ASSERT_NE(daemon, nullptr);
  std::vector<std::pair<CompileRequest, std::string>> seen;  // request, its object
  uint64_t served = 0, fromDisk = 0;
  for (unsigned round = 0; round < ROUNDS; ++round) {
    if (round > 0) {
      ASSERT_TRUE(daemon->startAgain()) << "round " << round;
    }
    Client client(clientOf(*daemon));
    for (const auto& [request, object] : seen) {
      CompiledObject again = client.compile(request);
      ++served;
      fromDisk += again.fromCache ? 1 : 0;
      ASSERT_EQ(again.object, object) << request.moduleName << " in round " << round;
    }
    std::vector<std::future<CompiledObject>> answers;
    for (unsigned i = 0; i < PER_ROUND; ++i) {
      CompileRequest r = freshModule(60 + i * 20, "round" + std::to_string(round) + "-" +
                                                      std::to_string(i) + ".ll");
      seen.push_back({r, ""});
      answers.push_back(std::async(std::launch::async, [&daemon, r]() {
        Client c(clientOf(*daemon));
        return c.compile(r);
      }));
    }
    for (unsigned i = 0; i < PER_ROUND; ++i)
      seen[seen.size() - PER_ROUND + i].second = answers[i].get().object;
    daemon->kill();
  }
  std::cout << "[          ] " << served << " objects served after kills, " << fromDisk
            << " of them from disk\n";
  EXPECT_EQ(served, uint64_t(PER_ROUND) * ROUNDS * (ROUNDS - 1) / 2);
  // The disk tier works after all that: a last rjitd serves every module (recompiling what the
  // last kill cut off), stops cleanly, and the next one serves every module from disk.
  ASSERT_TRUE(daemon->startAgain());
  {
    Client client(clientOf(*daemon));
    for (const auto& [request, object] : seen)
      ASSERT_EQ(client.compile(request).object, object) << request.moduleName;
  }
  daemon->stop();
  ASSERT_TRUE(daemon->startAgain());
  Client client(clientOf(*daemon));
  for (const auto& [request, object] : seen) {
    CompiledObject again = client.compile(request);
    EXPECT_TRUE(again.fromCache) << request.moduleName;
    EXPECT_EQ(again.object, object) << request.moduleName;
  }
  EXPECT_EQ(client.stats().compiles, 0u);
}

TEST(DiskTierTest, DiskCacheBytesZeroTurnsTheTierOff) {
  auto daemon = startHeld({"--disk-cache-bytes", "0"});
  ASSERT_NE(daemon, nullptr);
  Client client(clientOf(*daemon));
  client.compile(freshModule(2, "off.ll"));
  ServerStats stats = client.stats();
  EXPECT_EQ(tier(stats, "disk"), nullptr);
  ASSERT_NE(tier(stats, "memory"), nullptr);
  EXPECT_FALSE(std::filesystem::exists(daemon->dir().file("cache")));
}

TEST(CacheTierOptionsTest, ASecondRjitdOnTheSameCacheDirExitsWith2AndNamesTheFirst) {
  TempDir dir;
  DaemonOptions options;
  options.extraArgs = {"--cache-dir", dir.file("cache")};
  auto first = DaemonProcess::start(options);
  ASSERT_NE(first, nullptr);
  const char* rjitd = std::getenv("RJITD_BIN");
  ASSERT_NE(rjitd, nullptr);
  CommandResult second = runCommand(dir, {rjitd, "--listen", "unix:" + dir.file("second.sock"),
                                          "--cache-dir", dir.file("cache")});
  EXPECT_TRUE(second.status.exitedWith(2)) << second.status.describe();
  EXPECT_NE(second.err.find("--cache-dir"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("(pid " + std::to_string(first->pid()) + ")"), std::string::npos)
      << second.err;
  // The first serves on with its disk tier.
  Client client(clientOf(*first));
  EXPECT_FALSE(client.compile(freshModule(2, "first.ll")).fromCache);
  ServerStats stats = client.stats();
  const ServerStats::TierStats* disk = tier(stats, "disk");
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->address, dir.file("cache"));
}

TEST(CacheTierOptionsTest, BadTierOptionsExitWith2AndSayWhy) {
  const char* rjitd = std::getenv("RJITD_BIN");
  ASSERT_NE(rjitd, nullptr);
  TempDir dir;
  writeFile(dir.file("not-a-dir"), "x");
  writeFile(dir.file("short.key"), "too short\n");
  writeFile(dir.file("open.key"), "0123456789abcdef0123456789abcdef\n");
  writeFile(dir.file("good.key"), "0123456789abcdef0123456789abcdef\n");
  ::chmod(dir.file("good.key").c_str(), 0600);
  ::chmod(dir.file("short.key").c_str(), 0600);
  ::chmod(dir.file("open.key").c_str(), 0644);
  writeFile(dir.file("two-lines.auth"), "user\npassword\n");
  writeFile(dir.file("user-only.auth"), "s3cret-first-word \n");
  ::chmod(dir.file("two-lines.auth").c_str(), 0600);
  ::chmod(dir.file("user-only.auth").c_str(), 0600);
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<Case> cases = {
      {{"--cache-dir", dir.file("not-a-dir") + "/sub"}, "--cache-dir"},
      {{"--disk-cache-bytes", "lots"}, "--disk-cache-bytes"},
      {{"--shared-cache", "unix:" + dir.file("redis.sock")}, "--shared-cache-key-file"},
      {{"--shared-cache-key-file", dir.file("open.key")}, "need --shared-cache"},
      {{"--shared-cache", "unix:" + dir.file("redis.sock"), "--shared-cache-key-file",
        dir.file("short.key")},
       "at least 16"},
      {{"--shared-cache", "unix:" + dir.file("redis.sock"), "--shared-cache-key-file",
        dir.file("open.key")},
       "chmod 0600"},
      {{"--shared-cache", "http://example", "--shared-cache-key-file", dir.file("good.key")},
       "http://example"},
      {{"--shared-cache-lease-ttl", "soon"}, "--shared-cache-lease-ttl"},
      {{"--shared-cache", "unix:" + dir.file("redis.sock"), "--shared-cache-key-file",
        dir.file("good.key"), "--shared-cache-auth-file", dir.file("open.key")},
       "--shared-cache-auth-file " + dir.file("open.key") + " may be read by others"},
      {{"--shared-cache", "unix:" + dir.file("redis.sock"), "--shared-cache-key-file",
        dir.file("good.key"), "--shared-cache-auth-file", dir.file("two-lines.auth")},
       "more than one line"},
      {{"--shared-cache", "unix:" + dir.file("redis.sock"), "--shared-cache-key-file",
        dir.file("good.key"), "--shared-cache-auth-file", dir.file("user-only.auth")},
       "nothing after it"},
      {{"--shared-cache", "unix:" + dir.file("redis.sock"), "--shared-cache-key-file",
        dir.file("good.key"), "--shared-cache-auth-file", dir.file("missing.auth")},
       "cannot open --shared-cache-auth-file"},
      {{"--shared-cache-auth-file", dir.file("good.key")}, "need --shared-cache"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {rjitd, "--listen", "unix:" + dir.file("rjitd.sock")};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    CommandResult result = runCommand(dir, argv);
    EXPECT_TRUE(result.status.exitedWith(2)) << c.args[0] << ": " << result.status.describe();
    EXPECT_NE(result.err.find(c.says), std::string::npos) << c.args[0] << ": " << result.err;
    EXPECT_EQ(result.err.find("s3cret"), std::string::npos)
        << "a secret was echoed: " << result.err;
  }
}

}  // namespace
}  // namespace rjit::test
