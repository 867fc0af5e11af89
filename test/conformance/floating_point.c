// SPDX-License-Identifier: MIT
// Conformance: floating point with <math.h>, printed with %.6f, %g and %e.
#include <float.h>
#include <math.h>
#include <stdio.h>

static double simpson(double (*f)(double), double a, double b, int n) {
  double h = (b - a) / n;
  double sum = f(a) + f(b);
  for (int i = 1; i < n; ++i)
    sum += (i % 2 == 1 ? 4.0 : 2.0) * f(a + i * h);
  return sum * h / 3.0;
}

static double newtonSqrt(double x) {
  double guess = x / 2.0;
  for (int i = 0; i < 30; ++i)
    guess = 0.5 * (guess + x / guess);
  return guess;
}

static double square(double x) {
  return x * x;
}

int main(void) {
  const double pi = acos(-1.0);
  printf("pi = %.6f\n", pi);
  for (int deg = 0; deg <= 180; deg += 30) {
    double rad = deg * pi / 180.0;
    printf("deg %3d: sin %.6f cos %.6f tan %.6f\n", deg, sin(rad), cos(rad),
           deg == 90 ? 0.0 : tan(rad));
  }
  printf("sqrt(2) = %.6f, newton %.6f\n", sqrt(2.0), newtonSqrt(2.0));
  printf("pow(2, 10) = %g, pow(2, 0.5) = %.6f, pow(10, -3) = %g\n", pow(2.0, 10.0), pow(2.0, 0.5),
         pow(10.0, -3.0));
  printf("exp(1) = %.6f, log(10) = %.6f, log10(1000) = %g, log2(1024) = %g\n", exp(1.0), log(10.0),
         log10(1000.0), log2(1024.0));
  printf("atan2(1, -1) = %.6f, hypot(3, 4) = %g, cbrt(27) = %g\n", atan2(1.0, -1.0),
         hypot(3.0, 4.0), cbrt(27.0));
  printf("floor/ceil/round/trunc(-2.5) = %g %g %g %g\n", floor(-2.5), ceil(-2.5), round(-2.5),
         trunc(-2.5));
  printf("fmod(10.5, 3) = %g, fabs(-7.25) = %g, copysign(3, -1) = %g\n", fmod(10.5, 3.0),
         fabs(-7.25), copysign(3.0, -1.0));
  printf("integral of sin on [0, pi] = %.6f\n", simpson(sin, 0.0, pi, 1000));
  printf("integral of x^2 on [0, 3] = %.6f\n", simpson(square, 0.0, 3.0, 100));

  float f = 1.0f / 3.0f;
  double d = 1.0 / 3.0;
  printf("float %.6f double %.6f, as %%g: %g %g\n", f, d, f, d);
  printf("%%e: %e %.3e\n", 123456.789, 0.000123);
  printf("%%g: %g %g %g %g\n", 100000.0, 1000000.0, 0.0001, 0.00001);

  double harmonic = 0.0;
  for (int i = 1; i <= 1000; ++i)
    harmonic += 1.0 / i;
  printf("harmonic(1000) = %.6f\n", harmonic);

  volatile double zero = 0.0;
  double inf = 1.0 / zero;
  double nan = zero / zero;
  printf("inf: %g %g isinf %d isnan %d\n", inf, -inf, isinf(inf) != 0, isnan(nan) != 0);
  printf("nan compares equal to itself: %d\n", nan == nan);
  printf("DBL_EPSILON > 0: %d, 0.1 + 0.2 == 0.3: %d\n", DBL_EPSILON > 0.0, 0.1 + 0.2 == 0.3);
  printf("int conversions: %d %d %ld\n", (int)3.99, (int)-3.99, lround(2.5));

  double mean = 0.0, m2 = 0.0;
  for (int i = 1; i <= 10; ++i) {
    double x = i * 1.5;
    double delta = x - mean;
    mean += delta / i;
    m2 += delta * (x - mean);
  }
  printf("mean %.6f variance %.6f stddev %.6f\n", mean, m2 / 9.0, sqrt(m2 / 9.0));
  return 0;
}
