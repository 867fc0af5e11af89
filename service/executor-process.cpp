// SPDX-License-Identifier: MIT
#include "executor-process.h"

#include "executor/launcher-protocol.h"
#include "log.h"
#include "rpc-server.h"
#include "status-page.h"
#include "targets.h"

#include <algorithm>
#include <capnp/message.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <kj/debug.h>
#include <linux/landlock.h>
#include <seccomp.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace rjitd::service {

namespace {

using executor::StatusPage;

constexpr size_t PAGE_BYTES = 4096;
/// Descriptors one message on the channel may carry: a loaded image's memfd (Session.load
/// answers) or the shared segment (Control.attachSegment).
constexpr size_t MAX_FDS_PER_MESSAGE = 4;

/// A memfd owned from birth (CLOEXEC: only the dup2 copies reach the executor).
kj::AutoCloseFd newMemfd(const char* name) {
  int fd;
  KJ_SYSCALL(fd = ::memfd_create(name, MFD_CLOEXEC), name);
  return kj::AutoCloseFd(fd);
}

/// A CLOEXEC copy of `fd` numbered 5 or more, so that no dup2 onto 0..4 in the child
/// overwrites a source another dup2 still needs.
kj::AutoCloseFd above4(int fd) {
  int copy;
  KJ_SYSCALL(copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 5));
  return kj::AutoCloseFd(copy);
}

std::string hex(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

std::string describeSignal(int signal) {
  const char* description = ::sigdescr_np(signal);
  std::string out = signalName(signal);
  if (description != nullptr)
    out += std::string(" (") + description + ")";
  return out;
}

/// The Failures a death caused by one of rjitd's limits (or a death rjitd caused) gets, common
/// to calls and runs; nullopt for a death of the code's own (an exit, a crash).
std::optional<Failure> limitDeath(int waitStatus, const StatusPage::Phase phase, bool valid,
                                  const StatusSnapshot& page, bool deadline,
                                  std::string_view what) {
  std::string subject(what);
  if (deadline)
    return Failure{ErrorKind::Timeout,
                   subject + " did not finish within its deadline; rjitd killed its executor",
                   {}};
  if (!valid || phase == StatusPage::Starting) {
    std::string how = WIFEXITED(waitStatus)
                          ? "exited with status " + std::to_string(WEXITSTATUS(waitStatus))
                          : "died of " + describeSignal(WTERMSIG(waitStatus));
    return Failure{ErrorKind::Internal,
                   "the executor " + how + " before its sandbox was ready (see rjitd's log)",
                   {}};
  }
  if (!WIFSIGNALED(waitStatus))
    return std::nullopt;
  int signal = WTERMSIG(waitStatus);
  switch (signal) {
  case SIGXFSZ:
    return Failure{ErrorKind::OutputLimit,
                   subject + " wrote more output than an executor may (rjitd --executor-output)",
                   {}};
  case SIGXCPU:
    return Failure{ErrorKind::Timeout,
                   subject + " used up its executor's CPU time limit; the executor was ended",
                   {}};
  case SIGSYS:
    return Failure{ErrorKind::SandboxViolation,
                   subject + " made a system call executors may not make: " +
                       (page.syscall >= 0 ? syscallName(page.syscall)
                        // qemu 7.2 blocks every host signal around the host fork it makes for
                        // a guest's fork, so the filter's SIGSYS kills it without the guest's
                        // handler; other refused calls are recorded.
                        : page.emulated ? "one qemu could not record (a fork, most likely)"
                                        : "an unknown one"),
                   {}};
  default: break;
  }
  if (page.outOfMemory || (page.signal == signal && page.errnoAtSignal == ENOMEM))
    return Failure{ErrorKind::OutOfMemory,
                   subject + " ran out of memory (the executor's limit is rjitd --executor-memory)",
                   {}};
  return std::nullopt;
}

}  // namespace

std::string signalName(int signal) {
  const char* abbreviation = ::sigabbrev_np(signal);
  if (abbreviation == nullptr)
    return "signal " + std::to_string(signal);
  return std::string("SIG") + abbreviation;
}

std::string syscallName(int number) {
  // libseccomp's own table (the one the executor's filter is built from) rather than a copy.
  char* name = ::seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, number);
  if (name == nullptr)
    return "system call " + std::to_string(number);
  std::string out(name);
  ::free(name);  // libseccomp hands the name over in malloc'd memory
  return out;
}

