// SPDX-License-Identifier: MIT
// The executor's sandbox (service/executor/sandbox.h) in forked children, and the real
// rjitd-executor binary on a socketpair: handshake and Control through its seccomp filter,
// a clean exit when the channel closes, and what a death leaves on the status page.
#include "sandbox.h"
#include "status-page.h"

#include "executor.capnp.h"
#include "rjit.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

TEST(Executor, ServesControlThroughItsSandboxAndExitsWhenTheChannelCloses) {
  ExecutorProcess executor;
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

TEST(Executor, ExitsCleanlyWhenTheChannelClosesBeforeTheHandshake) {
  ExecutorProcess executor;
  executor.channel = nullptr;
  expectExit(executor.wait(), 0);
  EXPECT_EQ(executor.stderrText(), "");
}

TEST(Executor, CrashInTheSandboxLeavesItsSignalOnTheStatusPage) {
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

}  // namespace
}  // namespace rjitd::executor
