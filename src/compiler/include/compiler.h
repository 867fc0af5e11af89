// SPDX-License-Identifier: MIT
// LLVM IR in, ELF relocatable object out: parse -> verify -> optimize -> code generation.
// This header is LLVM-free (the implementation keeps LLVM to itself); only the daemon, its
// tests and the benchmarks link the compiler.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "compiled-object.h"
#include "outcome.h"
#include "targets.h"

namespace rjitd::compiler {

enum class IrFormat : uint8_t { Auto, Text, Bitcode };

struct CompileOptions {
  std::string triple;     ///< canonical triple (rjitd::resolveTarget); must be served
  std::string cpu;        ///< "" = the target's default CPU
  std::string features;   ///< LLVM feature string, "" = none
  unsigned optLevel = 2;  ///< 0..3
  IrFormat format = IrFormat::Auto;
  std::string moduleName;  ///< used in diagnostics only
};

/// Either the object or why it could not be built: the daemon's one result shape. Inside, the
/// compiler works with llvm::Expected and a typed ErrorInfo (CompileError, diagnostics.h, which
/// carries a kind, a message and the diagnostics as data); compile() converts it once, here at
/// the LLVM-free boundary. Unlike the linker's LinkError (which carries symbol names that only
/// the linker knows), a compile failure has no data beyond what Failure holds, so it is handed
/// out as the daemon's Failure directly rather than through a type of its own.
using CompileResult = Outcome<CompiledObject>;

/// Initializes the LLVM targets once (thread-safe) and returns the targets this build serves,
/// in the order of rjitd::knownTargets().
std::vector<TargetName> servedTargets();

/// The target a request with no triple gets: the host's (x86_64-unknown-linux-gnu here).
std::string defaultTriple();

/// LLVM's version string ("19.1.7").
std::string llvmVersion();

/// Compiles one module. Thread-safe: every call builds its own LLVMContext and TargetMachine,
/// so several workers may compile at once. Never throws for bad input; every input error is a
/// Failure (kind InvalidModule with LLVM's line:column diagnostics, UnknownTarget,
/// TargetMismatch, InvalidRequest).
///
/// Policy, documented in docs/ARCHITECTURE.md:
///  - the module's own triple must name the requested architecture and OS (an x86_64 module is
///    never retargeted to AArch64); an empty module triple takes the requested one;
///  - the datalayout is always the target's (a differing one from an older producer gives a
///    warning diagnostic);
///  - at -O1..-O3, `optnone` (and the `noinline` that clang -O0 pairs with it) is removed so
///    that the requested level applies, but `noinline` stays on functions that read their own
///    frame or return address; at -O0 the O0 pipeline runs;
///  - undef and poison in global initializers become zeros before optimizing;
///  - thread-local variables use emulated TLS (__emutls_get_address), which JITLink can link.
CompileResult compile(std::string_view module, const CompileOptions& options);

}  // namespace rjitd::compiler

namespace rjitd::compiler {

/// Called with LLVM's reason when LLVM hits a fatal error (report_fatal_error) during a
/// compile. LLVM ends the process when the handler returns, so only a process whose sole job
/// is compiling (rjitd's compile worker) installs one, to report the reason before it exits.
using FatalErrorHandler = void (*)(const char* reason);
void setFatalErrorHandler(FatalErrorHandler handler);

/// Called when an allocation inside LLVM fails (its safe_malloc/safe_realloc, which otherwise
/// print "LLVM ERROR: out of memory" and abort()). Must not return and must not allocate:
/// rjitd's compile worker installs one that exits with a status its daemon reads as "past
/// --compile-memory", so that running out of memory is never mistaken for a crash on bad IR.
using OutOfMemoryHandler = void (*)();
void setOutOfMemoryHandler(OutOfMemoryHandler handler);

}  // namespace rjitd::compiler
