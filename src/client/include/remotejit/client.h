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
#include <type_traits>
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
  PermissionDenied,   ///< this user may not use the server (its --allow-users/--allow-groups)
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
  /// Overloaded: how long the server asked its clients to wait before trying again (zero: no
  /// hint). The library has already retried after such hints while the call's deadline left
  /// room (see ClientOptions::timeout); this is the hint it could not follow.
  std::chrono::milliseconds retryAfter() const noexcept { return retryAfter_; }
  /// Sets retryAfter() (the library does, from the server's answer).
  Error& withRetryAfter(std::chrono::milliseconds delay) noexcept {
    retryAfter_ = delay;
    return *this;
  }

private:
  ErrorKind kind_;
  std::vector<Diagnostic> diagnostics_;
  // Last, after the fields of the first release, so they keep their offsets; sizeof(Error)
  // grew, though, so code built against the older header must be rebuilt (soversion 0: the
  // library's ABI is not frozen yet).
  std::chrono::milliseconds retryAfter_{0};
};

/// How a client with several servers chooses one for a call that carries a module.
enum class ServerPolicy : uint8_t {
  Default,  ///< RJIT_SERVER_POLICY, else Key for a configured list, Ordered for the defaults
  Ordered,  ///< the first server that answers, in the configured order
  /// Weighted rendezvous hashing of the module: one module goes to one server, and a server
  /// joining or leaving moves only its share of the modules.
  Key,
};

