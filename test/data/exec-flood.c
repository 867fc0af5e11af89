// SPDX-License-Identifier: MIT
// Remote execute: 100 MiB of output, past any --executor-output.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int64_t flood(void) {
  static char line[1 << 16];
  memset(line, 'x', sizeof line - 1);
  line[sizeof line - 1] = '\n';
  int64_t written = 0;
  for (int i = 0; i < 100 * 16; ++i)  // 1600 * 64 KiB = 100 MiB
    written += (int64_t)fwrite(line, 1, sizeof line, stdout);
  fflush(stdout);
  return written;
}
