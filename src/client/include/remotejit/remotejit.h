/* SPDX-License-Identifier: MIT */
/* libremotejit-client's C API: compile LLVM IR through rjitd and load it into this process (or
 * run it in rjitd's executors), from
 * C or any language's FFI. A thin layer over the C++ API (remotejit/client.h), with the same
 * behaviour; see there for what rjitd does with each call.
 *
 * Conventions, for every function here:
 * - Handles (rjit_client, rjit_module, rjit_object, rjit_error, rjit_executor, ...) are
 *   opaque, created by this library and freed by the caller with their _free/_unload function,
 *   which accept NULL.
 * - A function that can fail takes `rjit_error** error` last. It always writes `*error`: NULL on
 *   success, and on failure a new rjit_error the caller owns and frees with rjit_error_free.
 *   `error` itself may be NULL: the failure is then only visible in the return value (NULL).
 * - Nothing here throws or lets a C++ exception escape; every failure is an rjit_error.
 * - Strings passed in are NUL-terminated UTF-8 and only read during the call; NULL means "".
 *   Strings returned are owned by the handle they come from and live as long as it does.
 * - Options structs start with `size_t struct_size`, which the caller sets to sizeof(the struct)
 *   as compiled: the library reads only the fields that lie within struct_size, so programs
 *   built against an older or newer header keep working. A zero value in any field, including
 *   struct_size, means that field's default: a zeroed struct (or a NULL pointer to it) gives
 *   all defaults. (Maintainers: a new field only goes after the end of the previous version's
 *   sizeof, so an old caller's trailing padding is never read as a field.)
 * - Enums are int-sized; the numeric values are part of the ABI.
 */
#ifndef REMOTEJIT_REMOTEJIT_H
#define REMOTEJIT_REMOTEJIT_H

#include <stddef.h>
#include <stdint.h>

/* Marks the public API: the library is built with hidden visibility and exports only these. */
#if defined(__GNUC__) || defined(__clang__)
#define RJIT_C_API __attribute__((visibility("default")))
#else
#define RJIT_C_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* --- errors ------------------------------------------------------------------------------- */

/** What went wrong: the same kinds, in the same order, as rjit::ErrorKind. (No typedef: the
 *  function rjit_error_kind() takes the plain name, so C and C++ write `enum rjit_error_kind`.) */
enum rjit_error_kind {
  RJIT_ERROR_INTERNAL = 0,            /**< a fault inside rjitd or this library */
  RJIT_ERROR_INVALID_MODULE = 1,      /**< the IR does not parse or verify; see diagnostics */
  RJIT_ERROR_UNKNOWN_TARGET = 2,      /**< no served target has that name or triple */
  RJIT_ERROR_TARGET_MISMATCH = 3,     /**< the module's own triple disagrees with the target */
  RJIT_ERROR_TOO_LARGE = 4,           /**< over a server limit, or over the memory quota */
  RJIT_ERROR_INVALID_REQUEST = 5,     /**< a malformed request (bad opt level, NULL handle, ...) */
  RJIT_ERROR_NOT_FOUND = 6,           /**< a lookup of a key the server does not hold */
  RJIT_ERROR_SHUTTING_DOWN = 7,       /**< the server is draining; a retry will do */
  RJIT_ERROR_PROTOCOL_MISMATCH = 8,   /**< client and server speak incompatible protocols */
  RJIT_ERROR_OVERLOADED = 9,          /**< the server refuses work for now */
  RJIT_ERROR_CONNECTION = 10,         /**< no server could be reached, or the connection broke */
  RJIT_ERROR_TIMEOUT = 11,            /**< the call did not finish within the deadline */
  RJIT_ERROR_CONFIGURATION = 12,      /**< bad client options or RJIT_* environment variables */
  RJIT_ERROR_LINK_FAILED = 13,        /**< unresolved or duplicate symbols (named in the message) */
  RJIT_ERROR_LOAD = 14,               /**< mapping or starting loaded code in this process failed */
  RJIT_ERROR_CRASHED = 15,            /**< remote execute: the code died of a signal */
  RJIT_ERROR_OUT_OF_MEMORY = 16,      /**< remote execute: past the executor's memory limit */
  RJIT_ERROR_EXITED = 17,             /**< remote execute: the called function called exit() */
  RJIT_ERROR_OUTPUT_LIMIT = 18,       /**< remote execute: more output than an executor may write */
  RJIT_ERROR_SANDBOX_VIOLATION = 19,  /**< remote execute: a forbidden system call (named) */
  RJIT_ERROR_SIGNATURE_MISMATCH = 20, /**< remote execute: arguments that do not match */
  RJIT_ERROR_PERMISSION_DENIED = 21   /**< this user may not use the server (--allow-users) */
};

