// SPDX-License-Identifier: MIT
// Plain data shared by the compiler, the cache and the daemon: a compiled object and the ways a
// request can fail. No LLVM and no Cap'n Proto here, so every layer can include it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rjitd {

/// Why a request failed: the one kind enum of daemon and client. The kinds the wire carries
/// are mapped to `proto::Error::Kind` by the one table in ipc/wire-enums.h; Connection,
/// Configuration and Load arise only in the client and have no wire code. The
/// numbering is the public `rjit::ErrorKind`'s (src/client/include/remotejit/client.h), which
/// the client maps to this one by a cast its static_asserts check: append new kinds to both.
enum class ErrorKind : uint8_t {
  Internal,
  InvalidModule,   ///< IR that does not parse or verify
  UnknownTarget,   ///< a target name or triple rjitd does not serve
  TargetMismatch,  ///< the module's own triple disagrees with the requested target
  TooLarge,        ///< over a configured limit
  InvalidRequest,  ///< a malformed request field
  NotFound,        ///< lookup of a key the cache does not hold
  ShuttingDown,    ///< the daemon is draining
  ProtocolMismatch,
  Overloaded,
  Connection,     ///< client only: no server could be reached, or the connection broke
  Timeout,        ///< a call did not finish within its deadline (client or executor)
  Configuration,  ///< client only: bad client configuration
  LinkFailed,     ///< unresolved or duplicate symbols, an object the linker cannot place
  Load,           ///< client only: mapping or starting loaded code in the client's process
  // Remote execute: what happened to a call in its executor (Timeout above is also one).
  Crashed,            ///< the code died of a signal
  OutOfMemory,        ///< the code ran past the executor's memory limit
  Exited,             ///< the called function called exit()
  OutputLimit,        ///< the code wrote more output than an executor may
  SandboxViolation,   ///< the code made a system call executors may not make
  SignatureMismatch,  ///< call arguments that do not match the function's IR signature
  PermissionDenied,   ///< the peer may not use this rjitd (--allow-users / --allow-groups)
};

/// Short lower-case name of an error kind, for logs, metrics labels and the CLI ("unknown" for
/// a value outside the enum).
const char* errorKindName(ErrorKind kind);

struct Diagnostic {
  enum class Severity : uint8_t { Error, Warning, Note };
  Severity severity = Severity::Error;
  std::string message;
  uint32_t line = 0;    ///< 1-based; 0 when unknown
  uint32_t column = 0;  ///< 1-based; 0 when unknown
};

struct ObjectSymbol {
  enum class Kind : uint8_t { Function, Data, Other };
  std::string name;
  Kind kind = Kind::Other;
  /// Functions: their IR type, e.g. "i32(ptr,double)" ("" when unknown).
  std::string signature;
};

/// A relocatable object and what is known about it. Immutable once built; the cache hands out
/// shared pointers to it.
struct CompiledObject {
  std::string triple;                   ///< canonical triple it was compiled for
  std::string object;                   ///< ELF relocatable object bytes
  std::vector<ObjectSymbol> defines;    ///< global symbols the object defines
  std::vector<std::string> needs;       ///< undefined symbols it references
  std::vector<Diagnostic> diagnostics;  ///< warnings and notes from the compile
  uint64_t compileMicros = 0;           ///< wall time of the compile that built it

  /// Approximate memory the entry occupies; what the cache's byte budget counts.
  size_t footprintBytes() const;
};

/// A failed request: what went wrong, in words a user can act on, plus compiler diagnostics.
struct Failure {
  ErrorKind kind = ErrorKind::Internal;
  std::string message;
  std::vector<Diagnostic> diagnostics;
  int signal = 0;                 ///< Crashed: the signal the code died of
  int exitStatus = 0;             ///< Exited: the status the code passed to exit()
  uint32_t retryAfterMillis = 0;  ///< Overloaded: when to try again (0 = no hint)
};

}  // namespace rjitd
