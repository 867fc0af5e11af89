// SPDX-License-Identifier: MIT
// Shared pieces of the integration tests: a fixture that runs each test against a fresh real
// rjitd (standalone and socket-activated), test inputs, and small file/ELF/environment helpers.
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <remotejit/client.h>

#include "compile-gate.h"
#include "daemon-process.h"
#include "temp-dir.h"

namespace rjit::test {

std::string readFile(const std::string& path);
void writeFile(const std::string& path, std::string_view bytes);

/// A test input in the source tree ($RJIT_TEST_DATA/name).
std::string dataPath(std::string_view name);
/// A generated test input in the build tree ($RJIT_TEST_GEN/name: sieve.ll, mathprog.bc, ...).
std::string genPath(std::string_view name);

/// 16 random hex digits.
std::string randomNonce();
/// Textual IR that no daemon has seen: `ir` after a comment line naming a fresh nonce (the
/// cache key covers the module bytes, so this is a new key; line numbers shift by one).
std::string withNonce(std::string_view ir);
/// A small valid module defining `i32 @answer()`, unique per call.
std::string tinyModule();
/// Target-neutral textual IR with `functions` looping, mutually calling functions: about 2 KB
/// per function, with work for the optimizer at -O2. Unique per call (a nonce), so it is new to
/// every cache.
std::string generatedModule(unsigned functions);

/// ELF e_machine (EM_X86_64, EM_AARCH64 from <elf.h>) of a 64-bit little-endian relocatable
/// object, or 0 when it is not one.
uint16_t elfMachine(std::string_view object);

/// Sets (or with nullopt unsets) an environment variable for a scope, then restores it. Only
/// while no other thread reads the environment (e.g. before any Client exists).
class ScopedEnv final {
public:
  ScopedEnv(std::string name, std::optional<std::string> value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
  std::string name_;
  std::optional<std::string> old_;
};

/// The rjit::Error that `call` throws; nullopt, with a recorded failure, when it returns.
template <typename Call> std::optional<Error> catchError(Call&& call) {
  try {
    call();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected an rjit::Error, but the call succeeded";
  return std::nullopt;
}

/// Output and exit status of a C program built natively by $CC, for comparison.
CommandResult runNative(const TempDir& dir, std::string_view program);
/// Links `object` with $CC (and -lm) and runs it; an empty optional after a recorded failure
/// when linking fails.
std::optional<CommandResult> linkAndRun(const TempDir& dir, std::string_view name,
                                        const std::string& object);

/// Runs each test against a fresh rjitd, once standalone and once socket-activated. TearDown
/// checks that the daemon still serves a request and exits 0 on SIGTERM.
class DaemonTest : public ::testing::TestWithParam<DaemonMode> {
protected:
  void SetUp() override;
  void TearDown() override;

  /// Options for the fixture's daemon; override to add rjitd flags.
  virtual DaemonOptions daemonOptions() const;
  /// Options for a client of the fixture's daemon (or of `other`).
  ClientOptions clientOptions(const DaemonProcess* other = nullptr) const;
  /// Starts another daemon in the test's mode (for non-default flags).
  std::unique_ptr<DaemonProcess> startDaemon(DaemonOptions options) const;
  /// Starts another daemon whose compiles wait at `gate` (before a worker gets them).
  std::unique_ptr<DaemonProcess> startGated(const CompileGate& gate) const;
  /// Compiles a fresh module through `client` and checks the result: the daemon still serves.
  void expectServes(Client& client);
  /// Same through a new client of the fixture's daemon.
  void expectServes();

  TempDir work;  ///< scratch space for objects and programs
  std::unique_ptr<DaemonProcess> daemon;
};

/// GoogleTest parameter names: "standalone", "socket_activated".
std::string daemonModeParamName(const ::testing::TestParamInfo<DaemonMode>& info);

}  // namespace rjit::test

#define RJIT_INSTANTIATE_DAEMON_MODES(Suite)                                                       \
  INSTANTIATE_TEST_SUITE_P(Daemon, Suite,                                                          \
                           ::testing::Values(::rjit::test::DaemonMode::Standalone,                 \
                                             ::rjit::test::DaemonMode::SocketActivated),           \
                           ::rjit::test::daemonModeParamName)