enum rjit_severity { RJIT_SEVERITY_ERROR = 0, RJIT_SEVERITY_WARNING = 1, RJIT_SEVERITY_NOTE = 2 };

/** A failure: kind, message and compiler diagnostics. Owned by the caller; rjit_error_free. */
typedef struct rjit_error rjit_error;

/** The error's kind; RJIT_ERROR_INTERNAL for NULL. */
RJIT_C_API enum rjit_error_kind rjit_error_kind(const rjit_error* error);

/** Lower-case name of a kind ("link-failed"), as the rjit CLI prints it; "unknown" for a value
 *  this library does not know. A static string: never freed. */
RJIT_C_API const char* rjit_error_kind_name(enum rjit_error_kind kind);

/** The complete message, without an "error: " prefix ("" for NULL). Owned by `error`. */
RJIT_C_API const char* rjit_error_message(const rjit_error* error);

/** How many compiler diagnostics (with line and column) the error carries; 0 for NULL. */
RJIT_C_API size_t rjit_error_diagnostic_count(const rjit_error* error);

/** Diagnostic `index` (0-based): returns its message (owned by `error`) and stores its 1-based
 *  line and column (0 when unknown) and its severity through the pointers that are not NULL.
 *  Returns NULL, storing nothing, when `index` is out of range or `error` is NULL. */
RJIT_C_API const char* rjit_error_diagnostic(const rjit_error* error, size_t index, uint32_t* line,
                                             uint32_t* column, enum rjit_severity* severity);

/** Frees an error; NULL is allowed. */
RJIT_C_API void rjit_error_free(rjit_error* error);

/* --- client ------------------------------------------------------------------------------- */

/** A connection to rjitd, made lazily, remade after a failure, failing over between servers.
 *  Thread-safe: any thread may use one client concurrently. Owned by the caller. */
typedef struct rjit_client rjit_client;

typedef struct rjit_client_options {
  size_t struct_size; /**< sizeof(rjit_client_options) */
  /** Servers ("unix:/path", "tcp:HOST:PORT", each optionally followed by ";weight=N"),
   *  `server_count` of them; none: RJIT_SERVER (comma-separated), else the default socket.
   *  With several, compiles and loads are routed by their module (RJIT_SERVER_POLICY=key, the
   *  default) or go to the first that answers (RJIT_SERVER_POLICY=ordered); see ClientOptions
   *  in client.h. */
  const char* const* servers;
  size_t server_count;
  /** Deadline for each call in milliseconds, connection set-up included. 0: RJIT_TIMEOUT_MS,
   *  else 60 s. */
  uint64_t timeout_ms;
  /** Modules of at least this many bytes are first looked up by hash and sent only on a miss
   *  (1: every module). 0: RJIT_HASH_FIRST_BYTES, else 64 KiB. */
  uint64_t hash_first_bytes;
  /** Shown in the server's logs. NULL: "libremotejit-client". */
  const char* client_name;
  /** Address space reserved for loaded modules per connection, in bytes. 0: RJIT_MEMORY_QUOTA,
   *  else 256 MiB. */
  uint64_t memory_quota;
} rjit_client_options;

/** Creates a client; `options` may be NULL (all defaults). Reads the environment for options
 *  left unset and does not connect yet. Fails with RJIT_ERROR_CONFIGURATION for bad options or
 *  a bad RJIT_SERVER / RJIT_TIMEOUT_MS / RJIT_CONNECT_WAIT_MS / RJIT_HASH_FIRST_BYTES.
 *  Returns NULL on failure. */
RJIT_C_API rjit_client* rjit_client_new(const rjit_client_options* options, rjit_error** error);

/** Closes the connection and frees the client; NULL is allowed. Modules it loaded stay usable.
 *  No call on it may be running in another thread. */
RJIT_C_API void rjit_client_free(rjit_client* client);

/* --- compiling ---------------------------------------------------------------------------- */

enum rjit_ir_format {
  RJIT_IR_AUTO = 0, /**< detected from the bytes */
  RJIT_IR_TEXT = 1,
  RJIT_IR_BITCODE = 2
};

