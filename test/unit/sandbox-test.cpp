// SPDX-License-Identifier: MIT
// The executor's sandbox (service/executor/sandbox.h) in forked children, and the real
// rjitd-executor binary on a socketpair: handshake and Control through its seccomp filter,
// a clean exit when the channel closes, and what a death leaves on the status page.
#include "daemon-process.h"
#include "launcher-protocol.h"
#include "sandbox.h"
#include "status-page.h"

#include "executor.capnp.h"
#include "rjit.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <optional>
#include <pthread.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace rjitd::executor {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool ASAN = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool ASAN = true;
#else
constexpr bool ASAN = false;
#endif
#else
constexpr bool ASAN = false;
#endif

/// Limits that stay out of the way of the test at hand.
SandboxOptions roomy() {
  SandboxOptions options;
  options.memoryBytes = RLIM_INFINITY;
  options.outputBytes = RLIM_INFINITY;
  options.cpuSeconds = RLIM_INFINITY;
  options.openFiles = 256;
  return options;
}

/// Exit statuses of a sandboxed child (any other status or a signal is the test's verdict).
constexpr int CHILD_OK = 0;
constexpr int CHILD_NO_SANDBOX = 100;
constexpr int CHILD_CHECK_FAILED = 101;

/// Runs `body` in a forked child after applySandbox(options) and returns its wait status.
/// `before` runs in the child before the sandbox (what needs a forbidden call, like a memfd).
int runSandboxed(
    const SandboxOptions& options, const std::function<int()>& body,
    const std::function<void()>& before = [] {}) {
  pid_t pid = ::fork();
  if (pid == 0) {
    before();
    if (applySandbox(options))
      ::_exit(CHILD_NO_SANDBOX);
    ::_exit(body());
  }
  EXPECT_GT(pid, 0);
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return status;
}

void expectSignal(int status, int signal) {
  ASSERT_TRUE(WIFSIGNALED(status)) << "exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), signal) << strsignal(WTERMSIG(status));
}

void expectExit(int status, int code) {
  ASSERT_TRUE(WIFEXITED(status)) << "died of " << strsignal(WTERMSIG(status));
  EXPECT_EQ(WEXITSTATUS(status), code);
}

TEST(Sandbox, AppliesAndExits) {
  expectExit(runSandboxed(roomy(), [] { return CHILD_OK; }), CHILD_OK);
}

TEST(Sandbox, SocketDiesOfSigsys) {
  expectSignal(runSandboxed(roomy(),
                            [] {
                              ::socket(AF_UNIX, SOCK_STREAM, 0);
                              return CHILD_CHECK_FAILED;
                            }),
               SIGSYS);
}

TEST(Sandbox, ForkDiesOfSigsys) {
  expectSignal(runSandboxed(roomy(),
                            [] {
                              pid_t child = ::fork();
                              if (child == 0)
                                ::_exit(CHILD_CHECK_FAILED);
                              return CHILD_CHECK_FAILED;
                            }),
               SIGSYS);
}

TEST(Sandbox, ExecveDiesOfSigsys) {
  expectSignal(runSandboxed(roomy(),
                            [] {
                              char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
                              ::execve("/bin/true", argv, environ);
                              return CHILD_CHECK_FAILED;
                            }),
               SIGSYS);
}

TEST(Sandbox, OpenDiesOfSigsys) {
  expectSignal(runSandboxed(roomy(),
                            [] {
                              ::open("/etc/passwd", O_RDONLY | O_CLOEXEC);
                              return CHILD_CHECK_FAILED;
                            }),
               SIGSYS);
}

TEST(Sandbox, KillOfAnotherProcessDiesOfSigsys) {
  expectSignal(runSandboxed(roomy(),
                            [] {
                              ::kill(::getppid(), 0);
                              return CHILD_CHECK_FAILED;
                            }),
               SIGSYS);
}

TEST(Sandbox, KillOfItselfWorks) {
  expectExit(runSandboxed(roomy(), [] { return ::kill(::getpid(), 0) == 0 ? CHILD_OK : 1; }),
             CHILD_OK);
}

TEST(Sandbox, Clone3FailsWithEnosys) {
  expectExit(runSandboxed(roomy(),
                          [] {
                            long r = ::syscall(SYS_clone3, nullptr, 0);
                            return r == -1 && errno == ENOSYS ? CHILD_OK : CHILD_CHECK_FAILED;
                          }),
             CHILD_OK);
}

void* threadBody(void*) {
  // A new thread's first malloc makes a new arena: that must not need a forbidden call.
  void* p = std::malloc(1 << 20);
  std::memset(p, 1, 1 << 20);
  std::free(p);
  return reinterpret_cast<void*>(uintptr_t{42});
}

TEST(Sandbox, ThreadsWork) {
  expectExit(runSandboxed(roomy(),
                          [] {
                            pthread_t thread;
                            if (::pthread_create(&thread, nullptr, &threadBody, nullptr) != 0)
                              return CHILD_CHECK_FAILED;
                            void* result = nullptr;
                            if (::pthread_join(thread, &result) != 0 ||
                                result != reinterpret_cast<void*>(uintptr_t{42}))
                              return CHILD_CHECK_FAILED;
                            return CHILD_OK;
                          }),
             CHILD_OK);
}

void* blockOnPipe(void* fd) {
  char c;
  (void)::read(static_cast<int>(reinterpret_cast<intptr_t>(fd)), &c, 1);
  return nullptr;
}

