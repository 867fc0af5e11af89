// SPDX-License-Identifier: MIT
// The C API (remotejit/remotejit.h) over the C++ one: handles wrap the C++ objects, options
// structs become C++ options, and every exception is caught here and becomes an rjit_error.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "remotejit/client.h"
#include "remotejit/remotejit.h"

struct rjit_exec_output {
  rjit::ExecOutput output;
};

struct rjit_error {
  rjit::ErrorKind kind;
  std::string message;
  std::vector<rjit::Diagnostic> diagnostics;
  /// A failed remote call or run: what the code wrote, the signal, the exit status.
  std::unique_ptr<rjit_exec_output> output = nullptr;
  int signal = 0;
  int exitStatus = 0;
};

struct rjit_executor {
  rjit::RemoteExecutor executor;
};

struct rjit_remote_module {
  rjit::RemoteModule module;
};

struct rjit_buffer {
  rjit::Buffer buffer;
};

struct rjit_client {
  explicit rjit_client(rjit::ClientOptions options) : client(std::move(options)) {}
  rjit::Client client;
};

struct rjit_object {
  rjit::CompiledObject object;
};

struct rjit_module {
  rjit::Module module;
};

namespace {

// The C enums are the C++ ones by number: rjit_error_kind() casts rather than maps.
#define RJIT_SAME_KIND(c, cxx)                                                                     \
  static_assert(static_cast<int>(c) == static_cast<int>(rjit::ErrorKind::cxx), #c)
RJIT_SAME_KIND(RJIT_ERROR_INTERNAL, Internal);
RJIT_SAME_KIND(RJIT_ERROR_INVALID_MODULE, InvalidModule);
RJIT_SAME_KIND(RJIT_ERROR_UNKNOWN_TARGET, UnknownTarget);
RJIT_SAME_KIND(RJIT_ERROR_TARGET_MISMATCH, TargetMismatch);
RJIT_SAME_KIND(RJIT_ERROR_TOO_LARGE, TooLarge);
RJIT_SAME_KIND(RJIT_ERROR_INVALID_REQUEST, InvalidRequest);
RJIT_SAME_KIND(RJIT_ERROR_NOT_FOUND, NotFound);
RJIT_SAME_KIND(RJIT_ERROR_SHUTTING_DOWN, ShuttingDown);
RJIT_SAME_KIND(RJIT_ERROR_PROTOCOL_MISMATCH, ProtocolMismatch);
RJIT_SAME_KIND(RJIT_ERROR_OVERLOADED, Overloaded);
RJIT_SAME_KIND(RJIT_ERROR_CONNECTION, Connection);
RJIT_SAME_KIND(RJIT_ERROR_TIMEOUT, Timeout);
RJIT_SAME_KIND(RJIT_ERROR_CONFIGURATION, Configuration);
RJIT_SAME_KIND(RJIT_ERROR_LINK_FAILED, LinkFailed);
RJIT_SAME_KIND(RJIT_ERROR_LOAD, Load);
RJIT_SAME_KIND(RJIT_ERROR_CRASHED, Crashed);
RJIT_SAME_KIND(RJIT_ERROR_OUT_OF_MEMORY, OutOfMemory);
RJIT_SAME_KIND(RJIT_ERROR_EXITED, Exited);
RJIT_SAME_KIND(RJIT_ERROR_OUTPUT_LIMIT, OutputLimit);
RJIT_SAME_KIND(RJIT_ERROR_SANDBOX_VIOLATION, SandboxViolation);
RJIT_SAME_KIND(RJIT_ERROR_SIGNATURE_MISMATCH, SignatureMismatch);
RJIT_SAME_KIND(RJIT_ERROR_PERMISSION_DENIED, PermissionDenied);
#undef RJIT_SAME_KIND
constexpr int LAST_KIND = RJIT_ERROR_PERMISSION_DENIED;

static_assert(static_cast<int>(RJIT_SEVERITY_ERROR) ==
              static_cast<int>(rjit::Diagnostic::Severity::Error));
static_assert(static_cast<int>(RJIT_SEVERITY_WARNING) ==
              static_cast<int>(rjit::Diagnostic::Severity::Warning));
static_assert(static_cast<int>(RJIT_SEVERITY_NOTE) ==
              static_cast<int>(rjit::Diagnostic::Severity::Note));
static_assert(static_cast<int>(RJIT_IR_AUTO) == static_cast<int>(rjit::IrFormat::Auto));
static_assert(static_cast<int>(RJIT_IR_TEXT) == static_cast<int>(rjit::IrFormat::Text));
static_assert(static_cast<int>(RJIT_IR_BITCODE) == static_cast<int>(rjit::IrFormat::Bitcode));

// Handed out when not even an error can be allocated; rjit_error_free never frees it. Its
// message fits std::string's inline buffer, so building it at load time allocates nothing.
rjit_error outOfMemory{rjit::ErrorKind::Internal, "out of memory", {}};

void fail(rjit_error** error, rjit::ErrorKind kind, const char* message,
          const std::vector<rjit::Diagnostic>* diagnostics = nullptr,
          const rjit::ExecError* exec = nullptr) noexcept {
  if (error == nullptr)
    return;
  try {
    auto e = std::make_unique<rjit_error>(rjit_error{kind, message, {}});
    if (diagnostics != nullptr)
      e->diagnostics = *diagnostics;
    if (exec != nullptr) {
      e->output = std::make_unique<rjit_exec_output>(rjit_exec_output{exec->output()});
      e->signal = exec->signal();
      e->exitStatus = exec->exitStatus();
    }
    *error = e.release();
  } catch (...) {
    // Copying the message or diagnostics ran out of memory: that becomes the error reported.
    *error = &outOfMemory;
  }
}

/// Runs `body` and returns its result; on an exception stores it in `*error` and returns a
/// value-initialized result (NULL). The one place the C API catches: nothing may unwind into C.
template <typename Body>
auto guarded(rjit_error** error, Body&& body) noexcept -> decltype(body()) {
  if (error != nullptr)
    *error = nullptr;
  try {
    return body();
  } catch (const rjit::ExecError& e) {
    fail(error, e.kind(), e.what(), &e.diagnostics(), &e);
  } catch (const rjit::Error& e) {
    fail(error, e.kind(), e.what(), &e.diagnostics());
  } catch (const std::bad_alloc&) {
    fail(error, rjit::ErrorKind::Internal, "out of memory");
  } catch (const std::exception& e) {
    fail(error, rjit::ErrorKind::Internal, e.what());
  } catch (...) {
    fail(error, rjit::ErrorKind::Internal, "unknown exception in libremotejit-client");
  }
  if constexpr (!std::is_void_v<decltype(body())>)
    return {};
}

/// The caller's options as this library's version of the struct: the fields within
/// `struct_size` copied, every other field zero (= its default). Fields a newer header added
/// past our sizeof are not read.
template <typename Options> Options readOptions(const Options* in) {
  Options out{};
  if (in != nullptr)
    std::memcpy(&out, in, std::min(in->struct_size, sizeof(Options)));
  return out;
}

std::string str(const char* s) {
  return s != nullptr ? s : "";
}

rjit::CompileRequest toCompileRequest(const rjit_compile_request* in) {
  if (in == nullptr)
    throw rjit::Error(rjit::ErrorKind::InvalidRequest, "no compile request");
  auto c = readOptions(in);
  if (c.module == nullptr && c.module_size != 0)
    throw rjit::Error(rjit::ErrorKind::InvalidRequest, "compile request has module_size " +
                                                           std::to_string(c.module_size) +
                                                           " but no module");
  if (c.opt_level < RJIT_OPT_DEFAULT || c.opt_level > RJIT_OPT_O3)
    throw rjit::Error(rjit::ErrorKind::InvalidRequest,
                      "opt_level " + std::to_string(c.opt_level) +
                          " is not an rjit_opt_level (RJIT_OPT_DEFAULT, RJIT_OPT_O0..O3)");
  if (c.format < RJIT_IR_AUTO || c.format > RJIT_IR_BITCODE)
    throw rjit::Error(rjit::ErrorKind::InvalidRequest,
                      "format " + std::to_string(c.format) + " is not an rjit_ir_format");
  rjit::CompileRequest out;
  if (c.module_size != 0)
    out.module.assign(static_cast<const char*>(c.module), c.module_size);
  out.moduleName = str(c.module_name);
  out.target = str(c.target);
  out.cpu = str(c.cpu);
  out.features = str(c.features);
  if (c.opt_level != RJIT_OPT_DEFAULT)
    out.optLevel = static_cast<unsigned>(c.opt_level - RJIT_OPT_O0);
  out.format = static_cast<rjit::IrFormat>(c.format);
  return out;
}

rjit::ClientOptions toClientOptions(const rjit_client_options* in) {
  auto c = readOptions(in);
  rjit::ClientOptions out;
  if (c.servers == nullptr && c.server_count != 0)
    throw rjit::Error(rjit::ErrorKind::Configuration, "client options have server_count " +
                                                          std::to_string(c.server_count) +
                                                          " but no servers");
  for (size_t i = 0; i < c.server_count; ++i) {
    if (c.servers[i] == nullptr)
      throw rjit::Error(rjit::ErrorKind::Configuration,
                        "client options: servers[" + std::to_string(i) + "] is NULL");
    out.servers.emplace_back(c.servers[i]);
  }
  out.timeout = std::chrono::milliseconds(c.timeout_ms);
  if (c.hash_first_bytes != 0)
    out.hashFirstBytes = c.hash_first_bytes;
  if (c.client_name != nullptr)
    out.clientName = c.client_name;
  out.memoryQuota = c.memory_quota;
  return out;
}

rjit::LoadOptions toLoadOptions(const rjit_load_options* in) {
  auto c = readOptions(in);
  rjit::LoadOptions out;
  if (c.symbols == nullptr && c.symbol_count != 0)
    throw rjit::Error(rjit::ErrorKind::InvalidRequest, "load options have symbol_count " +
                                                           std::to_string(c.symbol_count) +
                                                           " but no symbols");
  for (size_t i = 0; i < c.symbol_count; ++i) {
    const rjit_symbol& s = c.symbols[i];
    if (s.name == nullptr || s.name[0] == '\0')
      throw rjit::Error(rjit::ErrorKind::InvalidRequest,
                        "load options: symbols[" + std::to_string(i) + "] has no name");
    if (!out.symbols.emplace(s.name, s.address).second)
      throw rjit::Error(rjit::ErrorKind::InvalidRequest,
                        "load options: symbol '" + std::string(s.name) + "' is given twice");
  }
  out.processSymbols = c.no_process_symbols == 0;
  return out;
}

template <typename T> T& require(T* handle, const char* what) {
  if (handle == nullptr)
    throw rjit::Error(rjit::ErrorKind::InvalidRequest, std::string("no ") + what + " (NULL)");
  return *handle;
}

/// A C value as a C++ one; refuses kinds that are not arguments.
rjit::Value toValue(const rjit_value& in, size_t index) {
  auto bad = [index](const std::string& why) {
    return rjit::Error(rjit::ErrorKind::InvalidRequest,
                       "args[" + std::to_string(index) + "]: " + why);
  };
  switch (in.kind) {
  case RJIT_VALUE_SIGNED: return rjit::Value::of(in.i);
  case RJIT_VALUE_UNSIGNED: return rjit::Value::of(in.u);
  case RJIT_VALUE_FLOAT: return rjit::Value::of(in.f);
  case RJIT_VALUE_DOUBLE: return rjit::Value::of(in.d);
  case RJIT_VALUE_STRING:
    if (in.text == nullptr)
      throw bad("a string with text NULL (use RJIT_VALUE_NULL for the null pointer)");
    return rjit::Value::of(std::string(in.text));
  case RJIT_VALUE_BUFFER:
    if (in.buffer == nullptr)
      throw bad("a buffer with buffer NULL");
    return rjit::Value::of(in.buffer->buffer);
  case RJIT_VALUE_NULL: return rjit::Value::null();
  default: throw bad("kind " + std::to_string(in.kind) + " is not an argument kind");
  }
}

/// A C++ result as a C one: strings are never results, so no pointer outlives the call.
rjit_value toCValue(const rjit::Value& in) {
  rjit_value out{};
  out.kind = static_cast<int>(in.kind);
  out.i = in.i;
  out.u = in.u;
  out.f = in.f;
  out.d = in.d;
  return out;
}

std::vector<std::string> toStrings(const char* const* items, size_t count, const char* what) {
  if (items == nullptr && count != 0)
    throw rjit::Error(rjit::ErrorKind::InvalidRequest,
                      std::string(what) + " is NULL with a count of " + std::to_string(count));
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) {
    if (items[i] == nullptr)
      throw rjit::Error(rjit::ErrorKind::InvalidRequest,
                        std::string(what) + "[" + std::to_string(i) + "] is NULL");
    out.emplace_back(items[i]);
  }
  return out;
}

static_assert(static_cast<int>(RJIT_VALUE_POINTER) == static_cast<int>(rjit::Value::Kind::Pointer));
static_assert(static_cast<int>(RJIT_VALUE_BUFFER) == static_cast<int>(rjit::Value::Kind::Buffer));
static_assert(static_cast<int>(RJIT_VALUE_VOID) == static_cast<int>(rjit::Value::Kind::Void));
static_assert(static_cast<int>(RJIT_ELEMENT_F64) == static_cast<int>(rjit::ElementType::F64));
static_assert(static_cast<int>(RJIT_ELEMENT_U16) == static_cast<int>(rjit::ElementType::U16));
static_assert(static_cast<int>(RJIT_DIRECTION_IN_OUT) == static_cast<int>(rjit::Direction::InOut));

rjit_client& requireClient(rjit_client* client) {
  if (client == nullptr)
    throw rjit::Error(rjit::ErrorKind::InvalidRequest, "no client (NULL rjit_client)");
  return *client;
}

}  // namespace

