// SPDX-License-Identifier: MIT
// Test input: libm calls, floating-point formatting, recursion and static data. Prints
// deterministic output; the integration tests compare it with a native build.
#include <math.h>
#include <stdio.h>

static const double samples[] = {0.0, 0.5, 1.0, 2.0, 3.14159265358979, 10.0, 123.456};
static const char* const names[] = {"zero", "half", "one", "two", "pi", "ten", "other"};
static int calls;

static long fibonacci(int n) {
  ++calls;
  return n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2);
}

static double power(double base, int exponent) {
  if (exponent == 0)
    return 1.0;
  double half = power(base, exponent / 2);
  return exponent % 2 ? half * half * base : half * half;
}

static unsigned gcd(unsigned a, unsigned b) {
  return b == 0 ? a : gcd(b, a % b);
}

int main(void) {
  for (unsigned i = 0; i < sizeof samples / sizeof samples[0]; ++i) {
    double x = samples[i];
    printf("%-5s sqrt=%.6f sin=%.6f pow=%.6e exp=%.4g\n", names[i], sqrt(x), sin(x), pow(x, 1.5),
           exp(-x));
  }
  long fib = fibonacci(20);
  printf("fib(20)=%ld calls=%d\n", fib, calls);
  printf("power(1.5, 11)=%.10f libm=%.10f\n", power(1.5, 11), pow(1.5, 11));
  printf("gcd(1071, 462)=%u\n", gcd(1071, 462));
  double acc = 0.0;
  for (int k = 1; k <= 1000; ++k)
    acc += 1.0 / ((double)k * k);
  printf("basel=%.12f pi^2/6=%.12f\n", acc, atan(1.0) * 4 * atan(1.0) * 4 / 6);
  return (int)(fibonacci(11) % 5);
}
