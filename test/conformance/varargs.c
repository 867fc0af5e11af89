// SPDX-License-Identifier: MIT
// Conformance: the program's own variadic functions (va_list, va_arg, va_copy) forwarding to
// vprintf, vfprintf and vsnprintf. Logs warnings to stderr and returns how many (2).
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int warnings;

static int sumInts(int count, ...) {
  va_list args;
  va_start(args, count);
  int sum = 0;
  for (int i = 0; i < count; ++i)
    sum += va_arg(args, int);
  va_end(args);
  return sum;
}

static double average(int count, ...) {
  va_list args;
  va_start(args, count);
  double sum = 0.0;
  for (int i = 0; i < count; ++i)
    sum += va_arg(args, double);
  va_end(args);
  return count ? sum / count : 0.0;
}

static int report(const char* format, ...) {
  va_list args;
  va_start(args, format);
  printf("[report] ");
  int written = vprintf(format, args);
  va_end(args);
  return written;
}

static void warn(const char* format, ...) {
  va_list args;
  va_start(args, format);
  fprintf(stderr, "warning %d: ", ++warnings);
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
}

// Formats twice from one argument list: measures with vsnprintf, then writes.
static void formatTwice(const char* format, ...) {
  va_list args, copy;
  va_start(args, format);
  va_copy(copy, args);
  int needed = vsnprintf(NULL, 0, format, args);
  char buffer[256];
  vsnprintf(buffer, sizeof buffer, format, copy);
  va_end(copy);
  va_end(args);
  printf("formatted %d chars: %s\n", needed, buffer);
}

// A type-tagged list terminated by 0: 'i' int, 'd' double, 's' string, 'l' long long, 'c' char.
static void describe(const char* tags, ...) {
  va_list args;
  va_start(args, tags);
  for (const char* t = tags; *t != '\0'; ++t) {
    switch (*t) {
    case 'i': printf(" int=%d", va_arg(args, int)); break;
    case 'd': printf(" double=%.3f", va_arg(args, double)); break;
    case 's': printf(" string=%s", va_arg(args, const char*)); break;
    case 'l': printf(" long=%lld", va_arg(args, long long)); break;
    case 'c': printf(" char=%c", (char)va_arg(args, int)); break;
    default: break;
    }
  }
  va_end(args);
  printf("\n");
}

static long long sumMany(int count, ...) {
  va_list args;
  va_start(args, count);
  long long total = 0;
  for (int i = 0; i < count; ++i)
    total += va_arg(args, long long);
  va_end(args);
  return total;
}

int main(void) {
  printf("sumInts: %d %d %d\n", sumInts(0), sumInts(3, 1, 2, 3),
         sumInts(6, 10, 20, 30, 40, 50, 60));
  printf("average: %.4f\n", average(4, 1.5, 2.5, 3.5, 4.5));
  int written = report("%s has %d items costing %.2f\n", "basket", 3, 9.75);
  printf("report wrote %d chars\n", written);
  warn("disk %s is %d%% full", "/dev/sda1", 91);
  formatTwice("%-8s|%8s|%+d|%#x", "left", "right", 5, 48879);
  describe("idslc", 7, 2.5, "text", 123456789012LL, 'Q');
  describe("ssdd", "many", "arguments", 0.125, 1e3);
  printf("sumMany: %lld\n",
         sumMany(12, 1LL, 2LL, 3LL, 4LL, 5LL, 6LL, 7LL, 8LL, 9LL, 10LL, 11LL, 1LL << 40));
  warn("%d values were %s", 12, "summed");
  printf("strlen via vararg: %zu\n", strlen("done"));
  return warnings;
}
