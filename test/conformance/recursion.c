// SPDX-License-Identifier: MIT
// Conformance: deep and branching recursion (Ackermann, Fibonacci, Hanoi, permutations,
// N-queens, mutual recursion).
#include <stdio.h>
#include <string.h>

static unsigned long ackermann(unsigned long m, unsigned long n) {
  if (m == 0)
    return n + 1;
  if (n == 0)
    return ackermann(m - 1, 1);
  return ackermann(m - 1, ackermann(m, n - 1));
}

static unsigned long fib(unsigned n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static unsigned long moves;

static void hanoi(int n, char from, char to, char via, int print) {
  if (n == 0)
    return;
  hanoi(n - 1, from, via, to, print);
  ++moves;
  if (print)
    printf("  move disk %d %c -> %c\n", n, from, to);
  hanoi(n - 1, via, to, from, print);
}

static int isOdd(unsigned n);
static int isEven(unsigned n) {
  return n == 0 ? 1 : isOdd(n - 1);
}
static int isOdd(unsigned n) {
  return n == 0 ? 0 : isEven(n - 1);
}

static int permutations;

static void permute(char* s, int k, int n) {
  if (k == n) {
    if (permutations < 8)
      printf("  %s\n", s);
    ++permutations;
    return;
  }
  for (int i = k; i < n; ++i) {
    char t = s[k];
    s[k] = s[i];
    s[i] = t;
    permute(s, k + 1, n);
    t = s[k];
    s[k] = s[i];
    s[i] = t;
  }
}

static int queens(int row, int n, int* cols) {
  if (row == n)
    return 1;
  int count = 0;
  for (int c = 0; c < n; ++c) {
    int ok = 1;
    for (int r = 0; r < row && ok; ++r)
      if (cols[r] == c || cols[r] - c == r - row || cols[r] - c == row - r)
        ok = 0;
    if (ok) {
      cols[row] = c;
      count += queens(row + 1, n, cols);
    }
  }
  return count;
}

static int depth(int n) {
  return n == 0 ? 0 : 1 + depth(n - 1);
}

int main(void) {
  printf("ackermann(2,3) = %lu\n", ackermann(2, 3));
  printf("ackermann(3,4) = %lu\n", ackermann(3, 4));
  for (unsigned n = 0; n <= 25; n += 5)
    printf("fib(%u) = %lu\n", n, fib(n));
  printf("hanoi(3):\n");
  hanoi(3, 'A', 'C', 'B', 1);
  printf("hanoi(3) moves = %lu\n", moves);
  moves = 0;
  hanoi(16, 'A', 'C', 'B', 0);
  printf("hanoi(16) moves = %lu\n", moves);
  printf("isEven(1000) = %d, isOdd(777) = %d\n", isEven(1000), isOdd(777));
  char letters[] = "abcd";
  printf("permutations of %s:\n", letters);
  permute(letters, 0, (int)strlen(letters));
  printf("count = %d\n", permutations);
  int cols[8];
  for (int n = 4; n <= 8; ++n)
    printf("queens(%d) = %d\n", n, queens(0, n, cols));
  printf("depth(10000) = %d\n", depth(10000));
  return 0;
}
