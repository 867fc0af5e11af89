// SPDX-License-Identifier: MIT
// The executor's sandbox (see sandbox.h). libseccomp (Debian's libseccomp-dev) builds the BPF
// filter: hand-written BPF would have to get every architecture's syscall numbers and the
// x32/i386 entry points right itself.
#include "sandbox.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <kj/io.h>
#include <linux/landlock.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <system_error>
#include <termios.h>
#include <unistd.h>

namespace rjitd::executor {

namespace {

// What kj's event loop (epoll, eventfd, signalfd), Cap'n Proto RPC over the inherited Unix
// socket (with SCM_RIGHTS), the loader (mapping memfds executable), malloc, threads, stdio and
// a program's ordinary needs (time, signals, random numbers, exit) use. Everything else raises
// SIGSYS: in particular socket/connect/bind/listen/accept, execve, fork/vfork, ptrace,
// process_vm_*, mount, chroot, pivot_root, kexec_*, bpf, perf_event_open, module loading,
// open/openat/openat2/creat (an executor reads no files: what it needs is loaded before the
// filter), the setuid family, unshare/setns, keyctl, reboot and swapon.
const char* const ALLOWED[] = {
    // stdio and descriptors already open (stdin/stdout/stderr memfds, the channel, images)
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "lseek",
    "close",
    "fstat",
    "newfstatat",
    "dup",
    "dup2",
    "dup3",
    // the channel: messages with descriptors attached
    "recvmsg",
    "sendmsg",
    "recvfrom",
    "sendto",
    "shutdown",
    "getsockopt",
    "getsockname",
    "getpeername",
    // kj's event loop
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd2",
    "signalfd4",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    // memory: malloc, the loader's mappings of image memfds, the shared segment
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "msync",
    // threads
    "futex",
    "set_robust_list",
    "rseq",
    "set_tid_address",
    "sched_yield",
    "sched_getaffinity",
    "exit",
    // signals (the fatal-signal handler runs on an alternate stack and re-raises)
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "sigaltstack",
    "restart_syscall",
    // time, identity, limits, randomness: read-only questions about this process
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "nanosleep",
    "clock_nanosleep",
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getrlimit",
    "getrusage",
    "times",
    "sysinfo",
    "uname",
    "getrandom",
    "exit_group",
    nullptr,
};

// What the emulator needs beyond ALLOWED, measured with strace -f on qemu-aarch64(-static) 7.2
// running the aarch64 rjitd-executor under the launcher (docs/OPERATIONS.md "aarch64
// executors"). Besides these: openat for reading, conditioned in addEmulatorRules.
const char* const EMULATOR_EXTRA[] = {
    // the launcher's own exec of the emulator (Landlock: only the emulator and the x86_64
    // loader can be executed, so a guest's execve starts nothing outside this sandbox)
    "execve",
    // qemu looks every path up under its -L prefix first (access), and reads /proc/self/exe
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    // a static qemu's C library sets up its thread pointer
    "arch_prctl",
    // the guest executor closes every descriptor above 4 at start, as the native one does
    "close_range",
    // a dynamic qemu's start-up (its libraries ask for the process's NUMA policy)
    "get_mempolicy",
    "set_mempolicy",
    nullptr,
};

std::string errnoText(int error) {
  return std::system_category().message(error);
}

SandboxError failure(const std::string& what, int error) {
  return {what + ": " + errnoText(error)};
}

std::optional<SandboxError> setLimit(int resource, const char* name, uint64_t soft, uint64_t hard) {
  struct rlimit limit;
  limit.rlim_cur = soft;
  limit.rlim_max = hard;
  if (::setrlimit(resource, &limit) < 0)
    return failure(std::string("setrlimit(") + name + ", " + std::to_string(soft) + ")", errno);
  return std::nullopt;
}

/// Tasks (threads) of processes whose real uid is `uid`, from /proc/<pid>/status; nullopt when
/// /proc cannot be read. Processes that end meanwhile are skipped.
std::optional<uint64_t> countUserTasks(uid_t uid) {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr)
    return std::nullopt;
  uint64_t tasks = 0;
  while (const dirent* entry = ::readdir(proc)) {
    if (entry->d_name[0] < '1' || entry->d_name[0] > '9')
      continue;
    std::string path = std::string("/proc/") + entry->d_name + "/status";
    FILE* status = std::fopen(path.c_str(), "re");
    if (status == nullptr)
      continue;
    char line[256];
    long realUid = -1, threads = 0;
    while (std::fgets(line, sizeof line, status) != nullptr) {
      if (std::strncmp(line, "Uid:", 4) == 0)
        realUid = std::strtol(line + 4, nullptr, 10);
      else if (std::strncmp(line, "Threads:", 8) == 0)
        threads = std::strtol(line + 8, nullptr, 10);
    }
    std::fclose(status);
    if (realUid == static_cast<long>(uid) && threads > 0)
      tasks += static_cast<uint64_t>(threads);
  }
  ::closedir(proc);
  return tasks;
}

std::optional<SandboxError> setLimits(const SandboxOptions& options) {
  uint64_t cpuHard = options.cpuSeconds == RLIM_INFINITY ? RLIM_INFINITY : options.cpuSeconds + 1;
  struct Limit {
    int resource;
    const char* name;
    uint64_t soft, hard;
  };
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer has reserved terabytes of shadow address space already: any RLIMIT_AS
  // would make its allocator fail. Sanitizer builds (tests only) go without the memory limit.
  const uint64_t memoryBytes = RLIM_INFINITY;
#else
  const uint64_t memoryBytes = options.memoryBytes;
#endif
  const Limit limits[] = {
      {RLIMIT_AS, "RLIMIT_AS", memoryBytes, memoryBytes},
      // SIGXCPU at the soft limit (rjitd names it a timeout); SIGKILL a second later if the
      // code ignores it.
      {RLIMIT_CPU, "RLIMIT_CPU", options.cpuSeconds, cpuHard},
      {RLIMIT_FSIZE, "RLIMIT_FSIZE", options.outputBytes, options.outputBytes},
      {RLIMIT_NOFILE, "RLIMIT_NOFILE", options.openFiles, options.openFiles},
      {RLIMIT_CORE, "RLIMIT_CORE", 0, 0},
  };
  for (const Limit& l : limits)
    if (auto error = setLimit(l.resource, l.name, l.soft, l.hard))
      return error;
  // The kernel counts RLIMIT_NPROC over all tasks of the real uid (rjitd's own when executors
  // run as rjitd's user, as under the unit): the limit is what the user has now plus this
  // executor's allowance.
  auto tasks = countUserTasks(::getuid());
  if (!tasks)
    return failure("counting the tasks of uid " + std::to_string(::getuid()) + " in /proc", errno);
  return setLimit(RLIMIT_NPROC, "RLIMIT_NPROC", *tasks + EXECUTOR_TASKS, *tasks + EXECUTOR_TASKS);
}

std::optional<SandboxError> dropUser(const SandboxOptions& options) {
  if (options.gid || options.uid) {
    if (::setgroups(0, nullptr) < 0)
      return failure("setgroups(0)", errno);
  }
  if (options.gid && ::setresgid(*options.gid, *options.gid, *options.gid) < 0)
    return failure("setresgid(" + std::to_string(*options.gid) + ")", errno);
  if (options.uid && ::setresuid(*options.uid, *options.uid, *options.uid) < 0)
    return failure("setresuid(" + std::to_string(*options.uid) + ")", errno);
  return std::nullopt;
}

/// "Where the host allows": a user namespace first (so that an unprivileged process may make
/// the others), then the others alone (root without user namespaces); refusals are not errors.
void enterNamespaces() {
  const int others = CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
  if (::unshare(CLONE_NEWUSER | others) == 0)
    return;
  // EPERM (no privilege, or user namespaces disabled), EINVAL (not built into the kernel),
  // ENOSPC (a namespace count limit): the process stays in the host's namespaces, where the
  // seccomp filter still refuses sockets.
  (void)::unshare(others);
}

std::optional<SandboxError> addRule(scmp_filter_ctx filter, uint32_t action, const char* name,
                                    unsigned count, const scmp_arg_cmp* conditions) {
  int number = ::seccomp_syscall_resolve_name(name);
  if (number == __NR_SCMP_ERROR)
    return std::nullopt;  // this architecture has no such system call: nothing to allow
  int result = ::seccomp_rule_add_array(filter, action, number, count, conditions);
  if (result < 0)
    return failure(std::string("seccomp_rule_add(") + name + ")", -result);
  return std::nullopt;
}

/// The launcher profile's rules beyond the native ones (see emulatorSyscalls()).
std::optional<SandboxError> addEmulatorRules(scmp_filter_ctx filter) {
  for (const char* const* name = EMULATOR_EXTRA; *name != nullptr; ++name)
    if (auto error = addRule(filter, SCMP_ACT_ALLOW, *name, 0, nullptr))
      return error;
  // Files opened for reading only: qemu reads the guest's ELF (and a dynamic qemu its
  // libraries) after the exec. A guest's open reaches the host as this same call, so it is
  // allowed too; Landlock (restrictFiles) leaves it nothing to open but those files.
  const scmp_arg_cmp readOnly[] = {
      SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND, 0)};
  if (auto error = addRule(filter, SCMP_ACT_ALLOW, "openat", 1, readOnly))
    return error;
  // qemu lowers RLIMIT_CORE to 0 before it kills itself with a guest's fatal signal (its
  // hard limit is 0 already: nothing can be raised).
  // Its own limit only (pid 0, as glibc and qemu pass): another process of the same user (rjitd
  // itself) must not get its core limit changed.
  const scmp_arg_cmp core[] = {SCMP_A0(SCMP_CMP_EQ, 0), SCMP_A1(SCMP_CMP_EQ, RLIMIT_CORE)};
  if (auto error = addRule(filter, SCMP_ACT_ALLOW, "prlimit64", 2, core))
    return error;
  // The guest executor makes itself undumpable (the exec made qemu dumpable again) and checks
  // that it runs with no new privileges (the launcher's sandbox is in place).
  const scmp_arg_cmp undumpable[] = {SCMP_A0(SCMP_CMP_EQ, PR_SET_DUMPABLE),
                                     SCMP_A1(SCMP_CMP_EQ, 0)};
  if (auto error = addRule(filter, SCMP_ACT_ALLOW, "prctl", 2, undumpable))
    return error;
  const scmp_arg_cmp askNoNewPrivs[] = {SCMP_A0(SCMP_CMP_EQ, PR_GET_NO_NEW_PRIVS)};
  return addRule(filter, SCMP_ACT_ALLOW, "prctl", 1, askNoNewPrivs);
}

