# SPDX-License-Identifier: MIT
# The rjitd wire protocol: what a client and the daemon say to each other.
#
# Shape: the bootstrap capability only performs the versioned handshake; everything else hangs
# off the `Session` it returns. New features add methods to `Session`, or new capabilities
# returned by new methods (as `load` returns a `LoadedImage`; execute and sessions with state
# will come the same way), and new fields at the end of structs; old clients keep working
# because Cap'n Proto ignores unknown fields and methods they never call, so such additions
# keep `protocolVersion`.

@0xadbbccfbad75b677;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("rjitd::proto");

const protocolVersion :UInt32 = 1;
# Bumped only for incompatible changes. Compatible additions keep the number.

const keyBytes :UInt32 = 32;
# A cache key is a SHA-256 digest (see src/cache/cache-key.h for what it covers).

interface Rjitd {
  # The bootstrap capability.

  hello @0 (client :ClientHello) -> (server :ServerHello, session :Session);
  # Versioned handshake. The server always answers with its own versions and a session; the
  # client decides whether it can speak the server's protocolVersion (equal major version) and
  # otherwise fails with a protocol-mismatch error before making any other call.
}

struct ClientHello {
  protocolVersion @0 :UInt32;
  clientName @1 :Text;       # e.g. "rjit/0.1.0" or the embedding program's name; for logs
}

struct ServerHello {
  protocolVersion @0 :UInt32;
  rjitdVersion @1 :Text;
  llvmVersion @2 :Text;
  compilerIdentity @3 :Text;
  # Part of every cache key: a client computing a key for a hash-first lookup uses this string.
  targets @4 :List(TargetInfo);
  defaultTriple @5 :Text;    # used when a request leaves the triple empty
  limits @6 :Limits;
  refused @7 :Error;
  # Set when rjitd will not serve this connection (kind overloaded with retryAfterMillis, or
  # permissionDenied); `session` is then null and rjitd closes the connection after this answer.
}

struct TargetInfo {
  name @0 :Text;             # short name: "x86_64", "aarch64"
  triple @1 :Text;           # canonical triple: "x86_64-unknown-linux-gnu"
  aliases @2 :List(Text);    # other names accepted for this target
  defaultCpu @3 :Text;
}

struct Limits {
  maxModuleBytes @0 :UInt64;
}

enum IrFormat {
  auto @0;                   # detect: bitcode magic (BC 0xC0DE or wrapper) or else text
  text @1;
  bitcode @2;
}

struct TargetSpec {
  triple @0 :Text;           # a short name, alias or full triple; "" = server default
  cpu @1 :Text;              # "" = the target's default CPU
  features @2 :Text;         # LLVM feature string, e.g. "+avx2,-sse4a"; "" = none
}

struct CompileRequest {
  moduleName @0 :Text;       # for diagnostics and logs only; not part of the cache key
  target @1 :TargetSpec;
  optLevel @2 :UInt8;        # 0..3
  format @3 :IrFormat;
  module @4 :Data;           # textual IR or bitcode
}

struct LookupRequest {
  key @0 :Data;              # as computed by cache-key.h from the module bytes and parameters
  wantObject @1 :Bool = true;
}

struct Symbol {
  name @0 :Text;
  kind @1 :Kind;
  enum Kind {
    function @0;
    data @1;
    other @2;
  }
  signature @2 :Text;        # functions: the IR type, e.g. "i32(ptr,double)", "void(i32,...)"
}

struct Diagnostic {
  severity @0 :Severity;
  enum Severity {
    error @0;
    warning @1;
    note @2;
  }
  message @1 :Text;
  line @2 :UInt32;           # 1-based; 0 when unknown (e.g. bitcode)
  column @3 :UInt32;         # 1-based; 0 when unknown
}

struct CompiledObject {
  key @0 :Data;
  object @1 :Data;           # ELF relocatable object (empty when the lookup asked for none)
  triple @2 :Text;           # canonical triple the object was built for
  defines @3 :List(Symbol);  # global symbols the object defines
  needs @4 :List(Text);      # undefined symbols it references
  diagnostics @5 :List(Diagnostic);  # warnings and notes from the compile
  fromCache @6 :Bool;        # true when no compile ran for this request
  compileMicros @7 :UInt64;  # time the compile took when it ran (0 on a hit)
}