extern "C" {

enum rjit_error_kind rjit_error_kind(const rjit_error* error) {
  return error != nullptr ? static_cast<enum rjit_error_kind>(error->kind) : RJIT_ERROR_INTERNAL;
}

const char* rjit_error_kind_name(enum rjit_error_kind kind) {
  int k = static_cast<int>(kind);
  if (k < 0 || k > LAST_KIND)
    return "unknown";
  return rjit::errorKindName(static_cast<rjit::ErrorKind>(k));
}

const char* rjit_error_message(const rjit_error* error) {
  return error != nullptr ? error->message.c_str() : "";
}

size_t rjit_error_diagnostic_count(const rjit_error* error) {
  return error != nullptr ? error->diagnostics.size() : 0;
}

const char* rjit_error_diagnostic(const rjit_error* error, size_t index, uint32_t* line,
                                  uint32_t* column, enum rjit_severity* severity) {
  if (error == nullptr || index >= error->diagnostics.size())
    return nullptr;
  const rjit::Diagnostic& d = error->diagnostics[index];
  if (line != nullptr)
    *line = d.line;
  if (column != nullptr)
    *column = d.column;
  if (severity != nullptr)
    *severity = static_cast<enum rjit_severity>(d.severity);
  return d.message.c_str();
}

void rjit_error_free(rjit_error* error) {
  if (error != &outOfMemory)
    std::unique_ptr<rjit_error> owned(error);
}

rjit_client* rjit_client_new(const rjit_client_options* options, rjit_error** error) {
  return guarded(error,
                 [&] { return std::make_unique<rjit_client>(toClientOptions(options)).release(); });
}

void rjit_client_free(rjit_client* client) {
  std::unique_ptr<rjit_client> owned(client);
}

rjit_object* rjit_compile(rjit_client* client, const rjit_compile_request* request,
                          rjit_error** error) {
  return guarded(error, [&] {
    rjit_client& c = requireClient(client);
    return std::make_unique<rjit_object>(c.client.compile(toCompileRequest(request))).release();
  });
}

const void* rjit_object_data(const rjit_object* object) {
  return object != nullptr ? object->object.object.data() : nullptr;
}

size_t rjit_object_size(const rjit_object* object) {
  return object != nullptr ? object->object.object.size() : 0;
}

const char* rjit_object_key(const rjit_object* object) {
  return object != nullptr ? object->object.key.c_str() : "";
}

const char* rjit_object_triple(const rjit_object* object) {
  return object != nullptr ? object->object.triple.c_str() : "";
}

int rjit_object_from_cache(const rjit_object* object) {
  return object != nullptr && object->object.fromCache ? 1 : 0;
}

void rjit_object_free(rjit_object* object) {
  std::unique_ptr<rjit_object> owned(object);
}

rjit_module* rjit_load(rjit_client* client, const rjit_compile_request* request,
                       const rjit_load_options* options, rjit_error** error) {
  return guarded(error, [&] {
    rjit_client& c = requireClient(client);
    rjit::CompileRequest compile = toCompileRequest(request);
    rjit::LoadOptions load = toLoadOptions(options);
    return std::make_unique<rjit_module>(c.client.load(compile, load)).release();
  });
}

void* rjit_module_symbol(const rjit_module* module, const char* name) {
  if (module == nullptr || name == nullptr)
    return nullptr;
  return guarded(nullptr, [&] { return module->module.address(name); });
}

void rjit_module_unload(rjit_module* module) {
  // ~Module runs the module's static destructors. Destructors are noexcept, so an exception
  // escaping one terminates the program, as it would in a native build: none reaches C.
  std::unique_ptr<rjit_module> owned(module);
}

const char* rjit_exec_output_stdout(const rjit_exec_output* output, size_t* size) {
  if (size != nullptr)
    *size = output != nullptr ? output->output.out.size() : 0;
  return output != nullptr ? output->output.out.data() : nullptr;
}

const char* rjit_exec_output_stderr(const rjit_exec_output* output, size_t* size) {
  if (size != nullptr)
    *size = output != nullptr ? output->output.err.size() : 0;
  return output != nullptr ? output->output.err.data() : nullptr;
}

uint64_t rjit_exec_output_micros(const rjit_exec_output* output) {
  return output != nullptr ? output->output.micros : 0;
}

void rjit_exec_output_free(rjit_exec_output* output) {
  std::unique_ptr<rjit_exec_output> owned(output);
}

const rjit_exec_output* rjit_error_output(const rjit_error* error) {
  return error != nullptr ? error->output.get() : nullptr;
}

int rjit_error_signal(const rjit_error* error) {
  return error != nullptr ? error->signal : 0;
}

int rjit_error_exit_status(const rjit_error* error) {
  return error != nullptr ? error->exitStatus : 0;
}

rjit_executor* rjit_executor_new(rjit_client* client, const char* target, rjit_error** error) {
  return guarded(error, [&] {
    rjit_client& c = requireClient(client);
    return std::make_unique<rjit_executor>(rjit_executor{c.client.executor(str(target))}).release();
  });
}

void rjit_executor_free(rjit_executor* executor) {
  std::unique_ptr<rjit_executor> owned(executor);
}

int rjit_executor_shared_memory(const rjit_executor* executor) {
  return executor != nullptr && executor->executor.sharedMemory() ? 1 : 0;
}

rjit_remote_module* rjit_executor_load(rjit_executor* executor, const rjit_compile_request* request,
                                       rjit_error** error) {
  return guarded(error, [&] {
    rjit_executor& e = require(executor, "executor");
    rjit::CompileRequest compile = toCompileRequest(request);
    return std::make_unique<rjit_remote_module>(rjit_remote_module{e.executor.load(compile)})
        .release();
  });
}

void rjit_remote_module_free(rjit_remote_module* module) {
  std::unique_ptr<rjit_remote_module> owned(module);
}

rjit_buffer* rjit_buffer_new(rjit_executor* executor, int element, size_t count, int direction,
                             rjit_error** error) {
  return guarded(error, [&] {
    if (element < RJIT_ELEMENT_I8 || element > RJIT_ELEMENT_F64)
      throw rjit::Error(rjit::ErrorKind::InvalidRequest,
                        "element " + std::to_string(element) + " is not an rjit_element_type");
    if (direction < RJIT_DIRECTION_IN || direction > RJIT_DIRECTION_IN_OUT)
      throw rjit::Error(rjit::ErrorKind::InvalidRequest,
                        "direction " + std::to_string(direction) + " is not an rjit_direction");
    auto e = static_cast<rjit::ElementType>(element);
    auto d = static_cast<rjit::Direction>(direction);
    if (executor == nullptr)
      return std::make_unique<rjit_buffer>(rjit_buffer{rjit::Buffer(e, count, d)}).release();
    return std::make_unique<rjit_buffer>(rjit_buffer{executor->executor.buffer(e, count, d)})
        .release();
  });
}

void* rjit_buffer_data(rjit_buffer* buffer) {
  return buffer != nullptr ? buffer->buffer.data() : nullptr;
}

size_t rjit_buffer_count(const rjit_buffer* buffer) {
  return buffer != nullptr ? buffer->buffer.count() : 0;
}

int rjit_buffer_shared(const rjit_buffer* buffer) {
  return buffer != nullptr && buffer->buffer.shared() ? 1 : 0;
}

void rjit_buffer_free(rjit_buffer* buffer) {
  std::unique_ptr<rjit_buffer> owned(buffer);
}

int rjit_remote_call(rjit_remote_module* module, const char* symbol, const rjit_value* args,
                     size_t arg_count, rjit_value* result, rjit_exec_output** output,
                     rjit_error** error) {
  if (output != nullptr)
    *output = nullptr;
  bool ok = guarded(error, [&] {
    rjit_remote_module& m = require(module, "remote module");
    if (symbol == nullptr)
      throw rjit::Error(rjit::ErrorKind::InvalidRequest, "no symbol (NULL)");
    if (args == nullptr && arg_count != 0)
      throw rjit::Error(rjit::ErrorKind::InvalidRequest,
                        "args is NULL with arg_count " + std::to_string(arg_count));
    std::vector<rjit::Value> values;
    for (size_t i = 0; i < arg_count; ++i)
      values.push_back(toValue(args[i], i));
    rjit::CallResult answer = m.module.callValues(symbol, std::move(values));
    auto out = std::make_unique<rjit_exec_output>(rjit_exec_output{std::move(answer.output)});
    if (result != nullptr)
      *result = toCValue(answer.value);
    if (output != nullptr)
      *output = out.release();
    return true;
  });
  return ok ? 0 : -1;
}

int rjit_remote_run(rjit_remote_module* module, const char* const* argv, size_t argc,
                    const char* const* env, size_t env_count, const void* stdin_bytes,
                    size_t stdin_size, int* exit_status, int* signal, rjit_exec_output** output,
                    rjit_error** error) {
  if (output != nullptr)
    *output = nullptr;
  bool ok = guarded(error, [&] {
    rjit_remote_module& m = require(module, "remote module");
    if (stdin_bytes == nullptr && stdin_size != 0)
      throw rjit::Error(rjit::ErrorKind::InvalidRequest,
                        "stdin_bytes is NULL with stdin_size " + std::to_string(stdin_size));
    std::string input;
    if (stdin_size != 0)
      input.assign(static_cast<const char*>(stdin_bytes), stdin_size);
    rjit::RunResult answer = m.module.run(toStrings(argv, argc, "argv"),
                                          toStrings(env, env_count, "env"), std::move(input));
    auto out = std::make_unique<rjit_exec_output>(rjit_exec_output{std::move(answer.output)});
    if (exit_status != nullptr)
      *exit_status = answer.exitStatus;
    if (signal != nullptr)
      *signal = answer.signal;
    if (output != nullptr)
      *output = out.release();
    return true;
  });
  return ok ? 0 : -1;
}

}  // extern "C"
