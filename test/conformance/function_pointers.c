// SPDX-License-Identifier: MIT
// Conformance: function pointers — dispatch tables, callbacks, functions returning function
// pointers, a state machine and a hand-made "vtable" in a struct.
#include <stdio.h>
#include <string.h>

typedef int (*BinaryOp)(int, int);

static int add(int a, int b) {
  return a + b;
}
static int sub(int a, int b) {
  return a - b;
}
static int mul(int a, int b) {
  return a * b;
}
static int divide(int a, int b) {
  return b == 0 ? 0 : a / b;
}

static const struct {
  const char* name;
  BinaryOp op;
} operations[] = {{"add", add}, {"sub", sub}, {"mul", mul}, {"div", divide}};

static BinaryOp lookup(const char* name) {
  for (size_t i = 0; i < sizeof operations / sizeof operations[0]; ++i)
    if (strcmp(operations[i].name, name) == 0)
      return operations[i].op;
  return NULL;
}

static void forEach(const int* values, int n, void (*visit)(int, void*), void* context) {
  for (int i = 0; i < n; ++i)
    visit(values[i], context);
}

static void accumulate(int value, void* context) {
  *(long*)context += value;
}
static void printValue(int value, void* context) {
  printf("%s%d", *(int*)context ? ", " : "", value);
  *(int*)context = 1;
}

static int fold(const int* values, int n, int start, BinaryOp op) {
  for (int i = 0; i < n; ++i)
    start = op(start, values[i]);
  return start;
}

static int twice(int x) {
  return 2 * x;
}
static int square(int x) {
  return x * x;
}
static int (*pick(int which))(int) {
  return which ? square : twice;
}

typedef struct Machine Machine;
typedef void (*State)(Machine*, char);
struct Machine {
  State state;
  int numbers;
  int current;
};
static void inNumber(Machine* m, char c);
static void between(Machine* m, char c) {
  if (c >= '0' && c <= '9') {
    m->current = c - '0';
    m->state = inNumber;
  }
}
static void inNumber(Machine* m, char c) {
  if (c >= '0' && c <= '9') {
    m->current = m->current * 10 + (c - '0');
  } else {
    printf("  number %d\n", m->current);
    ++m->numbers;
    m->state = between;
  }
}

typedef struct {
  const char* (*name)(void);
  int (*legs)(void);
} AnimalOps;
static const char* dogName(void) {
  return "dog";
}
static int dogLegs(void) {
  return 4;
}
static const char* birdName(void) {
  return "bird";
}
static int birdLegs(void) {
  return 2;
}
static const AnimalOps animals[] = {{dogName, dogLegs}, {birdName, birdLegs}};

int main(void) {
  for (size_t i = 0; i < sizeof operations / sizeof operations[0]; ++i)
    printf("%s(17, 5) = %d\n", operations[i].name, operations[i].op(17, 5));
  BinaryOp found = lookup("mul");
  printf("lookup mul: %d, is mul: %d, lookup pow: %s\n", found(6, 7), found == mul,
         lookup("pow") == NULL ? "none" : "found");

  int values[] = {3, 1, 4, 1, 5, 9, 2, 6};
  int n = (int)(sizeof values / sizeof values[0]);
  long total = 0;
  forEach(values, n, accumulate, &total);
  printf("sum via callback: %ld\n", total);
  int first = 0;
  printf("values: ");
  forEach(values, n, printValue, &first);
  printf("\n");
  printf("fold add %d, fold mul %d\n", fold(values, n, 0, add), fold(values, n, 1, mul));

  for (int which = 0; which < 2; ++which)
    printf("pick(%d)(9) = %d\n", which, pick(which)(9));

  Machine m = {between, 0, 0};
  const char* input = "12 apples, 7 pears and 130 plums.";
  printf("scanning '%s':\n", input);
  for (const char* p = input; *p != '\0'; ++p)
    m.state(&m, *p);
  printf("numbers found: %d\n", m.numbers);

  for (size_t i = 0; i < sizeof animals / sizeof animals[0]; ++i)
    printf("a %s has %d legs\n", animals[i].name(), animals[i].legs());
  return 0;
}