struct Error {
  kind @0 :Kind;
  enum Kind {
    internal @0;
    invalidModule @1;        # IR that does not parse or verify; see diagnostics
    unknownTarget @2;
    targetMismatch @3;       # the module's own triple/datalayout disagree with the request
    tooLarge @4;             # over a configured limit
    invalidRequest @5;       # a malformed request field (e.g. optLevel 7, key of wrong size)
    notFound @6;             # lookup of a key the cache does not hold
    shuttingDown @7;         # the daemon is draining; retry on another server or later
    protocolMismatch @8;
    overloaded @9;
    linkFailed @10;          # load: unresolved or duplicate symbols, an unplaceable object
    # Remote execute (RemoteModule.call/run): what happened to the call in its executor. Each
    # ends that executor; the next call gets a fresh one with the session's modules loaded again.
    timeout @11;             # the call overran its deadline (the client's, capped by
                             # rjitd --execute-timeout) and rjitd killed the executor
    crashed @12;             # the code died of a signal (`signal`; its name is in the message)
    outOfMemory @13;         # the code ran past the executor's memory limit (--executor-memory)
    exited @14;              # call: the code called exit() (`exitStatus`)
    outputLimit @15;         # the code wrote more than the executor may (--executor-output)
    sandboxViolation @16;    # the code made a system call executors may not make (socket,
                             # fork, execve, open, ptrace, ...), named in the message
    signatureMismatch @17;   # call: arguments that do not match the symbol's IR signature, or
                             # a symbol that is not a function the module defines
    permissionDenied @18;    # the peer is not allowed to use this rjitd (--allow-users,
                             # --allow-groups); sent once, then the connection closes
  }
  message @1 :Text;
  diagnostics @2 :List(Diagnostic);
  signal @3 :Int32;          # crashed: the signal number (SIGSEGV = 11, ...)
  exitStatus @4 :Int32;      # exited: the status the code passed to exit()
  retryAfterMillis @5 :UInt32;  # overloaded: how long to wait before retrying (0 = no hint)
}

struct CompileOutcome {
  union {
    ok @0 :CompiledObject;
    error @1 :Error;
  }
}

struct CacheStats {
  entries @0 :UInt64;
  bytes @1 :UInt64;
  budgetBytes @2 :UInt64;
  hits @3 :UInt64;
  misses @4 :UInt64;
  evictions @5 :UInt64;
}

struct ServerStats {
  # The same figures rjitd's Prometheus metrics show (docs/METRICS.md), read from them.
  cache @0 :CacheStats;
  compiles @1 :UInt64;            # compiles actually run (single flight: one per distinct key)
  compileFailures @2 :UInt64;
  compilesInFlight @3 :UInt32;
  requests @4 :UInt64;            # compile + lookup requests answered
  moduleBytesReceived @5 :UInt64; # module bodies received by compile requests
  lookups @6 :UInt64;
  lookupHits @7 :UInt64;
  sessions @8 :UInt32;            # open client sessions
  uptimeMillis @9 :UInt64;
  workers @10 :UInt32;
  connections @11 :UInt32;
  compileWorkerRestarts @12 :UInt64;
  requestCounts @13 :List(RequestCount);  # rjitd_requests_total, every (method, result)
  errorCounts @14 :List(ErrorCount);      # rjitd_errors_total, every kind
  loads @15 :UInt64;                      # load requests answered
  links @16 :UInt64;                      # links for clients run (rjitd_links_total)
  linkFailures @17 :UInt64;
  loadedImages @18 :UInt32;               # modules loaded by clients and not yet unloaded
  loadedImageBytes @19 :UInt64;
  symbolQuestions @20 :UInt64;            # SymbolResolver calls to clients (rjitd_symbol_questions_total)
  executes @21 :UInt64;                   # calls and runs answered (rjitd_executes_total)
  executeFailures @22 :UInt64;            # ... of which did not end with a result
  executors @23 :UInt32;                  # executor processes running (rjitd_executors)
  executorRestarts @24 :UInt64;           # executors ended by a call (rjitd_executor_restarts_total)
  executeCounts @25 :List(RequestCount);  # rjitd_executes_total by (target in `method`, result)
  targets @26 :List(TargetStats);         # per served target, zeros included
  tiers @27 :List(TierStats);             # per cache tier rjitd uses: memory, then disk, shared
}

