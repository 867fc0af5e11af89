// SPDX-License-Identifier: MIT
// Calls into fastpath-lib.c, loaded earlier by the same client.
int lib_counted_square(int x);
extern int lib_calls;
int sum_of_squares(int n) {
  int s = 0;
  for (int i = 1; i <= n; ++i)
    s += lib_counted_square(i);
  return s;
}
int calls_seen(void) {
  return lib_calls;
}
