// SPDX-License-Identifier: MIT
// Child processes for integration tests: any program as an RAII handle (ChildProcess), and the
// real rjitd started standalone, through systemd-socket-activate, or on a listening socket the
// harness holds as systemd does (DaemonProcess).
#pragma once

#include "subprocess.h"
#include "temp-dir.h"

#include <kj/io.h>

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

// The child-process runner is the one bench/ uses too (src/process).
namespace process = rjitd::process;
using process::environmentWith;
using process::ExitStatus;
using process::SpawnOptions;
/// What ran a program to completion produced.
using CommandResult = process::CommandResult;

/// process::Subprocess as tests use it: a failure to start is a recorded GoogleTest failure
/// (spawn() returns nullptr) rather than an exception, and waits default to SAFETY_BOUND. The
/// destructor kills (SIGKILL) and reaps a child still running, so a failing test never leaves
/// processes behind.
class ChildProcess final {
public:
  static std::unique_ptr<ChildProcess> spawn(const SpawnOptions& options);
  explicit ChildProcess(std::unique_ptr<process::Subprocess> child) : child_(std::move(child)) {}
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return child_->pid(); }
  /// Readable once the child has exited (a pidfd), for poll() together with other events.
  int exitFd() const { return child_->exitFd(); }
  /// Sends a signal unless the child has been reaped already.
  void signal(int sig) { child_->signal(sig); }
  /// Waits at most `bound` for the child to exit and reaps it. nullopt: still running.
  std::optional<ExitStatus> wait(std::chrono::milliseconds bound = SAFETY_BOUND) {
    return child_->wait(bound);
  }
  /// SIGTERM, then at most `grace` before SIGKILL (see process::Subprocess::terminate).
  ExitStatus terminate(std::chrono::milliseconds grace, bool* killed) {
    return child_->terminate(grace, killed);
  }
  /// The status once reaped.
  const std::optional<ExitStatus>& status() const { return child_->status(); }

private:
  std::unique_ptr<process::Subprocess> child_;
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
  /// The file log() reads (rjitd's stderr), for tests that wait for a line with inotify.
  const std::string& logPath() const { return logPath_; }
  /// The harness's socket that rjitd's NOTIFY_SOCKET names (its sd_notify messages arrive
  /// there; the harness reads it only while waiting for READY=1 or STOPPING=1).
  std::string notifySocketPath() const { return dir_.file("notify.sock"); }

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
  /// SIGKILL (no drain, no clean-up: a crash or an OOM kill), then waits (bounded) for exit.
  ExitStatus kill();
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
  kj::AutoCloseFd notifyFd_;
  kj::AutoCloseFd
      heldSocket_;  ///< HeldSocket: the listening socket, ours for the daemon's lifetime
  unsigned launches_ = 0;
  bool ready_ = false;
  bool stopping_ = false;
  std::unique_ptr<ChildProcess> child_;
};

}  // namespace rjit::test