TEST(Sandbox, ThreadsAreBoundedPerExecutor) {
  // A thread bomb: threads that stay until the pipe closes, started until pthread_create
  // refuses. RLIMIT_NPROC is not enforced for root, so as root the child runs as nobody, as
  // rjitd's executors do. The kernel counts the user's tasks, and other tests' executors of
  // that user come and go meanwhile: the bomb must stop, near EXECUTOR_TASKS, not exactly at it.
  SandboxOptions options = roomy();
  if (::geteuid() == 0) {
    options.uid = 65534;
    options.gid = 65534;
  }
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  int readEnd = pipeFds[0];
  constexpr uint64_t BOUND = 16 * EXECUTOR_TASKS;
  expectExit(runSandboxed(options,
                          [readEnd] {
                            pthread_attr_t attr;
                            ::pthread_attr_init(&attr);
                            ::pthread_attr_setstacksize(&attr, 64 << 10);
                            for (uint64_t started = 0; started <= BOUND; ++started) {
                              pthread_t thread;
                              int rc = ::pthread_create(
                                  &thread, &attr, &blockOnPipe,
                                  reinterpret_cast<void*>(static_cast<intptr_t>(readEnd)));
                              if (rc == EAGAIN)
                                return started >= 1 ? CHILD_OK : CHILD_CHECK_FAILED;
                              if (rc != 0)
                                return CHILD_CHECK_FAILED;
                            }
                            return CHILD_CHECK_FAILED;  // never refused
                          }),
             CHILD_OK);
  ::close(pipeFds[0]);
  ::close(pipeFds[1]);
}

TEST(Sandbox, SignalsOnIoToAnotherProcessAreForbidden) {
  // F_SETOWN would have the kernel signal rjitd (same user) when the channel becomes readable.
  expectSignal(runSandboxed(roomy(),
                            [] {
                              (void)::fcntl(0, F_SETOWN, ::getppid());
                              return CHILD_OK;
                            }),
               SIGSYS);
  expectSignal(runSandboxed(roomy(),
                            [] {
                              (void)::fcntl(0, F_SETFL, O_ASYNC | O_NONBLOCK);
                              return CHILD_OK;
                            }),
               SIGSYS);
  // Ordinary status flags stay allowed.
  expectExit(runSandboxed(roomy(),
                          [] {
                            int flags = ::fcntl(0, F_GETFL);
                            return ::fcntl(0, F_SETFL, flags | O_NONBLOCK) == 0
                                       ? CHILD_OK
                                       : CHILD_CHECK_FAILED;
                          }),
             CHILD_OK);
}

TEST(Sandbox, MallocAndMmapWork) {
  expectExit(runSandboxed(roomy(),
                          [] {
                            void* small = std::malloc(100);
                            void* large = std::malloc(64 << 20);  // mmap'd by malloc
                            void* mapped = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE,
                                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                            if (small == nullptr || large == nullptr || mapped == MAP_FAILED)
                              return CHILD_CHECK_FAILED;
                            std::memset(large, 1, 64 << 20);
                            std::memset(mapped, 1, 1 << 20);
                            if (::mprotect(mapped, 1 << 20, PROT_READ) != 0 ||
                                ::munmap(mapped, 1 << 20) != 0)
                              return CHILD_CHECK_FAILED;
                            std::free(large);
                            std::free(small);
                            return CHILD_OK;
                          }),
             CHILD_OK);
}

TEST(Sandbox, WriteToPipeWorks) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  kj::AutoCloseFd readEnd(fds[0]), writeEnd(fds[1]);
  int status = runSandboxed(roomy(), [&] {
    return ::write(writeEnd.get(), "sandboxed", 9) == 9 ? CHILD_OK : CHILD_CHECK_FAILED;
  });
  expectExit(status, CHILD_OK);
  char buffer[16] = {};
  EXPECT_EQ(::read(readEnd.get(), buffer, sizeof(buffer)), 9);
  EXPECT_STREQ(buffer, "sandboxed");
}

TEST(Sandbox, AllocationPastMemoryLimitFails) {
  if (ASAN)
    GTEST_SKIP() << "AddressSanitizer's shadow memory is far larger than any RLIMIT_AS";
  SandboxOptions options = roomy();
  options.memoryBytes = 512ull << 20;
  expectExit(runSandboxed(options,
                          [] {
                            void* p = std::malloc(1ull << 30);
                            return p == nullptr && errno == ENOMEM ? CHILD_OK : CHILD_CHECK_FAILED;
                          }),
             CHILD_OK);
}

TEST(Sandbox, WritePastOutputLimitDiesOfSigxfsz) {
  SandboxOptions options = roomy();
  options.outputBytes = 4096;
  int memfd = -1;
  expectSignal(runSandboxed(
                   options,
                   [&] {
                     static char bytes[8192];
                     ::write(memfd, bytes, sizeof(bytes));  // partial up to the limit, then
                     ::write(memfd, bytes, sizeof(bytes));  // SIGXFSZ at the limit
                     return CHILD_CHECK_FAILED;
                   },
                   [&] { memfd = ::memfd_create("stdout", MFD_CLOEXEC); }),
               SIGXFSZ);
}

TEST(Sandbox, ForbiddenSystemCallsAreListedNowhere) {
  // The allow-list names no call the sandbox exists to refuse.
  for (const char* const* name = sandboxSyscalls(); *name != nullptr; ++name)
    for (const char* forbidden :
         {"socket", "connect", "execve", "fork", "vfork", "clone", "clone3", "ptrace", "open",
          "openat", "openat2", "creat", "mount", "bpf", "kill", "setuid", "unshare", "prctl"})
      EXPECT_STRNE(*name, forbidden);
}

// --- the real executor binary ---------------------------------------------------------------

