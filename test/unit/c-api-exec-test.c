// SPDX-License-Identifier: MIT
// The remote-execute part of the C API as a C99 user calls it, without a daemon: NULL handles
// and bad arguments are errors of kind invalid-request (never a crash), accessors of NULL give
// their documented defaults, and buffers made without an executor are zeroed memory of this
// process. Exits 0 when all is as expected, 1 otherwise (printing what was not).
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <remotejit/remotejit.h>

static int failures = 0;

#define EXPECT(cond)                                                                               \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                          \
      ++failures;                                                                                  \
    }                                                                                              \
  } while (0)

/* The error is of `kind`; frees it. */
static void expectKind(rjit_error* error, enum rjit_error_kind kind) {
  EXPECT(error != NULL);
  if (error != NULL && rjit_error_kind(error) != kind)
    fprintf(stderr, "  got %s: %s\n", rjit_error_kind_name(rjit_error_kind(error)),
            rjit_error_message(error));
  EXPECT(rjit_error_kind(error) == kind);
  rjit_error_free(error);
}

int main(void) {
  rjit_error* error = NULL;

  /* NULL handles. */
  EXPECT(rjit_executor_new(NULL, "", &error) == NULL);
  expectKind(error, RJIT_ERROR_INVALID_REQUEST);
  EXPECT(rjit_executor_load(NULL, NULL, &error) == NULL);
  expectKind(error, RJIT_ERROR_INVALID_REQUEST);
  rjit_value result;
  rjit_exec_output* output = (rjit_exec_output*)&result; /* must be reset to NULL */
  EXPECT(rjit_remote_call(NULL, "f", NULL, 0, &result, &output, &error) == -1);
  EXPECT(output == NULL);
  expectKind(error, RJIT_ERROR_INVALID_REQUEST);
  int status = 0, signal = 0;
  EXPECT(rjit_remote_run(NULL, NULL, 0, NULL, 0, NULL, 0, &status, &signal, NULL, &error) == -1);
  expectKind(error, RJIT_ERROR_INVALID_REQUEST);
  /* No error pointer: the failure shows in the return value only. */
  EXPECT(rjit_remote_call(NULL, "f", NULL, 0, NULL, NULL, NULL) == -1);

  /* Accessors and frees of NULL. */
  EXPECT(rjit_executor_shared_memory(NULL) == 0);
  EXPECT(rjit_buffer_data(NULL) == NULL);
  EXPECT(rjit_buffer_count(NULL) == 0);
  EXPECT(rjit_buffer_shared(NULL) == 0);
  size_t size = 99;
  EXPECT(rjit_exec_output_stdout(NULL, &size) == NULL && size == 0);
  EXPECT(rjit_exec_output_stderr(NULL, NULL) == NULL);
  EXPECT(rjit_exec_output_micros(NULL) == 0);
  EXPECT(rjit_error_output(NULL) == NULL);
  EXPECT(rjit_error_signal(NULL) == 0);
  EXPECT(rjit_error_exit_status(NULL) == 0);
  rjit_executor_free(NULL);
  rjit_remote_module_free(NULL);
  rjit_buffer_free(NULL);
  rjit_exec_output_free(NULL);
  EXPECT(strcmp(rjit_error_kind_name(RJIT_ERROR_SIGNATURE_MISMATCH), "signature-mismatch") == 0);
  EXPECT(strcmp(rjit_error_kind_name(RJIT_ERROR_SANDBOX_VIOLATION), "sandbox-violation") == 0);

  /* Buffers without an executor: zeroed memory of this process, never shared. */
  rjit_buffer* buffer = rjit_buffer_new(NULL, RJIT_ELEMENT_I32, 16, RJIT_DIRECTION_IN_OUT, &error);
  EXPECT(buffer != NULL && error == NULL);
  EXPECT(rjit_buffer_count(buffer) == 16);
  EXPECT(rjit_buffer_shared(buffer) == 0);
  int32_t* data = (int32_t*)rjit_buffer_data(buffer);
  EXPECT(data != NULL);
  int zero = 1;
  for (int i = 0; data != NULL && i < 16; ++i)
    zero = zero && data[i] == 0;
  EXPECT(zero);
  if (data != NULL)
    data[15] = 7; /* all 64 bytes are ours */
  rjit_buffer_free(buffer);

  /* Bad element types, directions and sizes. */
  EXPECT(rjit_buffer_new(NULL, 10, 1, RJIT_DIRECTION_IN, &error) == NULL);
  expectKind(error, RJIT_ERROR_INVALID_REQUEST);
  EXPECT(rjit_buffer_new(NULL, RJIT_ELEMENT_U8, 1, 3, &error) == NULL);
  expectKind(error, RJIT_ERROR_INVALID_REQUEST);
  EXPECT(rjit_buffer_new(NULL, RJIT_ELEMENT_F64, SIZE_MAX / 4, RJIT_DIRECTION_IN, &error) == NULL);
  expectKind(error, RJIT_ERROR_INVALID_REQUEST);

  if (failures != 0) {
    fprintf(stderr, "%d expectation(s) failed\n", failures);
    return 1;
  }
  printf("ok\n");
  return 0;
}
