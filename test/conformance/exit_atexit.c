// SPDX-License-Identifier: MIT
// Conformance: exit() called deep inside the program with handlers registered by atexit():
// buffered stdout is flushed, the handlers run in reverse order, and the status (7) is the
// program's. Also writes to stderr.
#include <stdio.h>
#include <stdlib.h>

static int progress;

static void firstHandler(void) {
  printf("atexit handler registered first (progress %d)\n", progress);
}
static void secondHandler(void) {
  printf("atexit handler registered second\n");
}

static void descend(int depth) {
  ++progress;
  printf("descend %d\n", depth);
  if (depth == 3) {
    fprintf(stderr, "fatal: giving up at depth %d\n", depth);
    printf("this line is still in the stdio buffer when exit is called\n");
    exit(7);
  }
  descend(depth + 1);
  printf("not reached %d\n", depth);
}

int main(void) {
  if (atexit(firstHandler) != 0 || atexit(secondHandler) != 0)
    return 1;
  printf("main starts\n");
  descend(0);
  printf("main never returns normally\n");
  return 0;
}
