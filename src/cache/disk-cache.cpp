// SPDX-License-Identifier: MIT
// The disk tier of the object cache (see disk-cache.h): plain POSIX file I/O on the caller's
// thread, an in-memory LRU index under one mutex, and a background thread for the start-up scan.
#include "disk-cache.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <kj/io.h>
#include <list>
#include <mutex>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace rjitd::cache {
namespace {

constexpr int DIR_MODE = 0700;  // objects are code for this rjitd only
constexpr int FILE_MODE = 0600;
constexpr int TMP_NAME_ATTEMPTS = 16;

/// Temporary file names are unique within the process by this counter (and across processes
/// by the pid in the name).
std::atomic<uint64_t> tmpCounter{0};

std::string errnoText(int error) {
  return std::strerror(error);
}

/// "<2 hex>/<64 hex>", relative to objects/.
std::string objectPath(const Key& key) {
  std::string hex = toHex(key);
  return hex.substr(0, 2) + "/" + hex;
}

int hexDigit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;  // upper case too: toHex writes lower case, so such a name is not ours
}

std::optional<Key> keyFromHex(std::string_view hex) {
  Key key;
  if (hex.size() != 2 * key.size())
    return std::nullopt;
  for (size_t i = 0; i < key.size(); ++i) {
    int high = hexDigit(hex[2 * i]);
    int low = hexDigit(hex[2 * i + 1]);
    if (high < 0 || low < 0)
      return std::nullopt;
    key[i] = static_cast<uint8_t>(high * 16 + low);
  }
  return key;
}