/// rjitd's side of a freshly spawned rjitd-executor: its five descriptors, and the child.
class ExecutorProcess {
public:
  explicit ExecutorProcess(std::vector<std::string> extraArgs = {}) {
    const char* binary = std::getenv("RJITD_EXECUTOR_BIN");
    KJ_REQUIRE(binary != nullptr, "RJITD_EXECUTOR_BIN is not set (run through meson test)");
    for (int i = 0; i < 3; ++i)
      stdio[i] = kj::AutoCloseFd(::memfd_create("stdio", MFD_CLOEXEC));
    statusFd = kj::AutoCloseFd(::memfd_create("status", MFD_CLOEXEC));
    KJ_SYSCALL(::ftruncate(statusFd.get(), 4096));
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, statusFd.get(), 0);
    KJ_REQUIRE(p != MAP_FAILED);
    page = static_cast<StatusPage*>(p);
    int pair[2];
    KJ_SYSCALL(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
    channel = kj::AutoCloseFd(pair[0]);
    kj::AutoCloseFd theirs(pair[1]);

    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    int sources[] = {stdio[0].get(), stdio[1].get(), stdio[2].get(), theirs.get(), statusFd.get()};
    for (int fd = 0; fd < 5; ++fd)
      ::posix_spawn_file_actions_adddup2(&actions, sources[fd], fd);
    std::vector<std::string> args = {binary,     "--memory",     "1073741824",
                                     "--output", "8388608",      "--cpu-seconds",
                                     "60",       "--open-files", "64"};
    if (ASAN)
      args[2] = std::to_string(RLIM_INFINITY);
    args.insert(args.end(), extraArgs.begin(), extraArgs.end());
    std::vector<char*> argv;
    for (std::string& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    char* noEnvironment[] = {nullptr};
    int spawned = ::posix_spawn(&pid, binary, &actions, nullptr, argv.data(), noEnvironment);
    ::posix_spawn_file_actions_destroy(&actions);
    KJ_REQUIRE(spawned == 0, "posix_spawn", strerror(spawned));
  }
  ~ExecutorProcess() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    ::munmap(page, 4096);
  }

  /// The wait status once the process has ended.
  int wait() {
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    pid = 0;
    return status;
  }

  std::string stderrText() {
    char buffer[4096];
    ssize_t n = ::pread(stdio[2].get(), buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, size_t(n)) : std::string();
  }

  pid_t pid = 0;
  kj::AutoCloseFd stdio[3];
  kj::AutoCloseFd statusFd;
  kj::AutoCloseFd channel;
  StatusPage* page = nullptr;
};

/// rjitd's bootstrap as far as an executor uses it before a load: the handshake.
class FakeRjitd final : public proto::Rjitd::Server {
public:
  kj::Promise<void> hello(HelloContext context) override {
    auto server = context.getResults().initServer();
    server.setProtocolVersion(proto::PROTOCOL_VERSION);
    server.setRjitdVersion("test");
    context.getResults().setSession(kj::heap<proto::Session::Server>());
    return kj::READY_NOW;
  }
};

/// A client's shared segment: a memfd of `size` bytes.
class FakeSegment final : public proto::SharedSegment::Server {
public:
  explicit FakeSegment(uint64_t size) : fd(::memfd_create("segment", MFD_CLOEXEC)) {
    KJ_SYSCALL(::ftruncate(fd.get(), static_cast<off_t>(size)));
  }
  kj::Maybe<int> getFd() override { return fd.get(); }

private:
  kj::AutoCloseFd fd;
};

/// Drives `executor` through a handshake and Control (a segment attached, a bad call refused),
/// closes the channel and expects a clean exit.
void expectServesControlAndExits(ExecutorProcess& executor) {
  {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    auto stream = io.lowLevelProvider->wrapUnixSocketFd(kj::mv(executor.channel));
    capnp::TwoPartyVatNetwork network(*stream, 4, capnp::rpc::twoparty::Side::SERVER);
    auto rpc = capnp::makeRpcServer(network, kj::heap<FakeRjitd>());
    capnp::word scratch[4] = {};
    capnp::MallocMessageBuilder message(scratch);
    auto vatId = message.getRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::CLIENT);
    auto control = rpc.bootstrap(vatId).castAs<proto::executor::Control>();

    // A descriptor crosses into the sandbox and is mapped there.
    auto attach = control.attachSegmentRequest();
    attach.setSegment(kj::heap<FakeSegment>(1 << 20));
    attach.setSize(1 << 20);
    EXPECT_EQ(std::string(attach.send().wait(io.waitScope).getError().cStr()), "");
    // A second one is refused, by a message.
    auto again = control.attachSegmentRequest();
    again.setSegment(kj::heap<FakeSegment>(4096));
    again.setSize(4096);
    EXPECT_NE(std::string(again.send().wait(io.waitScope).getError().cStr()), "");
    // A module it does not hold: rjitd's mistake, answered as an exception.
    auto call = control.callRequest();
    call.setId(7);
    call.setSymbol("f");
    call.setSignature("void()");
    auto failure = kj::runCatchingExceptions([&] { call.send().wait(io.waitScope); });
    KJ_IF_MAYBE (e, failure) {
      EXPECT_EQ(e->getType(), kj::Exception::Type::FAILED);
    } else {
      ADD_FAILURE() << "a call of an unknown module was answered";
    }
    auto unload = control.unloadRequest();
    unload.setId(7);
    unload.send().wait(io.waitScope);
    EXPECT_EQ(executor.page->phase.load(), StatusPage::Idle);
  }  // the channel closes
  expectExit(executor.wait(), 0);
  EXPECT_EQ(executor.page->magic.load(), StatusPage::MAGIC);
  EXPECT_EQ(executor.page->signal.load(), 0);
  EXPECT_EQ(executor.stderrText(), "");
}

TEST(Executor, ServesControlThroughItsSandboxAndExitsWhenTheChannelCloses) {
  ExecutorProcess executor;
  expectServesControlAndExits(executor);
}

TEST(Executor, ExitsCleanlyWhenTheChannelClosesBeforeTheHandshake) {
  ExecutorProcess executor;
  executor.channel = nullptr;
  expectExit(executor.wait(), 0);
  EXPECT_EQ(executor.stderrText(), "");
}

TEST(Executor, CrashInTheSandboxLeavesItsSignalOnTheStatusPage) {
  if (ASAN)
    GTEST_SKIP() << "AddressSanitizer reports a SIGSEGV in the executor's own code itself, and its "
                    "report reads /proc/self/exe, which the sandbox refuses (crashes in user code "
                    "are checked end to end in both builds by execute-test)";
  ExecutorProcess executor({"--test-crash-after-sandbox", "segv"});
  expectSignal(executor.wait(), SIGSEGV);
  EXPECT_EQ(executor.page->magic.load(), StatusPage::MAGIC);
  EXPECT_EQ(executor.page->phase.load(), StatusPage::Idle);
  EXPECT_EQ(executor.page->signal.load(), SIGSEGV);
  EXPECT_EQ(executor.page->faultAddress.load(), 0u);
  EXPECT_EQ(executor.page->syscall.load(), -1);
}

