// SPDX-License-Identifier: MIT
// Remote execute: functions of every value type a call carries (signed and unsigned integers of
// every width, bool, float, double, C strings, buffers in, out and in-out), and output.
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int64_t add(int64_t a, int64_t b) {
  return a + b;
}

bool flip(bool b) {
  return !b;
}

int8_t neg_i8(int8_t x) {
  return (int8_t)-x;
}

uint8_t inc_u8(uint8_t x) {
  return (uint8_t)(x + 1);
}

int16_t neg_i16(int16_t x) {
  return (int16_t)-x;
}

uint16_t inc_u16(uint16_t x) {
  return (uint16_t)(x + 1);
}

int32_t neg_i32(int32_t x) {
  return -x;
}

uint32_t inc_u32(uint32_t x) {
  return x + 1;
}

int64_t neg_i64(int64_t x) {
  return -x;
}

/// Returns its argument: 18446744073709551615 comes back as it went.
uint64_t same_u64(uint64_t x) {
  return x;
}

/// The bits set: 64 for 18446744073709551615, whichever way the caller wrote it.
int32_t popcount_u64(uint64_t x) {
  return __builtin_popcountll(x);
}

uint64_t dec_u64(uint64_t x) {
  return x - 1;
}

float half_f32(float x) {
  return x / 2.0f;
}

double scale_f64(double x, double by) {
  return x * by;
}

/// A string argument: its length.
int64_t length(const char* s) {
  return (int64_t)strlen(s);
}

/// A null pointer argument is seen as one.
int32_t is_null(const void* p) {
  return p == NULL;
}

/// A string result: a pointer into the executor (printable only).
const char* greeting(void) {
  return "hello";
}

/// Writes to stdout and stderr; the call's output carries both.
void say(const char* what) {
  printf("out: %s\n", what);
  fprintf(stderr, "err: %s\n", what);
}

/// An `in` buffer.
double sum_f64(const double* values, uint64_t count) {
  double sum = 0;
  for (uint64_t i = 0; i < count; ++i)
    sum += values[i];
  return sum;
}

/// An `out` buffer: values[i] = i * i.
void squares_i32(int32_t* values, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i)
    values[i] = (int32_t)(i * i);
}

/// An `in-out` buffer: doubles each element.
void double_u16(uint16_t* values, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i)
    values[i] = (uint16_t)(values[i] * 2);
}

/// An `out` buffer of bytes: every byte becomes `value` (the shared-memory tests).
void fill_u8(uint8_t* bytes, uint64_t count, uint8_t value) {
  memset(bytes, value, count);
}

/// The sum of a byte buffer (64 MiB crossings).
uint64_t sum_u8(const uint8_t* bytes, uint64_t count) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < count; ++i)
    sum += bytes[i];
  return sum;
}

/// The first and last byte: a call whose cost is the crossing of its buffer alone.
uint64_t ends_u8(const uint8_t* bytes, uint64_t count) {
  return count == 0 ? 0 : (uint64_t)bytes[0] + bytes[count - 1];
}

/// Counts calls: state that lives as long as the executor does.
int64_t counter(void) {
  static int64_t calls;
  return ++calls;
}

/// Data, not a function: calling it is a signature mismatch.
int64_t not_a_function = 7;
