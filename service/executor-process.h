// SPDX-License-Identifier: MIT
// One executor process (service/executor/, docs/OPERATIONS.md "Executors") as rjitd sees it:
// spawned with its stdio memfds, its channel and its status page (ipc/executor/executor.capnp),
// served rjitd's bootstrap and driven through its `Control` bootstrap on that channel, watched
// for its exit without blocking the event loop, killed on demand and reaped; plus the pure
// function that names a death (classifyDeath), which execute-service answers with.
#pragma once

#include "compiled-object.h"
#include "metrics.h"

#include <capnp/rpc-twoparty.h>
#include <chrono>
#include <cstdint>
#include <executor.capnp.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <variant>
#include <vector>

namespace rjitd::service {

struct DaemonState;

/// Executors for a target of another architecture than rjitd's (docs/OPERATIONS.md "aarch64
/// executors"): rjitd starts its own rjitd-executor as the launcher, which enters the sandbox on
/// the host and executes `emulator` with `guest`.
struct EmulatedTarget {
  std::string triple;    ///< the target's canonical triple (TargetName::triple)
  std::string name;      ///< its short name, for messages ("aarch64")
  std::string guest;     ///< that architecture's rjitd-executor (--aarch64-executor)
  std::string emulator;  ///< qemu-user for it (--qemu-aarch64)
  /// Set: executors of this target are started by the relay listening on this Unix socket
  /// (--aarch64-launcher; units/rjitd-launcher.socket), outside rjitd's MemoryDenyWriteExecute,
  /// and the relay's unit names the emulator and the guest.
  std::string launcher;
  /// Empty when executors of this target can run here; else what is missing, which a request
  /// for this target is answered with (and rjitd logs at start).
  std::string unavailable;
};

/// How executors are started (rjitd's options; fixed while rjitd runs).
struct ExecutorConfig {
  std::string path;                   ///< the rjitd-executor binary
  uint64_t memoryBytes = 1ull << 30;  ///< RLIMIT_AS (--executor-memory)
  uint64_t outputBytes = 8ull << 20;  ///< RLIMIT_FSIZE, and what rjitd reads (--executor-output)
  /// RLIMIT_CPU, a backstop behind the deadlines rjitd enforces: over an executor's whole life.
  uint64_t cpuSeconds = 600;
  uint64_t openFiles = 1024;         ///< RLIMIT_NOFILE
  std::optional<uint32_t> uid, gid;  ///< set when rjitd runs as root (--executor-user)
  /// The foreign targets rjitd knows how to execute (aarch64 on an x86_64 host).
  std::vector<EmulatedTarget> emulated;
};

/// The foreign targets this build of rjitd can execute and whether it can here: aarch64 on an
/// x86_64 host, its executor `guest` ("" = aarch64/rjitd-executor next to `executorPath`, the
/// installed layout) under `emulator` ("" = the first of /usr/bin/qemu-aarch64-static and
/// /usr/bin/qemu-aarch64 that exists). Checks the files and the kernel's Landlock (the
/// launcher's sandbox needs it) and says in `unavailable` what is missing. With `launcher` (a
/// Unix socket path) the relay behind it starts them: rjitd then checks none of this, and its
/// own MemoryDenyWriteExecute does not matter.
std::vector<EmulatedTarget> findEmulatedTargets(const std::string& executorPath,
                                                const std::string& guest,
                                                const std::string& emulator,
                                                const std::string& launcher = "");

/// A copy of the status page (ipc/executor/status-page.h) taken after the process died.
struct StatusSnapshot {
  bool valid = false;  ///< the executor wrote its magic (it got as far as mapping the page)
  uint32_t phase = 0;  ///< executor::StatusPage::Phase
  int32_t signal = 0;
  int32_t errnoAtSignal = 0;
  int32_t syscall = -1;
  bool outOfMemory = false;
  uint64_t faultAddress = 0;
  /// The executor ran under qemu (not a field of the page: ExecutorProcess knows it).
  bool emulated = false;
};

/// How a run ended normally: main returned or exit() was called (`signal` 0), or the program
/// died of a signal no limit of rjitd's raised (abort(), a crash).
struct RunEnd {
  int exitStatus = 0;
  int signal = 0;
  std::string signalName;  ///< "SIGSEGV"; "" for an exit
};

/// "SIGSEGV", "SIGABRT", ...; "signal 42" for one without a name.
std::string signalName(int signal);

/// "socket", "openat", ...; "system call 41" when libseccomp does not know the number.
std::string syscallName(int number);

/// Names the death of an executor during a call (or a load, whose constructors are user code)
/// from its waitpid() status, its status page and whether rjitd killed it for the deadline.
/// `what` names the function or module for the message ("add", "module m.ll"). Every death is
/// a Failure: timeout, exited (exitStatus), outputLimit (SIGXFSZ), sandboxViolation (SIGSYS:
/// the page's system call), outOfMemory (page flag or ENOMEM at the signal), crashed (signal),
/// internal for a death before the sandbox was complete (phase Starting) or an unexplained one.
Failure classifyDeath(int waitStatus, const StatusSnapshot& page, bool deadline,
                      std::string_view what);

/// The end of a run: RunEnd for an exit or a signal of the program's own; a Failure (as
/// classifyDeath) for the deadline, a flood of output, a forbidden system call, memory
/// exhaustion or a death before the program started.
std::variant<RunEnd, Failure> classifyRunEnd(int waitStatus, const StatusSnapshot& page,
                                             bool deadline, std::string_view what);

/// What a call wrote to its stdout and stderr (at most ExecutorConfig::outputBytes each).
struct ExecutorOutput {
  std::string out, err;
};

/// One executor process and its channel. Lives on the event-loop thread. The destructor kills
/// (SIGKILL) and reaps a process still running: no executor outlives its owner.
class ExecutorProcess final {
public:
  /// Spawns `config.path` with the fds 0..4 of ipc/executor/executor.capnp and an empty
  /// environment, serves rjitd's bootstrap (newBootstrap(state, peer)) on the channel, and takes
  /// the executor's Control. With `emulated`, config.path is the launcher of that target's
  /// executor under qemu (the pid is then qemu's, after the launcher's exec); with
  /// `emulated->launcher`, the relay there spawns it instead, and reports its end (the pid is
  /// then the relay's figure, for logs, and 0 until it has reported it). Throws (a fault inside
  /// rjitd) when the process cannot be started.
  static kj::Own<ExecutorProcess> start(const ExecutorConfig& config,
                                        const EmulatedTarget* emulated, DaemonState& state,
                                        kj::LowLevelAsyncIoProvider& lowLevel,
                                        kj::UnixEventPort& eventPort,
                                        capnp::ReaderOptions readerOptions, std::string peer);
  ~ExecutorProcess() noexcept(false);
  ExecutorProcess(const ExecutorProcess&) = delete;
  ExecutorProcess& operator=(const ExecutorProcess&) = delete;

