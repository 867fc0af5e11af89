// SPDX-License-Identifier: MIT
// Remote execute: a called function that ends its process with exit(3).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int64_t exit_three(void) {
  printf("exiting\n");
  exit(3);
}
