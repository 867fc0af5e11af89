// SPDX-License-Identifier: MIT
// Tests for the disk tier on real files in a private directory: round trips, reopening,
// corrupt files (deleted and counted by reason), leftover temporary files, LRU eviction to the
// byte budget within a run and across a restart, open() errors, write faults, and the index's
// byte count under concurrent use.
#include "disk-cache.h"
#include "temp-dir.h"

#include <atomic>
#include <cctype>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace rjitd::cache {
namespace {

namespace fs = std::filesystem;

Key makeKey(unsigned i) {
  Key key{};
  // The first byte picks the 2-hex subdirectory: spread keys over several.
  key[0] = static_cast<uint8_t>(i * 37);
  key[1] = static_cast<uint8_t>(i >> 8);
  key[2] = static_cast<uint8_t>(i);
  key[31] = 0xa5;
  return key;
}

std::string makePayload(unsigned i, size_t bytes = 1000) {
  std::string payload(bytes, '\0');
  for (size_t b = 0; b < bytes; ++b)
    payload[b] = static_cast<char>('a' + (i + b) % 26);
  return payload;
}

/// What one stored entry costs against the budget: its file's size.
uint64_t fileBytes(size_t payloadBytes = 1000) {
  return sealEnvelope(Key{}, std::string(payloadBytes, 'x')).size();
}

std::unique_ptr<DiskCache> openCache(const std::string& dir, uint64_t budget) {
  auto opened = DiskCache::open(dir, budget);
  if (auto* message = std::get_if<std::string>(&opened)) {
    ADD_FAILURE() << *message;
    return nullptr;
  }
  return std::move(std::get<std::unique_ptr<DiskCache>>(opened));
}

std::string objectFile(const std::string& dir, const Key& key) {
  std::string hex = toHex(key);
  return dir + "/v" + std::to_string(STORED_FORMAT) + "/objects/" + hex.substr(0, 2) + "/" + hex;
}

std::string tmpDir(const std::string& dir) {
  return dir + "/v" + std::to_string(STORED_FORMAT) + "/tmp";
}

/// Sets the file's mtime (and atime) to `seconds` after the epoch: a last use long ago.
void setMtime(const std::string& path, time_t seconds) {
  struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

/// The object files on disk and their sizes, summed.
std::pair<uint64_t, uint64_t> filesOnDisk(const std::string& dir) {
  uint64_t files = 0, bytes = 0;
  for (const auto& entry :
       fs::recursive_directory_iterator(dir + "/v" + std::to_string(STORED_FORMAT) + "/objects"))
    if (entry.is_regular_file()) {
      ++files;
      bytes += entry.file_size();
    }
  return {files, bytes};
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

constexpr uint64_t LARGE_BUDGET = 100ull << 20;

TEST(DiskCacheTest, PutThenGetRoundTrips) {
  rjit::test::TempDir tmp;
  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  cache->waitScanned();
  EXPECT_EQ(cache->directory(), tmp.path());

  EXPECT_EQ(cache->get(makeKey(1)), std::nullopt);
  ASSERT_TRUE(cache->put(makeKey(1), makePayload(1)));
  EXPECT_TRUE(cache->contains(makeKey(1)));
  EXPECT_EQ(cache->get(makeKey(1)), makePayload(1));
  EXPECT_EQ(cache->get(makeKey(2)), std::nullopt);

  struct stat st;
  ASSERT_EQ(stat(objectFile(tmp.path(), makeKey(1)).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  DiskCacheStats s = cache->stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.stored, 1u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.bytes, static_cast<uint64_t>(st.st_size));
  EXPECT_EQ(s.bytes, fileBytes());
  EXPECT_EQ(s.budgetBytes, LARGE_BUDGET);
  EXPECT_TRUE(s.scanned);
  EXPECT_EQ(s.writeErrors + s.readErrors + s.evictions + s.tooLarge, 0u);
  EXPECT_TRUE(fs::is_empty(tmpDir(tmp.path())));
}

TEST(DiskCacheTest, CreatesMissingParentsPrivately) {
  rjit::test::TempDir tmp;
  std::string dir = tmp.file("a/b/cache");
  auto cache = openCache(dir, LARGE_BUDGET);
  ASSERT_TRUE(cache);
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(DiskCacheTest, ANewCacheOnTheSameDirectoryFindsTheFiles) {
  rjit::test::TempDir tmp;
  {
    auto cache = openCache(tmp.path(), LARGE_BUDGET);
    ASSERT_TRUE(cache);
    for (unsigned i = 1; i <= 5; ++i)
      ASSERT_TRUE(cache->put(makeKey(i), makePayload(i)));
  }
  // Without waiting for the scan: get() looks at the file if the index has not seen it yet.
  {
    auto cache = openCache(tmp.path(), LARGE_BUDGET);
    ASSERT_TRUE(cache);
    EXPECT_EQ(cache->get(makeKey(3)), makePayload(3));
    // A put during the scan of a key the scan also finds: counted once.
    ASSERT_TRUE(cache->put(makeKey(4), makePayload(4)));
    cache->waitScanned();
    DiskCacheStats s = cache->stats();
    EXPECT_EQ(s.hits, 1u);
    EXPECT_EQ(s.entries, 5u);
    EXPECT_EQ(s.bytes, 5 * fileBytes());
  }
  // After the scan.
  {
    auto cache = openCache(tmp.path(), LARGE_BUDGET);
    ASSERT_TRUE(cache);
    cache->waitScanned();
    DiskCacheStats s = cache->stats();
    EXPECT_EQ(s.entries, 5u);
    EXPECT_EQ(s.bytes, 5 * fileBytes());
    for (unsigned i = 1; i <= 5; ++i) {
      EXPECT_TRUE(cache->contains(makeKey(i)));
      EXPECT_EQ(cache->get(makeKey(i)), makePayload(i));
    }
    EXPECT_EQ(cache->get(makeKey(6)), std::nullopt);
  }
}

TEST(DiskCacheTest, TheScanIgnoresNamesThatAreNotKeys) {
  rjit::test::TempDir tmp;
  Key key = makeKey(1);
  {
    auto cache = openCache(tmp.path(), LARGE_BUDGET);
    ASSERT_TRUE(cache);
    ASSERT_TRUE(cache->put(key, makePayload(1)));
  }
  std::string file = objectFile(tmp.path(), key);
  std::string subdir = fs::path(file).parent_path();
  std::string hex = toHex(key);
  std::string upper = hex;
  for (char& c : upper)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  writeFile(subdir + "/notes.txt", "not a key");
  writeFile(subdir + "/" + upper, readFile(file));
  // A key's name in another key's directory is not where get() would look.
  std::string misfiled = fs::path(subdir).parent_path() / (hex.substr(0, 2) == "00" ? "11" : "00");
  fs::create_directory(misfiled);
  writeFile(misfiled + "/" + hex, readFile(file));

  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  cache->waitScanned();
  EXPECT_EQ(cache->stats().entries, 1u);
  EXPECT_EQ(cache->stats().bytes, fileBytes());
  EXPECT_TRUE(fs::exists(subdir + "/notes.txt"));  // not ours: left alone
}

struct Corruption {
  const char* name;
  EnvelopeError reason;
  /// Damages the file of key 1 in `dir` (the file of key 2 is there to be renamed).
  void (*damage)(const std::string& dir);
};

void truncateFile(const std::string& dir) {
  std::string file = objectFile(dir, makeKey(1));
  ASSERT_EQ(truncate(file.c_str(), static_cast<off_t>(fileBytes() / 2)), 0);
}

void flipPayloadByte(const std::string& dir) {
  std::string file = objectFile(dir, makeKey(1));
  std::string data = readFile(file);
  data[data.size() - 7] ^= 0x04;
  writeFile(file, data);
}

void flipMagicByte(const std::string& dir) {
  std::string file = objectFile(dir, makeKey(1));
  std::string data = readFile(file);
  data[1] ^= 0x01;
  writeFile(file, data);
}

void renameKey2ToKey1(const std::string& dir) {
  fs::rename(objectFile(dir, makeKey(2)), objectFile(dir, makeKey(1)));
}

/// Stores keys 1, 2 and 3.
void storeThree(DiskCache& cache) {
  for (unsigned i = 1; i <= 3; ++i)
    ASSERT_TRUE(cache.put(makeKey(i), makePayload(i)));
}

/// Checks what a rejected read of key 1 must leave: the file gone, the index and the counters
/// matching the files on disk, key 3 served.
void expectRejected(DiskCache& cache, const std::string& dir, EnvelopeError reason) {
  EXPECT_EQ(cache.get(makeKey(1)), std::nullopt);
  EXPECT_FALSE(fs::exists(objectFile(dir, makeKey(1))));
  EXPECT_FALSE(cache.contains(makeKey(1)));
  DiskCacheStats s = cache.stats();
  for (size_t r = 0; r < std::size(s.rejected); ++r)
    EXPECT_EQ(s.rejected[r], r == static_cast<size_t>(reason) ? 1u : 0u)
        << envelopeErrorName(static_cast<EnvelopeError>(r));
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 0u);
  EXPECT_EQ(cache.get(makeKey(3)), makePayload(3));
  // Key 2: still there, or renamed away (then a miss that drops it from the index).
  EXPECT_EQ(cache.get(makeKey(2)).has_value(), reason != EnvelopeError::WrongKey);
  s = cache.stats();
  EXPECT_EQ(filesOnDisk(dir), std::make_pair(s.entries, s.bytes));
  EXPECT_EQ(s.entries, reason == EnvelopeError::WrongKey ? 1u : 2u);
}

class DiskCacheCorruptionTest : public testing::TestWithParam<Corruption> {};

TEST_P(DiskCacheCorruptionTest, CorruptFileIsDeletedAndCountedWhileOpen) {
  rjit::test::TempDir tmp;
  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  cache->waitScanned();
  storeThree(*cache);
  GetParam().damage(tmp.path());
  expectRejected(*cache, tmp.path(), GetParam().reason);
  // And key 1 can be stored again.
  ASSERT_TRUE(cache->put(makeKey(1), makePayload(1)));
  EXPECT_EQ(cache->get(makeKey(1)), makePayload(1));
}

TEST_P(DiskCacheCorruptionTest, CorruptFileIsDeletedAndCountedAfterReopen) {
  rjit::test::TempDir tmp;
  {
    auto cache = openCache(tmp.path(), LARGE_BUDGET);
    ASSERT_TRUE(cache);
    storeThree(*cache);
  }
  GetParam().damage(tmp.path());
  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  cache->waitScanned();
  ASSERT_TRUE(cache->contains(makeKey(1)));
  expectRejected(*cache, tmp.path(), GetParam().reason);
}

INSTANTIATE_TEST_SUITE_P(
    Damage, DiskCacheCorruptionTest,
    testing::Values(Corruption{"Truncated", EnvelopeError::Truncated, truncateFile},
                    Corruption{"FlippedPayloadByte", EnvelopeError::BadChecksum, flipPayloadByte},
                    Corruption{"FlippedMagicByte", EnvelopeError::Foreign, flipMagicByte},
                    Corruption{"RenamedToAnotherKey", EnvelopeError::WrongKey, renameKey2ToKey1}),
    [](const testing::TestParamInfo<Corruption>& info) { return std::string(info.param.name); });

TEST(DiskCacheTest, LeftoverTemporaryFilesAreRemovedAtOpen) {
  rjit::test::TempDir tmp;
  {
    auto cache = openCache(tmp.path(), LARGE_BUDGET);
    ASSERT_TRUE(cache);
  }
  // What a writer killed between create and rename leaves behind.
  writeFile(tmpDir(tmp.path()) + "/" + toHex(makeKey(1)) + ".123.0", "half an envelo");
  writeFile(tmpDir(tmp.path()) + "/" + toHex(makeKey(2)) + ".123.1", "");
  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  EXPECT_TRUE(fs::is_empty(tmpDir(tmp.path())));
  cache->waitScanned();
  EXPECT_EQ(cache->stats().entries, 0u);
}

TEST(DiskCacheTest, EvictsLeastRecentlyUsedToTheBudget) {
  rjit::test::TempDir tmp;
  auto cache = openCache(tmp.path(), 3 * fileBytes());
  ASSERT_TRUE(cache);
  cache->waitScanned();
  for (unsigned i = 1; i <= 3; ++i)
    ASSERT_TRUE(cache->put(makeKey(i), makePayload(i)));
  ASSERT_EQ(cache->get(makeKey(1)), makePayload(1));  // 2 is now the least recently used

  ASSERT_TRUE(cache->put(makeKey(4), makePayload(4)));
  EXPECT_FALSE(cache->contains(makeKey(2)));
  EXPECT_FALSE(fs::exists(objectFile(tmp.path(), makeKey(2))));
  for (unsigned i : {1u, 3u, 4u})
    EXPECT_TRUE(cache->contains(makeKey(i))) << i;

  ASSERT_TRUE(cache->put(makeKey(5), makePayload(5)));
  EXPECT_FALSE(cache->contains(makeKey(3)));
  DiskCacheStats s = cache->stats();
  EXPECT_EQ(s.evictions, 2u);
  EXPECT_EQ(s.entries, 3u);
  EXPECT_EQ(s.bytes, 3 * fileBytes());
  EXPECT_EQ(filesOnDisk(tmp.path()), std::make_pair(uint64_t(3), 3 * fileBytes()));
}

TEST(DiskCacheTest, TheOrderOfUseSurvivesAReopen) {
  rjit::test::TempDir tmp;
  {
    auto cache = openCache(tmp.path(), 3 * fileBytes());
    ASSERT_TRUE(cache);
    for (unsigned i = 1; i <= 3; ++i)
      ASSERT_TRUE(cache->put(makeKey(i), makePayload(i)));
  }
  // Last uses long ago, in the order 2, 1, 3 (the clock's granularity would make puts in
  // quick succession tie).
  setMtime(objectFile(tmp.path(), makeKey(2)), 1000);
  setMtime(objectFile(tmp.path(), makeKey(1)), 2000);
  setMtime(objectFile(tmp.path(), makeKey(3)), 3000);

  auto cache = openCache(tmp.path(), 3 * fileBytes());
  ASSERT_TRUE(cache);
  cache->waitScanned();
  ASSERT_TRUE(cache->put(makeKey(4), makePayload(4)));
  EXPECT_FALSE(cache->contains(makeKey(2)));
  EXPECT_TRUE(cache->contains(makeKey(1)));
  ASSERT_TRUE(cache->put(makeKey(5), makePayload(5)));
  EXPECT_FALSE(cache->contains(makeKey(1)));
  EXPECT_TRUE(cache->contains(makeKey(3)));
}

TEST(DiskCacheTest, AHitTouchesTheFile) {
  rjit::test::TempDir tmp;
  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  ASSERT_TRUE(cache->put(makeKey(1), makePayload(1)));
  std::string file = objectFile(tmp.path(), makeKey(1));
  setMtime(file, 1000);
  ASSERT_EQ(cache->get(makeKey(1)), makePayload(1));
  struct stat st;
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_GT(st.st_mtim.tv_sec, 1000);
}

TEST(DiskCacheTest, AReopenWithASmallerBudgetEvictsOnceScanned) {
  rjit::test::TempDir tmp;
  {
    auto cache = openCache(tmp.path(), LARGE_BUDGET);
    ASSERT_TRUE(cache);
    for (unsigned i = 1; i <= 4; ++i)
      ASSERT_TRUE(cache->put(makeKey(i), makePayload(i)));
  }
  for (unsigned i = 1; i <= 4; ++i)
    setMtime(objectFile(tmp.path(), makeKey(i)), 1000 * (5 - i));  // 4 is the oldest

  auto cache = openCache(tmp.path(), 2 * fileBytes());
  ASSERT_TRUE(cache);
  cache->waitScanned();
  DiskCacheStats s = cache->stats();
  EXPECT_EQ(s.evictions, 2u);
  EXPECT_EQ(s.bytes, 2 * fileBytes());
  EXPECT_TRUE(cache->contains(makeKey(1)));
  EXPECT_TRUE(cache->contains(makeKey(2)));
  EXPECT_FALSE(fs::exists(objectFile(tmp.path(), makeKey(3))));
  EXPECT_FALSE(fs::exists(objectFile(tmp.path(), makeKey(4))));
}

TEST(DiskCacheTest, AnEntryLargerThanTheBudgetIsNotStored) {
  rjit::test::TempDir tmp;
  auto cache = openCache(tmp.path(), fileBytes() - 1);
  ASSERT_TRUE(cache);
  cache->waitScanned();
  EXPECT_FALSE(cache->put(makeKey(1), makePayload(1)));
  EXPECT_TRUE(cache->put(makeKey(2), makePayload(2, 100)));
  DiskCacheStats s = cache->stats();
  EXPECT_EQ(s.tooLarge, 1u);
  EXPECT_EQ(s.stored, 1u);
  EXPECT_EQ(s.writeErrors, 0u);
  EXPECT_FALSE(fs::exists(objectFile(tmp.path(), makeKey(1))));
}

TEST(DiskCacheTest, ABudgetOfZeroStoresNothing) {
  rjit::test::TempDir tmp;
  auto cache = openCache(tmp.path(), 0);
  ASSERT_TRUE(cache);
  EXPECT_FALSE(cache->put(makeKey(1), ""));
  EXPECT_EQ(filesOnDisk(tmp.path()).first, 0u);
}

TEST(DiskCacheTest, AFileLargerThanTheBudgetIsNotRead) {
  rjit::test::TempDir tmp;
  {
    auto cache = openCache(tmp.path(), LARGE_BUDGET);
    ASSERT_TRUE(cache);
    ASSERT_TRUE(cache->put(makeKey(1), makePayload(1)));
  }
  auto cache = openCache(tmp.path(), fileBytes() - 1);
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->get(makeKey(1)), std::nullopt);  // before or after the scan evicted it
  cache->waitScanned();
  EXPECT_FALSE(fs::exists(objectFile(tmp.path(), makeKey(1))));
  EXPECT_EQ(cache->stats().evictions, 1u);
  EXPECT_EQ(cache->stats().entries, 0u);
}

TEST(DiskCacheTest, OneProcessPerDirectory) {
  rjit::test::TempDir tmp;
  auto first = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(first);
  ASSERT_TRUE(first->put(makeKey(1), makePayload(1)));
  // A write in progress of the first: a second cache let in would delete it (open empties tmp/).
  std::string inFlight = tmpDir(tmp.path()) + "/" + toHex(makeKey(2)) + ".1.0";
  writeFile(inFlight, "half an envelo");

  // flock locks belong to an open file description: a second open() in this process is refused
  // just as another process's would be.
  auto second = DiskCache::open(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(std::holds_alternative<std::string>(second));
  const std::string& message = std::get<std::string>(second);
  EXPECT_NE(message.find(tmp.path()), std::string::npos) << message;
  EXPECT_NE(message.find("(pid " + std::to_string(getpid()) + ")"), std::string::npos) << message;
  EXPECT_NE(message.find("--cache-dir"), std::string::npos) << message;
  EXPECT_TRUE(fs::exists(inFlight));

  // The lock ends with the cache that held it.
  first.reset();
  auto third = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(third);
  third->waitScanned();
  EXPECT_EQ(third->get(makeKey(1)), makePayload(1));
}

TEST(DiskCacheTest, TheLockEndsWithTheProcessThatHeldIt) {
  rjit::test::TempDir tmp;
  // A child takes the directory and is killed without any clean-up (as rjitd is by SIGKILL).
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Never outlives the test, whatever assertion ends it early.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    auto opened = DiskCache::open(tmp.path(), LARGE_BUDGET);
    char byte = std::holds_alternative<std::string>(opened) ? 'n' : 'y';
    ssize_t written = write(ready[1], &byte, 1);  // read by the parent: its check
    static_cast<void>(written);
    pause();
    _exit(0);
  }
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
  } reaper{child};
  close(ready[1]);
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  close(ready[0]);
  ASSERT_EQ(byte, 'y');
  auto held = DiskCache::open(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(std::holds_alternative<std::string>(held));
  EXPECT_NE(std::get<std::string>(held).find("(pid " + std::to_string(child) + ")"),
            std::string::npos)
      << std::get<std::string>(held);
  ASSERT_EQ(kill(child, SIGKILL), 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  reaper.pid = 0;
  EXPECT_TRUE(openCache(tmp.path(), LARGE_BUDGET));
}

TEST(DiskCacheTest, OpenNamesTheDirectoryAndWhatToDo) {
  rjit::test::TempDir tmp;
  // Root may write anywhere, so "not writable" is a path through a regular file.
  writeFile(tmp.file("file"), "x");
  for (const std::string& dir : {tmp.file("file"), tmp.file("file/cache")}) {
    auto opened = DiskCache::open(dir, LARGE_BUDGET);
    ASSERT_TRUE(std::holds_alternative<std::string>(opened)) << dir;
    const std::string& message = std::get<std::string>(opened);
    EXPECT_NE(message.find(dir), std::string::npos) << message;
    EXPECT_NE(message.find("Not a directory"), std::string::npos) << message;
    EXPECT_NE(message.find("--cache-dir"), std::string::npos) << message;
  }
  auto opened = DiskCache::open(tmp.file("file/cache"), LARGE_BUDGET);
  EXPECT_NE(std::get<std::string>(opened).find("mkdir"), std::string::npos);
}

TEST(DiskCacheTest, AFailedCreateCountsAWriteError) {
  rjit::test::TempDir tmp;
  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  cache->waitScanned();
  // The cache holds tmp/ open; a removed directory takes no new files (ENOENT), even for root.
  ASSERT_EQ(rmdir(tmpDir(tmp.path()).c_str()), 0);
  EXPECT_FALSE(cache->put(makeKey(1), makePayload(1)));
  DiskCacheStats s = cache->stats();
  EXPECT_EQ(s.writeErrors, 1u);
  EXPECT_EQ(s.stored, 0u);
  EXPECT_EQ(s.entries, 0u);
  EXPECT_FALSE(fs::exists(objectFile(tmp.path(), makeKey(1))));
}

TEST(DiskCacheTest, AFailedWriteRemovesTheTemporaryFile) {
  rjit::test::TempDir tmp;
  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  cache->waitScanned();
  // A file size limit fails the write part-way (EFBIG), as a full disk would, for root too.
  // SIGXFSZ ignored, or it would end the test.
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto oldHandler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = saved;
  limited.rlim_cur = ENVELOPE_HEADER_BYTES + 100;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limited), 0);
  bool stored = cache->put(makeKey(1), makePayload(1));
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  std::signal(SIGXFSZ, oldHandler);

  EXPECT_FALSE(stored);
  EXPECT_EQ(cache->stats().writeErrors, 1u);
  EXPECT_EQ(cache->stats().entries, 0u);
  EXPECT_TRUE(fs::is_empty(tmpDir(tmp.path())));
  EXPECT_FALSE(fs::exists(objectFile(tmp.path(), makeKey(1))));
  // The next write, within the limit again, works.
  EXPECT_TRUE(cache->put(makeKey(1), makePayload(1)));
}

TEST(DiskCacheTest, AnUnreadableEntryIsAReadError) {
  rjit::test::TempDir tmp;
  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  cache->waitScanned();
  ASSERT_TRUE(cache->put(makeKey(1), makePayload(1)));
  // A directory where the file should be: opens, but is no file to read.
  std::string file = objectFile(tmp.path(), makeKey(1));
  ASSERT_EQ(unlink(file.c_str()), 0);
  ASSERT_EQ(mkdir(file.c_str(), 0700), 0);
  EXPECT_EQ(cache->get(makeKey(1)), std::nullopt);
  EXPECT_EQ(cache->stats().readErrors, 1u);
  // Nor can a put rename a file over it.
  EXPECT_FALSE(cache->put(makeKey(1), makePayload(1)));
  EXPECT_EQ(cache->stats().writeErrors, 1u);
  EXPECT_TRUE(fs::is_empty(tmpDir(tmp.path())));
}

TEST(DiskCacheTest, AFileDeletedByHandIsAMiss) {
  rjit::test::TempDir tmp;
  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  cache->waitScanned();
  ASSERT_TRUE(cache->put(makeKey(1), makePayload(1)));
  ASSERT_EQ(unlink(objectFile(tmp.path(), makeKey(1)).c_str()), 0);
  EXPECT_EQ(cache->get(makeKey(1)), std::nullopt);
  DiskCacheStats s = cache->stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.readErrors, 0u);
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.bytes, 0u);
}

