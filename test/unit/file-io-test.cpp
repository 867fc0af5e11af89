// SPDX-License-Identifier: MIT
// The files `rjit` reads and writes, on real files in a per-test directory: errors that name the
// path, atomic replacement of regular files, devices and FIFOs written in place, and a temporary
// file that no planted symlink can redirect.
#include "file-io.h"
#include "temp-dir.h"

#include <gtest/gtest.h>
#include <kj/io.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <set>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

namespace rjitd::cli {
namespace {

/// The file's bytes, through the function under test (checked separately below).
std::string contents(const std::string& path) {
  auto result = readFile(path);
  if (auto* error = std::get_if<FileError>(&result))
    ADD_FAILURE() << error->message;
  return std::holds_alternative<std::string>(result) ? std::get<std::string>(result) : "";
}

/// Creates `path` with `bytes` (plain POSIX calls: independent of the code under test).
void plant(const std::string& path, const std::string& bytes) {
  kj::AutoCloseFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_GE(fd.get(), 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

/// The names in `dir`, without "." and "..".
std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    ADD_FAILURE() << dir << ": " << std::strerror(errno);
    return names;
  }
  while (struct dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
      names.insert(e->d_name);
  ::closedir(d);
  return names;
}

TEST(FileIo, ReadsAWholeFile) {
  rjit::test::TempDir dir;
  std::string bytes(200000, 'x');  // more than one read buffer
  bytes[0] = 'a';
  bytes.back() = 'z';
  plant(dir.file("m.ll"), bytes);
  EXPECT_EQ(contents(dir.file("m.ll")), bytes);
}

TEST(FileIo, ReadOfAMissingFileNamesIt) {
  rjit::test::TempDir dir;
  auto result = readFile(dir.file("missing.ll"));
  ASSERT_TRUE(std::holds_alternative<FileError>(result));
  EXPECT_EQ(std::get<FileError>(result).message,
            "cannot read " + dir.file("missing.ll") + ": No such file or directory");
}

TEST(FileIo, ReadOfADirectoryNamesIt) {
  rjit::test::TempDir dir;
  auto result = readFile(dir.path());
  ASSERT_TRUE(std::holds_alternative<FileError>(result));
  EXPECT_EQ(std::get<FileError>(result).message, "cannot read " + dir.path() + ": Is a directory");
}

TEST(FileIo, WritesANewFileWithTheUmasksMode) {
  rjit::test::TempDir dir;
  mode_t old = ::umask(022);
  auto problem = writeOutput(dir.file("out.o"), "object bytes");
  ::umask(old);
  ASSERT_FALSE(problem) << problem->message;
  EXPECT_EQ(contents(dir.file("out.o")), "object bytes");
  struct stat st;
  ASSERT_EQ(::stat(dir.file("out.o").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"out.o"});  // no temporary left
}

TEST(FileIo, ReplacesARegularFileAsAWhole) {
  rjit::test::TempDir dir;
  plant(dir.file("out.o"), "the old, longer contents");
  // A second name of the old file: a replacement by rename leaves it as it was, a write in
  // place would change it.
  ASSERT_EQ(::link(dir.file("out.o").c_str(), dir.file("old").c_str()), 0);
  auto problem = writeOutput(dir.file("out.o"), "new");
  ASSERT_FALSE(problem) << problem->message;
  EXPECT_EQ(contents(dir.file("out.o")), "new");
  EXPECT_EQ(contents(dir.file("old")), "the old, longer contents");
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"old", "out.o"}));
}

TEST(FileIo, WritesIntoAFifoInPlace) {
  rjit::test::TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("pipe").c_str(), 0600), 0);
  // The read end first (non-blocking, so this open does not wait for a writer); the bytes fit
  // in the pipe's buffer, so the write does not wait for the reader either.
  kj::AutoCloseFd reader(::open(dir.file("pipe").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_GE(reader.get(), 0) << std::strerror(errno);
  auto problem = writeOutput(dir.file("pipe"), "through the pipe");
  EXPECT_FALSE(problem) << problem->message;
  char buffer[64];
  ssize_t n = ::read(reader, buffer, sizeof(buffer));
  EXPECT_EQ(std::string(buffer, n > 0 ? static_cast<size_t>(n) : 0), "through the pipe");
  struct stat st;
  ASSERT_EQ(::lstat(dir.file("pipe").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced";
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"pipe"});
}

TEST(FileIo, WritesToDevNullInPlace) {
  auto problem = writeOutput("/dev/null", "discarded");
  ASSERT_FALSE(problem) << problem->message;
  struct stat st;
  ASSERT_EQ(::lstat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

TEST(FileIo, WritesThroughASymlinkToDevNull) {
  rjit::test::TempDir dir;
  ASSERT_EQ(::symlink("/dev/null", dir.file("sink").c_str()), 0);
  auto problem = writeOutput(dir.file("sink"), "discarded");
  ASSERT_FALSE(problem) << problem->message;
  struct stat st;
  ASSERT_EQ(::lstat(dir.file("sink").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the symlink was replaced";
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"sink"});
}

TEST(FileIo, WriteIntoAMissingDirectoryNamesThePath) {
  rjit::test::TempDir dir;
  std::string path = dir.file("no-such-dir/out.o");
  auto problem = writeOutput(path, "bytes");
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->message, "cannot write " + path + ": No such file or directory");
}

// A write that fails part-way (here: beyond RLIMIT_FSIZE, with SIGXFSZ ignored so the write
// returns EFBIG) leaves the old file as it was and no temporary behind.
TEST(FileIo, FailedWriteLeavesTheOldFileAndNoTemporary) {
  rjit::test::TempDir dir;
  std::string path = dir.file("out.o");
  plant(path, "old");
  struct rlimit old;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = 4;
  auto previous = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  auto problem = writeOutput(path, std::string(100, 'x'));
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, previous);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->message, "cannot write " + path + ": File too large");
  EXPECT_EQ(contents(path), "old");
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"out.o"});
}

// The temporary file's name must not be one another user can plant a symlink at: as root, in a
// directory others can write, following it would truncate and overwrite the symlink's target.
// The name the old scheme used (PATH.tmp.PID) is the one this process would pick.
TEST(FileIo, TemporaryFileDoesNotFollowAPlantedSymlink) {
  rjit::test::TempDir dir;
  std::string path = dir.file("out.o");
  plant(dir.file("victim"), "precious");
  std::string predictable = path + ".tmp." + std::to_string(::getpid());
  ASSERT_EQ(::symlink(dir.file("victim").c_str(), predictable.c_str()), 0);
  auto problem = writeOutput(path, "object bytes");
  ASSERT_FALSE(problem) << problem->message;
  EXPECT_EQ(contents(dir.file("victim")), "precious");
  EXPECT_EQ(contents(path), "object bytes");
  struct stat st;
  ASSERT_EQ(::lstat(predictable.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the planted symlink was replaced";
  EXPECT_EQ(entries(dir.path()),
            (std::set<std::string>{"out.o", "victim", "out.o.tmp." + std::to_string(::getpid())}));
}

}  // namespace
}  // namespace rjitd::cli