/** Optimization levels: zero means the default (-O2), so -On is RJIT_OPT_On. */
enum rjit_opt_level {
  RJIT_OPT_DEFAULT = 0,
  RJIT_OPT_O0 = 1,
  RJIT_OPT_O1 = 2,
  RJIT_OPT_O2 = 3,
  RJIT_OPT_O3 = 4
};

typedef struct rjit_compile_request {
  size_t struct_size; /**< sizeof(rjit_compile_request) */
  /** Textual IR or bitcode, `module_size` bytes (need not be NUL-terminated). */
  const void* module;
  size_t module_size;
  const char* module_name; /**< for diagnostics, e.g. the file name; NULL: "" */
  const char* target;      /**< "x86_64", "aarch64", an alias or a triple; NULL: server default */
  const char* cpu;         /**< NULL: the target's default */
  const char* features;    /**< LLVM feature string; NULL: none */
  int opt_level;           /**< an rjit_opt_level; 0: -O2 */
  int format;              /**< an rjit_ir_format; 0: auto */
} rjit_compile_request;

/** A compiled ELF relocatable object. Owned by the caller; rjit_object_free. */
typedef struct rjit_object rjit_object;

/** Compiles `request` through rjitd (or its cache). Returns NULL on failure: invalid IR is
 *  RJIT_ERROR_INVALID_MODULE with diagnostics. */
RJIT_C_API rjit_object* rjit_compile(rjit_client* client, const rjit_compile_request* request,
                                     rjit_error** error);

/** The object file's bytes (owned by `object`) and their number. NULL and 0 for NULL. */
RJIT_C_API const void* rjit_object_data(const rjit_object* object);
RJIT_C_API size_t rjit_object_size(const rjit_object* object);
/** The cache key: 64 lower-case hex digits ("" for NULL). Owned by `object`. */
RJIT_C_API const char* rjit_object_key(const rjit_object* object);
/** The canonical triple it was built for ("" for NULL). Owned by `object`. */
RJIT_C_API const char* rjit_object_triple(const rjit_object* object);
/** 1 when the server ran no compile for this request (a cache hit), else 0. */
RJIT_C_API int rjit_object_from_cache(const rjit_object* object);

/** Frees an object; NULL is allowed. */
RJIT_C_API void rjit_object_free(rjit_object* object);

/* --- loading into this process ------------------------------------------------------------ */

/** A function or data object this program offers a loaded module under `name`. */
typedef struct rjit_symbol {
  const char* name;
  void* address;
} rjit_symbol;

typedef struct rjit_load_options {
  size_t struct_size; /**< sizeof(rjit_load_options) */
  /** `symbol_count` symbols, searched before the process's own (names must be distinct). The
   *  array and names are only read during the call. */
  const rjit_symbol* symbols;
  size_t symbol_count;
  /** 0 (default): also resolve through the process's global symbols (libc, libm, and the
   *  program's own when linked with -rdynamic), as dlsym(RTLD_DEFAULT) finds them. Nonzero:
   *  only through `symbols` and the modules this client loaded before. */
  int no_process_symbols;
} rjit_load_options;

/** Code compiled by rjitd, linked for this process and mapped into it: called natively, with
 *  no RPC per call. Thread-safe for lookups and calls. May outlive its client. Owned by the
 *  caller; rjit_module_unload. */
typedef struct rjit_module rjit_module;

/** Compiles `request` through rjitd (or its cache), has rjitd link it for this process and maps
 *  it here; runs its static constructors before returning. `options` may be NULL (defaults).
 *  `request->target` must be NULL/"" or name this host's architecture. Returns NULL on failure:
 *  RJIT_ERROR_LINK_FAILED for an unresolved symbol (named in the message) or one an earlier
 *  module of this client already defines, RJIT_ERROR_TOO_LARGE over the memory quota,
 *  RJIT_ERROR_LOAD when mapping it here fails, and the kinds rjit_compile gives. */
RJIT_C_API rjit_module* rjit_load(rjit_client* client, const rjit_compile_request* request,
                                  const rjit_load_options* options, rjit_error** error);

/** The address of a global symbol (function or data) the module defines, or NULL (also for a
 *  NULL module or name). Cast it to the right function or data pointer type: IR carries no C
 *  type to check against. Valid until rjit_module_unload. */
RJIT_C_API void* rjit_module_symbol(const rjit_module* module, const char* name);