  proto::executor::Control::Client& control() { return controlCap; }
  pid_t pid() const { return processId; }

  /// Resolves once the process has exited and been reaped (waitStatus() is then set). Watches a
  /// pidfd: the event loop never waits in waitpid.
  kj::Promise<void> exited() { return exitWatch.addBranch(); }
  /// False once reaped or killed: a killed process is never given another request.
  bool alive() const { return !status && !killed; }
  /// The waitpid() status once reaped.
  std::optional<int> waitStatus() const { return status; }
  /// SIGKILL, unless already reaped; `forDeadline` remembers that rjitd killed it for a deadline.
  void kill(bool forDeadline);
  bool killedForDeadline() const { return deadlineKill; }
  /// The status page as it is now (read after the death for classifyDeath).
  StatusSnapshot snapshot() const;

  /// Empties the stdout and stderr memfds (before a call).
  void clearOutput();
  /// What the process wrote to stdout and stderr since clearOutput(), at most `limit` bytes each.
  /// An emulated executor's death by a signal leaves qemu's own report ("qemu: uncaught target
  /// signal 11 ...") at the end of stderr: it is not the code's output and is left out.
  ExecutorOutput readOutput(uint64_t limit) const;
  /// Makes `bytes` the process's standard input, rewound (before a run).
  void setInput(kj::ArrayPtr<const kj::byte> bytes);

private:
  struct Key {
    explicit Key() = default;
  };

public:
  /// Only start() constructs (the key is private).
  ExecutorProcess(Key, pid_t pid, kj::AutoCloseFd pidFd, kj::AutoCloseFd stdinFd,
                  kj::AutoCloseFd stdoutFd, kj::AutoCloseFd stderrFd, kj::AutoCloseFd pageFd,
                  void* page, kj::UnixEventPort& eventPort);

private:
  kj::Promise<void> watchExit();
  /// waitpid(WNOHANG) once the pidfd says the process ended.
  void reap();
  /// Reads the relay's reports (launcher-protocol.h) once its connection is readable.
  void readReports();
  /// Records the process's end (its wait status).
  void ended(int raw);

  pid_t processId;
  /// A pidfd of the process; for a relayed one, the connection to its relay (which reports its
  /// end, kills it on request, and kills it when the connection closes).
  kj::AutoCloseFd pidFd, stdinFd, stdoutFd, stderrFd, pageFd;
  void* page;  ///< the status page, mapped shared (one page)
  std::optional<int> status;
  bool deadlineKill = false;
  bool killed = false;
  bool emulated = false;  ///< qemu's process (set by start())
  bool relayed = false;   ///< started by the launcher relay (set by start())
  std::string reports;    ///< a relay's report read in part
  /// The executor shook hands with rjitd: it was sandboxed by then (it sandboxes itself before
  /// it speaks), so user code, which can write the status page, cannot pass a later death off as
  /// one in start-up (phase Starting). Shared with the bootstrap's hello hook.
  std::shared_ptr<bool> greeted = std::make_shared<bool>(false);
  kj::UnixEventPort& eventPort;
  kj::UnixEventPort::FdObserver observer;
  kj::ForkedPromise<void> exitWatch;
  /// Counts the process in rjitd_executors until it is reaped (set by start()).
  metrics::Metrics* metrics = nullptr;
  // The channel: declared after the fds so that it is torn down first.
  kj::Own<kj::AsyncCapabilityStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  proto::executor::Control::Client controlCap{nullptr};
};

}  // namespace rjitd::service
