// SPDX-License-Identifier: MIT
// Loaded into the integration test's own process through rjitd (test/integration/load-test.cpp):
// data, read-only data, bss, function pointers and callbacks into the host, qsort with a
// callback, constructors and destructors that report to the host, thread-local storage.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// Provided by the host through LoadOptions::symbols.
void host_record(const char* event);
int host_twice(int x);

int counter = 7;                   // data
const char banner[] = "fastpath";  // read-only data
static char scratch[1 << 16];      // bss
static _Thread_local int perThread = 3;

int add(int a, int b) {
  return a + b;
}
double scale(double x, double f) {
  return x * f;
}
int read_counter(void) {
  return counter;
}
void bump_counter(void) {
  ++counter;
}
const char* get_banner(void) {
  return banner;
}

// Calls back into the host through a symbol the host exported to the module.
int twice_via_host(int x) {
  return host_twice(x) + 1;
}

// Calls back into the host through a function pointer it passes.
int apply(int (*fn)(int), int x) {
  return fn(x) * 3;
}

static int byValue(const void* a, const void* b) {
  int x = *(const int*)a, y = *(const int*)b;
  return (x > y) - (x < y);
}

// qsort from the host's libc calling back into JIT code.
int64_t sorted_digits(void) {
  int v[8] = {5, 3, 8, 1, 9, 2, 7, 4};
  qsort(v, 8, sizeof(int), byValue);
  int64_t r = 0;
  for (int i = 0; i < 8; ++i)
    r = r * 10 + v[i];
  return r;
}

// bss is zero and writable.
int scratch_sum(void) {
  int s = 0;
  for (size_t i = 0; i < sizeof(scratch); ++i)
    s += scratch[i];
  memset(scratch, 1, 100);
  return s;
}

// Emulated TLS: each thread sees its own copy.
int tls_add(int x) {
  perThread += x;
  return perThread;
}

static int (*table[2])(int, int) = {add, 0};
int call_through_table(int a, int b) {
  return table[0](a, b);
}

__attribute__((constructor)) static void loaded(void) {
  host_record("ctor");
}
__attribute__((destructor)) static void unloaded(void) {
  host_record("dtor");
}

static void atexitHandler(void) {
  host_record("atexit");
}
int register_atexit(void) {
  return atexit(atexitHandler);
}
