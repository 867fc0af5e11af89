// SPDX-License-Identifier: MIT
// The one page rjitd and an executor both map (fd 4 of the executor, ipc/executor/executor.capnp):
// the executor's phase, and what its fatal-signal handler saw, so that rjitd can name a death
// (a crash in user code, memory exhaustion, a forbidden system call) after the process is gone.
// Written only with async-signal-safe stores; rjitd reads it after waitpid.
#pragma once

#include <atomic>
#include <cstdint>

namespace rjitd::executor {

struct StatusPage {
  static constexpr uint32_t MAGIC = 0x726a6578;  // "rjex"
  enum Phase : uint32_t {
    Starting = 0,  ///< before the sandbox is complete: a death here is rjitd's fault (internal)
    Idle = 1,      ///< sandboxed, serving Control, no user code running
    UserCode = 2,  ///< in a call, a run, or a module's constructors/destructors
  };
  std::atomic<uint32_t> magic;
  std::atomic<uint32_t> phase;
  /// Set by the fatal-signal handler (0: the handler did not run).
  std::atomic<int32_t> signal;
  /// errno when the signal arrived: ENOMEM means an allocation had just failed.
  std::atomic<int32_t> errnoAtSignal;
  /// SIGSYS from the seccomp filter: the system call's number (si_syscall), else -1.
  std::atomic<int32_t> syscall;
  /// Set by the executor when a C++ allocation failed (std::bad_alloc reached terminate) or
  /// malloc returned NULL for lack of memory just before the death.
  std::atomic<uint32_t> outOfMemory;
  std::atomic<uint64_t> faultAddress;
};
static_assert(sizeof(StatusPage) <= 4096);
static_assert(std::atomic<uint32_t>::is_always_lock_free &&
              std::atomic<uint64_t>::is_always_lock_free);

}  // namespace rjitd::executor