TEST(Executor, ForbiddenSystemCallLeavesItsNumberOnTheStatusPage) {
  ExecutorProcess executor({"--test-crash-after-sandbox", "socket"});
  expectSignal(executor.wait(), SIGSYS);
  EXPECT_EQ(executor.page->signal.load(), SIGSYS);
  EXPECT_EQ(executor.page->syscall.load(), SYS_socket);
}

TEST(Executor, BadArgumentsFailBeforeTheSandbox) {
  ExecutorProcess executor({"--no-such-option"});
  expectExit(executor.wait(), 2);
  EXPECT_EQ(executor.page->phase.load(), StatusPage::Starting);
  EXPECT_NE(executor.stderrText().find("rjitd-executor: error:"), std::string::npos);
}

// --- the launcher: the aarch64 executor under qemu ---------------------------------------------

/// qemu-user for the launcher tests, as rjitd chooses it: the static build when installed, else
/// the dynamic one (packaging/install-deps.sh installs qemu-user).
std::string qemuAarch64() {
  for (const char* candidate : {"/usr/bin/qemu-aarch64-static", "/usr/bin/qemu-aarch64"})
    if (::access(candidate, X_OK) == 0)
      return candidate;
  ADD_FAILURE() << "no qemu-aarch64 (packaging/install-deps.sh installs qemu-user)";
  return "/usr/bin/qemu-aarch64";
}

/// The aarch64 rjitd-executor of the cross build (meson -Daarch64_executor), "" when not built.
std::string aarch64Executor() {
  const char* path = std::getenv("RJITD_AARCH64_EXECUTOR_BIN");
  return path != nullptr ? path : "";
}

/// The launcher's options for the aarch64 executor, then `extra`.
std::vector<std::string> launcherArgs(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--emulator", qemuAarch64(), "--guest", aarch64Executor()};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

#define SKIP_WITHOUT_AARCH64_EXECUTOR()                                                            \
  if (aarch64Executor().empty())                                                                   \
  GTEST_SKIP() << "no aarch64 rjitd-executor: configure with -Daarch64_executor=PATH"

TEST(Launcher, Aarch64ExecutorServesControlUnderQemuAndExitsWhenTheChannelCloses) {
  SKIP_WITHOUT_AARCH64_EXECUTOR();
  ExecutorProcess executor(launcherArgs());
  expectServesControlAndExits(executor);
}

TEST(Launcher, Aarch64ExecutorServesControlUnderADynamicallyLinkedQemu) {
  SKIP_WITHOUT_AARCH64_EXECUTOR();
  // qemu-aarch64 (qemu-user) loads host libraries after the launcher's exec: the profile's
  // Landlock rules let it read them and execute its loader.
  ExecutorProcess executor({"--emulator", "/usr/bin/qemu-aarch64", "--guest", aarch64Executor()});
  expectServesControlAndExits(executor);
}

TEST(Launcher, CrashInTheGuestKillsQemuWithItsSignalAndLeavesItOnTheStatusPage) {
  SKIP_WITHOUT_AARCH64_EXECUTOR();
  // qemu re-raises a guest's fatal signal on itself: rjitd's pidfd sees the guest's signal.
  ExecutorProcess executor(launcherArgs({"--test-crash-after-sandbox", "segv"}));
  expectSignal(executor.wait(), SIGSEGV);
  EXPECT_EQ(executor.page->magic.load(), StatusPage::MAGIC);
  EXPECT_EQ(executor.page->phase.load(), StatusPage::Idle);
  EXPECT_EQ(executor.page->signal.load(), SIGSEGV);
  EXPECT_EQ(executor.page->faultAddress.load(), 0u);
}

TEST(Launcher, ForbiddenSystemCallOfTheGuestLeavesTheHostNumberOnTheStatusPage) {
  SKIP_WITHOUT_AARCH64_EXECUTOR();
  // The guest's socket() is qemu's host socket(), refused by the host filter; the guest's
  // handler gets qemu's copy of the host siginfo, so the number is the host's (x86_64).
  ExecutorProcess executor(launcherArgs({"--test-crash-after-sandbox", "socket"}));
  expectSignal(executor.wait(), SIGSYS);
  EXPECT_EQ(executor.page->signal.load(), SIGSYS);
  EXPECT_EQ(executor.page->syscall.load(), SYS_socket);
}

TEST(Launcher, MissingGuestFailsBeforeTheSandbox) {
  ExecutorProcess executor({"--emulator", qemuAarch64(), "--guest", "/nonexistent/rjitd-executor"});
  expectExit(executor.wait(), 1);
  EXPECT_EQ(executor.page->phase.load(), StatusPage::Starting);
  EXPECT_NE(executor.stderrText().find("rjitd-executor: error:"), std::string::npos)
      << executor.stderrText();
}

TEST(Launcher, LaunchedWithoutTheLauncherRefusesToServe) {
  // --launched trusts a sandbox that is not there: no new privileges is off.
  ExecutorProcess executor({"--launched"});
  expectExit(executor.wait(), 1);
  EXPECT_EQ(executor.page->phase.load(), StatusPage::Starting);
  EXPECT_NE(executor.stderrText().find("not started by the launcher"), std::string::npos)
      << executor.stderrText();
}

/// The launcher profile with real files: qemu-aarch64 as the emulator, this test as the
/// "guest" (any readable file does).
SandboxOptions emulatorProfile() {
  SandboxOptions options = roomy();
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  options.emulator = EmulatorFiles{qemuAarch64(), std::string(self, n > 0 ? size_t(n) : 0)};
  return options;
}

TEST(EmulatorProfile, ListsNoSystemCallTheSandboxExistsToRefuse) {
  for (const char* const* name = emulatorSyscalls(); *name != nullptr; ++name)
    for (const char* forbidden : {"socket",
                                  "connect",
                                  "fork",
                                  "vfork",
                                  "clone",
                                  "clone3",
                                  "ptrace",
                                  "open",
                                  "openat",
                                  "openat2",
                                  "creat",
                                  "mount",
                                  "bpf",
                                  "kill",
                                  "setuid",
                                  "unshare",
                                  "prctl",
                                  "seccomp",
                                  "process_vm_writev",
                                  "memfd_create"})
      EXPECT_STRNE(*name, forbidden);
}

TEST(EmulatorProfile, OpeningAnotherFileForReadingIsRefusedByLandlock) {
  expectExit(runSandboxed(emulatorProfile(),
                          [] {
                            int fd = ::open("/etc/passwd", O_RDONLY | O_CLOEXEC);
                            return fd < 0 && errno == EACCES ? CHILD_OK : CHILD_CHECK_FAILED;
                          }),
             CHILD_OK);
}

TEST(EmulatorProfile, TheEmulatorAndTheGuestCanBeRead) {
  SandboxOptions options = emulatorProfile();
  std::string guest = options.emulator->guest;
  std::string qemu = options.emulator->emulator;
  expectExit(runSandboxed(options,
                          [&guest, &qemu] {
                            int emulator = ::open(qemu.c_str(), O_RDONLY | O_CLOEXEC);
                            int self = ::open(guest.c_str(), O_RDONLY | O_CLOEXEC);
                            return emulator >= 0 && self >= 0 ? CHILD_OK : CHILD_CHECK_FAILED;
                          }),
             CHILD_OK);
}

TEST(EmulatorProfile, OpeningForWritingDiesOfSigsys) {
  expectSignal(runSandboxed(emulatorProfile(),
                            [] {
                              ::open("/tmp/rjitd-sandbox-test", O_WRONLY | O_CREAT | O_CLOEXEC,
                                     0600);
                              return CHILD_CHECK_FAILED;
                            }),
               SIGSYS);
}

TEST(EmulatorProfile, ExecutingAnythingButTheEmulatorIsRefused) {
  expectExit(runSandboxed(emulatorProfile(),
                          [] {
                            char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
                            ::execve("/bin/true", argv, environ);
                            return errno == EACCES ? CHILD_OK : CHILD_CHECK_FAILED;
                          }),
             CHILD_OK);
}

TEST(EmulatorProfile, SocketAndForkStillDieOfSigsys) {
  expectSignal(runSandboxed(emulatorProfile(),
                            [] {
                              ::socket(AF_UNIX, SOCK_STREAM, 0);
                              return CHILD_CHECK_FAILED;
                            }),
               SIGSYS);
  expectSignal(runSandboxed(emulatorProfile(),
                            [] {
                              if (::fork() == 0)
                                ::_exit(CHILD_CHECK_FAILED);
                              return CHILD_CHECK_FAILED;
                            }),
               SIGSYS);
}

TEST(EmulatorProfile, MakingItselfDumpableDiesOfSigsys) {
  expectSignal(runSandboxed(emulatorProfile(),
                            [] {
                              ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
                              return CHILD_CHECK_FAILED;
                            }),
               SIGSYS);
}

// --- the real executor with a real rjitd -----------------------------------------------------

const char* const MODULE = R"(
@.hello = private constant [10 x i8] c"hello %d\0A\00"
declare i32 @printf(ptr, ...)
declare i32 @socket(i32, i32, i32)

define i64 @add(i64 %a, i64 %b) {
  %s = add i64 %a, %b
  ret i64 %s
}

define i32 @say(i32 %x) {
  %r = call i32 (ptr, ...) @printf(ptr @.hello, i32 %x)
  ret i32 %x
}

define void @crash() {
  store volatile i32 1, ptr null
  ret void
}

declare ptr @_Znwm(i64)
declare ptr @localtime(ptr)

define i32 @zone() {
  %t = alloca i64
  store i64 0, ptr %t
  %tm = call ptr @localtime(ptr %t)
  %ok = icmp ne ptr %tm, null
  %r = zext i1 %ok to i32
  ret i32 %r
}

@sink = global ptr null

define void @exhaust() {
  %p = call ptr @_Znwm(i64 -1)
  store volatile ptr %p, ptr @sink
  ret void
}

define i32 @network() {
  %fd = call i32 @socket(i32 2, i32 1, i32 0)
  ret i32 %fd
}

define i32 @main(i32 %argc, ptr %argv, ptr %envp) {
  %first = load volatile ptr, ptr %envp
  %r = call i32 (ptr, ...) @printf(ptr @.hello, i32 %argc)
  ret i32 3
}
)";

