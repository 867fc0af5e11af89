// SPDX-License-Identifier: MIT
// The test end of rjitd's test-only compile gate (rjitd --test-compile-gate PATH): holds each
// compile rjitd starts until the test lets it go, so a test sees a compile in flight as an
// event and decides when it ends, whatever the module's size or the machine's speed.
#pragma once

#include "daemon-process.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace rjit::test {

/// A Unix socket rjitd's compile workers connect to before each compile (see
/// rjitd::service::ServiceConfig::compileGate). A compile is held while its connection is
/// open; closing the connection lets it go. Not thread-safe: one test thread drives it.
class CompileGate final {
public:
  /// Listens at `path` (which must not exist). nullptr, with a recorded failure, on error.
  static std::unique_ptr<CompileGate> create(std::string path);
  /// Lets every compile go (open()).
  ~CompileGate();
  CompileGate(const CompileGate&) = delete;
  CompileGate& operator=(const CompileGate&) = delete;

  /// rjitd's arguments for this gate: {"--test-compile-gate", path}.
  std::vector<std::string> daemonArgs() const;

  /// Waits (bounded by SAFETY_BOUND) for the next compile to arrive and holds it; returns its
  /// module name. nullopt, with a recorded failure, when none arrives within the bound.
  std::optional<std::string> waitArrival();
  /// Whether a compile has arrived that waitArrival() has not taken yet (does not wait).
  bool arrivalPending() const;
  /// Compiles held now.
  size_t held() const { return holding.size(); }
  /// Lets every held compile go; compiles arriving later are held again.
  void releaseHeld();
  /// Stops holding for good: lets the held compiles and any that knock go, and closes the
  /// socket, so that rjitd compiles at once from then on.
  void open();

private:
  struct Key {
    explicit Key() = default;
  };

public:
  /// Only create() constructs (the key is private).
  CompileGate(Key, std::string path, kj::AutoCloseFd listener);

private:
  std::string path;
  kj::AutoCloseFd listener;
  std::vector<kj::AutoCloseFd> holding;
};

}  // namespace rjit::test