/// How to reach rjitd. Fields left empty/zero take the environment's value, then the default.
struct ClientOptions {
  /// Servers ("unix:/path", "tcp:HOST:PORT", each optionally followed by ";weight=N", N from 1
  /// to 1000, default 1); an item may itself be a comma-separated list. A call that carries a
  /// module (compile, load) goes to the servers in its serverPolicy's order, the others
  /// (serverInfo, stats, executor) in the configured order; on a connection failure, or a
  /// server that does not answer the handshake within its share of the deadline (at most 5 s),
  /// the next one is tried, and the failed one is tried last for the next 10 s. Empty: RJIT_SERVER
  /// (same syntax), else the default socket
  /// (/run/rjitd/rjitd.sock for root; $XDG_RUNTIME_DIR/rjitd.sock, then the system socket
  /// /run/rjitd/rjitd.sock, otherwise).
  std::vector<std::string> servers;
  /// Deadline for each call, connection set-up included. Zero: RJIT_TIMEOUT_MS, else 60 s.
  std::chrono::milliseconds timeout{0};
  /// How long a call keeps trying again (every 20 to 250 ms) while every server refuses the
  /// connection or its socket is missing, as while a standalone rjitd restarts; within the
  /// deadline. Zero: fail at once. Unset: RJIT_CONNECT_WAIT_MS, else 2 s.
  std::optional<std::chrono::milliseconds> connectWait;
  /// Modules at least this large are first looked up by hash and sent only on a miss.
  /// Unset: RJIT_HASH_FIRST_BYTES, else 64 KiB.
  std::optional<uint64_t> hashFirstBytes;
  /// Shown in the server's logs.
  std::string clientName = "libremotejit-client";
  /// Address space reserved for loaded modules (code, data, bss) per connection: a module that
  /// does not fit fails to load with TooLarge. Zero: RJIT_MEMORY_QUOTA, else 256 MiB. The
  /// reservation costs no memory until modules are loaded into it.
  uint64_t memoryQuota = 0;
  /// How compile and load choose among several servers. Default: RJIT_SERVER_POLICY ("key" or
  /// "ordered"), else Key when several servers are configured (`servers` or RJIT_SERVER), and
  /// Ordered for the default sockets (the user's own rjitd before the system one).
  ServerPolicy serverPolicy = ServerPolicy::Default;
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
  // Remote execute.
  uint64_t executes = 0;          ///< calls and runs answered
  uint64_t executeFailures = 0;   ///< ... of which did not end with a result
  uint32_t executors = 0;         ///< executor processes running
  uint64_t executorRestarts = 0;  ///< executors ended by a call (crash, deadline, ...)
  /// Calls and runs by (target triple in `method`, result: "ok" or an error kind).
  std::vector<RequestCount> executeCounts;
  /// One served target's figures. The `...Seconds` are total time spent (sums of rjitd's
  /// latency histograms); divided by the matching count they give the mean.
  struct TargetStats {
    std::string target;  ///< short name: "x86_64", "aarch64"
    uint64_t cacheLookups = 0, cacheHits = 0;
    uint64_t compiles = 0, compileFailures = 0;
    uint64_t loads = 0, loadFailures = 0;  ///< load requests answered
    uint64_t links = 0, linkFailures = 0;
    uint64_t executes = 0, executeFailures = 0;
    double compileSeconds = 0, loadSeconds = 0, linkSeconds = 0, executeSeconds = 0;
  };
  /// Per served target, in the server's order (empty from an rjitd older than this client).
  std::vector<TargetStats> targets;
  /// One cache tier's figures: "memory", then "disk" (--cache-dir) and "shared" (Redis) when
  /// rjitd uses them. The cache* fields above are the memory tier's.
  struct TierStats {
    std::string tier;
    std::string address;  ///< disk: the directory; shared: the Redis address
    uint64_t entries = 0, bytes = 0, budgetBytes = 0;  ///< shared: 0 (Redis is not asked)
    uint64_t hits = 0, misses = 0, evictions = 0;
    uint64_t stored = 0;      ///< objects written to the tier
    uint64_t rejected = 0;    ///< stored values refused on read (corrupt, wrong key, bad MAC)
    uint64_t errors = 0;      ///< disk I/O errors; Redis errors and timeouts
    bool available = true;    ///< shared: false while rjitd backs off after errors
    uint64_t leaseWaits = 0;  ///< shared: compiles that waited for another server's lease
  };
  /// Empty from an rjitd older than this client.
  std::vector<TierStats> tiers;
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

// --- Remote execute ----------------------------------------------------------------------------
//
// Code that runs in rjitd's sandboxed executor processes, never in this one: a crash, a hang or
// an exit() of the code is an ExecError for that call, and the next call gets a fresh executor.

/// The element type of a Buffer (an array argument); the numbers are the wire's.
enum class ElementType : uint8_t { I8, U8, I16, U16, I32, U32, I64, U64, F32, F64 };
/// Which way a Buffer's contents travel: In is read by the callee, Out starts zeroed and is
/// written back after the call, InOut both.
enum class Direction : uint8_t { In, Out, InOut };

/// Bytes of one element of `element`.
RJIT_API size_t elementSize(ElementType element);

/// The ElementType of a C++ arithmetic type, for Buffer::as<T>().
template <typename T> constexpr ElementType elementTypeOf() {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && sizeof(T) <= 8,
                "Buffer elements are 8- to 64-bit integers, float or double");
  if constexpr (std::is_floating_point_v<T>) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "Buffer elements: float or double");
    return sizeof(T) == 4 ? ElementType::F32 : ElementType::F64;
  } else {
    constexpr int log = sizeof(T) == 1 ? 0 : sizeof(T) == 2 ? 1 : sizeof(T) == 4 ? 2 : 3;
    return static_cast<ElementType>(log * 2 + (std::is_signed_v<T> ? 0 : 1));
  }
}

/// An array argument of a remote call: `count` elements of `element`, zeroed when made. Made by
/// RemoteExecutor::buffer, it lives in the executor's shared segment when the connection is a
/// Unix socket (the callee reads and writes this memory in place, nothing is copied); otherwise
/// (TCP, a full segment, or a Buffer constructed directly) it is memory of this process whose
/// contents are copied to the executor (In, InOut) and, after the call, back into it (Out,
/// InOut). Move-only; its memory is freed (in the segment too) when it is destroyed. A Buffer
/// must not be used by this process while a call it is passed to runs.
class RJIT_API Buffer {
public:
  /// An empty buffer (no memory, count 0).
  Buffer();
  /// Memory of this process (copied over the connection). Throws Error(InvalidRequest) when
  /// count * element size overflows.
  Buffer(ElementType element, size_t count, Direction direction = Direction::InOut);
  ~Buffer();
  Buffer(Buffer&&) noexcept;
  Buffer& operator=(Buffer&&) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data();
  const void* data() const;
  size_t count() const;
  /// count() * elementSize(element()).
  size_t bytes() const;
  ElementType element() const;
  Direction direction() const;
  /// True when the memory is in an executor's shared segment (passed without a copy).
  bool shared() const;