Failure classifyDeath(int waitStatus, const StatusSnapshot& page, bool deadline,
                      std::string_view what) {
  auto phase = static_cast<StatusPage::Phase>(page.phase);
  if (auto limit = limitDeath(waitStatus, phase, page.valid, page, deadline, what))
    return *limit;
  std::string subject(what);
  if (WIFEXITED(waitStatus)) {
    Failure f{ErrorKind::Exited,
              subject + " called exit(" + std::to_string(WEXITSTATUS(waitStatus)) + ")",
              {}};
    f.exitStatus = WEXITSTATUS(waitStatus);
    return f;
  }
  int signal = WTERMSIG(waitStatus);
  std::string message = describeSignal(signal);
  if (signal == SIGKILL)
    message += " from outside the executor (the kernel's OOM killer or an operator)";
  else if (page.signal == signal && (signal == SIGSEGV || signal == SIGBUS))
    message += " at " + hex(page.faultAddress);
  Failure f{ErrorKind::Crashed, message + " in " + subject, {}};
  f.signal = signal;
  return f;
}

std::variant<RunEnd, Failure> classifyRunEnd(int waitStatus, const StatusSnapshot& page,
                                             bool deadline, std::string_view what) {
  auto phase = static_cast<StatusPage::Phase>(page.phase);
  if (auto limit = limitDeath(waitStatus, phase, page.valid, page, deadline, what))
    return *limit;
  if (WIFEXITED(waitStatus))
    return RunEnd{WEXITSTATUS(waitStatus), 0, ""};
  int signal = WTERMSIG(waitStatus);
  return RunEnd{0, signal, signalName(signal)};
}

