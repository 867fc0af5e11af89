// SPDX-License-Identifier: MIT
// Child processes for integration tests: any program as an RAII handle (ChildProcess), and the
// real rjitd started standalone, through systemd-socket-activate, or on a listening socket the
// harness holds as systemd does (DaemonProcess).
#pragma once

#include "temp-dir.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace rjit::test {

/// Upper bound for anything a test waits on (readiness, process exit). A safety net against a
/// hung component, never an assertion on speed: reaching it is reported as a failure.
inline constexpr std::chrono::milliseconds SAFETY_BOUND{60'000};

/// A file descriptor owned from birth; closed on destruction.
class UniqueFd final {
public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset();

private:
  int fd_ = -1;
};

/// How a child ended: the raw waitpid() status with readable accessors.
struct ExitStatus {
  int raw = 0;

  bool exited() const;
  int code() const;  ///< exit code; -1 when killed by a signal
  bool exitedWith(int expected) const { return exited() && code() == expected; }
  /// "exit status 0", "killed by signal 9 (Killed)"
  std::string describe() const;
};

/// The current environment with `set` added or replaced and every name in `unset` removed.
std::vector<std::string>
environmentWith(const std::vector<std::pair<std::string, std::string>>& set,
                const std::vector<std::string>& unset = {});

struct SpawnOptions {
  std::vector<std::string> argv;  ///< argv[0] is the program path (no PATH search)
  std::vector<std::string> env;   ///< complete environment, "NAME=value"
  std::string stdinPath = "/dev/null";
  std::string stdoutPath = "/dev/null";  ///< created or truncated
  std::string stderrPath = "/dev/null";  ///< created or truncated; may equal stdoutPath
  /// Append to stdoutPath/stderrPath instead of truncating them.
  bool appendOutput = false;
  /// Further descriptors the child inherits: {fd in this process, fd number in the child}.
  /// Child numbers must be 3 or more and distinct; the fds here may be CLOEXEC.
  std::vector<std::pair<int, int>> inheritFds;
};

/// A spawned child process. The destructor kills (SIGKILL) and reaps a child still running, so
/// a failing test never leaves processes behind.
class ChildProcess final {
public:
  /// Starts the program (posix_spawn; the child inherits only fds 0-2 and
  /// options.inheritFds). On failure records a GoogleTest failure saying why and returns
  /// nullptr.
  static std::unique_ptr<ChildProcess> spawn(const SpawnOptions& options);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  /// Readable once the child has exited (a pidfd), for poll() together with other events.
  int exitFd() const { return pidFd_.get(); }
  /// Sends a signal unless the child has been reaped already.
  void signal(int sig);
  /// Waits at most `bound` for the child to exit and reaps it. nullopt: still running.
  std::optional<ExitStatus> wait(std::chrono::milliseconds bound = SAFETY_BOUND);
  /// The status once reaped.
  const std::optional<ExitStatus>& status() const { return status_; }

private:
  struct Key {
    explicit Key() = default;
  };

public:
  /// Only spawn() constructs (the key is private).
  ChildProcess(Key, pid_t pid, UniqueFd pidFd) : pid_(pid), pidFd_(std::move(pidFd)) {}

private:
  pid_t pid_;
  UniqueFd pidFd_;
  std::optional<ExitStatus> status_;
};

/// What ran a program to completion produced.
struct CommandResult {
  ExitStatus status;
  std::string out;  ///< everything written to stdout
  std::string err;  ///< everything written to stderr
};

/// Runs `argv` with `env` (default: this process's environment) to completion, capturing its
/// output in files under `dir`. Records a failure (and returns exit status 127 with the reason in
/// `err`) when it cannot be started or does not exit within SAFETY_BOUND.
CommandResult runCommand(const TempDir& dir, const std::vector<std::string>& argv,
                         std::optional<std::vector<std::string>> env = std::nullopt);

enum class DaemonMode : uint8_t {
  Standalone,       ///< rjitd --listen unix:PATH, readiness by sd_notify READY=1
  SocketActivated,  ///< systemd-socket-activate -l PATH rjitd: LISTEN_FDS, exec on first connect
  /// The harness creates, binds and listens on the Unix socket itself and holds it for the
  /// daemon's lifetime, as systemd does for rjitd.socket; rjitd gets it as fd 3 with
  /// LISTEN_FDS=1 and its own pid in LISTEN_PID, and can be stopped and started again on it
  /// (stop(), startAgain()) while connections wait in its queue. Unix only (no tcpPort).
  HeldSocket,
};

/// "standalone" / "socket_activated" / "held_socket" (valid in GoogleTest parameter names).
const char* daemonModeName(DaemonMode mode);

struct DaemonOptions {
  DaemonMode mode = DaemonMode::Standalone;
  /// Appended to rjitd's command line, e.g. {"--max-module-bytes", "4096"}.
  std::vector<std::string> extraArgs;
  /// Nonzero: rjitd also serves tcp:127.0.0.1:PORT (see freeTcpPort()).
  uint16_t tcpPort = 0;
  std::string logLevel = "debug";
};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed): rjitd
/// cannot report an ephemeral port it picked itself. Returns 0 (with a failure) on error.
uint16_t freeTcpPort();

