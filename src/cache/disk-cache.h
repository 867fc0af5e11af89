// SPDX-License-Identifier: MIT
// The disk tier of the object cache: content-addressed files under a directory, bounded by a
// byte budget with LRU eviction, crash-safe writes and verified reads. Blocking: every method
// but stats() does file I/O, so the daemon calls them on its cache I/O pool, never on the
// event loop. Thread-safe.
//
// Layout under the directory (`--cache-dir`):
//   v<STORED_FORMAT>/objects/<2 hex>/<64 hex>   one envelope (envelope.h) per key
//   v<STORED_FORMAT>/tmp/                        writes in progress (emptied at open)
//   v<STORED_FORMAT>/lock                        flock'd by the one process using it (its pid)
// A write goes to a temporary file in tmp/, is fsync'd, renamed into place, and the target
// directory is fsync'd: after a crash a key's file is either whole or absent. A leftover
// temporary file is deleted at the next open. Reads check the envelope against the key asked
// for; a file that fails is deleted and counted, and the caller recompiles. The index (key,
// size, last use) lives in memory; the order of last use survives a restart in the files'
// mtimes. A budget of 0 keeps nothing (and deletes what is there once the scan has ended).
// One process per directory, enforced: open() takes an exclusive lock on v<F>/lock (released
// when the cache is destroyed or the process ends) and fails, naming the holder's pid, while
// another holds it; only then does it empty tmp/.
#pragma once

#include "cache-key.h"
#include "envelope.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace rjitd::cache {

struct DiskCacheStats {
  uint64_t entries = 0;  ///< files known to the index
  uint64_t bytes = 0;    ///< their sizes on disk, summed
  uint64_t budgetBytes = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;       ///< get() calls that returned nothing, whatever the reason
  uint64_t evictions = 0;    ///< files deleted to fit the budget
  uint64_t stored = 0;       ///< files written
  uint64_t tooLarge = 0;     ///< payloads not stored: larger than the whole budget
  uint64_t writeErrors = 0;  ///< writes that failed (disk full, EIO): the object is just not kept
  uint64_t readErrors = 0;   ///< reads that failed for I/O reasons (not corruption)
  /// Files refused on read, by reason (index = EnvelopeError), and deleted.
  uint64_t rejected[6] = {};
  bool scanned = false;  ///< the start-up scan of existing files has finished
};

class DiskCache {
public:
  /// Creates `dir` (and parents, mode 0700) if needed, checks it is a writable directory,
  /// empties its tmp/, and starts the scan of existing files on a background thread: open()
  /// does not wait for a large cache to be read. Until the scan ends, get() still finds files
  /// that exist (it looks at the file, not only the index), and eviction waits for the scan.
  /// Fails while another process has the directory open (its lock file names the pid).
  /// The error names the directory, the failing call and errno's text, and says what to do.
  static std::variant<std::unique_ptr<DiskCache>, std::string> open(std::string dir,
                                                                    uint64_t budgetBytes);
  virtual ~DiskCache() = default;

  /// The verified payload stored for `key`, or nullopt (absent, corrupt or unreadable: a
  /// corrupt file is deleted and counted). A hit marks the entry most recently used (and
  /// touches the file's mtime, so the order survives a restart).
  virtual std::optional<std::string> get(const Key& key) = 0;

  /// Stores `payload` for `key` crash-safely, then evicts least recently used files until the
  /// total fits the budget. A payload larger than the whole budget is not stored. False when
  /// not stored (counted; logged by the caller).
  virtual bool put(const Key& key, std::string_view payload) = 0;

  /// Whether a file for `key` is in the index (for tests and probes; counts nothing).
  virtual bool contains(const Key& key) const = 0;

  virtual DiskCacheStats stats() const = 0;
  virtual const std::string& directory() const = 0;

  /// Blocks until the start-up scan has finished (tests; shutdown).
  virtual void waitScanned() = 0;
};

}  // namespace rjitd::cache
