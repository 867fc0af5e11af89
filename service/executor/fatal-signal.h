// SPDX-License-Identifier: MIT
// The executor's status page (ipc/executor/status-page.h) and what writes it when the process
// dies: a fatal-signal handler on an alternate stack, and a terminate handler for bad_alloc.
#pragma once

#include "status-page.h"

#include <kj/io.h>
#include <optional>
#include <string>
#include <variant>

namespace rjitd::executor {

/// Maps the one-page status page rjitd passed as `fd` (shared, read-write), closes `fd`, and
/// marks it (magic, phase Starting, no signal, syscall -1). Fails with a message when `fd` is
/// not a file of at least one StatusPage or cannot be mapped. The mapping lives as long as
/// the process.
std::variant<StatusPage*, std::string> mapStatusPage(kj::AutoCloseFd fd);

/// Installs, on an alternate signal stack, handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE,
/// SIGABRT, SIGTRAP and SIGSYS that store the signal, errno, the trapped system call (SIGSYS)
/// and the fault address into `page` with async-signal-safe stores, then die of the same
/// signal by its default action. Also a std::terminate handler that sets `outOfMemory` when
/// the exception that reached it is std::bad_alloc, then aborts. `page` lives as long as the
/// process. Fails with a message when the alternate stack cannot be installed.
std::optional<std::string> installFatalSignalHandlers(StatusPage& page);

/// Sets the page's phase (user code runs, or not).
void setPhase(StatusPage& page, StatusPage::Phase phase);

}  // namespace rjitd::executor