  /// The elements as T; throws Error(InvalidRequest) when T is not the buffer's element type.
  template <typename T> T* as() { return static_cast<T*>(typedData(elementTypeOf<T>())); }
  template <typename T> const T* as() const {
    return static_cast<const T*>(const_cast<Buffer*>(this)->typedData(elementTypeOf<T>()));
  }

  struct State;

private:
  friend class RemoteExecutor;
  friend struct BufferAccess;
  explicit Buffer(std::unique_ptr<State> state);
  void* typedData(ElementType expected);
  std::unique_ptr<State> state;
};

/// A value of a remote call: an argument (integers, floating-point numbers, C strings, buffers,
/// the null pointer) or a result (Void, Signed, Unsigned, Float, Double, or Pointer: an address
/// in the executor, only to print). The field that matters is the one `kind` names.
struct Value {
  enum class Kind : uint8_t {
    Void,
    Signed,
    Unsigned,
    Float,
    Double,
    String,
    Buffer,
    Null,
    Pointer
  };
  Kind kind = Kind::Void;
  int64_t i = 0;                   ///< Signed
  uint64_t u = 0;                  ///< Unsigned, Pointer
  float f = 0;                     ///< Float
  double d = 0;                    ///< Double
  std::string text;                ///< String
  rjit::Buffer* buffer = nullptr;  ///< Buffer: not owned; must outlive the call
  /// Integers: the C++ type's width (1 for bool) that Value::of was given; 0 when unknown.
  /// RemoteModule::call<R> requires it to be the IR parameter's width; callValues only
  /// requires the value to fit.
  uint8_t bits = 0;

  /// Integers (signed or unsigned by their C++ type, bool as an unsigned i1), float, double.
  template <typename T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0> static Value of(T v) {
    Value out;
    if constexpr (std::is_same_v<T, bool>) {
      out.kind = Kind::Unsigned;
      out.u = v ? 1 : 0;
      out.bits = 1;
    } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
      static_assert(sizeof(T) <= 8, "integers up to 64 bits");
      out.kind = Kind::Signed;
      out.i = v;
      out.bits = sizeof(T) * 8;
    } else if constexpr (std::is_integral_v<T>) {
      static_assert(sizeof(T) <= 8, "integers up to 64 bits");
      out.kind = Kind::Unsigned;
      out.u = v;
      out.bits = sizeof(T) * 8;
    } else if constexpr (std::is_same_v<T, float>) {
      out.kind = Kind::Float;
      out.f = v;
    } else {
      static_assert(std::is_same_v<T, double>, "float or double (long double is not passed)");
      out.kind = Kind::Double;
      out.d = v;
    }
    return out;
  }
  /// A C string (copied; the callee gets a NUL-terminated copy alive for the call); NULL is
  /// the null pointer.
  static Value of(const char* s) {
    if (s == nullptr)
      return null();
    Value out;
    out.kind = Kind::String;
    out.text = s;
    return out;
  }
  static Value of(std::string s) {
    Value out;
    out.kind = Kind::String;
    out.text = std::move(s);
    return out;
  }
  static Value of(rjit::Buffer& b) {
    Value out;
    out.kind = Kind::Buffer;
    out.buffer = &b;
    return out;
  }
  static Value of(std::nullptr_t) { return null(); }
  static Value null() {
    Value out;
    out.kind = Kind::Null;
    return out;
  }
};

/// What the code wrote to its stdout and stderr during a call or run (bounded by rjitd's
/// --executor-output), and the wall time it took in the executor.
struct ExecOutput {
  std::string out, err;
  uint64_t micros = 0;
};

struct CallResult {
  Value value;  ///< Void for a void function
  ExecOutput output;
};

/// How a program (RemoteModule::run) ended: exitStatus when it exited (main returned or it
/// called exit()), else signal (and its name, "SIGSEGV") when it died of one.
struct RunResult {
  int exitStatus = 0;
  int signal = 0;
  std::string signalName;
  ExecOutput output;
};

/// A failure of a remote call or run: the kinds of Error (Crashed, Timeout, OutOfMemory,
/// Exited, OutputLimit, SandboxViolation, SignatureMismatch, Connection, ...) with what the
/// code wrote before it failed.
class RJIT_API ExecError : public Error {
public:
  ExecError(const Error& error, ExecOutput output = {}, int signal = 0, int exitStatus = 0);
  const ExecOutput& output() const noexcept { return output_; }
  /// Crashed: the signal's number (SIGSEGV = 11); else 0.
  int signal() const noexcept { return signal_; }
  /// Exited: the status the code passed to exit(); else 0.
  int exitStatus() const noexcept { return exitStatus_; }

private:
  ExecOutput output_;
  int signal_ = 0;
  int exitStatus_ = 0;
};

