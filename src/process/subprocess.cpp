// SPDX-License-Identifier: MIT
// Child processes for the benchmark and test programs (see subprocess.h).
#include "subprocess.h"

#include <kj/debug.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <string_view>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace rjitd::process {
namespace {

using Clock = std::chrono::steady_clock;

/// Milliseconds left until `deadline`, clamped to poll()'s range.
int msLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

std::vector<char*> cStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const auto& s : strings)
    out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

kj::AutoCloseFd openStream(const std::string& path, int flags) {
  int fd;
  KJ_SYSCALL(fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600), "a child's standard stream", path);
  return kj::AutoCloseFd(fd);
}

}  // namespace

bool ExitStatus::exited() const {
  return WIFEXITED(raw);
}

int ExitStatus::code() const {
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

std::string ExitStatus::describe() const {
  if (WIFEXITED(raw))
    return "exit " + std::to_string(WEXITSTATUS(raw));
  if (WIFSIGNALED(raw))
    return "killed by signal " + std::to_string(WTERMSIG(raw)) + " (" + strsignal(WTERMSIG(raw)) +
           ")";
  return "wait status " + std::to_string(raw);
}

std::vector<std::string>
environmentWith(const std::vector<std::pair<std::string, std::string>>& set,
                const std::vector<std::string>& unset) {
  std::vector<std::string> out;
  auto overridden = [&](std::string_view entry) {
    auto name = entry.substr(0, entry.find('='));
    for (const auto& [n, v] : set)
      if (n == name)
        return true;
    for (const auto& n : unset)
      if (n == name)
        return true;
    return false;
  };
  for (char** e = environ; *e != nullptr; ++e)
    if (!overridden(*e))
      out.emplace_back(*e);
  for (const auto& [name, value] : set)
    out.push_back(name + "=" + value);
  return out;
}

std::unique_ptr<Subprocess> Subprocess::spawn(const SpawnOptions& options) {
  KJ_REQUIRE(!options.argv.empty(), "spawn: empty argv");
  for (const auto& [from, to] : options.inheritFds) {
    KJ_REQUIRE(to >= 3, "spawn: inheritFds may not replace the standard streams", to);
    // The copies are made in order: a target that is another entry's source would be
    // overwritten before it is copied. Refused rather than reordered (no caller needs it).
    for (const auto& [otherFrom, otherTo] : options.inheritFds)
      KJ_REQUIRE(otherFrom == otherTo || otherFrom != to,
                 "spawn: an inheritFds target is another entry's source", to);
  }
  // Open the standard streams here (CLOEXEC) and dup2 them in the child: dup2 clears CLOEXEC
  // on the copies, so the child inherits exactly fds 0-2 (and the inheritFds, the same way).
  int outFlags = O_WRONLY | O_CREAT | (options.appendOutput ? O_APPEND : O_TRUNC);
  kj::AutoCloseFd in = openStream(options.stdinPath, O_RDONLY);
  kj::AutoCloseFd out = openStream(options.stdoutPath, outFlags);
  kj::AutoCloseFd err;
  if (options.stderrPath == options.stdoutPath) {
    int fd;
    KJ_SYSCALL(fd = ::fcntl(out.get(), F_DUPFD_CLOEXEC, 3));
    err = kj::AutoCloseFd(fd);
  } else {
    err = openStream(options.stderrPath, outFlags);
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  KJ_DEFER(posix_spawn_file_actions_destroy(&actions));
  posix_spawn_file_actions_adddup2(&actions, in.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.get(), STDERR_FILENO);
  // Also right when from == to: glibc then clears CLOEXEC on the fd (POSIX issue 411).
  for (const auto& [from, to] : options.inheritFds)
    posix_spawn_file_actions_adddup2(&actions, from, to);
  // A fresh signal state: gtest, kj or the client library may block signals in this process.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  KJ_DEFER(posix_spawnattr_destroy(&attr));
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  auto argv = cStrings(options.argv);
  auto env = cStrings(options.env);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), env.data());
  if (rc != 0)
    KJ_FAIL_SYSCALL("posix_spawn", rc, options.argv[0]);
  // The child is not reaped until wait(), so its pid cannot be reused before pidfd_open. (The
  // raw syscall: glibc 2.36's <sys/pidfd.h> lacks extern "C", so its wrapper does not link.)
  int pidFd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidFd < 0) {
    int error = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    KJ_FAIL_SYSCALL("pidfd_open", error, options.argv[0]);
  }
  return std::make_unique<Subprocess>(Key{}, pid, kj::AutoCloseFd(pidFd));
}

Subprocess::~Subprocess() {
  if (!status_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void Subprocess::signal(int sig) {
  if (!status_)
    ::kill(pid_, sig);
}

std::optional<ExitStatus> Subprocess::wait(std::chrono::milliseconds bound) {
  if (status_)
    return status_;
  auto deadline = Clock::now() + bound;
  for (;;) {
    pollfd p{pidFd_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, msLeft(deadline));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return std::nullopt;
    break;
  }
  int raw = 0;
  pid_t r;
  do
    r = ::waitpid(pid_, &raw, 0);
  while (r < 0 && errno == EINTR);
  if (r == pid_)
    status_ = ExitStatus{raw};
  return status_;
}

ExitStatus Subprocess::terminate(std::chrono::milliseconds grace, bool* killed) {
  signal(SIGTERM);
  std::optional<ExitStatus> status = wait(grace);
  if (killed != nullptr)
    *killed = !status;
  if (!status) {
    signal(SIGKILL);
    // SIGKILL cannot be caught: the child is gone as soon as the kernel has torn it down.
    status = wait(std::chrono::hours(1));
  }
  return status.value_or(ExitStatus{-1});
}

std::optional<CommandResult> runCommand(const std::vector<std::string>& argv,
                                        std::vector<std::string> env, const std::string& capture,
                                        std::chrono::milliseconds bound) {
  SpawnOptions options;
  options.argv = argv;
  options.env = std::move(env);
  options.stdoutPath = capture + ".out";
  options.stderrPath = capture + ".err";
  auto child = Subprocess::spawn(options);
  std::optional<ExitStatus> status = child->wait(bound);
  if (!status)
    return std::nullopt;  // the destructor kills it
  return CommandResult{*status, readWholeFile(options.stdoutPath),
                       readWholeFile(options.stderrPath)};
}

std::string readWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace rjitd::process
