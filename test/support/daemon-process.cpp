// SPDX-License-Identifier: MIT
// Child processes for integration tests (see daemon-process.h).
#include "daemon-process.h"

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <gtest/gtest.h>
#include <iostream>
#include <kj/debug.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sstream>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace rjit::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string errnoText(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

/// Milliseconds left until `deadline`, clamped to poll()'s range.
int msLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
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

std::unique_ptr<ChildProcess> ChildProcess::spawn(const SpawnOptions& options) {
  std::unique_ptr<process::Subprocess> child;
  KJ_IF_MAYBE (e,
               kj::runCatchingExceptions([&]() { child = process::Subprocess::spawn(options); })) {
    ADD_FAILURE() << "spawn " << (options.argv.empty() ? "" : options.argv[0]) << ": "
                  << e->getDescription().cStr();
    return nullptr;
  }
  return std::make_unique<ChildProcess>(std::move(child));
}

CommandResult runCommand(const TempDir& dir, const std::vector<std::string>& argv,
                         std::optional<std::vector<std::string>> env) {
  static std::atomic<int> counter = 0;
  std::string capture = dir.file("cmd-" + std::to_string(++counter));
  CommandResult result;
  result.status.raw = 127 << 8;
  std::optional<CommandResult> ran;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 ran = process::runCommand(argv, env ? std::move(*env) : environmentWith({}),
                                           capture, SAFETY_BOUND);
               })) {
    ADD_FAILURE() << "spawn " << argv.at(0) << ": " << e->getDescription().cStr();
    result.err = "cannot start " + argv.at(0);
    return result;
  }
  if (!ran) {
    ADD_FAILURE() << argv.at(0) << " did not exit within the safety bound";
    result.err = "did not exit";
    return result;
  }
  return std::move(*ran);
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
  kj::AutoCloseFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (fd == nullptr || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
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
  std::string notifyPath = notifySocketPath();
  if (notifyFd_ == nullptr) {
    notifyFd_ = kj::AutoCloseFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (notifyPath.size() >= sizeof addr.sun_path) {
      ADD_FAILURE() << "notify socket path too long: " << notifyPath;
      return false;
    }
    std::memcpy(addr.sun_path, notifyPath.c_str(), notifyPath.size() + 1);
    if (notifyFd_ == nullptr ||
        ::bind(notifyFd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << errnoText("notify socket");
      return false;
    }
  }
  if (options_.mode == DaemonMode::HeldSocket && heldSocket_ == nullptr && !bindHeldSocket())
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
  // The aarch64 executor of the cross build (meson -Daarch64_executor, or a cross build's own),
  // for every rjitd a test starts, unless the test names one itself: rjitd's default place for
  // it (aarch64/ next to the x86_64 executor) is not where a build tree has it.
  const char* aarch64Executor = std::getenv("RJITD_AARCH64_EXECUTOR_BIN");
  if (aarch64Executor != nullptr && aarch64Executor[0] != '\0' &&
      std::find(options_.extraArgs.begin(), options_.extraArgs.end(), "--aarch64-executor") ==
          options_.extraArgs.end()) {
    argv.push_back("--aarch64-executor");
    argv.push_back(aarch64Executor);
  }
  // Each test daemon gets its own disk cache in its own directory, kept across restart() (a
  // restarted rjitd finds its predecessor's objects), unless the test names one: the default
  // place (/var/cache/rjitd for root, as in CI) would be shared by every test.
  if (std::find(options_.extraArgs.begin(), options_.extraArgs.end(), "--cache-dir") ==
      options_.extraArgs.end()) {
    argv.push_back("--cache-dir");
    argv.push_back(dir_.file("cache"));
  }
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
  heldSocket_ = kj::AutoCloseFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socketPath_.size() >= sizeof addr.sun_path) {
    ADD_FAILURE() << "socket path too long: " << socketPath_;
    return false;
  }
  std::memcpy(addr.sun_path, socketPath_.c_str(), socketPath_.size() + 1);
  if (heldSocket_ == nullptr ||
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
  return process::readWholeFile(logPath_);
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
  kj::AutoCloseFd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (inotify == nullptr ||
      ::inotify_add_watch(inotify.get(), dir_.path().c_str(), IN_CREATE) < 0) {
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
  bool killed = false;
  ExitStatus status = child_->terminate(SAFETY_BOUND, &killed);
  if (killed)
    ADD_FAILURE() << "rjitd did not exit within the safety bound after SIGTERM; log:\n" << log();
  return status;
}

ExitStatus DaemonProcess::kill() {
  child_->signal(SIGKILL);
  std::optional<ExitStatus> status = child_->wait(SAFETY_BOUND);
  if (!status) {
    ADD_FAILURE() << "rjitd did not exit after SIGKILL within the safety bound";
    return child_->terminate(SAFETY_BOUND, nullptr);
  }
  return *status;
}

DaemonProcess::~DaemonProcess() {
  if (::testing::Test::HasFailure())
    std::cerr << "---- rjitd log (" << daemonModeName(options_.mode) << ", " << logPath_
              << ") ----\n"
              << log() << "---- end of rjitd log ----\n";
  child_.reset();  // kills a daemon still running before the directory goes away
}

}  // namespace rjit::test