struct TierStats {
  # One cache tier's figures (rjitd_cache_* with its `tier` label). A tier rjitd is not
  # configured with is absent.
  tier @0 :Text;             # "memory", "disk" or "shared"
  entries @1 :UInt64;        # memory and disk (0 for shared: Redis is not asked)
  bytes @2 :UInt64;
  budgetBytes @3 :UInt64;
  hits @4 :UInt64;
  misses @5 :UInt64;
  evictions @6 :UInt64;
  stored @7 :UInt64;         # objects written to the tier (disk, shared)
  rejected @8 :UInt64;       # stored values refused on read (corrupt, wrong key, bad MAC)
  errors @9 :UInt64;         # I/O errors, Redis errors and timeouts
  available @10 :Bool;       # shared: false while rjitd backs off after Redis errors
  address @11 :Text;         # disk: the directory; shared: the Redis address
  leaseWaits @12 :UInt64;    # shared: compiles that waited for another server's lease
}

struct TargetStats {
  # One served target's figures, from the metric families' series with its `target` label.
  # The `...Seconds` are sums of the latency histograms, whose counts are the matching totals
  # (compiles, loads, links, executes): seconds / count is the mean.
  target @0 :Text;           # the target's short name ("x86_64", "aarch64")
  cacheLookups @1 :UInt64;   # rjitd_cache_lookups_total, every tier
  cacheHits @2 :UInt64;
  compiles @3 :UInt64;       # rjitd_compiles_total
  compileFailures @4 :UInt64;
  loads @5 :UInt64;          # rjitd_requests_total{method="load"}
  loadFailures @6 :UInt64;
  links @7 :UInt64;          # rjitd_links_total
  linkFailures @8 :UInt64;
  executes @9 :UInt64;       # rjitd_executes_total
  executeFailures @10 :UInt64;
  compileSeconds @11 :Float64;  # rjitd_compile_duration_seconds_sum, every opt level
  loadSeconds @12 :Float64;     # rjitd_request_duration_seconds_sum{method="load"}
  linkSeconds @13 :Float64;     # rjitd_link_duration_seconds_sum
  executeSeconds @14 :Float64;  # rjitd_execute_duration_seconds_sum
}

struct RequestCount {
  method @0 :Text;
  result @1 :Text;           # "ok" or an error kind
  count @2 :UInt64;
}

struct ErrorCount {
  kind @0 :Text;
  count @1 :UInt64;
}

# --- Loading into the client's address space (the same-host fast path) ---------------------
#
# The client reserves an address range (PROT_NONE) and names it in the request; rjitd links the
# module for that range and hands back a sealed memfd whose pages the client maps there: code
# read+execute (shared), read-only data read-only (shared), writable data read-write
# (private, copy-on-write). rjitd never runs the code. An import is resolved, in this order, by
# `LoadRequest.symbols`, then the definitions of modules this connection already loaded, then
# the client's process symbols: those the client marked `stable` in an earlier answer on this
# connection, then a question to the client's `SymbolResolver` for the rest.

struct Arena {
  base @0 :UInt64;           # start of the client's reservation; page-aligned
  size @1 :UInt64;           # its size: the client's quota for loaded code and data
  pageSize @2 :UInt32;
}

interface SymbolResolver {
  # Implemented by the client: the addresses of `names` in its process, 0 for a name it does
  # not know. Called at most twice per load (a second time only for imports the object's
  # `needs` list did not name). `stable[i]` (optional; missing means false) says that
  # `addresses[i]` is the process's answer for that name for as long as the connection lasts
  # (a symbol of the program or of a library pinned in memory), so rjitd may reuse it for
  # later loads on this connection without asking again. Answers from other loaded modules or
  # from per-load symbols are never stable.
  resolve @0 (names :List(Text)) -> (addresses :List(UInt64), stable :List(Bool));
}

struct ClientSymbol {
  name @0 :Text;
  address @1 :UInt64;
}

struct LoadRequest {
  compile @0 :CompileRequest;   # the module; its target must be the client's own
  key @1 :Data;
  # Hash-first: when `compile.module` is empty, the cached object with this key is loaded, or
  # the answer is an error of kind `notFound` and the client sends the module.
  arena @2 :Arena;
  resolver @3 :SymbolResolver;
  symbols @4 :List(ClientSymbol);
  # Addresses the client offers this load by name (LoadOptions::symbols), sent with the request
  # so that rjitd need not ask for them.
  processSymbols @5 :Bool = true;
  # False: this load must not use process symbols (LoadOptions::processSymbols), so rjitd does
  # not use the stable answers it remembers either.
}

