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

struct rjit_error {
  rjit::ErrorKind kind;
  std::string message;
  std::vector<rjit::Diagnostic> diagnostics;
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
#undef RJIT_SAME_KIND
constexpr int LAST_KIND = RJIT_ERROR_SIGNATURE_MISMATCH;

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
          const std::vector<rjit::Diagnostic>* diagnostics = nullptr) noexcept {
  if (error == nullptr)
    return;
  try {
    auto e = std::make_unique<rjit_error>(rjit_error{kind, message, {}});
    if (diagnostics != nullptr)
      e->diagnostics = *diagnostics;
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

}  // extern "C"
