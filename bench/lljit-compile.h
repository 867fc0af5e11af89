// SPDX-License-Identifier: MIT
// The reference the mission compares rjitd against: an in-process LLVM ORC LLJIT compile of
// the same module (parse, verify, the same optimization pipeline, then `lookup` of one symbol,
// which generates code for the whole module and links it with JITLink). LLVM-free header:
// only lljit-compile.cpp includes LLVM.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace rjitbench {

struct LljitOptions {
  std::string triple;  ///< e.g. "x86_64-unknown-linux-gnu"; must be the host's architecture
  std::string cpu;     ///< rjitd's default CPU for the target, so both generate the same code
  unsigned optLevel = 2;
  std::string symbol;  ///< looked up after adding the module
};

struct LljitTimes {
  double totalMs = 0;   ///< everything below, JIT creation included
  double parseMs = 0;   ///< parse + verify
  double optMs = 0;     ///< the optimization pipeline
  double lookupMs = 0;  ///< lookup: code generation for the whole module and JITLink
};

/// Compiles textual IR `module` with a fresh LLJIT and looks up `options.symbol`. Throws
/// std::runtime_error with LLVM's message on any failure.
LljitTimes lljitCompile(std::string_view module, const LljitOptions& options);

/// Compiles like lljitCompile, then calls the symbol as `int (*)(unsigned)` with `argument`
/// and returns its result: a check that the module really works (not timed).
int lljitRun(std::string_view module, const LljitOptions& options, unsigned argument);

/// A module compiled exactly as lljitCompile does, kept alive so that its code can be called:
/// the reference for call speed, and a client that embeds LLVM for peak memory. Move-only.
class LljitModule {
public:
  /// Compiles and looks up `options.symbol` (which generates and links the whole module).
  /// Throws std::runtime_error like lljitCompile.
  LljitModule(std::string_view module, const LljitOptions& options);
  ~LljitModule();
  LljitModule(LljitModule&&) noexcept;
  LljitModule& operator=(LljitModule&&) noexcept;

  const LljitTimes& times() const;
  /// The address of a symbol the module defines; throws std::runtime_error if there is none.
  void* address(const std::string& symbol);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rjitbench
