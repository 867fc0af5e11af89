// SPDX-License-Identifier: MIT
// Imports a process symbol (getpid, from libc) and one the host offers with the request
// (host_twice): which of them rjitd must ask the client about (test/integration/load-test.cpp).
#include <unistd.h>

int host_twice(int x);

int pid_via_libc(void) {
  return getpid();
}
int twice_plus_one(int x) {
  return host_twice(x) + 1;
}
