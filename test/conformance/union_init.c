// SPDX-License-Identifier: MIT
// Conformance: unions initialised with `= {}`. clang leaves the bytes past the first member undef
// in the constant it copies from; they must read as zeros (C23; the object file holds zeros).
// Built natively at -O0 (see meson.build): clang's own -O1 build reads garbage there.
#include <stdio.h>
#include <stdlib.h>

union Small {
  int i, j[4];
};
union Wide {
  char c;
  long j[8];
};

static const char* names[] = {"zero", "one", "two", "three"};

int main(int argc, char** argv) {
  (void)argv;
  union Small t = {};
  int sum = 0;
  for (int i = 0; i < 4; i++)
    sum += t.j[i];
  printf("sum of the tail: %d\n", sum);

  union Small u = {};
  int bits = 0;
  for (int i = 1; i < 4; i++)
    bits |= u.j[i];
  if (bits != 0)
    abort();

  union Wide w = {};
  for (int i = 0; i < 8; i++)
    printf("%s ", names[w.j[i] + (argc > 100)]);
  printf("\n");

  static union Small s = {};
  printf("static tail: %d %d %d\n", s.j[1], s.j[2], s.j[3]);
  return 0;
}