/// rjitd's bootstrap for the executor, forwarded to a real rjitd: the executor's session (and
/// the images it loads, with their descriptors) is that rjitd's, through this process.
class ProxyRjitd final : public proto::Rjitd::Server {
public:
  explicit ProxyRjitd(proto::Rjitd::Client real) : real(kj::mv(real)) {}
  kj::Promise<void> hello(HelloContext context) override {
    auto request = real.helloRequest();
    request.setClient(context.getParams().getClient());
    return request.send().then(
        [context](capnp::Response<proto::Rjitd::HelloResults>&& response) mutable {
          context.getResults().setServer(response.getServer());
          context.getResults().setSession(response.getSession());
        });
  }

private:
  proto::Rjitd::Client real;
};

/// A real rjitd with MODULE in its cache, and an executor whose channel leads to it.
class ExecutorWithRjitd : public ::testing::Test {
protected:
  ~ExecutorWithRjitd() noexcept override {}  // kj's destructors may throw; gtest's may not

  void SetUp() override {
    daemon = rjit::test::DaemonProcess::start();
    ASSERT_NE(daemon, nullptr);
    kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, daemon->socketPath().c_str(), sizeof(address.sun_path) - 1);
    ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    rjitdStream = io.lowLevelProvider->wrapUnixSocketFd(kj::mv(fd));
    rjitdClient = kj::heap<capnp::TwoPartyClient>(*rjitdStream, 4);
    proto::Rjitd::Client real = rjitdClient->bootstrap().castAs<proto::Rjitd>();

