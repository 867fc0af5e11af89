// SPDX-License-Identifier: MIT
// Child processes for the benchmark and test programs: spawn with argv and environment, output
// to files, wait with a bound, kill on destruction (an RAII handle, like Sandstorm's
// Subprocess). Neither rjitd nor the client library links it.
#pragma once

#include <kj/io.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace rjitd::process {

/// How a child ended: the raw waitpid() status with readable accessors.
struct ExitStatus {
  int raw = 0;

  bool exited() const;
  int code() const;  ///< exit code; -1 when killed by a signal
  bool exitedWith(int expected) const { return exited() && code() == expected; }
  /// "exit 0", "killed by signal 9 (Killed)"
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
/// a failing caller never leaves processes behind. Used from one thread.
class Subprocess final {
public:
  /// Starts the program (posix_spawn with a fresh signal mask and dispositions; the child
  /// inherits only fds 0-2 and options.inheritFds). Throws a kj::Exception (FAILED) saying why
  /// when it cannot (no such program, a stream that cannot be opened).
  static std::unique_ptr<Subprocess> spawn(const SpawnOptions& options);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  /// Readable once the child has exited (a pidfd), for poll() together with other events.
  int exitFd() const { return pidFd_.get(); }
  /// Sends a signal unless the child has been reaped already.
  void signal(int sig);
  /// Waits at most `bound` (0: just looks) for the child to exit and reaps it. nullopt: still
  /// running.
  std::optional<ExitStatus> wait(std::chrono::milliseconds bound);
  /// SIGTERM, then waits at most `grace`; past it SIGKILL and reap. The status either way;
  /// `killed` (if given) says whether SIGKILL was needed.
  ExitStatus terminate(std::chrono::milliseconds grace, bool* killed = nullptr);
  /// The status once reaped.
  const std::optional<ExitStatus>& status() const { return status_; }

private:
  struct Key {
    explicit Key() = default;
  };

public:
  /// Only spawn() constructs (the key is private).
  Subprocess(Key, pid_t pid, kj::AutoCloseFd pidFd) : pid_(pid), pidFd_(kj::mv(pidFd)) {}

private:
  pid_t pid_;
  kj::AutoCloseFd pidFd_;
  std::optional<ExitStatus> status_;
};

/// What ran a program to completion produced.
struct CommandResult {
  ExitStatus status;
  std::string out;  ///< everything written to stdout
  std::string err;  ///< everything written to stderr
};

/// Runs `argv` with `env` to completion (stdin /dev/null), its stdout and stderr captured in
/// the files `capture`.out and `capture`.err. nullopt when it did not exit within `bound` (it is
/// killed then). Throws like Subprocess::spawn.
std::optional<CommandResult> runCommand(const std::vector<std::string>& argv,
                                        std::vector<std::string> env, const std::string& capture,
                                        std::chrono::milliseconds bound);

/// The whole content of `path` ("" if it cannot be read).
std::string readWholeFile(const std::string& path);

}  // namespace rjitd::process