TEST(DiskCacheTest, ConcurrentPutsAndGetsKeepTheByteCountRight) {
  rjit::test::TempDir tmp;
  constexpr unsigned KEYS = 24;
  constexpr unsigned THREADS = 4;
  constexpr unsigned ROUNDS = 150;
  // Sizes differ by key, so a wrong size in the index shows in the total; the budget holds
  // about half the keys, so eviction runs all the time.
  auto sizeOf = [](unsigned key) { return size_t(200 + 50 * key); };
  uint64_t budget = 0;
  for (unsigned k = 0; k < KEYS / 2; ++k)
    budget += fileBytes(sizeOf(k));
  {
    auto cache = openCache(tmp.path(), budget);
    ASSERT_TRUE(cache);
    // Half of the keys already on disk, so the first round races with the scan.
    for (unsigned k = 0; k < KEYS; k += 2)
      ASSERT_TRUE(cache->put(makeKey(k), makePayload(k, sizeOf(k))));
  }
  auto cache = openCache(tmp.path(), budget);
  ASSERT_TRUE(cache);
  std::atomic<unsigned> wrongPayloads{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < THREADS; ++t)
    threads.emplace_back([&, t] {
      for (unsigned round = 0; round < ROUNDS; ++round) {
        unsigned k = (round * 7 + t * 5) % KEYS;
        if ((round + t) % 3 == 0) {
          cache->put(makeKey(k), makePayload(k, sizeOf(k)));
        } else if (auto got = cache->get(makeKey(k)); got && *got != makePayload(k, sizeOf(k))) {
          ++wrongPayloads;
        }
      }
    });
  for (auto& thread : threads)
    thread.join();
  cache->waitScanned();

  EXPECT_EQ(wrongPayloads.load(), 0u);
  DiskCacheStats s = cache->stats();
  EXPECT_LE(s.bytes, budget);
  EXPECT_GT(s.evictions, 0u);
  EXPECT_EQ(s.writeErrors + s.readErrors, 0u);
  for (uint64_t rejected : s.rejected)
    EXPECT_EQ(rejected, 0u);
  EXPECT_EQ(filesOnDisk(tmp.path()), std::make_pair(s.entries, s.bytes));
  EXPECT_TRUE(fs::is_empty(tmpDir(tmp.path())));
}