namespace {

/// Whether this process (and so its children) may make memory writable and executable, as
/// qemu's translator does with its code buffer (mmap read+write, then mprotect to add exec).
/// systemd's MemoryDenyWriteExecute=yes is a seccomp filter that every child inherits and
/// that refuses exactly that: qemu then fails at start ("mprotect of jit buffer").
[[maybe_unused]] bool canMapWriteExecute() {
  void* probe =
      ::mmap(nullptr, PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (probe == MAP_FAILED)
    return true;  // no memory to probe with: let the executor's start say what fails
  bool allowed = ::mprotect(probe, PAGE_BYTES, PROT_READ | PROT_WRITE | PROT_EXEC) == 0;
  ::munmap(probe, PAGE_BYTES);
  return allowed;
}

/// Connects to the launcher relay at `path` and sends it the request for one executor with its
/// five descriptors (launcher-protocol.h). Returns the connection, non-blocking, on which the
/// relay reports the executor's start and end.
kj::AutoCloseFd requestLauncher(const std::string& path, const ExecutorConfig& config,
                                const kj::AutoCloseFd (&fds)[launcher::DESCRIPTORS]) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  KJ_REQUIRE(path.size() < sizeof address.sun_path, "--aarch64-launcher: path too long", path);
  std::memcpy(address.sun_path, path.data(), path.size());
  int fd;
  KJ_SYSCALL(fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  kj::AutoCloseFd connection(fd);
  int rc;
  do {
    rc = ::connect(connection.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
  } while (rc < 0 && errno == EINTR);
  KJ_REQUIRE(rc == 0, "cannot reach the aarch64 launcher (rjitd --aarch64-launcher)", path,
             strerror(errno));
  launcher::Request request;
  request.memoryBytes = config.memoryBytes;
  request.outputBytes = config.outputBytes;
  request.cpuSeconds = config.cpuSeconds;
  request.openFiles = config.openFiles;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * launcher::DESCRIPTORS)] = {};
  iovec io{&request, sizeof request};
  msghdr message{};
  message.msg_iov = &io;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* rights = CMSG_FIRSTHDR(&message);
  rights->cmsg_level = SOL_SOCKET;
  rights->cmsg_type = SCM_RIGHTS;
  rights->cmsg_len = CMSG_LEN(sizeof(int) * launcher::DESCRIPTORS);
  for (int i = 0; i < launcher::DESCRIPTORS; ++i) {
    int raw = fds[i].get();
    std::memcpy(CMSG_DATA(rights) + i * sizeof(int), &raw, sizeof raw);
  }
  // 40 bytes on a fresh connection: the socket buffer takes them at once.
  ssize_t sent;
  do {
    sent = ::sendmsg(connection.get(), &message, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  KJ_REQUIRE(sent == static_cast<ssize_t>(sizeof request),
             "cannot send the aarch64 launcher its request", path, strerror(errno));
  KJ_SYSCALL(::fcntl(connection.get(), F_SETFL, O_NONBLOCK));
  return connection;
}

}  // namespace

std::vector<EmulatedTarget> findEmulatedTargets(const std::string& executorPath,
                                                const std::string& guest,
                                                const std::string& emulator,
                                                const std::string& launcher) {
  std::vector<EmulatedTarget> found;
#if defined(__x86_64__)
  const TargetName* aarch64 = resolveTarget(knownTargets(), "aarch64", "");
  if (aarch64 == nullptr)
    return found;
  EmulatedTarget target;
  target.triple = aarch64->triple;
  target.name = aarch64->name;
  if (!launcher.empty()) {
    // The relay's unit names qemu and the guest and runs without MemoryDenyWriteExecute; what
    // it lacks, its executors' start-up failures (phase Starting) and its journal say.
    target.launcher = launcher;
    target.guest = "the guest of " + launcher;
    target.emulator = "the launcher's qemu";
    found.push_back(std::move(target));
    return found;
  }
  target.guest = guest;
  if (target.guest.empty())
    target.guest = executorPath.substr(0, executorPath.rfind('/') + 1) + "aarch64/rjitd-executor";
  target.emulator = emulator;
  // The static qemu first: it opens no host library after the launcher's exec, so the
  // launcher's Landlock rules need not allow any (a dynamic one works too).
  for (const char* candidate : {"/usr/bin/qemu-aarch64-static", "/usr/bin/qemu-aarch64"})
    if (target.emulator.empty() && ::access(candidate, X_OK) == 0)
      target.emulator = candidate;
  // The launcher's sandbox confines files with Landlock (any ABI).
  long landlock =
      ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  int landlockError = errno;
  if (target.emulator.empty())
    target.unavailable = "no qemu-aarch64 (apt install qemu-user-static, or rjitd --qemu-aarch64)";
  else if (::access(target.emulator.c_str(), X_OK) != 0)
    target.unavailable =
        "no emulator at " + target.emulator + " (rjitd --qemu-aarch64): " + strerror(errno);
  else if (::access(target.guest.c_str(), R_OK) != 0)
    target.unavailable = "no aarch64 rjitd-executor at " + target.guest +
                         " (rjitd --aarch64-executor): " + strerror(errno);
  else if (landlock < 1)
    target.unavailable = std::string("Landlock, which the sandbox of an emulated executor needs "
                                     "to confine its files, is unavailable (") +
                         strerror(landlockError) +
                         "; under rjitd.service: SystemCallFilter=landlock_create_ruleset "
                         "landlock_add_rule landlock_restrict_self)";
  else if (!canMapWriteExecute())
    target.unavailable =
        "rjitd may not map memory writable and executable (MemoryDenyWriteExecute=yes, which "
        "its executors inherit), and qemu's translator must (docs/OPERATIONS.md, \"aarch64 "
        "executors\")";
  found.push_back(std::move(target));
#else
  // rjitd runs aarch64 code natively only
  (void)executorPath, (void)guest, (void)emulator, (void)launcher;
#endif
  return found;
}

kj::Own<ExecutorProcess> ExecutorProcess::start(const ExecutorConfig& config,
                                                const EmulatedTarget* emulated, DaemonState& state,
                                                kj::LowLevelAsyncIoProvider& lowLevel,
                                                kj::UnixEventPort& eventPort,
                                                capnp::ReaderOptions readerOptions,
                                                std::string peer) {
  kj::AutoCloseFd stdinFd = newMemfd("rjitd-executor-stdin");
  kj::AutoCloseFd stdoutFd = newMemfd("rjitd-executor-stdout");
  kj::AutoCloseFd stderrFd = newMemfd("rjitd-executor-stderr");
  kj::AutoCloseFd pageFd = newMemfd("rjitd-executor-status");
  // O_APPEND on the shared file description: after rjitd truncates the file, the executor's
  // next write lands at the new end rather than at its old offset (which would leave a hole).
  for (int fd : {stdoutFd.get(), stderrFd.get()})
    KJ_SYSCALL(::fcntl(fd, F_SETFL, O_APPEND));
  KJ_SYSCALL(::ftruncate(pageFd.get(), PAGE_BYTES));
  void* page = ::mmap(nullptr, PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, pageFd.get(), 0);
  KJ_REQUIRE(page != MAP_FAILED, "mapping the executor's status page", strerror(errno));
  auto unmapOnFailure = kj::defer([&page]() {
    if (page != nullptr)
      ::munmap(page, PAGE_BYTES);
  });
  int sv[2];
  KJ_SYSCALL(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), "executor channel");
  kj::AutoCloseFd ours(sv[0]), theirs(sv[1]);

  kj::AutoCloseFd sources[5] = {above4(stdinFd.get()), above4(stdoutFd.get()),
                                above4(stderrFd.get()), above4(theirs.get()), above4(pageFd.get())};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  KJ_DEFER(posix_spawn_file_actions_destroy(&actions));
  // dup2 clears CLOEXEC on the copies: exactly fds 0..4 survive the exec.
  for (int target = 0; target < 5; ++target)
    posix_spawn_file_actions_adddup2(&actions, sources[target].get(), target);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  KJ_DEFER(posix_spawnattr_destroy(&attributes));
  // rjitd's loop blocks the signals it captures and ignores SIGPIPE; the executor starts with
  // every disposition at its default and nothing blocked (SIGXFSZ must kill it), in a session
  // of its own so that a terminal's ^C reaches rjitd only.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);

  std::vector<std::string> args = {config.path,
                                   "--memory",
                                   std::to_string(config.memoryBytes),
                                   "--output",
                                   std::to_string(config.outputBytes),
                                   "--cpu-seconds",
                                   std::to_string(config.cpuSeconds),
                                   "--open-files",
                                   std::to_string(config.openFiles)};
  if (config.uid && config.gid) {
    args.insert(args.end(),
                {"--uid", std::to_string(*config.uid), "--gid", std::to_string(*config.gid)});
  }
  if (emulated != nullptr)
    args.insert(args.end(), {"--emulator", emulated->emulator, "--guest", emulated->guest});
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  char* envp[] = {nullptr};  // an empty environment: nothing of rjitd's leaks into user code
  bool relayed = emulated != nullptr && !emulated->launcher.empty();
  pid_t pid = 0;
  int pidFd = -1;
  if (relayed) {
    // The relay spawns it (with its own copies of the five descriptors; rjitd keeps these).
    pidFd = requestLauncher(emulated->launcher, config, sources).release();
  } else {
    int rc = ::posix_spawn(&pid, config.path.c_str(), &actions, &attributes, argv.data(), envp);
    KJ_REQUIRE(rc == 0, "cannot start the executor (rjitd --executor-path)", config.path,
               strerror(rc));
    // A pidfd of our own child (not yet reaped, so the pid cannot have been reused).
    pidFd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidFd < 0) {
      int error = errno;
      ::kill(pid, SIGKILL);
      int status;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      KJ_FAIL_SYSCALL("pidfd_open of the executor", error, pid);
    }
  }
  theirs = nullptr;
  void* mapped = page;
  page = nullptr;  // owned by the process object from here
  auto process = kj::heap<ExecutorProcess>(Key(), pid, kj::AutoCloseFd(pidFd), kj::mv(stdinFd),
                                           kj::mv(stdoutFd), kj::mv(stderrFd), kj::mv(pageFd),
                                           mapped, eventPort);
  state.metrics.executorStarted();
  process->metrics = &state.metrics;
  process->emulated = emulated != nullptr;
  process->relayed = relayed;
  process->stream =
      lowLevel.wrapUnixSocketFd(ours.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                                    kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
  process->network = kj::heap<capnp::TwoPartyVatNetwork>(
      *process->stream, MAX_FDS_PER_MESSAGE, capnp::rpc::twoparty::Side::SERVER, readerOptions);
  process->rpc = kj::heap(capnp::makeRpcServer(
      *process->network,
      capnp::Capability::Client(newBootstrap(
          state, kj::mv(peer), false, [greeted = process->greeted]() { *greeted = true; }))));
  capnp::MallocMessageBuilder message(8);
  auto vat = message.initRoot<capnp::rpc::twoparty::VatId>();
  vat.setSide(capnp::rpc::twoparty::Side::CLIENT);
  process->controlCap = process->rpc->bootstrap(vat).castAs<proto::executor::Control>();
  if (relayed)
    log::debug("asked the aarch64 launcher at ", emulated->launcher, " for an executor");
  else
    log::debug("started executor ", pid, " (", config.path,
               emulated != nullptr
                   ? " launching " + emulated->guest + " under " + emulated->emulator
                   : std::string(),
               ")");
  return process;
}

ExecutorProcess::ExecutorProcess(Key, pid_t pid, kj::AutoCloseFd pidFd, kj::AutoCloseFd stdinFd,
                                 kj::AutoCloseFd stdoutFd, kj::AutoCloseFd stderrFd,
                                 kj::AutoCloseFd pageFd, void* page, kj::UnixEventPort& eventPort)
    : processId(pid), pidFd(kj::mv(pidFd)), stdinFd(kj::mv(stdinFd)), stdoutFd(kj::mv(stdoutFd)),
      stderrFd(kj::mv(stderrFd)), pageFd(kj::mv(pageFd)), page(page), eventPort(eventPort),
      observer(eventPort, this->pidFd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
      exitWatch(watchExit().fork()) {}

ExecutorProcess::~ExecutorProcess() noexcept(false) {
  ::munmap(page, PAGE_BYTES);
  if (status)
    return;
  if (relayed) {
    // Closing the connection (a member) makes the relay kill and reap the executor.
    if (metrics != nullptr)
      metrics->executorEnded();
    return;
  }
  if (processId > 0)  // never kill(0): that is rjitd's whole process group
    ::kill(processId, SIGKILL);
  // Reaped once its pidfd says it is gone, without waiting here: the kernel may take tens of
  // milliseconds to tear down a large address space, and this runs on the event loop. (When
  // rjitd exits first, the zombie goes to init.)
  struct Reaper {
    Reaper(kj::UnixEventPort& port, kj::AutoCloseFd fd)
        : fd(kj::mv(fd)),
          observer(port, this->fd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ) {}
    kj::AutoCloseFd fd;
    kj::UnixEventPort::FdObserver observer;
  };
  // A copy of the pidfd: the member's observer is still registered (with epoll) until it goes.
  int copy = ::fcntl(pidFd.get(), F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    int raw = 0;  // no descriptor left to watch with: wait here (SIGKILL is quick to take)
    while (::waitpid(processId, &raw, 0) < 0 && errno == EINTR) {
    }
    if (metrics != nullptr)
      metrics->executorEnded();
    return;
  }
  auto reaper = kj::heap<Reaper>(eventPort, kj::AutoCloseFd(copy));
  auto gone = reaper->observer.whenBecomesReadable();
  kj::mv(gone)
      .then([pid = processId, metrics = metrics]() {
        int raw = 0;
        while (::waitpid(pid, &raw, WNOHANG) < 0 && errno == EINTR) {
        }
        if (metrics != nullptr)
          metrics->executorEnded();
      })
      .attach(kj::mv(reaper))
      .detach([](kj::Exception&& e) {
        log::warning("reaping a killed executor failed: ", e.getDescription().cStr());
      });
}

kj::Promise<void> ExecutorProcess::watchExit() {
  return observer.whenBecomesReadable().then([this]() -> kj::Promise<void> {
    if (relayed)
      readReports();
    else
      reap();
    if (status)
      return kj::READY_NOW;
    return watchExit();
  });
}

void ExecutorProcess::reap() {
  if (status)
    return;
  int raw = 0;
  pid_t got;
  do {
    got = ::waitpid(processId, &raw, WNOHANG);
  } while (got < 0 && errno == EINTR);
  if (got != processId)
    return;
  ended(raw);
}

void ExecutorProcess::readReports() {
  // Each turn consumes what the socket holds; a relay sends three reports at most.
  for (unsigned reads = 0; reads < 16 && !status; ++reads) {
    char chunk[64];
    ssize_t n = ::recv(pidFd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) {
      // The relay refused the request or died: the executor (if any) is gone with it.
      log::warning("the aarch64 launcher ended executor ", processId,
                   "'s connection without its status (see rjitd-launcher's log)");
      ended(W_EXITCODE(0, SIGKILL));
      return;
    }
    reports.append(chunk, static_cast<size_t>(n));
    while (reports.size() >= sizeof(launcher::Report) && !status) {
      launcher::Report report;
      std::memcpy(&report, reports.data(), sizeof report);
      reports.erase(0, sizeof report);
      if (report.magic != launcher::MAGIC || report.kind < launcher::Report::Started ||
          report.kind > launcher::Report::Failed) {
        log::warning("the aarch64 launcher sent executor ", processId, " a malformed report");
        ::shutdown(pidFd.get(), SHUT_RDWR);  // the relay kills the executor
        ended(W_EXITCODE(0, SIGKILL));
      } else if (report.kind == launcher::Report::Started) {
        processId = report.value;
        log::debug("the aarch64 launcher started executor ", processId);
      } else if (report.kind == launcher::Report::Ended) {
        ended(report.value);
      } else {
        log::warning("the aarch64 launcher could not start an executor: ", strerror(report.value));
        ended(W_EXITCODE(127, 0));
      }
    }
  }
}

void ExecutorProcess::ended(int raw) {
  status = raw;
  if (metrics != nullptr)
    metrics->executorEnded();
  log::debug("executor ", processId, " ended: ",
             WIFEXITED(raw) ? "exit " + std::to_string(WEXITSTATUS(raw))
                            : describeSignal(WTERMSIG(raw)));
}

void ExecutorProcess::kill(bool forDeadline) {
  if (status)
    return;
  deadlineKill = deadlineKill || forDeadline;
  killed = true;
  if (relayed) {
    // The relay kills it (rjitd may have no permission to: another user namespace or user);
    // if the byte cannot be sent, ending the connection's sending side does the same.
    if (::send(pidFd.get(), &launcher::KILL, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1)
      ::shutdown(pidFd.get(), SHUT_WR);
    return;
  }
  if (processId > 0)  // never kill(0): that is rjitd's whole process group
    ::kill(processId, SIGKILL);
}

StatusSnapshot ExecutorProcess::snapshot() const {
  const auto* p = static_cast<const StatusPage*>(page);
  StatusSnapshot s;
  s.emulated = emulated;
  s.valid = p->magic.load() == StatusPage::MAGIC;
  s.phase = p->phase.load();
  if (*greeted && s.phase == StatusPage::Starting)
    s.phase = StatusPage::UserCode;  // written by user code: the executor was up (see greeted)
  s.signal = p->signal.load();
  s.errnoAtSignal = p->errnoAtSignal.load();
  s.syscall = p->syscall.load();
  s.outOfMemory = p->outOfMemory.load() != 0;
  s.faultAddress = p->faultAddress.load();
  return s;
}

void ExecutorProcess::clearOutput() {
  KJ_SYSCALL(::ftruncate(stdoutFd.get(), 0));
  KJ_SYSCALL(::ftruncate(stderrFd.get(), 0));
}

namespace {

std::string readFile(int fd, uint64_t limit) {
  struct stat st;
  KJ_SYSCALL(::fstat(fd, &st));
  uint64_t size = std::min<uint64_t>(static_cast<uint64_t>(st.st_size), limit);
  std::string out(size, '\0');
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out.data() + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR)
      continue;
    KJ_REQUIRE(n >= 0, "reading an executor's output", strerror(errno));
    if (n == 0)
      break;  // truncated meanwhile (the process is stopped or gone; cannot happen)
    done += static_cast<uint64_t>(n);
  }
  out.resize(done);
  return out;
}

}  // namespace

ExecutorOutput ExecutorProcess::readOutput(uint64_t limit) const {
  ExecutorOutput output{readFile(stdoutFd.get(), limit), readFile(stderrFd.get(), limit)};
  if (emulated && status && WIFSIGNALED(*status)) {
    // qemu-user 7.2 (linux-user/signal.c, dump_core_and_abort) writes this one line to the
    // guest's stderr just before it kills itself with the guest's signal.
    constexpr std::string_view REPORT = "qemu: uncaught target signal ";
    std::string& err = output.err;
    size_t start = err.size() >= 2 ? err.rfind('\n', err.size() - 2) : std::string::npos;
    start = start == std::string::npos ? 0 : start + 1;
    if (err.compare(start, REPORT.size(), REPORT) == 0 && err.back() == '\n')
      err.resize(start);
  }
  return output;
}

void ExecutorProcess::setInput(kj::ArrayPtr<const kj::byte> bytes) {
  KJ_SYSCALL(::ftruncate(stdinFd.get(), 0));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(stdinFd.get(), bytes.begin() + done, bytes.size() - done,
                         static_cast<off_t>(done));
    if (n < 0 && errno == EINTR)
      continue;
    KJ_REQUIRE(n > 0, "writing an executor's standard input", strerror(errno));
    done += static_cast<size_t>(n);
  }
  // The executor's fd 0 shares this description, so this rewinds its standard input too.
  KJ_SYSCALL(::lseek(stdinFd.get(), 0, SEEK_SET));
}

}  // namespace rjitd::service