kj::AutoCloseFd openDirAt(int parentFd, const char* name) {
  return kj::AutoCloseFd(openat(parentFd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

/// Writes all of `data`; false with errno set on failure.
bool writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    if (n == 0) {
      errno = EIO;  // a regular file never takes nothing; do not loop on it
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

/// Reads up to `size` bytes from offset 0; stops early at end of file (the caller's envelope
/// check then says "truncated"). False with errno set on an I/O error.
bool readAll(int fd, std::string& out, size_t size) {
  out.resize(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, out.data() + done, size - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    if (n == 0)
      break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return true;
}

struct DirCloser {
  void operator()(DIR* dir) const { closedir(dir); }
};
using DirHandle = std::unique_ptr<DIR, DirCloser>;

/// Takes `fd` (a directory) over into a DIR stream; null (fd closed) on failure.
DirHandle openDirStream(kj::AutoCloseFd fd) {
  DIR* dir = fdopendir(fd.get());
  if (dir == nullptr)
    return nullptr;
  static_cast<void>(fd.release());  // the stream owns the descriptor now (closedir closes it)
  return DirHandle(dir);
}

/// The result of one step of open(): a message, or nothing.
using Problem = std::optional<std::string>;

class DiskCacheImpl final : public DiskCache {
public:
  DiskCacheImpl(std::string dir, uint64_t budgetBytes, kj::AutoCloseFd lockFd,
                kj::AutoCloseFd objectsFd, kj::AutoCloseFd tmpFd)
      : dir_(std::move(dir)), budget_(budgetBytes), lockFd_(kj::mv(lockFd)),
        objectsFd_(kj::mv(objectsFd)), tmpFd_(kj::mv(tmpFd)) {}

  DiskCacheImpl(const DiskCacheImpl&) = delete;
  DiskCacheImpl& operator=(const DiskCacheImpl&) = delete;

  // noexcept: kj::AutoCloseFd members would make it noexcept(false), which the base forbids;
  // closing a directory descriptor does not fail.
  ~DiskCacheImpl() noexcept override {
    // The scan checks the flag before each directory entry: a large cache does not hold up
    // shutdown.
    stop_.store(true);
    if (scanner_.joinable())
      scanner_.join();
  }

  void startScan() {
    scanner_ = std::thread([this] { scan(); });
  }

  std::optional<std::string> get(const Key& key) override {
    std::string path = objectPath(key);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // After the scan the index knows every file; before it, a file may exist that the
      // index has not seen yet, so look at the disk.
      if (scanned_ && index_.find(key) == index_.end()) {
        ++stats_.misses;
        return std::nullopt;
      }
    }

    kj::AutoCloseFd fd(openat(objectsFd_, path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) {
      int error = errno;
      std::lock_guard<std::mutex> lock(mutex_);
      if (error == ENOENT) {
        // Deleted behind our back (by hand, or a rejection racing with us): forget it.
        forget(key);
      } else {
        ++stats_.readErrors;
      }
      ++stats_.misses;
      return std::nullopt;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.readErrors;
      ++stats_.misses;
      return std::nullopt;
    }
    // put() never stores more than the budget: a larger file is from a larger budget of an
    // earlier run (or not ours); reading it would only cost memory.
    if (static_cast<uint64_t>(st.st_size) > budget_) {
      std::lock_guard<std::mutex> lock(mutex_);
      removeIfSame(key, path, st);
      ++stats_.evictions;
      ++stats_.misses;
      return std::nullopt;
    }

    std::string data;
    if (!readAll(fd, data, static_cast<size_t>(st.st_size))) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.readErrors;
      ++stats_.misses;
      return std::nullopt;
    }
    auto opened = openEnvelope(data, key);
    if (auto* error = std::get_if<EnvelopeError>(&opened)) {
      std::lock_guard<std::mutex> lock(mutex_);
      removeIfSame(key, path, st);
      ++stats_.rejected[static_cast<size_t>(*error)];
      ++stats_.misses;
      return std::nullopt;
    }
    std::string_view payload = std::get<std::string_view>(opened);
    size_t offset = static_cast<size_t>(payload.data() - data.data());
    data.erase(0, offset);  // the payload ends the envelope: drop the header in place

    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.hits;
      touch(key, static_cast<uint64_t>(st.st_size));
    }
    // The mtime carries the LRU order over a restart (the scan sorts by it). Not being able to
    // set it only makes the order after a restart less exact: ignored.
    static_cast<void>(futimens(fd, nullptr));
    return data;
  }

  bool put(const Key& key, std::string_view payload) override {
    std::string envelope = sealEnvelope(key, payload);
    uint64_t size = envelope.size();
    if (size > budget_) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.tooLarge;
      return false;
    }
    std::string hex = toHex(key);
    std::string subdir = hex.substr(0, 2);
    std::string path = subdir + "/" + hex;

    bool newSubdir = false;
    if (mkdirat(objectsFd_, subdir.c_str(), DIR_MODE) == 0) {
      newSubdir = true;
    } else if (errno != EEXIST) {
      return writeFailed();
    }

    // Write the whole envelope to a file of its own in tmp/ and make it durable before it gets
    // its name: after a crash, objects/ holds whole files only.
    std::string tmpName;
    kj::AutoCloseFd fd;
    for (int attempt = 0; attempt < TMP_NAME_ATTEMPTS && fd.get() < 0; ++attempt) {
      tmpName = hex + "." + std::to_string(getpid()) + "." + std::to_string(tmpCounter++);
      fd = kj::AutoCloseFd(openat(tmpFd_, tmpName.c_str(),
                                  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, FILE_MODE));
      if (fd.get() < 0 && errno != EEXIST)
        break;
    }
    if (fd.get() < 0)
      return writeFailed();
    if (!writeAll(fd, envelope) || fsync(fd) != 0) {
      fd = nullptr;
      unlinkat(tmpFd_, tmpName.c_str(), 0);
      return writeFailed();
    }
    fd = nullptr;

    {
      // The rename under the lock: eviction unlinks under it too, so the index and the files
      // change together (an eviction cannot delete a file a put has just renamed into place
      // and the put then index it). Renaming is a metadata operation, not a data write.
      std::lock_guard<std::mutex> lock(mutex_);
      if (renameat(tmpFd_, tmpName.c_str(), objectsFd_, path.c_str()) != 0) {
        int error = errno;
        unlinkat(tmpFd_, tmpName.c_str(), 0);
        ++stats_.writeErrors;
        errno = error;
        return false;
      }
      ++stats_.stored;
      touch(key, size);
      droppedDuringScan_.erase(key);
      evictToBudget();
    }

    // Make the new name durable: the 2-hex directory's entry, and that directory's own entry
    // in objects/ when this put created it.
    kj::AutoCloseFd subdirFd = openDirAt(objectsFd_, subdir.c_str());
    if (subdirFd.get() < 0 || fsync(subdirFd) != 0 || (newSubdir && fsync(objectsFd_) != 0)) {
      // The file is in place and every read verifies it; only its survival of a power cut is
      // in doubt, which the caller hears as "not stored".
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.writeErrors;
      return false;
    }
    return true;
  }

  bool contains(const Key& key) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return index_.find(key) != index_.end();
  }

  DiskCacheStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    DiskCacheStats out = stats_;
    out.entries = index_.size();
    out.bytes = bytes_;
    out.budgetBytes = budget_;
    out.scanned = scanned_;
    return out;
  }

  const std::string& directory() const override { return dir_; }

  void waitScanned() override {
    std::unique_lock<std::mutex> lock(mutex_);
    scannedChanged_.wait(lock, [this] { return scanned_; });
  }

private:
  struct Entry {
    uint64_t size;
    std::list<Key>::iterator position;  ///< in lru_
  };

  struct Found {
    Key key;
    uint64_t size;
    struct timespec mtime;
  };

  // Everything below that is marked "under mutex_" is only touched with mutex_ held.

  /// Records `key` (`size` bytes) as the most recently used entry. Under mutex_.
  void touch(const Key& key, uint64_t size) {
    auto it = index_.find(key);
    if (it == index_.end()) {
      lru_.push_back(key);
      index_.emplace(key, Entry{size, std::prev(lru_.end())});
      bytes_ += size;
      return;
    }
    bytes_ = bytes_ - it->second.size + size;
    it->second.size = size;
    lru_.splice(lru_.end(), lru_, it->second.position);
  }

  /// Drops `key` from the index (no file operation). Under mutex_.
  void forget(const Key& key) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      bytes_ -= it->second.size;
      lru_.erase(it->second.position);
      index_.erase(it);
    }
    if (!scanned_)
      droppedDuringScan_.insert(key);
  }

  /// Deletes the file at `path` if it is still the one described by `st` (a put may have
  /// replaced it with a good one since it was read), and forgets it. Under mutex_.
  void removeIfSame(const Key& key, const std::string& path, const struct stat& st) {
    struct stat now;
    if (fstatat(objectsFd_, path.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0) {
      forget(key);
      return;
    }
    if (now.st_dev != st.st_dev || now.st_ino != st.st_ino)
      return;
    if (unlinkat(objectsFd_, path.c_str(), 0) == 0 || errno == ENOENT)
      forget(key);
  }

  /// Deletes least recently used files until the total fits the budget; only once the scan
  /// has found every file (before that the total is not known). Under mutex_.
  void evictToBudget() {
    if (!scanned_)
      return;
    while (bytes_ > budget_ && !lru_.empty()) {
      Key victim = lru_.front();
      std::string path = objectPath(victim);
      if (unlinkat(objectsFd_, path.c_str(), 0) != 0 && errno != ENOENT) {
        // Cannot delete (an I/O error): keep it indexed, so the total stays true, and stop;
        // the next put tries again.
        ++stats_.writeErrors;
        return;
      }
      forget(victim);
      ++stats_.evictions;
    }
  }

  bool writeFailed() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.writeErrors;
    return false;
  }

  /// The start-up scan, on scanner_: lists the 256 subdirectories without the lock, then
  /// merges what it found into the index, oldest first, behind everything this process has
  /// already used.
  void scan() {
    std::vector<Found> found;
    uint64_t errors = 0;
    static constexpr char HEX[] = "0123456789abcdef";
    for (int i = 0; i < 256 && !stop_.load(std::memory_order_relaxed); ++i) {
      char name[3] = {HEX[i >> 4], HEX[i & 15], '\0'};
      kj::AutoCloseFd subdirFd = openDirAt(objectsFd_, name);
      if (subdirFd.get() < 0) {
        if (errno != ENOENT)
          ++errors;
        continue;
      }
      DirHandle dir = openDirStream(kj::mv(subdirFd));
      if (!dir) {
        ++errors;
        continue;
      }
      while (!stop_.load(std::memory_order_relaxed)) {
        errno = 0;
        struct dirent* entry = readdir(dir.get());
        if (entry == nullptr) {
          if (errno != 0)
            ++errors;
          break;
        }
        std::string_view entryName = entry->d_name;
        // Only names put() gives, in the directory put() gives them: anything else is not
        // ours to count or evict.
        std::optional<Key> key = keyFromHex(entryName);
        if (!key || entryName.substr(0, 2) != std::string_view(name, 2))
          continue;
        struct stat st;
        if (fstatat(dirfd(dir.get()), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
          if (errno != ENOENT)
            ++errors;
          continue;
        }
        if (!S_ISREG(st.st_mode))
          continue;
        found.push_back(Found{*key, static_cast<uint64_t>(st.st_size), st.st_mtim});
      }
    }
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
      return a.mtime.tv_sec != b.mtime.tv_sec ? a.mtime.tv_sec < b.mtime.tv_sec
                                              : a.mtime.tv_nsec < b.mtime.tv_nsec;
    });

    std::lock_guard<std::mutex> lock(mutex_);
    // Oldest first, each in front of everything get() and put() have touched since open():
    // those were used by this process, so more recently than any file's last use before it.
    auto usedSinceOpen = lru_.begin();
    for (const Found& file : found) {
      // A put or a hit during the scan indexed it already (with its current size), or a
      // rejection deleted it: either way the scan's view is out of date.
      if (index_.count(file.key) != 0 || droppedDuringScan_.count(file.key) != 0)
        continue;
      auto position = lru_.insert(usedSinceOpen, file.key);
      index_.emplace(file.key, Entry{file.size, position});
      bytes_ += file.size;
    }
    droppedDuringScan_.clear();
    stats_.readErrors += errors;
    scanned_ = true;
    evictToBudget();
    scannedChanged_.notify_all();
  }

  const std::string dir_;
  const uint64_t budget_;
  /// v<F>/lock, held (flock LOCK_EX) for the cache's lifetime: one process per directory. The
  /// descriptor is close-on-exec, so compile workers and executors never hold it.
  const kj::AutoCloseFd lockFd_;
  const kj::AutoCloseFd objectsFd_;  ///< v<F>/objects
  const kj::AutoCloseFd tmpFd_;      ///< v<F>/tmp

  mutable std::mutex mutex_;
  std::condition_variable scannedChanged_;
  std::unordered_map<Key, Entry, KeyHash> index_;  ///< under mutex_
  std::list<Key> lru_;                             ///< under mutex_; front = least recent
  uint64_t bytes_ = 0;                             ///< under mutex_
  bool scanned_ = false;                           ///< under mutex_
  /// Keys deleted before the scan ended, which the scan may still have seen. Under mutex_.
  std::unordered_set<Key, KeyHash> droppedDuringScan_;
  DiskCacheStats stats_;  ///< the counters; under mutex_

  std::atomic<bool> stop_{false};
  std::thread scanner_;  ///< last: started after everything it reads is built
};

