// SPDX-License-Identifier: MIT
// References a function nobody defines: loading it through the C API must fail with
// RJIT_ERROR_LINK_FAILED naming it (test/unit/c-api-example.c).
extern int no_such_function(void);

int calls_missing(void) {
  return no_such_function() + 1;
}