    auto hello = real.helloRequest();
    hello.initClient().setProtocolVersion(proto::PROTOCOL_VERSION);
    auto session = hello.send().wait(io.waitScope).getSession();
    auto compile = session.compileRequest();
    auto request = compile.initRequest();
    request.setOptLevel(1);
    request.setFormat(proto::IrFormat::TEXT);
    request.setModule(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(MODULE), std::strlen(MODULE)));
    auto compiled = compile.send().wait(io.waitScope);
    ASSERT_TRUE(compiled.getOutcome().isOk())
        << compiled.getOutcome().getError().getMessage().cStr();
    auto k = compiled.getOutcome().getOk().getKey();
    key.assign(k.begin(), k.end());

    executorStream = io.lowLevelProvider->wrapUnixSocketFd(kj::mv(executor.channel));
    network =
        kj::heap<capnp::TwoPartyVatNetwork>(*executorStream, 4, capnp::rpc::twoparty::Side::SERVER);
    rpc = kj::heap(capnp::makeRpcServer(*network, kj::heap<ProxyRjitd>(kj::mv(real))));
    capnp::word scratch[4] = {};
    capnp::MallocMessageBuilder message(scratch);
    auto vatId = message.getRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::CLIENT);
    control = rpc->bootstrap(vatId).castAs<proto::executor::Control>();
  }

  uint64_t load() {
    auto request = control.loadRequest();
    request.setOptLevel(1);
    request.setKey(capnp::Data::Reader(key.data(), key.size()));
    std::optional<capnp::Response<proto::executor::Control::LoadResults>> response;
    auto failure = kj::runCatchingExceptions([&] { response = request.send().wait(io.waitScope); });
    KJ_IF_MAYBE (e, failure) {
      int status = executor.wait();
      ADD_FAILURE() << "the executor died during the load: status " << status << ", signal "
                    << executor.page->signal.load() << ", system call "
                    << executor.page->syscall.load() << "; stderr: " << executor.stderrText();
      kj::throwFatalException(kj::mv(*e));
    }
    auto outcome = response->getOutcome();
    KJ_REQUIRE(outcome.isId(), outcome.getError().getMessage());
    return outcome.getId();
  }

  std::string output(int fd) {
    char buffer[4096];
    ssize_t n = ::pread(executor.stdio[fd].get(), buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, size_t(n)) : std::string();
  }

  /// A call that does not answer: the executor died. Its wait status.
  int callThatKills(uint64_t id, const char* symbol, const char* signature) {
    auto request = control.callRequest();
    request.setId(id);
    request.setSymbol(symbol);
    request.setSignature(signature);
    auto failure = kj::runCatchingExceptions([&] { request.send().wait(io.waitScope); });
    KJ_IF_MAYBE (e, failure) {
      EXPECT_EQ(e->getType(), kj::Exception::Type::DISCONNECTED);
    } else {
      ADD_FAILURE() << symbol << " answered";
      ::kill(executor.pid, SIGKILL);  // so that the wait below ends
    }
    return executor.wait();
  }

  ExecutorProcess executor;
  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::unique_ptr<rjit::test::DaemonProcess> daemon;
  kj::Own<kj::AsyncCapabilityStream> rjitdStream;
  kj::Own<capnp::TwoPartyClient> rjitdClient;
  std::vector<kj::byte> key;
  kj::Own<kj::AsyncCapabilityStream> executorStream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  proto::executor::Control::Client control = nullptr;
};

TEST_F(ExecutorWithRjitd, LoadsAndCallsInsideTheSandbox) {
  uint64_t id = load();
  auto call = control.callRequest();
  call.setId(id);
  call.setSymbol("add");
  call.setSignature("i64(i64,i64)");
  auto args = call.initArguments(2);
  args[0].setSigned(40);
  args[1].setUnsigned(2);
  auto sum = call.send().wait(io.waitScope);
  ASSERT_TRUE(sum.getOutcome().isOk()) << sum.getOutcome().getError().getMessage().cStr();
  EXPECT_EQ(sum.getOutcome().getOk().getValue().getSigned(), 42);

  // printf from the executor's libc, flushed to the stdout file before the answer.
  auto say = control.callRequest();
  say.setId(id);
  say.setSymbol("say");
  say.setSignature("i32(i32)");
  say.initArguments(1)[0].setSigned(7);
  auto said = say.send().wait(io.waitScope);
  ASSERT_TRUE(said.getOutcome().isOk()) << said.getOutcome().getError().getMessage().cStr();
  EXPECT_EQ(output(1), "hello 7\n");

  // The time zone was read before the filter: localtime() needs no file now.
  auto zone = control.callRequest();
  zone.setId(id);
  zone.setSymbol("zone");
  zone.setSignature("i32()");
  auto zoned = zone.send().wait(io.waitScope);
  ASSERT_TRUE(zoned.getOutcome().isOk());
  EXPECT_EQ(zoned.getOutcome().getOk().getValue().getSigned(), 1);
  EXPECT_EQ(executor.page->phase.load(), StatusPage::Idle);
}

TEST_F(ExecutorWithRjitd, CrashInACallIsOnTheStatusPage) {
  uint64_t id = load();
  expectSignal(callThatKills(id, "crash", "void()"), SIGSEGV);
  EXPECT_EQ(executor.page->phase.load(), StatusPage::UserCode);
  EXPECT_EQ(executor.page->signal.load(), SIGSEGV);
  EXPECT_EQ(executor.page->faultAddress.load(), 0u);
}

TEST_F(ExecutorWithRjitd, SocketInACallIsASandboxViolation) {
  uint64_t id = load();
  expectSignal(callThatKills(id, "network", "i32()"), SIGSYS);
  EXPECT_EQ(executor.page->phase.load(), StatusPage::UserCode);
  EXPECT_EQ(executor.page->syscall.load(), SYS_socket);
}

TEST_F(ExecutorWithRjitd, BadAllocInACallIsOutOfMemoryOnTheStatusPage) {
  if (ASAN)
    GTEST_SKIP() << "AddressSanitizer's operator new reports a failed allocation itself instead "
                    "of throwing std::bad_alloc";
  uint64_t id = load();
  // operator new's std::bad_alloc must end the process (terminate), not become an RPC error.
  expectSignal(callThatKills(id, "exhaust", "void()"), SIGABRT);
  EXPECT_EQ(executor.page->outOfMemory.load(), 1u);
  EXPECT_EQ(executor.page->signal.load(), SIGABRT);
}