/// The real rjitd (path from $RJITD_BIN) in a private temporary directory, with its stderr in a
/// log file there. Standalone and held-socket: start() returns once rjitd has sent READY=1 to a
/// notify socket the harness owns. Socket-activated: systemd-socket-activate owns the listening
/// socket and execs rjitd (same pid) on the first connection; start() returns once that socket
/// is listening.
/// The destructor kills a daemon still running and, if the test has failed, prints its log.
class DaemonProcess final {
public:
  /// Records a failure carrying the daemon's log and returns nullptr when the daemon cannot be
  /// started or never becomes ready within SAFETY_BOUND.
  static std::unique_ptr<DaemonProcess> start(DaemonOptions options = {});
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  /// "unix:/tmp/rjit-test-XXXXXX/rjitd.sock"
  const std::string& endpoint() const { return endpoint_; }
  const std::string& socketPath() const { return socketPath_; }
  /// "tcp:127.0.0.1:PORT", or "" without TCP.
  std::string tcpEndpoint() const;
  DaemonMode mode() const { return options_.mode; }
  /// rjitd's pid (socket-activated: systemd-socket-activate's, which rjitd replaces by exec).
  pid_t pid() const { return child_->pid(); }
  const TempDir& dir() const { return dir_; }
  /// Everything rjitd wrote to stderr so far.
  std::string log() const;

  /// Waits (bounded) until rjitd has sent READY=1. Standalone daemons already have; a
  /// socket-activated one sends it after the first connection made it start. Records a failure
  /// and returns false if the daemon exits or the bound passes first.
  bool waitReady();
  /// Waits (bounded) until rjitd has sent STOPPING=1: it has seen SIGTERM and refuses new
  /// requests from then on. Records a failure and returns false if the daemon exits or the
  /// bound passes first.
  bool waitStopping();
  /// SIGTERM, then waits (bounded; SIGKILL and a recorded failure past SAFETY_BOUND) for exit.
  ExitStatus stop();
  /// HeldSocket only, after stop(): starts a new rjitd on the same held socket (its log goes on
  /// in the same file) and returns once it has sent READY=1. Records a failure and returns
  /// false when it cannot start or never becomes ready.
  bool startAgain();
  bool running() const { return !child_->status().has_value(); }

private:
  struct Key {
    explicit Key() = default;
  };

public:
  /// Only start() constructs (the key is private).
  DaemonProcess(Key, DaemonOptions options);

private:
  bool launch();
  bool bindHeldSocket();
  bool waitListening();
  /// Reads rjitd's notifications until one carries `assignment` ("READY=1") and `seen` is set.
  bool waitNotified(const std::string& assignment, bool& seen);

  DaemonOptions options_;
  TempDir dir_;
  std::string socketPath_;
  std::string endpoint_;
  std::string logPath_;
  UniqueFd notifyFd_;
  UniqueFd heldSocket_;  ///< HeldSocket: the listening socket, ours for the daemon's lifetime
  unsigned launches_ = 0;
  bool ready_ = false;
  bool stopping_ = false;
  std::unique_ptr<ChildProcess> child_;
};

}  // namespace rjit::test
