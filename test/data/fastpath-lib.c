// SPDX-License-Identifier: MIT
// A module a later one links against (test/integration/load-test.cpp).
int lib_square(int x) {
  return x * x;
}
int lib_calls = 0;
int lib_counted_square(int x) {
  ++lib_calls;
  return lib_square(x);
}
