// SPDX-License-Identifier: MIT
// The status page and the handlers that write it when the executor dies (see fatal-signal.h).
#include "fatal-signal.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <exception>
#include <new>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace rjitd::executor {

namespace {

/// The page the handlers write; set once before they are installed.
std::atomic<StatusPage*> statusPage{nullptr};

/// The handlers' stack: a stack overflow in user code must still leave its SIGSEGV on the
/// page. Static: no allocation may be needed to die properly.
constexpr size_t ALT_STACK_BYTES = 64 * 1024;
alignas(16) char altStack[ALT_STACK_BYTES];

constexpr int FATAL_SIGNALS[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS};

void onFatalSignal(int signal, siginfo_t* info, void*) {
  int error = errno;  // first: whatever failed just before (ENOMEM from an allocation)
  if (StatusPage* page = statusPage.load(std::memory_order_relaxed)) {
    // Only the first fatal signal counts (SA_RESETHAND makes a second one the default action).
    page->errnoAtSignal.store(error, std::memory_order_relaxed);
    page->syscall.store(signal == SIGSYS ? info->si_syscall : -1, std::memory_order_relaxed);
    // si_addr is the faulting address only for a fault the kernel raised (si_code > 0); for a
    // signal sent by kill/raise (abort()), si_addr overlays the sender's pid.
    bool fault = info->si_code > 0 && signal != SIGSYS && signal != SIGABRT;
    page->faultAddress.store(fault ? reinterpret_cast<uint64_t>(info->si_addr) : 0,
                             std::memory_order_relaxed);
    page->signal.store(signal, std::memory_order_release);
  }
  // SA_RESETHAND restored the default action: the re-raised signal stays pending (blocked in
  // this handler) and kills the process as soon as the handler returns. A fault would also
  // recur on return, but SIGSYS from the seccomp filter and a raise() would not.
  ::raise(signal);
}

void onTerminate() {
  // Which exception reached terminate: rethrowing it into a handler is the only way std
  // offers to inspect its type. Anything but bad_alloc is a plain crash (SIGABRT).
  if (std::exception_ptr current = std::current_exception()) {
    try {
      std::rethrow_exception(current);
    } catch (const std::bad_alloc&) {
      if (StatusPage* page = statusPage.load(std::memory_order_relaxed))
        page->outOfMemory.store(1, std::memory_order_release);
    } catch (...) {
      // Another exception: the abort below reports it as a crash.
    }
  }
  std::abort();
}

std::string errnoText(int error) {
  return std::system_category().message(error);
}

}  // namespace

std::variant<StatusPage*, std::string> mapStatusPage(kj::AutoCloseFd fd) {
  struct stat st;
  if (::fstat(fd.get(), &st) < 0)
    return "cannot inspect the status page (fd " + std::to_string(fd.get()) +
           "): " + errnoText(errno);
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) < sizeof(StatusPage))
    return "the status page (fd " + std::to_string(fd.get()) + ") is not a file of at least " +
           std::to_string(sizeof(StatusPage)) + " bytes";
  void* p = ::mmap(nullptr, sizeof(StatusPage), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED)
    return "cannot map the status page: " + errnoText(errno);
  // The page is fresh shared memory of a trivially default-constructible layout; only atomic
  // stores touch it from here on (rjitd reads it after waitpid).
  StatusPage* page = static_cast<StatusPage*>(p);
  page->phase.store(StatusPage::Starting, std::memory_order_relaxed);
  page->signal.store(0, std::memory_order_relaxed);
  page->errnoAtSignal.store(0, std::memory_order_relaxed);
  page->syscall.store(-1, std::memory_order_relaxed);
  page->outOfMemory.store(0, std::memory_order_relaxed);
  page->faultAddress.store(0, std::memory_order_relaxed);
  page->magic.store(StatusPage::MAGIC, std::memory_order_release);
  return page;  // `fd` closes here: the mapping keeps the file
}

std::optional<std::string> installFatalSignalHandlers(StatusPage& page) {
  statusPage.store(&page, std::memory_order_release);
  stack_t stack;
  std::memset(&stack, 0, sizeof(stack));
  stack.ss_sp = altStack;
  stack.ss_size = sizeof(altStack);
  if (::sigaltstack(&stack, nullptr) < 0)
    return "sigaltstack: " + errnoText(errno);
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_sigaction = &onFatalSignal;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  for (int signal : FATAL_SIGNALS)
    if (::sigaction(signal, &action, nullptr) < 0)
      return "sigaction(" + std::to_string(signal) + "): " + errnoText(errno);
  std::set_terminate(&onTerminate);
  return std::nullopt;
}

void setPhase(StatusPage& page, StatusPage::Phase phase) {
  page.phase.store(phase, std::memory_order_release);
}

}  // namespace rjitd::executor
