// SPDX-License-Identifier: MIT
// The C API end to end, written as a C99 user would, with remotejit.h only: connects to the
// rjitd named by RJIT_SERVER, compiles MODULE.ll, loads it into this process with host_scale
// exported to it and calls add() and scaled(), then loads UNRESOLVED.ll and checks that the
// failure is link-failed naming no_such_function. Prints what it sees; exits 0 when all is as
// expected, 1 otherwise.
//
// Usage: c-api-example MODULE.ll UNRESOLVED.ll   (IR of test/data/c-api-{module,unresolved}.c)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <remotejit/remotejit.h>

// Exported to the loaded module through rjit_load_options; scaled() calls it.
static double host_scale(double x) {
  return x * 10;
}

// Reads a whole file into a malloc'ed buffer; NULL (with a message) on failure.
static char* readFile(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "c-api-example: cannot open %s\n", path);
    return NULL;
  }
  size_t capacity = 4096, used = 0;
  char* bytes = malloc(capacity);
  while (bytes != NULL) {
    used += fread(bytes + used, 1, capacity - used, f);
    if (used < capacity)
      break;
    char* grown = realloc(bytes, capacity * 2);
    if (grown == NULL)
      free(bytes);
    bytes = grown;
    capacity *= 2;
  }
  if (bytes == NULL || ferror(f)) {
    fprintf(stderr, "c-api-example: cannot read %s\n", path);
    free(bytes);
    bytes = NULL;
  }
  fclose(f);
  *size = used;
  return bytes;
}

static void printError(const char* what, const rjit_error* error) {
  fprintf(stderr, "c-api-example: %s: %s: %s\n", what, rjit_error_kind_name(rjit_error_kind(error)),
          rjit_error_message(error));
  for (size_t i = 0; i < rjit_error_diagnostic_count(error); ++i) {
    uint32_t line = 0, column = 0;
    enum rjit_severity severity = RJIT_SEVERITY_ERROR;
    const char* message = rjit_error_diagnostic(error, i, &line, &column, &severity);
    fprintf(stderr, "  %u:%u: %s\n", line, column, message);
  }
}

// The architecture this program runs on, which its modules' IR is for (the cross build's tests
// run it on aarch64 against an x86_64 rjitd, whose default target is x86_64).
#if defined(__aarch64__)
#define HOST_TARGET "aarch64"
#else
#define HOST_TARGET "x86_64"
#endif

// A request for a module read from `path`, for this host; all other fields zero: the defaults.
static rjit_compile_request requestFor(const char* path, const char* bytes, size_t size) {
  rjit_compile_request request;
  memset(&request, 0, sizeof request);
  request.struct_size = sizeof request;
  request.module = bytes;
  request.module_size = size;
  request.module_name = path;
  request.target = HOST_TARGET;
  return request;
}

// Compiles the module without loading it: the object bytes and their metadata.
static int checkCompile(rjit_client* client, const rjit_compile_request* request) {
  rjit_error* error = NULL;
  rjit_object* object = rjit_compile(client, request, &error);
  if (object == NULL) {
    printError("compile", error);
    rjit_error_free(error);
    return 0;
  }
  const unsigned char* data = rjit_object_data(object);
  int ok = rjit_object_size(object) > 4 && memcmp(data, "\177ELF", 4) == 0 &&
           strlen(rjit_object_key(object)) == 64 && rjit_object_triple(object)[0] != '\0';
  printf("object: %zu bytes for %s, key %.12s, from_cache=%d\n", rjit_object_size(object),
         rjit_object_triple(object), rjit_object_key(object), rjit_object_from_cache(object));
  rjit_object_free(object);
  return ok;
}

// Loads the module with host_scale exported to it and calls into it.
static int checkLoad(rjit_client* client, const rjit_compile_request* request) {
  rjit_symbol exported[1];
  exported[0].name = "host_scale";
  exported[0].address = (void*)&host_scale;
  rjit_load_options options;
  memset(&options, 0, sizeof options);  // no_process_symbols = 0: libc is there too
  options.struct_size = sizeof options;
  options.symbols = exported;
  options.symbol_count = 1;

  rjit_error* error = NULL;
  rjit_module* module = rjit_load(client, request, &options, &error);
  if (module == NULL) {
    printError("load", error);
    rjit_error_free(error);
    return 0;
  }
  int32_t (*add)(int32_t, int32_t) =
      (int32_t(*)(int32_t, int32_t))rjit_module_symbol(module, "add");
  double (*scaled)(double) = (double (*)(double))rjit_module_symbol(module, "scaled");
  int ok = 0;
  if (add == NULL || scaled == NULL) {
    fprintf(stderr, "c-api-example: the module lacks add or scaled\n");
  } else if (rjit_module_symbol(module, "host_scale") != NULL) {
    fprintf(stderr, "c-api-example: the module claims to define host_scale\n");
  } else {
    int32_t sum = add(2, 3);
    double product = scaled(1.5);
    printf("add=%d scaled=%g\n", (int)sum, product);
    ok = sum == 5 && product == 16.0;
  }
  rjit_module_unload(module);
  return ok;
}

// Loading a module with an unresolved reference fails with link-failed naming the symbol.
static int checkUnresolved(rjit_client* client, const rjit_compile_request* request) {
  rjit_error* error = NULL;
  rjit_module* module = rjit_load(client, request, NULL, &error);
  if (module != NULL) {
    fprintf(stderr, "c-api-example: a module calling no_such_function loaded\n");
    rjit_module_unload(module);
    return 0;
  }
  printf("unresolved: %s: %s\n", rjit_error_kind_name(rjit_error_kind(error)),
         rjit_error_message(error));
  int ok = rjit_error_kind(error) == RJIT_ERROR_LINK_FAILED &&
           strstr(rjit_error_message(error), "no_such_function") != NULL;
  rjit_error_free(error);
  // The same without an error pointer: the failure shows as NULL alone.
  if (rjit_load(client, request, NULL, NULL) != NULL)
    ok = 0;
  return ok;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s MODULE.ll UNRESOLVED.ll\n", argv[0]);
    return 1;
  }
  size_t moduleSize = 0, unresolvedSize = 0;
  char* moduleBytes = readFile(argv[1], &moduleSize);
  char* unresolvedBytes = readFile(argv[2], &unresolvedSize);
  if (moduleBytes == NULL || unresolvedBytes == NULL) {
    free(moduleBytes);
    free(unresolvedBytes);
    return 1;
  }

  // Zeroed options: every field its default, so the servers come from RJIT_SERVER.
  rjit_client_options clientOptions;
  memset(&clientOptions, 0, sizeof clientOptions);
  clientOptions.struct_size = sizeof clientOptions;
  clientOptions.client_name = "c-api-example";
  rjit_error* error = NULL;
  rjit_client* client = rjit_client_new(&clientOptions, &error);
  if (client == NULL) {
    printError("client", error);
    rjit_error_free(error);
    free(moduleBytes);
    free(unresolvedBytes);
    return 1;
  }

  rjit_compile_request module = requestFor(argv[1], moduleBytes, moduleSize);
  rjit_compile_request unresolved = requestFor(argv[2], unresolvedBytes, unresolvedSize);
  int ok = checkCompile(client, &module);
  ok = checkLoad(client, &module) && ok;
  ok = checkUnresolved(client, &unresolved) && ok;

  rjit_client_free(client);
  free(moduleBytes);
  free(unresolvedBytes);
  printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
