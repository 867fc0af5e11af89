// SPDX-License-Identifier: MIT
// Defines a name the process also has (getpid): a later module on the same connection must
// link against this definition, not the process's (test/integration/load-test.cpp).
int getpid(void) {
  return 777;
}