class RemoteExecutor;

/// A module loaded into a remote executor (RemoteExecutor::load). Destroying it unloads it
/// there. Move-only; thread-safe (calls from several threads are answered one at a time by the
/// executor). Usable as long as its RemoteExecutor's connection lasts: after the connection to
/// rjitd broke, every call fails with ExecError(Connection).
class RJIT_API RemoteModule {
public:
  RemoteModule();
  ~RemoteModule();
  RemoteModule(RemoteModule&&) noexcept;
  RemoteModule& operator=(RemoteModule&&) noexcept;
  RemoteModule(const RemoteModule&) = delete;
  RemoteModule& operator=(const RemoteModule&) = delete;

  explicit operator bool() const noexcept { return state != nullptr; }

  /// The compile behind it: key, defined symbols with IR signatures, diagnostics (no object
  /// bytes: the object stays in rjitd).
  const CompiledObject& object() const;

  /// Calls `symbol` with `args` (each must fit its parameter: integers in the parameter's
  /// range as either signedness, Float/Double for float/double, String/Buffer/Null for ptr),
  /// checked here against its IR signature before anything is sent, and within the client's
  /// deadline (ClientOptions::timeout, which rjitd caps by its --execute-timeout). Copied Out
  /// and InOut buffers are written back. Throws ExecError: SignatureMismatch naming the symbol,
  /// its signature and what was given; Crashed, Timeout, OutOfMemory, Exited, OutputLimit,
  /// SandboxViolation from the executor (with the output); Connection when the connection
  /// broke (the call is never retried: it may have run).
  CallResult callValues(std::string_view symbol, std::vector<Value> args);

  /// Typed call: the C++ types of `args` and of R are checked against the IR signature before
  /// anything is sent: int8_t..int64_t and uint8_t..uint64_t (the IR integer's width; a signed
  /// type is refused for a `zeroext` parameter and an unsigned one for `signext`), bool (i1),
  /// float, double, const char* / std::string, Buffer&, std::nullptr_t for ptr; R likewise
  /// (integers, bool, float, double) or void. Mismatch: ExecError(SignatureMismatch). The
  /// call's output is dropped (callValues returns it). Throws as callValues.
  template <typename R, typename... A> R call(std::string_view symbol, A&&... args) {
    std::vector<Value> values;
    values.reserve(sizeof...(A));
    (values.push_back(Value::of(std::forward<A>(args))), ...);
    Value result = callTyped(symbol, std::move(values), resultType<R>());
    if constexpr (!std::is_void_v<R>) {
      if constexpr (std::is_same_v<R, bool>)
        return (result.kind == Value::Kind::Signed ? result.i : static_cast<int64_t>(result.u)) !=
               0;
      else if constexpr (std::is_integral_v<R>)
        return result.kind == Value::Kind::Signed ? static_cast<R>(result.i)
                                                  : static_cast<R>(result.u);
      else if constexpr (std::is_same_v<R, float>)
        return result.f;
      else
        return result.d;
    }
  }

  /// Runs the module's `main` (i32(), i32(i32,ptr) or i32(i32,ptr,ptr)) as a program in the
  /// executor: `argv` (argv[0] first), `env` as NAME=VALUE, `stdinBytes` as its standard input.
  /// A program that dies of a signal is a RunResult with `signal`, not an error. Throws
  /// ExecError: SignatureMismatch for a module without a runnable main, Timeout, OutOfMemory,
  /// OutputLimit, SandboxViolation, Connection.
  RunResult run(std::vector<std::string> argv, std::vector<std::string> env = {},
                std::string stdinBytes = {});

