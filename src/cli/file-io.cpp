// SPDX-License-Identifier: MIT
// The files `rjit` reads and writes (see file-io.h).
#include "file-io.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fcntl.h>
#include <kj/exception.h>
#include <kj/io.h>
#include <limits>
#include <sys/random.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace rjitd::cli {
namespace {

FileError failure(const char* verb, const std::string& path, int error) {
  return {std::string("cannot ") + verb + " " + path + ": " +
          std::system_category().message(error)};
}

/// Writes all of `bytes`; returns 0 or the errno of the failed write.
int writeAll(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errno;
    done += static_cast<size_t>(n);
  }
  return 0;
}

/// Closes `fd` now and reports whether close failed. For a written file close is part of the
/// write (NFS and quotas report delayed write errors there), and AutoCloseFd's destructor would
/// throw that error; here it becomes a value.
std::optional<FileError> closeWritten(kj::AutoCloseFd& fd, const std::string& path) {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { fd = nullptr; })) {
    return FileError{"cannot write " + path + ": " + exception->getDescription().cStr()};
  }
  return std::nullopt;
}

std::optional<FileError> writeInPlace(const std::string& path, std::string_view bytes) {
  // No O_CREAT: it exists, and is not to be replaced. No O_TRUNC: meaningless for the devices
  // and FIFOs that come here.
  kj::AutoCloseFd fd(::open(path.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC));
  if (fd.get() < 0)
    return failure("write", path, errno);
  if (int error = writeAll(fd, bytes); error != 0)
    return failure("write", path, error);
  return closeWritten(fd, path);
}

/// A suffix no one can predict: from getrandom, or (if the kernel has none to give) from the
/// pid, the clock and `attempt`. Only unpredictability against denial of service depends on it:
/// safety against a planted file comes from O_EXCL.
std::string randomSuffix(unsigned attempt) {
  uint64_t value = 0;
  if (::getrandom(&value, sizeof(value), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(value)))
    value = (static_cast<uint64_t>(::getpid()) << 32) ^
            static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
            attempt;
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(value));
  return hex;
}

/// How many names createTemporary tries before it gives up: a collision of 64 random bits is
/// chance only if someone plants files at guessed names.
constexpr unsigned TEMPORARY_ATTEMPTS = 16;

/// Creates a new file next to `path` (PATH.tmp.RANDOM) and sets `tmp` to its name. O_EXCL: a
/// name that exists in any form, a symlink included, is never opened, so a symlink planted in a
/// directory others can write cannot redirect the write (as root, to truncate its target).
/// O_NOFOLLOW says the same again for filesystems where O_EXCL is weak. Mode 0666 less the
/// umask, as for any file a compiler writes.
kj::AutoCloseFd createTemporary(const std::string& path, std::string& tmp, int& error) {
  for (unsigned attempt = 0; attempt < TEMPORARY_ATTEMPTS; ++attempt) {
    tmp = path + ".tmp." + randomSuffix(attempt);
    kj::AutoCloseFd fd(
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0666));
    if (fd.get() >= 0)
      return fd;
    error = errno;
    if (error != EEXIST && error != EINTR)
      break;
  }
  return nullptr;
}

std::optional<FileError> writeAtomically(const std::string& path, std::string_view bytes) {
  std::string tmp;
  int error = 0;
  kj::AutoCloseFd fd = createTemporary(path, tmp, error);
  if (fd.get() < 0)
    return failure("write", path, error);
  std::optional<FileError> problem;
  if (int writeError = writeAll(fd, bytes); writeError != 0)
    problem = failure("write", path, writeError);
  else
    problem = closeWritten(fd, path);
  if (!problem && ::rename(tmp.c_str(), path.c_str()) != 0)
    problem = failure("write", path, errno);
  // Only the name goes (unlink follows no symlink), and on every failure after creation.
  if (problem)
    ::unlink(tmp.c_str());
  return problem;
}

}  // namespace

std::variant<std::string, FileError> readFile(const std::string& path) {
  kj::AutoCloseFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0)
    return failure("read", path, errno);
  return readBounded(fd, path, std::numeric_limits<size_t>::max());
}

std::variant<std::string, FileError> readBounded(int fd, const std::string& name, size_t limit) {
  std::string data;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
    data.reserve(std::min(static_cast<size_t>(st.st_size), limit));
  char buffer[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return failure("read", name, errno);
    if (n == 0)
      return data;
    if (data.size() + static_cast<size_t>(n) > limit)
      return FileError{"cannot read " + name + ": more than " + std::to_string(limit) + " bytes"};
    data.append(buffer, static_cast<size_t>(n));
  }
}

bool writeAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::optional<FileError> writeOutput(const std::string& path, std::string_view bytes) {
  // stat, not lstat: a symlink to /dev/null is written through; a symlink to a regular file is
  // replaced by the new file, as before.
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    return writeInPlace(path, bytes);
  return writeAtomically(path, bytes);
}

}  // namespace rjitd::cli
