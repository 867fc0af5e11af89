// SPDX-License-Identifier: MIT
// rjitd-launcher: the relay that starts one aarch64 executor for rjitd outside rjitd's
// MemoryDenyWriteExecute (qemu's translator needs W+X memory). Socket-activated per connection
// (units/rjitd-launcher.socket, Accept=yes; fd 3 is the connection): it takes rjitd's request
// (service/executor/launcher-protocol.h), spawns the x86_64 rjitd-executor as the launcher of
// the guest under qemu with the five descriptors rjitd sent, reports its pid and, once reaped,
// its wait status, and kills it when rjitd asks or closes the connection.
#include "launcher-protocol.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <kj/common.h>
#include <kj/io.h>
#include <optional>
#include <poll.h>
#include <spawn.h>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace rjitd::launcher {

namespace {

/// sd_listen_fds(3)'s first descriptor: the accepted connection.
constexpr int CONNECTION_FD = 3;
/// A peer that connects and sends nothing is not waited for longer than this.
constexpr int REQUEST_TIMEOUT_SECONDS = 10;

/// Exit statuses (the journal has the message): a refused request or peer, and a failure of
/// the relay itself (spawn, poll); 0 after an executor's end was reported.
constexpr int EXIT_REFUSED = 3;
constexpr int EXIT_FAILED = 1;
constexpr int EXIT_USAGE = 2;

struct Options {
  std::string executor;  ///< the x86_64 rjitd-executor (the launcher)
  std::string emulator;  ///< qemu-aarch64(-static)
  std::string guest;     ///< the aarch64 rjitd-executor
  std::optional<uint32_t> uid, gid;
  std::optional<uint32_t> peerUid;  ///< who may connect (default: the relay's own user)
};

int refuse(const std::string& why) {
  std::fprintf(stderr, "rjitd-launcher: refused: %s\n", why.c_str());
  return EXIT_REFUSED;
}

int fail(const std::string& what, int error) {
  std::fprintf(stderr, "rjitd-launcher: error: %s: %s\n", what.c_str(), std::strerror(error));
  return EXIT_FAILED;
}

/// Sends one report; a peer gone meanwhile is not an error (the relay ends anyway).
void report(Report::Kind kind, int32_t value) {
  Report record;
  record.kind = kind;
  record.value = value;
  ssize_t n;
  do {
    n = ::send(CONNECTION_FD, &record, sizeof record, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
}

/// The connection is the one descriptor systemd passed (LISTEN_FDS=1 for this process).
std::optional<std::string> checkActivation() {
  const char* fds = std::getenv("LISTEN_FDS");
  const char* pid = std::getenv("LISTEN_PID");
  if (fds == nullptr || pid == nullptr || std::strcmp(fds, "1") != 0 ||
      std::strtol(pid, nullptr, 10) != ::getpid())
    return std::string("not socket-activated with one connection (LISTEN_FDS=1, LISTEN_PID); "
                       "run from rjitd-launcher.socket (Accept=yes)");
  struct stat st;
  if (::fstat(CONNECTION_FD, &st) < 0 || !S_ISSOCK(st.st_mode))
    return std::string("fd 3 is not a socket");
  int acceptConn = 0;
  socklen_t length = sizeof acceptConn;
  if (::getsockopt(CONNECTION_FD, SOL_SOCKET, SO_ACCEPTCONN, &acceptConn, &length) < 0 ||
      acceptConn != 0)
    return std::string("fd 3 is a listening socket: the socket unit needs Accept=yes");
  return std::nullopt;
}

/// SO_PEERCRED: only rjitd's user may start executors (the socket's mode says so too).
std::optional<std::string> checkPeer(uint32_t allowed) {
  ucred peer{};
  socklen_t length = sizeof peer;
  if (::getsockopt(CONNECTION_FD, SOL_SOCKET, SO_PEERCRED, &peer, &length) < 0)
    return std::string("SO_PEERCRED: ") + std::strerror(errno);
  if (peer.uid != allowed)
    return "peer uid " + std::to_string(peer.uid) + " (pid " + std::to_string(peer.pid) +
           ") is not " + std::to_string(allowed);
  return std::nullopt;
}

/// Reads the request and its descriptors; every received descriptor is owned (closed on a
/// refusal) whatever else is wrong with the message.
std::optional<std::string> readRequest(Request& request, std::vector<kj::AutoCloseFd>& fds) {
  timeval timeout{REQUEST_TIMEOUT_SECONDS, 0};
  if (::setsockopt(CONNECTION_FD, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0)
    return std::string("SO_RCVTIMEO: ") + std::strerror(errno);
  // Room for more descriptors than allowed, so that too many is seen (not cut off silently).
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (DESCRIPTORS + 3))];
  iovec io{&request, sizeof request};
  msghdr message{};
  message.msg_iov = &io;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(CONNECTION_FD, &message, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  } while (n < 0 && errno == EINTR);
  int error = errno;
  for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  if (n < 0)
    return error == EAGAIN || error == EWOULDBLOCK
               ? "no request within " + std::to_string(REQUEST_TIMEOUT_SECONDS) + " s"
               : std::string("reading the request: ") + std::strerror(error);
  if (static_cast<size_t>(n) != sizeof request)
    return "a truncated request (" + std::to_string(n) + " of " + std::to_string(sizeof request) +
           " bytes)";
  if (message.msg_flags & MSG_CTRUNC)
    return std::string("too many descriptors");
  if (request.magic != MAGIC || request.reserved != 0)
    return std::string("not a launcher request (magic)");
  if (fds.size() != DESCRIPTORS)
    return std::to_string(fds.size()) + " descriptors instead of " + std::to_string(DESCRIPTORS);
  for (int i = 0; i < DESCRIPTORS; ++i) {
    struct stat st;
    if (::fstat(fds[i].get(), &st) < 0)
      return "descriptor " + std::to_string(i) + ": " + std::strerror(errno);
    bool socket = i == 3;  // the channel; the others are memfds
    if (socket ? !S_ISSOCK(st.st_mode) : !S_ISREG(st.st_mode))
      return "descriptor " + std::to_string(i) + " is not " +
             (socket ? "a socket (the channel)" : "a regular file (a memfd)");
  }
  if (request.memoryBytes < MIN_MEMORY_BYTES || request.outputBytes == 0 ||
      request.cpuSeconds == 0 || request.openFiles == 0 || request.openFiles > MAX_OPEN_FILES)
    return std::string("limits out of bounds");
  return std::nullopt;
}

/// Spawns the launcher with the five descriptors as its 0..4; returns its pid or an errno.
int spawnExecutor(const Options& options, const Request& request,
                  const std::vector<kj::AutoCloseFd>& fds, pid_t& pid) {
  // Copies numbered 5 or more, so that no dup2 onto 0..4 overwrites a source still needed.
  std::vector<kj::AutoCloseFd> sources;
  for (const auto& fd : fds) {
    int copy = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, DESCRIPTORS);
    if (copy < 0)
      return errno;
    sources.emplace_back(copy);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  KJ_DEFER(posix_spawn_file_actions_destroy(&actions));
  for (int target = 0; target < DESCRIPTORS; ++target)
    posix_spawn_file_actions_adddup2(&actions, sources[target].get(), target);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  KJ_DEFER(posix_spawnattr_destroy(&attributes));
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  std::vector<std::string> args = {options.executor,
                                   "--memory",
                                   std::to_string(request.memoryBytes),
                                   "--output",
                                   std::to_string(request.outputBytes),
                                   "--cpu-seconds",
                                   std::to_string(request.cpuSeconds),
                                   "--open-files",
                                   std::to_string(request.openFiles),
                                   "--emulator",
                                   options.emulator,
                                   "--guest",
                                   options.guest};
  if (options.uid && options.gid)
    args.insert(args.end(),
                {"--uid", std::to_string(*options.uid), "--gid", std::to_string(*options.gid)});
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  char* envp[] = {nullptr};
  return ::posix_spawn(&pid, options.executor.c_str(), &actions, &attributes, argv.data(), envp);
}

/// Relays until the executor has been reaped: a KILL byte or the connection's end kills it.
int relay(pid_t pid) {
  kj::AutoCloseFd pidFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (pidFd.get() < 0) {
    int error = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    report(Report::Failed, error);
    return fail("pidfd_open", error);
  }
  report(Report::Started, pid);
  bool connectionOpen = true;
  for (;;) {  // each turn handles an event; it ends with the executor
    pollfd watched[2] = {{pidFd.get(), POLLIN, 0}, {CONNECTION_FD, POLLIN, 0}};
    int ready = ::poll(watched, connectionOpen ? 2 : 1, -1);
    if (ready < 0 && errno == EINTR)
      continue;
    if (ready < 0) {
      int error = errno;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return fail("poll", error);
    }
    if (watched[0].revents != 0) {
      int status = 0;
      pid_t got;
      do {
        got = ::waitpid(pid, &status, 0);
      } while (got < 0 && errno == EINTR);
      if (got != pid)
        return fail("waitpid", errno);
      report(Report::Ended, status);
      return 0;
    }
    if (connectionOpen && watched[1].revents != 0) {
      char command[64];
      ssize_t n = ::recv(CONNECTION_FD, command, sizeof command, MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      bool killOnly = n > 0 && std::all_of(command, command + n, [](char c) { return c == KILL; });
      if (!killOnly) {
        // The end of the connection, or anything but KILL: the executor must not outlive it.
        connectionOpen = false;
        if (n > 0)
          std::fprintf(stderr, "rjitd-launcher: unexpected bytes from rjitd: killing executor\n");
      }
      ::syscall(SYS_pidfd_send_signal, pidFd.get(), SIGKILL, nullptr, 0);
    }
  }
}

}  // namespace

}  // namespace rjitd::launcher

int main(int argc, char** argv) {
  using namespace rjitd::launcher;
  // Nothing inherited but stdio (the journal) and the connection.
  if (::close_range(CONNECTION_FD + 1, ~0U, 0) < 0)
    return fail("close_range", errno);
  // rjitd may close the connection at any time: a report then fails with EPIPE, not a signal.
  ::signal(SIGPIPE, SIG_IGN);
  Options options;
  CLI::App app{"rjitd-launcher: starts one aarch64 executor under qemu for rjitd, outside "
               "rjitd's MemoryDenyWriteExecute (socket-activated, Accept=yes: fd 3 is rjitd's "
               "connection)",
               "rjitd-launcher"};
  app.add_option("--executor", options.executor, "the x86_64 rjitd-executor (the launcher)")
      ->required();
  app.add_option("--emulator", options.emulator, "qemu-user for the guest")->required();
  app.add_option("--guest", options.guest, "the aarch64 rjitd-executor")->required();
  auto* uid = app.add_option("--uid", options.uid, "user executors run as (the relay is root)");
  auto* gid = app.add_option("--gid", options.gid, "group executors run as");
  uid->needs(gid);
  gid->needs(uid);
  app.add_option("--peer-uid", options.peerUid,
                 "the user that may connect (default: the relay's own: rjitd's)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0)
      return app.exit(e);
    std::fprintf(stderr, "rjitd-launcher: error: %s\n", e.what());
    return EXIT_USAGE;
  }
  if (::geteuid() == 0 && (!options.uid || *options.uid == 0)) {
    std::fprintf(stderr, "rjitd-launcher: error: running as root, executors need --uid and "
                         "--gid of an unprivileged user\n");
    return EXIT_USAGE;
  }
  if (auto error = checkActivation())
    return refuse(*error);
  if (auto error = checkPeer(options.peerUid ? *options.peerUid : ::geteuid()))
    return refuse(*error);
  Request request;
  std::vector<kj::AutoCloseFd> fds;
  if (auto error = readRequest(request, fds))
    return refuse(*error);
  pid_t pid = 0;
  if (int error = spawnExecutor(options, request, fds, pid)) {
    report(Report::Failed, error);
    return fail("cannot start " + options.executor, error);
  }
  fds.clear();  // the executor has its copies; rjitd keeps its own
  return relay(pid);
}
