// SPDX-License-Identifier: MIT
// Conformance: frame and return addresses (llvm.frameaddress, llvm.returnaddress), read by helpers
// marked noinline as GCC's own tests write them: inlined, a helper would read its caller's frame.
// Also run from clang -O0 IR, where every function is noinline.
#include <stdio.h>

volatile int sink;  // stores after calls keep them from becoming tail calls

// The stack grows down: a local of the callee lies below its caller's frame address, which lies
// below the locals of the caller's caller.
__attribute__((noinline)) static int between(const char* outer, const char* frame) {
  char inner = 0;
  sink = inner;
  return outer > frame && frame > &inner;
}

__attribute__((noinline)) static int frameBetweenCallers(const char* outer) {
  const char* frame = __builtin_frame_address(0);
  int result = between(outer, frame);
  sink = result;
  return result;
}

__attribute__((noinline)) static int checkFrame(void) {
  char outer = 0;
  int result = frameBetweenCallers(&outer);
  sink = outer;
  return result;
}

__attribute__((noinline)) static void* returnAddress(void) {
  return __builtin_return_address(0);
}

// The helper returns into this function, not where this function returns to. (Two calls of
// the helper from one function may give one answer: it reads no memory, so the optimizer may
// merge the calls.)
__attribute__((noinline)) static int checkReturnAddress(void) {
  void* helpers = returnAddress();
  void* own = __builtin_return_address(0);
  return helpers != 0 && own != 0 && helpers != own;
}

// The frame address of the function itself lies above its locals.
__attribute__((noinline)) static int checkOwnFrame(void) {
  char local = 0;
  sink = local;
  return (char*)__builtin_frame_address(0) > &local;
}

int main(void) {
  printf("frame address between its callers: %d\n", checkFrame());
  printf("return address of a call: %d\n", checkReturnAddress());
  printf("frame address above the locals: %d\n", checkOwnFrame());
  return 0;
}