/** Runs the module's static destructors, unmaps it, tells rjitd to free what it kept for it and
 *  frees the handle; NULL is allowed. Pointers into the module must not be used afterwards, and
 *  no thread may be running its code. */
RJIT_C_API void rjit_module_unload(rjit_module* module);

/* --- remote execute ----------------------------------------------------------------------- */
/* Code run in rjitd's sandboxed executor processes, never in this one (see RemoteExecutor in
 * remotejit/client.h). A crash, a hang past the deadline, an exit() or a flood of output of the
 * code is an rjit_error of its kind for that call (RJIT_ERROR_CRASHED, _TIMEOUT, _EXITED, ...),
 * carrying what the code wrote (rjit_error_output), and the next call gets a fresh executor. */

/** What the code wrote to stdout and stderr during a call or run, and the time it took. Owned
 *  by the caller (rjit_exec_output_free), or by the rjit_error it came with. */
typedef struct rjit_exec_output rjit_exec_output;
/** The bytes the code wrote to its stdout (not NUL-terminated; owned by `output`); their
 *  number through `size` when not NULL. NULL and 0 for NULL. */
RJIT_C_API const char* rjit_exec_output_stdout(const rjit_exec_output* output, size_t* size);
RJIT_C_API const char* rjit_exec_output_stderr(const rjit_exec_output* output, size_t* size);
/** Wall time of the call or run in the executor, in microseconds; 0 for NULL. */
RJIT_C_API uint64_t rjit_exec_output_micros(const rjit_exec_output* output);
/** Frees output the caller owns; NULL is allowed. Never for an rjit_error's output. */
RJIT_C_API void rjit_exec_output_free(rjit_exec_output* output);

/** The output of the failed call or run `error` came from (owned by `error`), or NULL. */
RJIT_C_API const rjit_exec_output* rjit_error_output(const rjit_error* error);
/** RJIT_ERROR_CRASHED: the signal the code died of (SIGSEGV = 11); else 0. */
RJIT_C_API int rjit_error_signal(const rjit_error* error);
/** RJIT_ERROR_EXITED: the status the code passed to exit(); else 0. */
RJIT_C_API int rjit_error_exit_status(const rjit_error* error);

/** An executor process in rjitd for one target, private to its client's connection. Owned by
 *  the caller; rjit_executor_free. Keeps its client's connection alive. Thread-safe. */
typedef struct rjit_executor rjit_executor;
/** A module loaded into an executor. Owned by the caller; rjit_remote_module_free. */
typedef struct rjit_remote_module rjit_remote_module;
/** An array argument (rjit_buffer_new). Owned by the caller; rjit_buffer_free. */
typedef struct rjit_buffer rjit_buffer;

/** An executor for `target` (NULL or "": this client's own architecture). Returns NULL on failure:
 *  RJIT_ERROR_UNKNOWN_TARGET, RJIT_ERROR_OVERLOADED, RJIT_ERROR_CONNECTION, ... */
RJIT_C_API rjit_executor* rjit_executor_new(rjit_client* client, const char* target,
                                            rjit_error** error);
/** Ends the executor once its modules are freed too; NULL is allowed. */
RJIT_C_API void rjit_executor_free(rjit_executor* executor);
/** 1 when buffers of this executor live in a shared segment (a Unix socket), else 0. */
RJIT_C_API int rjit_executor_shared_memory(const rjit_executor* executor);
/** Compiles `request` through rjitd (or its cache) and loads it into the executor (its
 *  constructors run there). `request->target` must be NULL/"" or the executor's. Returns NULL
 *  on failure, with the kinds rjit_compile gives. */
RJIT_C_API rjit_remote_module* rjit_executor_load(rjit_executor* executor,
                                                  const rjit_compile_request* request,
                                                  rjit_error** error);
/** Unloads the module in the executor and frees the handle; NULL is allowed. */
RJIT_C_API void rjit_remote_module_free(rjit_remote_module* module);

/** Element types of buffers; the numbers are the wire's. */
enum rjit_element_type {
  RJIT_ELEMENT_I8 = 0,
  RJIT_ELEMENT_U8 = 1,
  RJIT_ELEMENT_I16 = 2,
  RJIT_ELEMENT_U16 = 3,
  RJIT_ELEMENT_I32 = 4,
  RJIT_ELEMENT_U32 = 5,
  RJIT_ELEMENT_I64 = 6,
  RJIT_ELEMENT_U64 = 7,
  RJIT_ELEMENT_F32 = 8,
  RJIT_ELEMENT_F64 = 9
};
/** RJIT_DIRECTION_IN is read by the callee; _OUT starts zeroed and is written back; _IN_OUT
 *  both. */