TEST(DiskCacheTest, DestroyedWhileScanning) {
  rjit::test::TempDir tmp;
  {
    auto cache = openCache(tmp.path(), LARGE_BUDGET);
    ASSERT_TRUE(cache);
  }
  // Valid files written directly (put() would fsync each): enough for a scan that takes a
  // while.
  constexpr unsigned FILES = 500;
  for (unsigned i = 0; i < FILES; ++i) {
    std::string file = objectFile(tmp.path(), makeKey(i));
    fs::create_directories(fs::path(file).parent_path());
    writeFile(file, sealEnvelope(makeKey(i), makePayload(i, 10)));
  }
  // The destructor stops the scan wherever it is and joins it; nothing else to observe but
  // that it returns and the files stay.
  {
    auto cache = openCache(tmp.path(), LARGE_BUDGET);
    ASSERT_TRUE(cache);
  }
  EXPECT_EQ(filesOnDisk(tmp.path()).first, FILES);
}

TEST(DiskCacheTest, WritersKilledMidWriteLeaveOnlyWholeFiles) {
  rjit::test::TempDir tmp;
  constexpr unsigned KILLS = 5;
  constexpr unsigned PUTS = 40;           // per writer, if it is not killed first
  constexpr size_t PAYLOAD = 256 * 1024;  // large enough for a kill to land mid-write
  for (unsigned kill = 0; kill < KILLS; ++kill) {
    int ready[2];
    ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
    // No thread of this process runs here (every cache of the loop is destroyed), so the child
    // may use threads and the heap.
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(ready[0]);
      auto opened = DiskCache::open(tmp.path(), LARGE_BUDGET);
      if (!std::holds_alternative<std::unique_ptr<DiskCache>>(opened))
        _exit(2);
      auto& cache = std::get<std::unique_ptr<DiskCache>>(opened);
      for (unsigned i = 0; i < PUTS; ++i) {
        unsigned k = kill * PUTS + i;
        cache->put(makeKey(k), makePayload(k, PAYLOAD));
        if (i == kill)  // later on each round: kills at different points of the work
          static_cast<void>(write(ready[1], "x", 1));
      }
      _exit(0);
    }
    close(ready[1]);
    char byte;
    ASSERT_EQ(read(ready[0], &byte, 1), 1);
    close(ready[0]);
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
  }

  // How many writes the kills cut short (informational: where a kill lands is up to the
  // scheduler).
  auto leftovers = std::distance(fs::directory_iterator(tmpDir(tmp.path())), {});
  RecordProperty("leftoverTemporaryFiles", static_cast<int>(leftovers));

  auto cache = openCache(tmp.path(), LARGE_BUDGET);
  ASSERT_TRUE(cache);
  cache->waitScanned();
  EXPECT_TRUE(fs::is_empty(tmpDir(tmp.path())));
  DiskCacheStats s = cache->stats();
  EXPECT_GE(s.entries, uint64_t(KILLS));  // each writer stored at least `kill + 1` files
  unsigned served = 0;
  for (unsigned k = 0; k < KILLS * PUTS; ++k) {
    if (!cache->contains(makeKey(k)))
      continue;
    auto got = cache->get(makeKey(k));
    ASSERT_TRUE(got) << k;
    EXPECT_EQ(*got, makePayload(k, PAYLOAD)) << k;
    ++served;
  }
  EXPECT_EQ(served, s.entries);
  for (uint64_t rejected : cache->stats().rejected)
    EXPECT_EQ(rejected, 0u);
}

}  // namespace
}  // namespace rjitd::cache
