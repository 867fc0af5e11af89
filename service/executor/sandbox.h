// SPDX-License-Identifier: MIT
// The executor's sandbox, entered once before any user code runs: rlimits, an unprivileged
// user, namespaces where the host allows them, no new privileges, and a seccomp allow-list.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>

namespace rjitd::executor {

/// Threads an executor may start beyond the tasks its user already has when it starts
/// (RLIMIT_NPROC, which the kernel counts per user): a thread bomb ends in EAGAIN from
/// pthread_create, not in a host (or a unit's TasksMax) out of tasks. With rjitd's defaults (64
/// executors) executors hold at most 64 * 32 tasks of their own. A cgroup per executor
/// (pids.max) would bound each exactly; that needs a delegated cgroup (not yet).
constexpr uint64_t EXECUTOR_TASKS = 32;

/// Address space qemu-user itself needs besides its guest's (RLIMIT_AS counts the host process):
/// its translation buffer, its own heap and threads. Measured with qemu 7.2 running the idle
/// aarch64 rjitd-executor: VmPeak 256-312 MiB (qemu-aarch64-static), 298-322 MiB
/// (qemu-aarch64); about 1.6 times that, so that the guest's allocations, not qemu's, meet the
/// limit first.
constexpr uint64_t EMULATOR_ADDRESS_SPACE = 512ull << 20;

/// The launcher profile (docs/OPERATIONS.md "aarch64 executors"): the sandbox is entered on the
/// host by the x86_64 executor, which then executes the emulator with the guest executor, so
/// that the filter sees the emulator's host system calls (qemu-user refuses a guest's seccomp).
struct EmulatorFiles {
  std::string emulator;  ///< qemu-user (qemu-aarch64-static), executed once after the sandbox
  std::string guest;     ///< the guest's rjitd-executor, which the emulator reads at start
};

/// What the sandbox limits. A limit of RLIM_INFINITY leaves that resource unlimited (tests).
struct SandboxOptions {
  uint64_t memoryBytes = 0;  ///< RLIMIT_AS: address space, reservations included
  uint64_t outputBytes = 0;  ///< RLIMIT_FSIZE: a write past it raises SIGXFSZ (default action)
  uint64_t cpuSeconds = 0;   ///< RLIMIT_CPU soft limit (SIGXCPU), hard one second later (SIGKILL)
  uint64_t openFiles = 0;    ///< RLIMIT_NOFILE
  /// Switch to this user and group (dropping supplementary groups) first; rjitd passes them
  /// only when it runs as root.
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  /// Set: the launcher profile for `emulator`. memoryBytes is then the emulator's whole limit
  /// (the guest's plus EMULATOR_ADDRESS_SPACE).
  std::optional<EmulatorFiles> emulator;
};

/// What applySandbox could not do; the process must not run user code then.
struct SandboxError {
  std::string message;  ///< what failed and why, e.g. "setuid(65534): operation not permitted"
};

/// Applies, in this order: setgroups/setgid/setuid when asked; rlimits (RLIMIT_CORE 0 too);
/// unshare of user, network, IPC and UTS namespaces (skipped where the host refuses them);
/// PR_SET_DUMPABLE 0; PR_SET_NO_NEW_PRIVS 1; the seccomp filter (sandboxSyscalls()), last, so
/// that nothing after it needs a system call it refuses. A forbidden system call then raises
/// SIGSYS (si_syscall names it), except clone3, which fails with ENOSYS so that glibc creates
/// threads with clone. Must be called while the process has one thread (unshare of a user
/// namespace requires it). Returns nullopt on success; on failure the process may be partly
/// sandboxed and must exit.
std::optional<SandboxError> applySandbox(const SandboxOptions& options);

/// The system calls the filter allows without conditions, by name (for the docs and tests).
/// Besides these: clone with CLONE_THREAD; kill, tgkill and tkill to this process only; ioctl
/// FIOCLEX, FIONCLEX, FIONBIO, FIONREAD and TCGETS; prlimit64 reading only; fcntl but
/// F_SETOWN, F_SETSIG, F_SETLEASE, F_NOTIFY and F_SETFL with O_ASYNC.
const char* const* sandboxSyscalls();

/// What the launcher profile allows beyond sandboxSyscalls(), without conditions (for the docs
/// and tests). Besides these: openat with read-only flags (no O_WRONLY, O_RDWR, O_CREAT,
/// O_TRUNC), prlimit64 of RLIMIT_CORE, prctl PR_SET_DUMPABLE 0 and PR_GET_NO_NEW_PRIVS. Which
/// files can be opened and executed at all is then decided by Landlock: the emulator (read,
/// execute), the guest executor (read) and nothing else; applySandbox fails on a kernel
/// without Landlock rather than run user code that could read every file its user can.
const char* const* emulatorSyscalls();

}  // namespace rjitd::executor
