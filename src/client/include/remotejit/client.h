// SPDX-License-Identifier: MIT
// libremotejit-client: compile LLVM IR through rjitd. Carries no LLVM and exposes no Cap'n Proto
// or KJ types, so any C++ program can use it with `pkg-config remotejit-client`.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

/// Marks the public API: the library is built with hidden visibility and exports only these.
#define RJIT_API __attribute__((visibility("default")))

namespace rjit {

/// What went wrong, for programs that react differently to different failures.
enum class ErrorKind : uint8_t {
  Internal,          ///< a fault inside rjitd or this library
  InvalidModule,     ///< the IR does not parse or verify; see Error::diagnostics()
  UnknownTarget,     ///< no served target has that name or triple
  TargetMismatch,    ///< the module's own triple disagrees with the requested target
  TooLarge,          ///< over a server limit (module size, ...)
  InvalidRequest,    ///< a malformed request (opt level out of range, ...)
  NotFound,          ///< a lookup of a key the server does not hold
  ShuttingDown,      ///< the server is draining; another server or a retry will do
  ProtocolMismatch,  ///< client and server speak incompatible protocol versions
  Overloaded,
  Connection,     ///< no server could be reached, or the connection broke
  Timeout,        ///< the call did not finish within the deadline (RJIT_TIMEOUT_MS)
  Configuration,  ///< bad client configuration (RJIT_SERVER, RJIT_TIMEOUT_MS, ...)
  LinkFailed,     ///< the module could not be linked: unresolved or duplicate symbols, ...
  Load,           ///< mapping or starting loaded code in this process failed
  // Remote execute (RemoteModule::call/run); Timeout is also a call that overran its deadline.
  Crashed,            ///< the code died of a signal (named in the message)
  OutOfMemory,        ///< the code ran past the executor's memory limit
  Exited,             ///< the called function called exit() (status in the message)
  OutputLimit,        ///< the code wrote more output than an executor may
  SandboxViolation,   ///< the code made a system call executors may not make (named)
  SignatureMismatch,  ///< arguments that do not match the function's IR signature
};

/// Lower-case name of a kind ("invalid-module"), as the CLI prints it.
RJIT_API const char* errorKindName(ErrorKind kind);

struct Diagnostic {
  enum class Severity : uint8_t { Error, Warning, Note };
  Severity severity = Severity::Error;
  std::string message;
  uint32_t line = 0;    ///< 1-based; 0 when unknown
  uint32_t column = 0;  ///< 1-based; 0 when unknown
};

/// Every failure of this library is thrown as rjit::Error (the library's one exception type;
/// a C++ API that made users handle KJ exceptions would leak our implementation). what() is a
/// complete message without the "error: " prefix.
class RJIT_API Error : public std::runtime_error {
public:
  Error(ErrorKind kind, const std::string& message, std::vector<Diagnostic> diagnostics = {});
  ErrorKind kind() const noexcept { return kind_; }
  const std::vector<Diagnostic>& diagnostics() const noexcept { return diagnostics_; }

private:
  ErrorKind kind_;
  std::vector<Diagnostic> diagnostics_;
};

/// How to reach rjitd. Fields left empty/zero take the environment's value, then the default.
struct ClientOptions {
  /// Addresses tried in order ("unix:/path", "tcp:HOST:PORT"); on a connection failure the
  /// next one is tried. Empty: RJIT_SERVER (comma-separated), else the default socket
  /// (/run/rjitd/rjitd.sock for root; $XDG_RUNTIME_DIR/rjitd.sock, then the system socket
  /// /run/rjitd/rjitd.sock, otherwise).
  std::vector<std::string> servers;
  /// Deadline for each call, connection set-up included. Zero: RJIT_TIMEOUT_MS, else 60 s.
  std::chrono::milliseconds timeout{0};
  /// Modules at least this large are first looked up by hash and sent only on a miss.
  /// Unset: RJIT_HASH_FIRST_BYTES, else 64 KiB.
  std::optional<uint64_t> hashFirstBytes;
  /// Shown in the server's logs.
  std::string clientName = "libremotejit-client";
  /// Address space reserved for loaded modules (code, data, bss) per connection: a module that
  /// does not fit fails to load with TooLarge. Zero: RJIT_MEMORY_QUOTA, else 256 MiB. The
  /// reservation costs no memory until modules are loaded into it.
  uint64_t memoryQuota = 0;
};

enum class IrFormat : uint8_t { Auto, Text, Bitcode };

struct CompileRequest {
  std::string module;      ///< textual IR or bitcode bytes
  std::string moduleName;  ///< for diagnostics (e.g. the file name)
  std::string target;      ///< "x86_64", "aarch64", an alias or a triple; "" = server default
  std::string cpu;         ///< "" = the target's default
  std::string features;    ///< LLVM feature string; "" = none
  unsigned optLevel = 2;   ///< 0..3
  IrFormat format = IrFormat::Auto;
};

struct Symbol {
  enum class Kind : uint8_t { Function, Data, Other };
  std::string name;
  Kind kind = Kind::Other;
  /// Functions: the LLVM IR type, e.g. "i32(ptr,double)", "void(i32,...)"; else "".
  std::string signature;
};

struct CompiledObject {
  std::string key;     ///< cache key, 64 hex digits
  std::string object;  ///< ELF relocatable object bytes
  std::string triple;  ///< canonical triple it was built for
  std::vector<Symbol> defines;
  std::vector<std::string> needs;
  std::vector<Diagnostic> diagnostics;  ///< warnings from the compile
  bool fromCache = false;               ///< the server ran no compile for this request
  bool bodySent = false;                ///< the module bytes travelled (false: hash-first hit)
  uint64_t compileMicros = 0;
};

struct TargetInfo {
  std::string name;
  std::string triple;
  std::vector<std::string> aliases;
  std::string defaultCpu;
};

struct ServerInfo {
  std::string endpoint;  ///< the address this client is connected to
  uint32_t protocolVersion = 0;
  std::string rjitdVersion;
  std::string llvmVersion;
  std::string compilerIdentity;
  std::vector<TargetInfo> targets;
  std::string defaultTriple;
  uint64_t maxModuleBytes = 0;
};

struct ServerStats {
  uint64_t cacheEntries = 0, cacheBytes = 0, cacheBudgetBytes = 0;
  uint64_t cacheHits = 0, cacheMisses = 0, cacheEvictions = 0;
  uint64_t compiles = 0, compileFailures = 0;
  uint32_t compilesInFlight = 0;
  uint64_t requests = 0, moduleBytesReceived = 0, lookups = 0, lookupHits = 0;
  uint32_t sessions = 0, workers = 0;
  uint64_t uptimeMillis = 0;
  uint32_t connections = 0;
  uint64_t compileWorkerRestarts = 0;
  uint64_t loads = 0, links = 0, linkFailures = 0;  ///< the fast path
  uint32_t loadedImages = 0;                        ///< modules clients hold loaded
  uint64_t loadedImageBytes = 0;
  uint64_t symbolQuestions = 0;  ///< times rjitd asked a client for its symbols' addresses
  struct RequestCount {
    std::string method, result;  ///< result: "ok" or an error kind ("invalid-module", ...)
    uint64_t count = 0;
  };
  struct ErrorCount {
    std::string kind;
    uint64_t count = 0;
  };
  std::vector<RequestCount> requestCounts;  ///< every (method, result) seen
  std::vector<ErrorCount> errorCounts;      ///< every error kind seen
};

/// How a module's references to symbols it does not define are resolved in this process: by
/// `symbols`, then by the definitions of modules this client loaded before, then (with
/// `processSymbols`) by the process's global symbols.
struct LoadOptions {
  /// Functions and data this program offers the module by name, e.g.
  /// `{{"host_log", reinterpret_cast<void*>(&host_log)}}`. Searched first; sent with the
  /// request.
  std::map<std::string, void*> symbols;
  /// Also resolve through the process's global symbols (libc, libm, the C++ runtime, and the
  /// program's own when it is linked with -rdynamic), as dlsym(RTLD_DEFAULT) finds them. A
  /// shared library a module takes a symbol from is pinned: it stays loaded (RTLD_NODELETE)
  /// for the life of the process, since loaded code may keep pointers into it, even after the
  /// module is unloaded. dlclose() of such a library then leaves it loaded, and a dlopen() of
  /// a rebuilt copy at the same path returns the old one: a program that reloads plugins must
  /// offer their functions through `symbols` instead. rjitd remembers these answers for the
  /// connection, so later loads need not ask for them again.
  bool processSymbols = true;
};

/// A module loaded into this process through rjitd (Client::load): its code runs natively here,
/// with no RPC per call. Code pages are mapped read+execute and never writable; data pages are
/// private to this process. Destroying the handle (or unload()) runs the module's static
/// destructors, unmaps it and tells rjitd to free what it kept for it (later, while a module
/// loaded after it links against it). A handle may outlive
/// its Client, and the code keeps working if rjitd restarts or goes away. Move-only;
/// thread-safe for lookups and calls.
class RJIT_API Module {
public:
  Module();
  ~Module();
  Module(Module&&) noexcept;
  Module& operator=(Module&&) noexcept;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// False for a default-constructed, moved-from or unloaded handle.
  explicit operator bool() const noexcept { return state != nullptr; }