struct ImageSegment {
  address @0 :UInt64;        # client address, page-aligned
  offset @1 :UInt64;         # offset in the image file
  size @2 :UInt64;           # bytes, a multiple of the page size
  protection @3 :UInt8;      # protectionRead | protectionWrite | protectionExecute; never W+X
}

struct ImageSymbol {
  name @0 :Text;
  address @1 :UInt64;
  function @2 :Bool;
}

const protectionRead :UInt8 = 1;
const protectionWrite :UInt8 = 2;
const protectionExecute :UInt8 = 4;

interface LoadedImage {
  # A module linked for one client. Over a Unix socket the sealed memfd with the image is
  # attached to this capability (the client asks for it with Capability::Client::getFd());
  # `read` returns the same bytes, a piece at a time (at most LoadedModule.readLimit bytes per
  # call), for clients that cannot receive descriptors (TCP). Releasing the
  # capability unloads the module in rjitd: its address range becomes free and its symbols
  # leave the connection's table.
  read @0 (offset :UInt64, size :UInt64) -> (bytes :Data);
}

struct LoadedModule {
  image @0 :LoadedImage;
  object @1 :CompiledObject;   # key, symbols, diagnostics, cache use (without the object bytes)
  base @2 :UInt64;
  size @3 :UInt64;
  segments @4 :List(ImageSegment);
  symbols @5 :List(ImageSymbol);
  initializers @6 :List(UInt64);  # run in this order after mapping
  finalizers @7 :List(UInt64);    # run in this order before unmapping
  ehFrameAddress @8 :UInt64;      # register with the unwinder (__register_frame); 0 = none
  ehFrameSize @9 :UInt64;
  linkMicros @10 :UInt64;
  dependencies @11 :List(UInt64);
  # Base addresses of modules this client loaded earlier that this one links against: the
  # client keeps those loaded as long as this one is.
  readLimit @12 :UInt64;     # the most bytes one `image.read` returns
}

struct LoadOutcome {
  union {
    ok @0 :LoadedModule;
    error @1 :Error;
  }
}

interface Session {
  compile @0 (request :CompileRequest) -> (outcome :CompileOutcome);
  # Compiles the module (or serves it from the cache) and returns the relocatable object.

  lookup @1 (request :LookupRequest) -> (outcome :CompileOutcome);
  # Hash-first: returns the cached object for `key`, or an error of kind `notFound`; the
  # client then sends the whole module with `compile`.

  stats @2 () -> (stats :ServerStats);

  load @3 (request :LoadRequest) -> (outcome :LoadOutcome);
  # Compiles (or finds in the cache) the module and links it for the client's address space.

  executor @4 (target :TargetSpec) -> (outcome :ExecutorOutcome);
  # An executor for `target` (cpu and features apply to the modules loaded into it): a process
  # of its own, private to this session, started when the first module is loaded into it.
  # Refused with `overloaded` past rjitd --max-executors (all sessions) or the per-connection
  # limit, and with `unknownTarget` for a target rjitd cannot run.
}

# --- Remote execute --------------------------------------------------------------------------
#
# rjitd never runs user code in its own process. An `Executor` is a sandboxed process (seccomp
# allow-list, rlimits, no descriptors but its channel and its stdio files) that loads modules
# through the same linker and loader as the fast path and calls their functions by IR signature
# (libffi). rjitd enforces each call's deadline by killing the executor; a crash, a deadline, an
# exit() or a flood of output is an Error of its kind for that call only, and the next call gets
# a fresh executor with the modules still held loaded again. Releasing a RemoteModule unloads
# it; releasing the Executor (and every RemoteModule of it) ends the process.

struct Value {
  # An argument or a result of a call. Integers: `signed` or `unsigned` as the caller means
  # them; an IR integer parameter takes either if the value fits its width (IR says signedness
  # only by `signext`/`zeroext`). Results: `signed` unless the IR says `zeroext` (or i1).
  union {
    void @0 :Void;           # the result of a void function
    signed @1 :Int64;
    unsigned @2 :UInt64;
    float32 @3 :Float32;     # `float`
    float64 @4 :Float64;     # `double`
    string @5 :Text;         # a ptr parameter: a NUL-terminated copy, alive for the call
    buffer @6 :Buffer;       # a ptr parameter: an array
    null @7 :Void;           # a ptr parameter: the null pointer
    pointer @8 :UInt64;      # a ptr result: the address in the executor (only to print)
  }
}

