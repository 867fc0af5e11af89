// SPDX-License-Identifier: MIT
// Conformance: GCC's __builtin_setjmp and __builtin_longjmp (llvm.eh.sjlj.setjmp/longjmp), a jump
// back out of nested calls with alloca'd memory alive across it. Also run from clang -O0 IR,
// where every function is noinline.
#include <stdio.h>
#include <string.h>

static void* buffer[5];
static volatile int depth;

__attribute__((noinline)) static void jumpBack(void) {
  __builtin_longjmp(buffer, 1);
}

__attribute__((noinline)) static void descend(int levels) {
  depth = levels;
  if (levels == 0)
    jumpBack();
  else
    descend(levels - 1);
  depth = -1;  // never reached
}

static int run(int levels) {
  char* text = __builtin_alloca(16);
  strcpy(text, "still here");
  if (__builtin_setjmp(buffer) == 0) {
    descend(levels);
    return -1;
  }
  printf("back from depth %d: %s\n", depth, text);
  return depth;
}

int main(void) {
  int failures = 0;
  for (int levels = 0; levels < 3; ++levels)
    failures += run(levels) != 0;
  printf("failures: %d\n", failures);
  return failures;
}