  /// The address of a global symbol the module defines, or nullptr.
  void* address(std::string_view name) const;

  /// Typed lookup: `lookup<int(int, int)>("add")` gives an `int (*)(int, int)`,
  /// `lookup<double>("scale")` a `double*`. The signature is the caller's promise (IR keeps
  /// none a C++ type could be checked against). Throws Error(NotFound) naming the symbol.
  template <typename Signature> Signature* lookup(std::string_view name) const {
    return reinterpret_cast<Signature*>(require(name));
  }

  /// Names of the global symbols the module defines, sorted.
  std::vector<std::string> symbols() const;
  /// The compile behind it: cache key, defined and needed symbols, diagnostics, cache use.
  const CompiledObject& object() const;
  /// Where it lives in this process and how long rjitd took to link it.
  uint64_t base() const;
  uint64_t size() const;
  uint64_t linkMicros() const;

  /// Releases the module; the handle becomes empty. Its static destructors run and it is
  /// unmapped now, or, when a module loaded later links against it, once that one is unloaded
  /// too. Pointers into the module must not be used through this handle's promises afterwards.
  void unload();

  struct State;

private:
  void* require(std::string_view name) const;
  friend class Client;
  explicit Module(std::shared_ptr<State> state);
  std::shared_ptr<State> state;
};

/// A connection to rjitd (made lazily, remade after a failure, failing over between servers).
/// A call cut off by a server that goes away - one answering `shutting-down` or closing the
/// connection, as rjitd does while it restarts - is retried on a new connection within the
/// call's deadline, so a restart of a socket-activated rjitd fails no call.
/// Thread-safe: any thread may call any method; calls from several threads run concurrently
/// over one connection. I/O runs on a private thread the client owns.
class RJIT_API Client {
public:
  /// Reads the environment for options left unset. Throws Error(Configuration) for a bad
  /// RJIT_SERVER / RJIT_TIMEOUT_MS / RJIT_HASH_FIRST_BYTES. Does not connect yet.
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// The handshake's answer (connects if needed).
  ServerInfo serverInfo();

  /// Compiles through the server (or its cache). Modules of at least hashFirstBytes are first
  /// looked up by key. Throws Error.
  CompiledObject compile(const CompileRequest& request);

  /// Same, without blocking the caller; the future throws Error.
  std::future<CompiledObject> compileAsync(CompileRequest request);

  ServerStats stats();

  /// Compiles the module through rjitd (or its cache), has rjitd link it for this process and
  /// maps it here; runs its static constructors before returning. `request.target` must be
  /// empty or name this host's architecture. Modules of at least hashFirstBytes are first
  /// asked for by key. Throws Error: LinkFailed for an unresolved symbol (named in the
  /// message) or a symbol an earlier module already defines, TooLarge for a module over the
  /// memory quota, Load when mapping it here fails, and the kinds compile() throws.
  Module load(const CompileRequest& request, const LoadOptions& options = {});

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

}  // namespace rjit
