// SPDX-License-Identifier: MIT
// Conformance: zero-sized globals (GNU C). Alone in .bss they made an empty read-write segment,
// which the client refused.
#include <stdio.h>
#include <string.h>

unsigned char foo[1][0];
static int d[][8] = {};
struct Empty {
} empty, empties[3];
int none[0];
const int constNone[0];

int main(int argc, char** argv) {
  (void)argv;
  int sum = 0;
  for (unsigned i = 0; i < sizeof d / sizeof d[0]; i++)
    sum += d[i][argc];
  char buffer[8] = "abc";
  memcpy(buffer, foo, sizeof foo);
  memcpy(buffer, d, sizeof d);
  printf("%d %s %zu %zu %zu %zu %zu\n", sum, buffer, sizeof foo, sizeof d, sizeof empty,
         sizeof empties, sizeof none + sizeof constNone);
  printf("addresses: %d %d %d\n", (void*)foo != NULL, (void*)d != NULL, (void*)&empty != NULL);
  return 0;
}
