// SPDX-License-Identifier: MIT
// Child processes for integration tests (see daemon-process.h).
#include "daemon-process.h"

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <gtest/gtest.h>
#include <iostream>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace rjit::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string errnoText(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

std::string readWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

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

/// Whether /proc/net/unix lists `path` as a listening socket (flag __SO_ACCEPTCON): the file
/// appears at bind(), a moment before listen(), and a connect() in between would be refused.
bool unixSocketListening(const std::string& path) {
  std::ifstream in("/proc/net/unix");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string num, refCount, protocol, flags, type, state, inode, socketPath;
    fields >> num >> refCount >> protocol >> flags >> type >> state >> inode >> socketPath;
    if (socketPath == path && flags == "00010000")
      return true;
  }
  return false;
}

}  // namespace

UniqueFd::~UniqueFd() {
  reset();
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

void UniqueFd::reset() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
}

bool ExitStatus::exited() const {
  return WIFEXITED(raw);
}

int ExitStatus::code() const {
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

std::string ExitStatus::describe() const {
  if (WIFEXITED(raw))
    return "exit status " + std::to_string(WEXITSTATUS(raw));
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

std::unique_ptr<ChildProcess> ChildProcess::spawn(const SpawnOptions& options) {
  if (options.argv.empty()) {
    ADD_FAILURE() << "spawn: empty argv";
    return nullptr;
  }
  // Open the standard streams here (CLOEXEC) and dup2 them in the child: dup2 clears CLOEXEC
  // on the copies, so the child inherits exactly fds 0-2 (and the inheritFds, the same way).
  int outFlags = O_WRONLY | O_CREAT | O_CLOEXEC | (options.appendOutput ? O_APPEND : O_TRUNC);
  UniqueFd in(::open(options.stdinPath.c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd out(::open(options.stdoutPath.c_str(), outFlags, 0600));
  UniqueFd err = options.stderrPath == options.stdoutPath
                     ? UniqueFd(::fcntl(out.get(), F_DUPFD_CLOEXEC, 3))
                     : UniqueFd(::open(options.stderrPath.c_str(), outFlags, 0600));
  if (!in || !out || !err) {
    ADD_FAILURE() << errnoText("spawn: cannot open standard streams for the child");
    return nullptr;
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.get(), STDERR_FILENO);
  for (const auto& [from, to] : options.inheritFds) {
    if (to < 3) {
      ADD_FAILURE() << "spawn: inheritFds may not replace the standard streams (fd " << to << ")";
      posix_spawn_file_actions_destroy(&actions);
      return nullptr;
    }
    // Also right when from == to: glibc then clears CLOEXEC on the fd (POSIX issue 411).
    posix_spawn_file_actions_adddup2(&actions, from, to);
  }
  // A fresh signal state: gtest or the client library may block signals in this process.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
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
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    ADD_FAILURE() << "spawn " << options.argv[0] << ": " << std::strerror(rc);
    return nullptr;
  }
  // The child is not reaped until wait(), so its pid cannot be reused before pidfd_open. (The
  // raw syscall: glibc 2.36's <sys/pidfd.h> lacks extern "C", so its wrapper does not link.)
  UniqueFd pidFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidFd) {
    ADD_FAILURE() << errnoText("pidfd_open");
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return nullptr;
  }
  return std::make_unique<ChildProcess>(Key{}, pid, std::move(pidFd));
}

ChildProcess::~ChildProcess() {
  if (!status_) {
    ::kill(pid_, SIGKILL);
    int raw = 0;
    ::waitpid(pid_, &raw, 0);
  }
}

void ChildProcess::signal(int sig) {
  if (!status_)
    ::kill(pid_, sig);
}

std::optional<ExitStatus> ChildProcess::wait(std::chrono::milliseconds bound) {
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

CommandResult runCommand(const TempDir& dir, const std::vector<std::string>& argv,
                         std::optional<std::vector<std::string>> env) {
  static std::atomic<int> counter = 0;
  std::string base = dir.file("cmd-" + std::to_string(++counter));
  SpawnOptions options;
  options.argv = argv;
  options.env = env ? std::move(*env) : environmentWith({});
  options.stdoutPath = base + ".out";
  options.stderrPath = base + ".err";
  CommandResult result;
  result.status.raw = 127 << 8;
  auto child = ChildProcess::spawn(options);
  if (!child) {
    result.err = "cannot start " + argv.at(0);
    return result;
  }
  auto status = child->wait();
  if (!status) {
    ADD_FAILURE() << argv.at(0) << " did not exit within the safety bound";
    result.err = "did not exit";
    return result;
  }
  result.status = *status;
  result.out = readWholeFile(options.stdoutPath);
  result.err = readWholeFile(options.stderrPath);
  return result;
}

const char* daemonModeName(DaemonMode mode) {
  switch (mode) {
  case DaemonMode::Standalone: return "standalone";
  case DaemonMode::SocketActivated: return "socket_activated";
  case DaemonMode::HeldSocket: return "held_socket";
  }
  return "unknown";
}

uint16_t freeTcpPort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << errnoText("freeTcpPort");
    return 0;
  }
  return ntohs(addr.sin_port);
}

DaemonProcess::DaemonProcess(Key, DaemonOptions options)
    : options_(std::move(options)), socketPath_(dir_.file("rjitd.sock")),
      endpoint_("unix:" + socketPath_), logPath_(dir_.file("rjitd.log")) {}

std::unique_ptr<DaemonProcess> DaemonProcess::start(DaemonOptions options) {
  auto daemon = std::make_unique<DaemonProcess>(Key{}, std::move(options));
  if (!daemon->launch())
    return nullptr;
  return daemon;
}

bool DaemonProcess::launch() {
  const char* rjitd = std::getenv("RJITD_BIN");
  if (rjitd == nullptr || rjitd[0] == '\0') {
    ADD_FAILURE() << "RJITD_BIN is not set (run the tests through meson test)";
    return false;
  }

  // The notify socket: rjitd's sd_notify("READY=1") arrives here. Made once: every rjitd
  // started on a held socket reports to the same one.
  std::string notifyPath = dir_.file("notify.sock");
  if (!notifyFd_) {
    notifyFd_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (notifyPath.size() >= sizeof addr.sun_path) {
      ADD_FAILURE() << "notify socket path too long: " << notifyPath;
      return false;
    }
    std::memcpy(addr.sun_path, notifyPath.c_str(), notifyPath.size() + 1);
    if (!notifyFd_ ||
        ::bind(notifyFd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << errnoText("notify socket");
      return false;
    }
  }
  if (options_.mode == DaemonMode::HeldSocket && !heldSocket_ && !bindHeldSocket())
    return false;
  ready_ = false;
  stopping_ = false;

  std::vector<std::string> rjitdArgs;
  std::vector<std::string> argv;
  SpawnOptions spawn;
  spawn.stdoutPath = logPath_;
  spawn.stderrPath = logPath_;
  spawn.appendOutput = launches_++ > 0;  // a restarted rjitd's log follows its predecessor's
  std::string tcp =
      options_.tcpPort != 0 ? "127.0.0.1:" + std::to_string(options_.tcpPort) : std::string();
  std::vector<std::string> unset = {"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                                    "RJIT_SERVER"};
  if (options_.mode == DaemonMode::Standalone) {
    argv = {rjitd, "--listen", "unix:" + socketPath_};
    if (!tcp.empty()) {
      argv.push_back("--listen");
      argv.push_back("tcp:" + tcp);
    }
    spawn.env = environmentWith({{"NOTIFY_SOCKET", notifyPath}}, unset);
  } else if (options_.mode == DaemonMode::HeldSocket) {
    if (!tcp.empty()) {
      ADD_FAILURE() << "a held-socket daemon serves its Unix socket only (tcpPort is unsupported)";
      return false;
    }
    // systemd's protocol: the sockets from fd 3 on, their number in LISTEN_FDS, and the pid
    // they are meant for in LISTEN_PID, which must be rjitd's own. posix_spawn cannot know the
    // child's pid in advance, so a shell sets it to its own ($$) and execs rjitd (same pid).
    argv = {"/bin/sh", "-c", "LISTEN_PID=$$ exec \"$0\" \"$@\"", rjitd};
    spawn.env = environmentWith(
        {{"NOTIFY_SOCKET", notifyPath}, {"LISTEN_FDS", "1"}, {"LISTEN_FDNAMES", "rjitd"}}, unset);
    spawn.inheritFds = {{heldSocket_.get(), 3}};
  } else {
    // systemd-socket-activate passes on only the variables named with -E. The TCP socket is
    // listed first: it creates the sockets in order, so once the Unix one listens, all do.
    argv = {"/usr/bin/systemd-socket-activate"};
    if (!tcp.empty()) {
      argv.push_back("-l");
      argv.push_back(tcp);
    }
    argv.push_back("-l");
    argv.push_back(socketPath_);
    argv.push_back("-E");
    argv.push_back("NOTIFY_SOCKET=" + notifyPath);
    for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"})
      if (std::getenv(name) != nullptr) {
        argv.push_back("-E");
        argv.push_back(name);
      }
    argv.push_back(rjitd);
    spawn.env = environmentWith({}, unset);
  }
  argv.push_back("--log-level");
  argv.push_back(options_.logLevel);
  for (const auto& a : options_.extraArgs)
    argv.push_back(a);
  spawn.argv = argv;

  child_ = ChildProcess::spawn(spawn);
  if (!child_)
    return false;
  if (options_.mode == DaemonMode::SocketActivated)
    return waitListening();
  return waitReady();
}

bool DaemonProcess::bindHeldSocket() {
  // What systemd does for rjitd.socket: create, bind, listen, and keep it open. The backlog is
  // systemd's default (SOMAXCONN), so connections wait here while no rjitd accepts.
  heldSocket_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socketPath_.size() >= sizeof addr.sun_path) {
    ADD_FAILURE() << "socket path too long: " << socketPath_;
    return false;
  }
  std::memcpy(addr.sun_path, socketPath_.c_str(), socketPath_.size() + 1);
  if (!heldSocket_ ||
      ::bind(heldSocket_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(heldSocket_.get(), SOMAXCONN) != 0) {
    ADD_FAILURE() << errnoText(("held socket " + socketPath_).c_str());
    return false;
  }
  return true;
}

bool DaemonProcess::startAgain() {
  if (options_.mode != DaemonMode::HeldSocket) {
    ADD_FAILURE() << "startAgain() needs a daemon in held-socket mode";
    return false;
  }
  if (running()) {
    ADD_FAILURE() << "startAgain() while rjitd still runs; stop() it first";
    return false;
  }
  return launch();
}

std::string DaemonProcess::tcpEndpoint() const {
  return options_.tcpPort != 0 ? "tcp:127.0.0.1:" + std::to_string(options_.tcpPort)
                               : std::string();
}

std::string DaemonProcess::log() const {
  return readWholeFile(logPath_);
}

bool DaemonProcess::waitReady() {
  return waitNotified("READY=1", ready_);
}

bool DaemonProcess::waitStopping() {
  return waitNotified("STOPPING=1", stopping_);
}

bool DaemonProcess::waitNotified(const std::string& assignment, bool& seen) {
  auto deadline = Clock::now() + SAFETY_BOUND;
  while (!seen) {
    pollfd fds[2] = {{notifyFd_.get(), POLLIN, 0}, {child_->exitFd(), POLLIN, 0}};
    int n = ::poll(fds, 2, msLeft(deadline));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      ADD_FAILURE() << errnoText("poll");
      return false;
    }
    if (n == 0) {
      ADD_FAILURE() << "rjitd sent no " << assignment << " within the safety bound; log:\n"
                    << log();
      return false;
    }
    if (fds[0].revents & POLLIN) {
      char buf[4096];
      ssize_t len = ::recv(notifyFd_.get(), buf, sizeof buf, 0);
      if (len > 0) {
        // A notification is newline-separated assignments: "READY=1\nSTATUS=...".
        std::istringstream lines(std::string(buf, static_cast<size_t>(len)));
        for (std::string line; std::getline(lines, line);) {
          if (line == "READY=1")
            ready_ = true;
          if (line == "STOPPING=1")
            stopping_ = true;
        }
      }
      continue;
    }
    if (fds[1].revents & POLLIN) {
      auto status = child_->wait();
      ADD_FAILURE() << "rjitd exited before it sent " << assignment << " ("
                    << (status ? status->describe() : "?") << "); log:\n"
                    << log();
      return false;
    }
  }
  return true;
}

bool DaemonProcess::waitListening() {
  // Wake on files created in the directory; re-check at least every 10 ms for the short gap
  // between bind() and listen(), which no inotify event marks.
  UniqueFd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify || ::inotify_add_watch(inotify.get(), dir_.path().c_str(), IN_CREATE) < 0) {
    ADD_FAILURE() << errnoText("inotify");
    return false;
  }
  auto deadline = Clock::now() + SAFETY_BOUND;
  while (!unixSocketListening(socketPath_)) {
    if (Clock::now() >= deadline) {
      ADD_FAILURE() << "systemd-socket-activate did not listen on " << socketPath_
                    << " within the safety bound; log:\n"
                    << log();
      return false;
    }
    pollfd fds[2] = {{inotify.get(), POLLIN, 0}, {child_->exitFd(), POLLIN, 0}};
    int n = ::poll(fds, 2, std::min(10, msLeft(deadline)));
    if (n > 0 && (fds[1].revents & POLLIN)) {
      auto status = child_->wait();
      ADD_FAILURE() << "systemd-socket-activate exited before listening ("
                    << (status ? status->describe() : "?") << "); log:\n"
                    << log();
      return false;
    }
    if (n > 0 && (fds[0].revents & POLLIN)) {
      char events[4096];
      while (::read(inotify.get(), events, sizeof events) > 0) {
      }
    }
  }
  return true;
}

ExitStatus DaemonProcess::stop() {
  child_->signal(SIGTERM);
  auto status = child_->wait();
  if (!status) {
    ADD_FAILURE() << "rjitd did not exit within the safety bound after SIGTERM; log:\n" << log();
    child_->signal(SIGKILL);
    status = child_->wait();
  }
  return status.value_or(ExitStatus{-1});
}

DaemonProcess::~DaemonProcess() {
  if (::testing::Test::HasFailure())
    std::cerr << "---- rjitd log (" << daemonModeName(options_.mode) << ", " << logPath_
              << ") ----\n"
              << log() << "---- end of rjitd log ----\n";
  child_.reset();  // kills a daemon still running before the directory goes away
}

}  // namespace rjit::test