TEST_F(ExecutorWithRjitd, RunWithAnEmptyEnvironmentGetsAnEmptyEnvp) {
  uint64_t id = load();
  auto run = control.runRequest();
  run.setId(id);
  run.initArgv(1).set(0, "prog");
  auto failure = kj::runCatchingExceptions([&] { run.send().wait(io.waitScope); });
  EXPECT_TRUE(failure != nullptr) << "run answered";
  expectExit(executor.wait(), 3);  // main read envp[0]: a NULL envp would crash it
  EXPECT_EQ(output(1), "hello 1\n");
}

TEST_F(ExecutorWithRjitd, RunExitsWithMainsStatus) {
  uint64_t id = load();
  auto run = control.runRequest();
  run.setId(id);
  auto argv = run.initArgv(2);
  argv.set(0, "prog");
  argv.set(1, "x");
  run.initEnv(1).set(0, "A=b");
  auto failure = kj::runCatchingExceptions([&] { run.send().wait(io.waitScope); });
  KJ_IF_MAYBE (e, failure) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::DISCONNECTED);
  } else {
    ADD_FAILURE() << "run answered";
  }
  expectExit(executor.wait(), 3);
  EXPECT_EQ(output(1), "hello 2\n");
}

/// rjitd-launcher (service/executor/launcher-main.cpp), run as rjitd-launcher.socket's
/// Accept=yes would: fd 3 one end of a socketpair (the test is rjitd on the other), LISTEN_FDS=1
/// and LISTEN_PID its own pid. Its exit status and its stderr are what the tests check.
class Relay : public ::testing::Test {
protected:
  /// Exit statuses of rjitd-launcher.
  static constexpr int EXIT_REFUSED = 3;

  /// Starts the relay with `args` after its required options; `listenPid` false sets a
  /// LISTEN_PID that is not the relay's.
  void start(std::vector<std::string> args = {}, bool listenPid = true,
             std::string executor = "/bin/true") {
    const char* built = std::getenv("RJITD_EXECUTOR_BIN");
    KJ_REQUIRE(built != nullptr, "RJITD_EXECUTOR_BIN is not set (run through meson test)");
    std::string relay =
        std::string(built).substr(0, std::string(built).rfind('/') + 1) + "rjitd-launcher";
    // An --executor that ignores the launcher's arguments: /bin/true exits 0 at once.
    std::vector<std::string> all = {relay,       "--executor", executor,   "--emulator",
                                    "/bin/true", "--guest",    "/bin/true"};
    all.insert(all.end(), args.begin(), args.end());
    if (::geteuid() == 0)
      all.insert(all.end(), {"--uid", "65534", "--gid", "65534"});
    std::vector<char*> argv;
    for (auto& a : all)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    int sv[2];
    KJ_SYSCALL(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    ours = kj::AutoCloseFd(sv[0]);
    kj::AutoCloseFd theirs(sv[1]);
    int errPipe[2];
    KJ_SYSCALL(::pipe2(errPipe, O_CLOEXEC));
    stderrRead = kj::AutoCloseFd(errPipe[0]);
    kj::AutoCloseFd errWrite(errPipe[1]);
    pid = ::fork();
    KJ_REQUIRE(pid >= 0);
    if (pid == 0) {
      char listenPidVar[32];
      std::snprintf(listenPidVar, sizeof listenPidVar, "LISTEN_PID=%d", listenPid ? ::getpid() : 1);
      char listenFds[] = "LISTEN_FDS=1";
      char* envp[] = {listenFds, listenPidVar, nullptr};
      if (::dup2(theirs.get(), 3) < 0 || ::dup2(errWrite.get(), 2) < 0)
        ::_exit(126);
      ::execve(argv[0], argv.data(), envp);
      ::_exit(127);
    }
  }

  /// Sends `bytes` with `fds` in one message.
  void send(const void* bytes, size_t size, const std::vector<int>& fds) {
    iovec io{const_cast<void*>(bytes), size};
    msghdr message{};
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)] = {};
    if (!fds.empty()) {
      message.msg_control = control;
      message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* rights = CMSG_FIRSTHDR(&message);
      rights->cmsg_level = SOL_SOCKET;
      rights->cmsg_type = SCM_RIGHTS;
      rights->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(rights), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_EQ(::sendmsg(ours.get(), &message, MSG_NOSIGNAL), static_cast<ssize_t>(size));
  }

