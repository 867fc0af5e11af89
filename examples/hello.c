// SPDX-License-Identifier: MIT
// The demo program: compiled to LLVM IR by clang-19, to machine code by rjitd; linked by cc, or
// run in place by `rjit run` (the fast path), or one function called by `rjit call`.
#include <stdio.h>

unsigned collatz_steps(unsigned long n) {
  unsigned steps = 0;
  while (n != 1) {
    n = (n % 2 == 0) ? n / 2 : 3 * n + 1;
    ++steps;
  }
  return steps;
}

int main(void) {
  unsigned long best = 1;
  unsigned bestSteps = 0;
  for (unsigned long n = 1; n < 100000; ++n) {
    unsigned steps = collatz_steps(n);
    if (steps > bestSteps) {
      best = n;
      bestSteps = steps;
    }
  }
  printf("Hello from code compiled by rjitd!\n");
  printf("Below 100000, %lu takes the longest to reach 1 under Collatz: %u steps.\n", best,
         bestSteps);
  return 0;
}