struct Buffer {
  element @0 :Element;
  enum Element {
    i8 @0; u8 @1; i16 @2; u16 @3; i32 @4; u32 @5; i64 @6; u64 @7; f32 @8; f64 @9;
  }
  count @1 :UInt64;          # elements; count * element size bytes
  direction @2 :Direction;
  enum Direction {
    in @0;                   # read by the callee; not sent back
    out @1;                  # written by the callee: starts zeroed, sent back
    inOut @2;                # both
  }
  union {
    bytes @3 :Data;          # copied: the contents (in, inOut; empty for out)
    segmentOffset @4 :UInt64;
    # In the session's shared segment (Executor.attachSegment) at this offset: nothing is
    # copied; the callee reads and writes the client's memory in place.
  }
}

struct CallRequest {
  symbol @0 :Text;
  arguments @1 :List(Value);
  timeoutMillis @2 :UInt64;  # the client's deadline; 0 = rjitd's --execute-timeout (also the cap)
}

struct CallResult {
  value @0 :Value;
  buffers @1 :List(Data);
  # One per `out` or `inOut` argument that was copied (`bytes`), in argument order: its
  # contents after the call. Segment buffers were written in place and have none.
}

struct ExecOutput {
  # What the code wrote to its stdout and stderr during this call or run (at most
  # rjitd --executor-output bytes each; more is an `outputLimit` error), and the wall time.
  stdout @0 :Data;
  stderr @1 :Data;
  micros @2 :UInt64;
}

struct CallOutcome {
  union {
    ok @0 :CallResult;
    error @1 :Error;
  }
  output @2 :ExecOutput;     # also for errors: what the code wrote before it crashed
}

struct RunRequest {
  # Runs the module's `main` (i32(), i32(i32,ptr) or i32(i32,ptr,ptr)) as a program: argv[0]
  # first, the environment as NAME=VALUE, and stdin's bytes as its standard input. The
  # executor ends with the program (exit() or main's return run atexit handlers and static
  # destructors as natively); the next call or run gets a fresh one.
  argv @0 :List(Text);
  env @1 :List(Text);
  stdin @2 :Data;
  timeoutMillis @3 :UInt64;  # as CallRequest.timeoutMillis
}

struct RunResult {
  union {
    exitStatus @0 :Int32;    # main returned or the program called exit()
    signal @1 :Int32;        # the program died of this signal (abort(), a crash)
  }
  signalName @2 :Text;       # "SIGSEGV", ... ("" for an exit)
}

struct RunOutcome {
  union {
    ok @0 :RunResult;
    error @1 :Error;         # timeout, outOfMemory, outputLimit, sandboxViolation, ...
  }
  output @2 :ExecOutput;
}

interface RemoteModule {
  call @0 (request :CallRequest) -> (outcome :CallOutcome);
  run @1 (request :RunRequest) -> (outcome :RunOutcome);
}

struct RemoteLoaded {
  module @0 :RemoteModule;
  object @1 :CompiledObject;  # key, symbols with IR signatures, diagnostics (no object bytes)
}

struct RemoteLoadOutcome {
  union {
    ok @0 :RemoteLoaded;
    error @1 :Error;
  }
}

interface SharedSegment {
  # Implemented by a same-host client: a memfd it created, sized and sealed against shrinking
  # (F_SEAL_SHRINK), attached to this capability (Capability::Client::getFd()). No methods.
}

struct AttachOutcome {
  union {
    ok @0 :Void;
    error @1 :Error;
  }
}

interface Executor {
  load @0 (request :CompileRequest, key :Data) -> (outcome :RemoteLoadOutcome);
  # Compiles (or finds in the cache) the module and loads it into the executor. Hash-first:
  # with `request.module` empty, the cached object with `key` is used, or the answer is
  # `notFound` and the client sends the module.

  attachSegment @1 (segment :SharedSegment, size :UInt64) -> (outcome :AttachOutcome);
  # Unix sockets only: the client's shared segment, mapped read-write by the executor, once per
  # executor. `Buffer.segmentOffset` arguments point into it.
}

struct ExecutorOutcome {
  union {
    ok @0 :Executor;
    error @1 :Error;
  }
}