  /// Five descriptors of the kinds rjitd sends: memfds, and a socket as the channel (fd 3).
  std::vector<int> goodFds() {
    for (int i = 0; i < 5; ++i)
      held.emplace_back(i == 3 ? ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)
                               : ::memfd_create("relay-test", MFD_CLOEXEC));
    std::vector<int> fds;
    for (auto& fd : held)
      fds.push_back(fd.get());
    return fds;
  }

  /// An --executor that runs until it is killed.
  std::string sleeper() {
    std::string path = dir.file("sleeper");
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
    KJ_REQUIRE(fd >= 0, path);
    kj::AutoCloseFd script(fd);
    std::string text = "#!/bin/sh\nexec /bin/sleep 600\n";
    KJ_REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    return path;
  }

  /// The next report the relay sends (a failure is recorded when it sends none).
  launcher::Report report() {
    launcher::Report record;
    record.magic = 0;
    ssize_t n = ::recv(ours.get(), &record, sizeof record, MSG_WAITALL);
    EXPECT_EQ(n, static_cast<ssize_t>(sizeof record));
    EXPECT_EQ(record.magic, launcher::MAGIC);
    return record;
  }

  /// /proc/PID/comm of process `pid`, "" once it is gone.
  static std::string processName(pid_t pid) {
    kj::AutoCloseFd fd(
        ::open(("/proc/" + std::to_string(pid) + "/comm").c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0)
      return "";
    char text[64];
    ssize_t n = ::read(fd.get(), text, sizeof text);
    return n <= 1 ? "" : std::string(text, static_cast<size_t>(n - 1));
  }

  static launcher::Request goodRequest() {
    launcher::Request request;
    request.memoryBytes = 256ull << 20;
    request.outputBytes = 1 << 20;
    request.cpuSeconds = 60;
    request.openFiles = 256;
    return request;
  }

  /// Everything the relay sent until it closed the connection (ends: the relay exits). With
  /// `closeFirst`, the test's end stops sending first (the relay then kills what it started).
  std::string received(bool closeFirst = true) {
    if (closeFirst)
      ::shutdown(ours.get(), SHUT_WR);
    std::string out;
    char chunk[256];
    for (unsigned reads = 0; reads < 64; ++reads) {  // a relay sends 32 bytes at most
      ssize_t n = ::read(ours.get(), chunk, sizeof chunk);
      if (n <= 0)
        break;
      out.append(chunk, static_cast<size_t>(n));
    }
    return out;
  }

  /// The relay's exit status (exit code; -1 for a signal) and its stderr.
  std::pair<int, std::string> finish() {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    pid = -1;
    std::string err;
    char chunk[256];
    for (unsigned reads = 0; reads < 64; ++reads) {
      ssize_t n = ::read(stderrRead.get(), chunk, sizeof chunk);
      if (n <= 0)
        break;
      err.append(chunk, static_cast<size_t>(n));
    }
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, err};
  }

  /// The relay refused what it was sent: no report, exit EXIT_REFUSED, "refused: ... `what`".
  void expectRefused(const std::string& what) {
    EXPECT_EQ(received(), "");
    auto [status, err] = finish();
    EXPECT_EQ(status, EXIT_REFUSED) << err;
    EXPECT_NE(err.find("refused: "), std::string::npos) << err;
    EXPECT_NE(err.find(what), std::string::npos) << err;
  }

  void TearDown() override {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

public:
  // gtest's Test has a noexcept destructor; kj::AutoCloseFd's is noexcept(false).
  ~Relay() noexcept override {}

protected:
  rjit::test::TempDir dir;
  kj::AutoCloseFd ours, stderrRead;
  std::vector<kj::AutoCloseFd> held;
  pid_t pid = -1;
};

TEST_F(Relay, GoodRequestReportsTheStartAndTheWaitStatus) {
  start();
  auto request = goodRequest();
  send(&request, sizeof request, goodFds());
  std::string reports = received(false);
  ASSERT_EQ(reports.size(), 2 * sizeof(launcher::Report));
  launcher::Report started, ended;
  std::memcpy(&started, reports.data(), sizeof started);
  std::memcpy(&ended, reports.data() + sizeof started, sizeof ended);
  EXPECT_EQ(started.magic, launcher::MAGIC);
  EXPECT_EQ(started.kind, launcher::Report::Started);
  EXPECT_GT(started.value, 0);
  EXPECT_EQ(ended.kind, launcher::Report::Ended);
  EXPECT_TRUE(WIFEXITED(ended.value) && WEXITSTATUS(ended.value) == 0) << ended.value;
  EXPECT_EQ(finish().first, 0);
}

TEST_F(Relay, KillByteKillsTheExecutorAndItsStatusSaysSo) {
  start({}, true, sleeper());
  auto request = goodRequest();
  send(&request, sizeof request, goodFds());
  launcher::Report started = report();
  EXPECT_EQ(started.kind, launcher::Report::Started);
  ASSERT_EQ(::send(ours.get(), &launcher::KILL, 1, MSG_NOSIGNAL), 1);
  launcher::Report ended = report();
  EXPECT_EQ(ended.kind, launcher::Report::Ended);
  EXPECT_TRUE(WIFSIGNALED(ended.value) && WTERMSIG(ended.value) == SIGKILL) << ended.value;
  EXPECT_EQ(finish().first, 0);
}

TEST_F(Relay, ClosingTheConnectionKillsAndReapsTheExecutor) {
  start({}, true, sleeper());
  auto request = goodRequest();
  send(&request, sizeof request, goodFds());
  launcher::Report started = report();
  ASSERT_EQ(started.kind, launcher::Report::Started);
  ours = nullptr;  // rjitd gone
  EXPECT_EQ(finish().first, 0);
  // The relay reaped it before it exited: no process (not even a zombie) has that pid now,
  // unless the kernel reused it for another already, which is not a sleeping `sleep`.
  EXPECT_NE(processName(started.value), "sleep");
}

TEST_F(Relay, TruncatedRequestIsRefused) {
  start();
  auto request = goodRequest();
  send(&request, 10, goodFds());
  expectRefused("truncated");
}

TEST_F(Relay, RequestWithoutDescriptorsIsRefused) {
  start();
  auto request = goodRequest();
  send(&request, sizeof request, {});
  expectRefused("0 descriptors");
}

TEST_F(Relay, TooManyDescriptorsAreRefused) {
  start();
  auto request = goodRequest();
  std::vector<int> fds = goodFds();
  fds.push_back(fds[0]);
  fds.push_back(fds[1]);
  send(&request, sizeof request, fds);
  expectRefused("descriptors");
}

TEST_F(Relay, ChannelThatIsNotASocketIsRefused) {
  start();
  auto request = goodRequest();
  std::vector<int> fds = goodFds();
  fds[3] = fds[0];
  send(&request, sizeof request, fds);
  expectRefused("descriptor 3");
}

TEST_F(Relay, BadMagicIsRefused) {
  start();
  auto request = goodRequest();
  request.magic = 0x12345678;
  send(&request, sizeof request, goodFds());
  expectRefused("magic");
}

TEST_F(Relay, LimitsOutOfBoundsAreRefused) {
  start();
  auto request = goodRequest();
  request.memoryBytes = 0;
  send(&request, sizeof request, goodFds());
  expectRefused("limits");
}

TEST_F(Relay, PeerOfAnotherUserIsRefusedBeforeItsRequestIsRead) {
  start({"--peer-uid", std::to_string(::geteuid() + 1)});
  expectRefused("peer uid");
}

TEST_F(Relay, WithoutSocketActivationItRefuses) {
  start({}, false);
  expectRefused("LISTEN_PID");
}

}  // namespace
}  // namespace rjitd::executor