enum rjit_direction { RJIT_DIRECTION_IN = 0, RJIT_DIRECTION_OUT = 1, RJIT_DIRECTION_IN_OUT = 2 };

/** A zeroed buffer of `count` elements: in `executor`'s shared segment when it has one (the
 *  callee reads and writes it in place), else memory of this process copied over the
 *  connection (also when `executor` is NULL). Returns NULL on failure (RJIT_ERROR_INVALID_REQUEST
 *  for a bad element type or direction or an overflowing size). */
RJIT_C_API rjit_buffer* rjit_buffer_new(rjit_executor* executor, int element, size_t count,
                                        int direction, rjit_error** error);
/** The buffer's memory (count * element size bytes); NULL for NULL. Not to be used while a
 *  call it is passed to runs. */
RJIT_C_API void* rjit_buffer_data(rjit_buffer* buffer);
RJIT_C_API size_t rjit_buffer_count(const rjit_buffer* buffer);
/** 1 when the buffer is in a shared segment (passed without a copy), else 0. */
RJIT_C_API int rjit_buffer_shared(const rjit_buffer* buffer);
/** Frees the buffer (and its segment memory); NULL is allowed. */
RJIT_C_API void rjit_buffer_free(rjit_buffer* buffer);

enum rjit_value_kind {
  RJIT_VALUE_VOID = 0,     /**< the result of a void function */
  RJIT_VALUE_SIGNED = 1,   /**< `i` */
  RJIT_VALUE_UNSIGNED = 2, /**< `u` */
  RJIT_VALUE_FLOAT = 3,    /**< `f` */
  RJIT_VALUE_DOUBLE = 4,   /**< `d` */
  RJIT_VALUE_STRING = 5,   /**< `text`, NUL-terminated: the callee gets a copy */
  RJIT_VALUE_BUFFER = 6,   /**< `buffer` */
  RJIT_VALUE_NULL = 7,     /**< the null pointer */
  RJIT_VALUE_POINTER = 8   /**< a result: an address in the executor (`u`), only to print */
};
/** An argument or result of rjit_remote_call; the field `kind` names is the one that counts. */
typedef struct rjit_value {
  int kind; /**< an rjit_value_kind */
  int64_t i;
  uint64_t u;
  float f;
  double d;
  const char* text;
  rjit_buffer* buffer;
} rjit_value;

/** Calls `symbol` with `arg_count` arguments (checked against its IR signature before anything
 *  is sent: integers must fit the parameter, a string, buffer or null go to ptr) within the
 *  client's deadline. Stores the result through `result` and the call's output through `output`
 *  (a new rjit_exec_output the caller frees) when they are not NULL; copied out/in-out buffers
 *  are written back. Returns 0, or -1 on failure: RJIT_ERROR_SIGNATURE_MISMATCH, _CRASHED,
 *  _TIMEOUT, _OUT_OF_MEMORY, _EXITED, _OUTPUT_LIMIT, _SANDBOX_VIOLATION, _CONNECTION (never
 *  retried), with the output in the error. */
RJIT_C_API int rjit_remote_call(rjit_remote_module* module, const char* symbol,
                                const rjit_value* args, size_t arg_count, rjit_value* result,
                                rjit_exec_output** output, rjit_error** error);
/** Runs the module's main as a program: `argv` (argc strings, argv[0] first), `env`
 *  (env_count NAME=VALUE strings), `stdin_size` bytes of standard input. Stores how it ended
 *  through `exit_status` (when it exited) or `signal` (when a signal ended it; 0 otherwise) and
 *  its output through `output` when they are not NULL. Returns 0, or -1 on failure
 *  (RJIT_ERROR_TIMEOUT, _OUTPUT_LIMIT, ...). */
RJIT_C_API int rjit_remote_run(rjit_remote_module* module, const char* const* argv, size_t argc,
                               const char* const* env, size_t env_count, const void* stdin_bytes,
                               size_t stdin_size, int* exit_status, int* signal,
                               rjit_exec_output** output, rjit_error** error);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* REMOTEJIT_REMOTEJIT_H */
