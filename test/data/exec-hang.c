// SPDX-License-Identifier: MIT
// Remote execute: a call that never returns (past any deadline), silently or after saying so.
#include <stdint.h>
#include <stdio.h>

int64_t hang(void) {
  volatile uint64_t spins = 0;
  for (;;)
    ++spins;
}

/// hang, after writing "hanging\n" to stdout: a test that sees the line knows the call runs.
int64_t announced_hang(void) {
  fputs("hanging\n", stdout);
  fflush(stdout);
  return hang();
}
