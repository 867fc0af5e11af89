// SPDX-License-Identifier: MIT
// Conformance: statically initialised data (arrays, nested structs, pointers to other globals,
// string tables) and __attribute__((constructor))/((destructor)) functions, with priorities.
// The constructors run before main and the destructors after it returns (after the handlers
// main registered with atexit), so their output brackets main's.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct Point {
  int x, y;
};
struct Shape {
  const char* name;
  struct Point corners[4];
  int cornerCount;
  const struct Shape* next;
};

static const int primes[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29};
static int squares[8] = {0, 1, 4, 9, [6] = 36};  // 16, 25 and 49 left zero
static const char* const weekdays[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
static char greeting[32] = "static greeting";
static const struct Shape triangle = {"triangle", {{0, 0}, {4, 0}, {0, 3}}, 3, NULL};
static const struct Shape square = {.name = "square",
                                    .corners = {{0, 0}, {2, 0}, {2, 2}, {0, 2}},
                                    .cornerCount = 4,
                                    .next = &triangle};
static const struct Shape* const firstShape = &square;
static int* const thirdSquare = &squares[3];
static double table[3][3] = {{1.0, 0.5, 0.25}, {2.0}, {[2] = 9.5}};
static int constructorOrder[4];
static int constructorCount;
static int initialisedByConstructor = -1;

__attribute__((constructor(101))) static void firstConstructor(void) {
  constructorOrder[constructorCount++] = 101;
  printf("constructor 101: primes[4] = %d\n", primes[4]);
}

__attribute__((constructor(102))) static void secondConstructor(void) {
  constructorOrder[constructorCount++] = 102;
  initialisedByConstructor = 4242;
  printf("constructor 102\n");
}

__attribute__((constructor)) static void defaultConstructor(void) {
  constructorOrder[constructorCount++] = 65535;
  strcat(greeting, "!");
  printf("default constructor: greeting is '%s'\n", greeting);
}

__attribute__((destructor)) static void defaultDestructor(void) {
  printf("default destructor: greeting is '%s'\n", greeting);
}

__attribute__((destructor(101))) static void lastDestructor(void) {
  printf("destructor 101 runs last\n");
}

static void atexitHandler(void) {
  printf("atexit handler (runs before the destructors)\n");
}

static int nextCounter(void) {
  static int counter = 100;  // initialised once, statically
  return counter++;
}

int main(void) {
  printf("main: constructors ran:");
  for (int i = 0; i < constructorCount; ++i)
    printf(" %d", constructorOrder[i]);
  printf(" (value %d)\n", initialisedByConstructor);

  int sum = 0;
  for (size_t i = 0; i < sizeof primes / sizeof primes[0]; ++i)
    sum += primes[i];
  printf("sum of primes: %d\n", sum);
  printf("squares:");
  for (int i = 0; i < 8; ++i)
    printf(" %d", squares[i]);
  printf("\nthirdSquare -> %d\n", *thirdSquare);
  *thirdSquare = 99;
  printf("after write: squares[3] = %d\n", squares[3]);
  for (size_t i = 0; i < sizeof weekdays / sizeof weekdays[0]; ++i)
    printf("%s%s", i ? "," : "weekdays: ", weekdays[i]);
  printf("\n");
  for (const struct Shape* s = firstShape; s != NULL; s = s->next) {
    printf("%s:", s->name);
    for (int c = 0; c < s->cornerCount; ++c)
      printf(" (%d,%d)", s->corners[c].x, s->corners[c].y);
    printf("\n");
  }
  for (int r = 0; r < 3; ++r)
    printf("table[%d] = %.2f %.2f %.2f\n", r, table[r][0], table[r][1], table[r][2]);
  printf("counter: %d %d %d\n", nextCounter(), nextCounter(), nextCounter());
  strcpy(greeting, "changed by main");
  atexit(atexitHandler);
  printf("main returns\n");
  return 0;
}
