// SPDX-License-Identifier: MIT
// The fast-path benchmark's small module (bench/fastpath-bench.cpp): four compute kernels with
// no external references (no libc), so that call speed measures the code and the call itself.
// bench/meson.build compiles this to textual IR with
// `clang-19 -O1 -Xclang -disable-llvm-passes -S -emit-llvm` (unoptimized but optimizable).

/// A few integer operations: the call itself is most of the cost.
int fp_mix(int x) {
  unsigned v = (unsigned)x * 2654435761u;
  v ^= v >> 15;
  v *= 2246822519u;
  v ^= v >> 13;
  return (int)(v & 0x7fffffffu);
}

/// A loop kernel with a data-dependent trip count: the number of Collatz steps from n to 1
/// (about 100 on average for n below a million).
int fp_collatz(int n) {
  unsigned long long v = n > 0 ? (unsigned long long)n : 1ull;
  int steps = 0;
  while (v != 1) {
    v = (v & 1) ? 3 * v + 1 : v / 2;
    ++steps;
  }
  return steps;
}

/// A vectorizable loop over a caller's buffer: a position-weighted byte sum.
int fp_checksum(const unsigned char* data, int length) {
  unsigned sum = 0;
  for (int i = 0; i < length; ++i)
    sum += (unsigned)data[i] * (unsigned)(i + 1);
  return (int)(sum & 0x7fffffffu);
}

enum { SORT_N = 512 };

static void siftDown(int* a, int start, int end) {
  int root = start;
  while (2 * root + 1 < end) {
    int child = 2 * root + 1;
    if (child + 1 < end && a[child] < a[child + 1])
      ++child;
    if (a[root] >= a[child])
      return;
    int t = a[root];
    a[root] = a[child];
    a[child] = t;
    root = child;
  }
}

/// A heavier call: fills 512 ints from `seed` (xorshift), heap-sorts them on the stack and
/// returns a checksum of the sorted array.
int fp_sort(int seed) {
  int a[SORT_N];
  unsigned x = (unsigned)seed * 2654435761u + 1u;
  for (int i = 0; i < SORT_N; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    a[i] = (int)(x & 0xffffff);
  }
  for (int start = SORT_N / 2 - 1; start >= 0; --start)
    siftDown(a, start, SORT_N);
  for (int end = SORT_N - 1; end > 0; --end) {
    int t = a[0];
    a[0] = a[end];
    a[end] = t;
    siftDown(a, 0, end);
  }
  unsigned sum = 0;
  for (int i = 0; i < SORT_N; ++i)
    sum = sum * 31u + (unsigned)a[i];
  return (int)(sum & 0x7fffffffu);
}
