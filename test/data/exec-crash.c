// SPDX-License-Identifier: MIT
// Remote execute: code that dies of a signal (a NULL write, abort()).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int64_t write_null(int64_t value) {
  volatile int64_t* volatile p = NULL;
  printf("before the crash\n");
  fflush(stdout);
  *p = value;
  return value;
}

int64_t call_abort(void) {
  abort();
}