/// Every file access Landlock ABI 1 knows: all of them are refused but what a rule allows.
constexpr uint64_t LANDLOCK_HANDLED =
    LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
    LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
    LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
    LANDLOCK_ACCESS_FS_MAKE_SYM;

/// Allows `access` to the file or tree at `path` in `ruleset`. A path that does not exist is an
/// error when `required`, else skipped (a static qemu needs no library directory).
std::optional<SandboxError> allowPath(int ruleset, const std::string& path, uint64_t access,
                                      bool required) {
  kj::AutoCloseFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (fd.get() < 0) {
    if (!required && errno == ENOENT)
      return std::nullopt;
    return failure("open(" + path + ")", errno);
  }
  struct landlock_path_beneath_attr rule = {};
  rule.allowed_access = access;
  rule.parent_fd = fd.get();
  if (::syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) < 0)
    return failure("landlock_add_rule(" + path + ")", errno);
  return std::nullopt;
}

/// Landlock for the launcher profile: the emulator may be read and executed, the guest
/// executor read; a dynamically linked emulator also reads the host's libraries. Nothing else
/// can be opened, executed or created, by qemu or by the code it runs. Needs no new privileges
/// (set before).
std::optional<SandboxError> restrictFiles(const EmulatorFiles& files) {
  struct landlock_ruleset_attr attributes = {};
  attributes.handled_access_fs = LANDLOCK_HANDLED;
  long created = ::syscall(SYS_landlock_create_ruleset, &attributes, sizeof attributes, 0);
  if (created < 0)
    return failure("landlock_create_ruleset (the kernel must have Landlock for an emulated "
                   "executor's sandbox)",
                   errno);
  kj::AutoCloseFd rulesetFd(static_cast<int>(created));  // Landlock's fds are CLOEXEC
  int ruleset = rulesetFd.get();
  const uint64_t read = LANDLOCK_ACCESS_FS_READ_FILE;
  if (auto error = allowPath(ruleset, files.emulator, read | LANDLOCK_ACCESS_FS_EXECUTE, true))
    return error;
  if (auto error = allowPath(ruleset, files.guest, read, true))
    return error;
  // Libraries, read only: a dynamically linked guest's (qemu opens them for its loader) and a
  // dynamic qemu's, in Debian's multiarch directories; the kernel opens a dynamic qemu's
  // loader for execution. Public files of the system; missing ones are skipped.
  // And the local time zone, which the native executor reads before its filter (tzset): the
  // guest reads it under this sandbox, and local times must print the same on both targets.
  for (const char* path : {"/etc/localtime", "/etc/ld.so.cache", "/usr/lib/aarch64-linux-gnu",
                           "/lib/aarch64-linux-gnu", "/lib/ld-linux-aarch64.so.1",
                           "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"})
    if (auto error = allowPath(ruleset, path, read, false))
      return error;
  if (auto error = allowPath(ruleset, "/lib64/ld-linux-x86-64.so.2",
                             read | LANDLOCK_ACCESS_FS_EXECUTE, false))
    return error;
  if (::syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
    return failure("landlock_restrict_self", errno);
  return std::nullopt;
}

std::optional<SandboxError> installFilter(bool emulated) {
  scmp_filter_ctx filter = ::seccomp_init(SCMP_ACT_TRAP);
  if (filter == nullptr)
    return SandboxError{"seccomp_init failed"};
  struct Release {
    scmp_filter_ctx filter;
    ~Release() { ::seccomp_release(filter); }
  } release{filter};

  for (const char* const* name = ALLOWED; *name != nullptr; ++name)
    if (auto error = addRule(filter, SCMP_ACT_ALLOW, *name, 0, nullptr))
      return error;

  // Threads only: a clone without CLONE_THREAD is a new process (fork, a fork bomb).
  const scmp_arg_cmp thread[] = {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)};
  if (auto error = addRule(filter, SCMP_ACT_ALLOW, "clone", 1, thread))
    return error;
  // clone3 passes its flags in memory, which a filter cannot read: ENOSYS makes glibc fall
  // back to clone, whose flags it can.
  if (auto error = addRule(filter, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, nullptr))
    return error;

  // Signals to this process only (raise, abort, the handler's re-raise, pthread_kill).
  const uint64_t self = static_cast<uint64_t>(::getpid());
  const scmp_arg_cmp own[] = {SCMP_A0(SCMP_CMP_EQ, self)};
  for (const char* name : {"kill", "tgkill", "tkill"})
    if (auto error = addRule(filter, SCMP_ACT_ALLOW, name, 1, own))
      return error;

  // kj marks descriptors close-on-exec and non-blocking with ioctl; stdio asks whether its
  // streams are terminals (TCGETS). Other requests (TIOCSTI on a terminal, ...) are refused.
  for (unsigned long request : {FIOCLEX, FIONCLEX, FIONBIO, FIONREAD, TCGETS}) {
    const scmp_arg_cmp is[] = {SCMP_A1(SCMP_CMP_EQ, request)};
    if (auto error = addRule(filter, SCMP_ACT_ALLOW, "ioctl", 1, is))
      return error;
  }
  // fcntl: descriptor flags, status flags without O_ASYNC, duplicates, seals and locks.
  // F_SETOWN/F_SETSIG/O_ASYNC are refused: with them the code could have the kernel signal
  // any process of its user (rjitd itself) when the channel becomes readable.
  for (int command :
       {F_GETFD, F_SETFD, F_GETFL, F_DUPFD, F_DUPFD_CLOEXEC, F_GET_SEALS, F_ADD_SEALS, F_GETLK,
        F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW, F_GETPIPE_SZ}) {
    const scmp_arg_cmp is[] = {SCMP_A1(SCMP_CMP_EQ, static_cast<uint64_t>(command))};
    if (auto error = addRule(filter, SCMP_ACT_ALLOW, "fcntl", 1, is))
      return error;
  }
  const scmp_arg_cmp setFlags[] = {SCMP_A1(SCMP_CMP_EQ, F_SETFL),
                                   SCMP_A2(SCMP_CMP_MASKED_EQ, O_ASYNC, 0)};
  if (auto error = addRule(filter, SCMP_ACT_ALLOW, "fcntl", 2, setFlags))
    return error;
  // Reading its own limits (glibc's pthread_create asks for RLIMIT_STACK, with pid 0); raising
  // them, and reading another process's, is refused.
  const scmp_arg_cmp readOnly[] = {SCMP_A0(SCMP_CMP_EQ, 0), SCMP_A2(SCMP_CMP_EQ, 0)};
  if (auto error = addRule(filter, SCMP_ACT_ALLOW, "prlimit64", 2, readOnly))
    return error;

  if (emulated)
    if (auto error = addEmulatorRules(filter))
      return error;

  int loaded = ::seccomp_load(filter);
  if (loaded < 0)
    return failure("seccomp_load", -loaded);
  return std::nullopt;
}

}  // namespace

const char* const* sandboxSyscalls() {
  return ALLOWED;
}

const char* const* emulatorSyscalls() {
  return EMULATOR_EXTRA;
}

std::optional<SandboxError> applySandbox(const SandboxOptions& options) {
  if (auto error = dropUser(options))
    return error;
  if (auto error = setLimits(options))
    return error;
  enterNamespaces();
  // Ends with rjitd, which enforces its deadlines. Set after the user and namespace changes,
  // which clear it.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
    return failure("prctl(PR_SET_PDEATHSIG)", errno);
  // Not dumpable: no core, no ptrace attach, /proc/<pid> owned by root.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
    return failure("prctl(PR_SET_DUMPABLE)", errno);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return failure("prctl(PR_SET_NO_NEW_PRIVS)", errno);
  if (options.emulator)
    if (auto error = restrictFiles(*options.emulator))
      return error;
  return installFilter(options.emulator.has_value());
}

}  // namespace rjitd::executor
