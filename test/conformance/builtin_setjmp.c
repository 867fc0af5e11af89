// SPDX-License-Identifier: MIT
// Conformance: GCC's __builtin_setjmp and __builtin_longjmp (llvm.eh.sjlj.setjmp/longjmp), a jump
// back out of nested calls with alloca'd memory alive across it. Also run from clang -O0 IR,
// where every function is noinline.
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__)
static void* buffer[5];
#define SAVE_CONTEXT(b) __builtin_setjmp(b)
#define JUMP_BACK(b) __builtin_longjmp(b, 1)
#else
// clang-19 lowers the builtins on x86 only ("not supported for the current target" on
// AArch64): there the program makes the same jump with the C library's setjmp and longjmp.
#include <setjmp.h>
static jmp_buf buffer;
#define SAVE_CONTEXT(b) setjmp(b)
#define JUMP_BACK(b) longjmp(b, 1)
#endif
static volatile int depth;

__attribute__((noinline)) static void jumpBack(void) {
  JUMP_BACK(buffer);
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
  if (SAVE_CONTEXT(buffer) == 0) {
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
