// SPDX-License-Identifier: MIT
// Remote execute: allocates and touches memory until malloc fails, then dereferences what it got
// (as careless code does), past any --executor-memory.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/// Every block stays reachable (the optimizer may not drop the allocations).
void* kept;

int64_t allocate_forever(void) {
  for (;;) {
    char* block = malloc(16 << 20);
    memset(block, 0x5a, 16 << 20);  // NULL once the limit is reached: the careless part
    *(void**)block = kept;
    kept = block;
  }
}