  struct State;
  /// What call<R> expects of the result (Value::Kind Void, Signed, Unsigned, Float or Double,
  /// and the width of an integer).
  struct ResultType {
    Value::Kind kind = Value::Kind::Void;
    uint8_t bits = 0;
  };
  /// What call<R> expects of R.
  template <typename R> static constexpr ResultType resultType() {
    if constexpr (std::is_void_v<R>)
      return {Value::Kind::Void, 0};
    else if constexpr (std::is_same_v<R, bool>)
      return {Value::Kind::Unsigned, 1};
    else if constexpr (std::is_integral_v<R>) {
      static_assert(sizeof(R) <= 8, "integers up to 64 bits");
      return {std::is_signed_v<R> ? Value::Kind::Signed : Value::Kind::Unsigned,
              static_cast<uint8_t>(sizeof(R) * 8)};
    } else if constexpr (std::is_same_v<R, float>)
      return {Value::Kind::Float, 0};
    else {
      static_assert(std::is_same_v<R, double>,
                    "call<R>: R is void, an integer, bool, float or double");
      return {Value::Kind::Double, 0};
    }
  }

private:
  friend class RemoteExecutor;
  explicit RemoteModule(std::shared_ptr<State> state);
  Value callTyped(std::string_view symbol, std::vector<Value> args, ResultType result);
  std::shared_ptr<State> state;
};

/// An executor process in rjitd for one target, private to this client's connection
/// (Client::executor). rjitd starts it when the first module is loaded and after a call killed
/// it. Destroying the handle (and every RemoteModule of it) ends the process. Move-only;
/// thread-safe. Keeps the client's connection (and I/O thread) alive while it exists.
class RJIT_API RemoteExecutor {
public:
  RemoteExecutor();
  ~RemoteExecutor();
  RemoteExecutor(RemoteExecutor&&) noexcept;
  RemoteExecutor& operator=(RemoteExecutor&&) noexcept;
  RemoteExecutor(const RemoteExecutor&) = delete;
  RemoteExecutor& operator=(const RemoteExecutor&) = delete;

  explicit operator bool() const noexcept { return state != nullptr; }

  /// Compiles `request` through rjitd (or its cache) and loads it into the executor; runs its
  /// static constructors there. `request.target` must be empty or the executor's target.
  /// Modules of at least hashFirstBytes are first asked for by key. Throws Error: the kinds
  /// compile() throws, LinkFailed, Connection (the connection broke: make a new executor).
  RemoteModule load(const CompileRequest& request);

  /// A zeroed buffer of `count` elements: in the shared segment when sharedMemory() (and the
  /// segment has room), else memory of this process. Throws Error(Configuration) for a bad
  /// RJIT_SEGMENT_BYTES, Error(Load) when the segment cannot be made.
  Buffer buffer(ElementType element, size_t count, Direction direction = Direction::InOut);

  /// True when buffers live in a shared segment (the connection is a Unix socket): a memfd of
  /// RJIT_SEGMENT_BYTES (default 256 MiB, reserved lazily) made on the first buffer() and
  /// handed to rjitd once, before the first call that passes one.
  bool sharedMemory() const;

  /// The canonical triple of the executor's target.
  const std::string& triple() const;

  struct State;

private:
  friend class Client;
  explicit RemoteExecutor(std::shared_ptr<State> state);
  std::shared_ptr<State> state;
};

/// Connections to rjitd: one per server used (made lazily, remade after a failure, failing over
/// between servers; see ClientOptions::servers for which server a call goes to).
/// A call cut off by a server that goes away - one answering `shutting-down` or closing the
/// connection, as rjitd does while it restarts - is retried on a new connection within the
/// call's deadline, so a restart of a socket-activated rjitd fails no call.
/// Thread-safe: any thread may call any method; calls from several threads run concurrently
/// over one connection per server. I/O runs on a private thread the client owns.
class RJIT_API Client {
public:
  /// Reads the environment for options left unset. Throws Error(Configuration) for a bad
  /// RJIT_SERVER / RJIT_SERVER_POLICY / RJIT_TIMEOUT_MS / RJIT_HASH_FIRST_BYTES. Does not
  /// connect yet.
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

  /// An executor in rjitd for `target` ("" = this client's own architecture, as for load) on
  /// this client's
  /// connection: code loaded into it runs in a sandboxed process of rjitd's, never here.
  /// Throws Error: UnknownTarget (a target rjitd cannot run), Overloaded (past rjitd's
  /// --max-executors or its per-connection limit), Connection, Timeout.
  RemoteExecutor executor(std::string target = "");

  struct Impl;

private:
  // Shared with the RemoteExecutors made by this client, which keep its connection alive.
  std::shared_ptr<Impl> impl;
};

}  // namespace rjit
