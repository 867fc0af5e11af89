// SPDX-License-Identifier: MIT
// Remote execute: a call that never returns (past any deadline).
#include <stdint.h>

int64_t hang(void) {
  volatile uint64_t spins = 0;
  for (;;)
    ++spins;
}
