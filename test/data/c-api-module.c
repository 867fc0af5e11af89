// SPDX-License-Identifier: MIT
// Loaded by test/unit/c-api-example.c through the C API: a plain function, and one that calls
// back into the host through a symbol the host passes in rjit_load_options.
#include <stdint.h>

// Provided by the host (c-api-example.c) through rjit_load_options.symbols.
double host_scale(double x);

int32_t add(int32_t a, int32_t b) {
  return a + b;
}

double scaled(double x) {
  return host_scale(x) + 1.0;
}