std::string openError(const std::string& dir, const std::string& call, const std::string& path,
                      int error) {
  return "cannot use " + dir + " as the cache directory: " + call + " " + path + ": " +
         errnoText(error) +
         "; set --cache-dir to a writable directory (or give rjitd's user write access to it)";
}

/// mkdir -p with DIR_MODE for the missing parts.
Problem makeDirectories(const std::string& dir) {
  for (size_t end = 1; end <= dir.size(); ++end) {
    if (end != dir.size() && dir[end] != '/')
      continue;
    std::string prefix = dir.substr(0, end);
    if (mkdir(prefix.c_str(), DIR_MODE) == 0 || errno == EEXIST)
      continue;
    int error = errno;
    struct stat st;
    if (stat(prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      continue;  // exists, but we may not create in its parent: fine
    return openError(dir, "mkdir", prefix, error);
  }
  return std::nullopt;
}

/// Creates (if needed) and opens `name` under `parentFd`, making a new entry durable.
std::variant<kj::AutoCloseFd, std::string>
openSubdir(const std::string& dir, int parentFd, const std::string& parentPath, const char* name) {
  std::string path = parentPath + "/" + name;
  if (mkdirat(parentFd, name, DIR_MODE) == 0) {
    if (fsync(parentFd) != 0)
      return openError(dir, "fsync", parentPath, errno);
  } else if (errno != EEXIST) {
    return openError(dir, "mkdir", path, errno);
  }
  kj::AutoCloseFd fd = openDirAt(parentFd, name);
  if (fd.get() < 0)
    return openError(dir, "open", path, errno);
  return kj::mv(fd);
}

/// Takes v<F>/lock for this process (flock, exclusive, without waiting) and writes its pid
/// there, so that a second rjitd on the same directory is told who holds it. A lock, not a
/// pid file: it ends with the process however that ends (even SIGKILL), and a stale pid in
/// the file means nothing. Two processes on one directory would delete each other's writes
/// in progress (open() empties tmp/) and evict by two different accounts of its size.
std::variant<kj::AutoCloseFd, std::string> lockDirectory(const std::string& dir, int versionFd,
                                                         const std::string& versionPath) {
  std::string path = versionPath + "/lock";
  kj::AutoCloseFd fd(
      openat(versionFd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, FILE_MODE));
  if (fd.get() < 0)
    return openError(dir, "open", path, errno);
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR)
      continue;
    if (errno != EWOULDBLOCK)
      return openError(dir, "flock", path, errno);
    std::string holder;
    char buffer[32];
    ssize_t n = pread(fd, buffer, sizeof buffer - 1, 0);
    for (ssize_t i = 0; i < n && buffer[i] >= '0' && buffer[i] <= '9'; ++i)
      holder += buffer[i];
    return "cannot use " + dir + " as the cache directory: another process" +
           (holder.empty() ? std::string() : " (pid " + holder + ")") + " holds " + path +
           " (another rjitd using the same directory); give each rjitd its own --cache-dir "
           "(servers share objects through --shared-cache)";
  }
  std::string pid = std::to_string(getpid()) + "\n";
  // Only informative: a failure to record the pid leaves the lock held all the same.
  // (A named result: glibc's _FORTIFY_SOURCE marks pwrite warn_unused_result, which a cast to
  // void does not silence under GCC.)
  if (ftruncate(fd, 0) == 0) {
    ssize_t written = pwrite(fd, pid.data(), pid.size(), 0);
    static_cast<void>(written);
  }
  return kj::mv(fd);
}

