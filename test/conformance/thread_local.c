// SPDX-License-Identifier: MIT
// Conformance: _Thread_local variables (zero-initialised, initialised, an array) used from two
// POSIX threads and the main thread; each thread sees its own copy.
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static _Thread_local int counter;
static _Thread_local int initialised = 42;
static _Thread_local char name[16] = "main";
_Thread_local long exportedTotal;  // external linkage, too

typedef struct {
  const char* name;
  int iterations;
  int finalCounter;
  int finalInitialised;
  long total;
  char seenName[16];
  const int* counterAddress;
} Work;

static void bump(int by) {
  counter += by;
  exportedTotal += counter;
}

static void* worker(void* arg) {
  Work* work = arg;
  strncpy(name, work->name, sizeof name - 1);
  initialised += work->iterations;
  for (int i = 0; i < work->iterations; ++i)
    bump(i % 3 + 1);
  work->finalCounter = counter;
  work->finalInitialised = initialised;
  work->total = exportedTotal;
  strcpy(work->seenName, name);
  work->counterAddress = &counter;
  return NULL;
}

int main(void) {
  bump(5);
  Work works[2] = {{.name = "first", .iterations = 1000}, {.name = "second", .iterations = 77}};
  pthread_t threads[2];
  for (int i = 0; i < 2; ++i)
    if (pthread_create(&threads[i], NULL, worker, &works[i]) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  for (int i = 0; i < 2; ++i)
    pthread_join(threads[i], NULL);
  for (int i = 0; i < 2; ++i)
    printf("thread %s: counter %d, initialised %d, total %ld, name '%s'\n", works[i].name,
           works[i].finalCounter, works[i].finalInitialised, works[i].total, works[i].seenName);
  printf("main: counter %d, initialised %d, total %ld, name '%s'\n", counter, initialised,
         exportedTotal, name);
  printf("distinct copies: %s\n",
         works[0].counterAddress != works[1].counterAddress && works[0].counterAddress != &counter
             ? "yes"
             : "no");
  return 0;
}
