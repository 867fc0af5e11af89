// SPDX-License-Identifier: MIT
// The protocol between rjitd and rjitd-launcher, the relay that starts aarch64 executors
// outside rjitd's MemoryDenyWriteExecute (units/rjitd-launcher@.service, docs/OPERATIONS.md
// "aarch64 executors"): one request with the executor's five descriptors, reports back.
#pragma once

#include <cstdint>

namespace rjitd::launcher {

/// "RJL1" in memory order: the first field of every record either side sends.
constexpr uint32_t MAGIC = 0x314c4a52;

/// The one message rjitd sends on a new connection, with exactly DESCRIPTORS descriptors in an
/// SCM_RIGHTS message: the executor's fds 0..4 of ipc/executor/executor.capnp, in that order.
/// The emulator and the guest executor are not in it: the relay's unit names them.
struct Request {
  uint32_t magic = MAGIC;
  uint32_t reserved = 0;     ///< 0
  uint64_t memoryBytes = 0;  ///< --executor-memory (the guest's; the launcher adds qemu's)
  uint64_t outputBytes = 0;  ///< --executor-output
  uint64_t cpuSeconds = 0;   ///< RLIMIT_CPU
  uint64_t openFiles = 0;    ///< RLIMIT_NOFILE
};
static_assert(sizeof(Request) == 40);

constexpr int DESCRIPTORS = 5;

/// What the relay sends back: Started once the executor is spawned (value: its pid, in the
/// relay's pid namespace; for logs), then Ended once it has been reaped (value: its waitpid()
/// status), after which the relay exits. Failed (value: an errno) instead of both when it could
/// not be spawned.
struct Report {
  enum Kind : uint32_t { Started = 1, Ended = 2, Failed = 3 };
  uint32_t magic = MAGIC;
  uint32_t kind = 0;
  int32_t value = 0;
  uint32_t reserved = 0;
};
static_assert(sizeof(Report) == 16);

/// The one byte rjitd may send after its request: SIGKILL the executor (the deadline, a
/// drain). Closing the connection does the same: no executor outlives its connection.
constexpr char KILL = 'K';

/// Bounds the relay holds a request to (rjitd's own options stay well inside them).
constexpr uint64_t MIN_MEMORY_BYTES = 16ull << 20;
constexpr uint64_t MAX_OPEN_FILES = 1u << 20;

}  // namespace rjitd::launcher