/// Deletes what a crashed or killed predecessor left in tmp/.
Problem emptyTmp(const std::string& dir, int tmpFd, const std::string& tmpPath) {
  // A second descriptor for the stream: fdopendir takes the one it is given.
  kj::AutoCloseFd listFd = openDirAt(tmpFd, ".");
  if (listFd.get() < 0)
    return openError(dir, "open", tmpPath, errno);
  DirHandle list = openDirStream(kj::mv(listFd));
  if (!list)
    return openError(dir, "fdopendir", tmpPath, errno);
  while (true) {
    errno = 0;
    struct dirent* entry = readdir(list.get());
    if (entry == nullptr) {
      if (errno != 0)
        return openError(dir, "readdir", tmpPath, errno);
      return std::nullopt;
    }
    std::string_view name = entry->d_name;
    if (name == "." || name == "..")
      continue;
    if (unlinkat(tmpFd, entry->d_name, 0) != 0 && errno != ENOENT)
      return openError(dir, "unlink", tmpPath + "/" + std::string(name), errno);
  }
}

}  // namespace

std::variant<std::unique_ptr<DiskCache>, std::string> DiskCache::open(std::string dir,
                                                                      uint64_t budgetBytes) {
  while (dir.size() > 1 && dir.back() == '/')
    dir.pop_back();
  if (dir.empty())
    return std::string("the cache directory is empty; set --cache-dir to a writable directory");
  if (Problem problem = makeDirectories(dir))
    return *problem;
  kj::AutoCloseFd rootFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (rootFd.get() < 0)
    return openError(dir, "open", dir, errno);

  std::string versionName = "v" + std::to_string(STORED_FORMAT);
  std::string versionPath = dir + "/" + versionName;
  auto version = openSubdir(dir, rootFd, dir, versionName.c_str());
  if (auto* message = std::get_if<std::string>(&version))
    return *message;
  int versionFd = std::get<kj::AutoCloseFd>(version).get();
  // Before anything in the directory is touched: tmp/ may hold another rjitd's writes.
  auto lock = lockDirectory(dir, versionFd, versionPath);
  if (auto* message = std::get_if<std::string>(&lock))
    return *message;
  auto objects = openSubdir(dir, versionFd, versionPath, "objects");
  if (auto* message = std::get_if<std::string>(&objects))
    return *message;
  auto tmp = openSubdir(dir, versionFd, versionPath, "tmp");
  if (auto* message = std::get_if<std::string>(&tmp))
    return *message;
  kj::AutoCloseFd tmpFd = kj::mv(std::get<kj::AutoCloseFd>(tmp));

  std::string tmpPath = versionPath + "/tmp";
  if (Problem problem = emptyTmp(dir, tmpFd, tmpPath))
    return *problem;
  // Existing directories say nothing about whether we may write: create and delete a file now,
  // so a read-only cache directory is an error at start-up, not a stream of failed writes.
  std::string probe = "probe." + std::to_string(getpid()) + "." + std::to_string(tmpCounter++);
  {
    kj::AutoCloseFd probeFd(openat(
        tmpFd, probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, FILE_MODE));
    if (probeFd.get() < 0)
      return openError(dir, "open", tmpPath + "/" + probe, errno);
  }
  if (unlinkat(tmpFd, probe.c_str(), 0) != 0)
    return openError(dir, "unlink", tmpPath + "/" + probe, errno);

  auto cache = std::make_unique<DiskCacheImpl>(
      std::move(dir), budgetBytes, kj::mv(std::get<kj::AutoCloseFd>(lock)),
      kj::mv(std::get<kj::AutoCloseFd>(objects)), kj::mv(tmpFd));
  cache->startScan();
  return std::unique_ptr<DiskCache>(std::move(cache));
}

}  // namespace rjitd::cache
