// SPDX-License-Identifier: MIT
// Conformance: qsort and bsearch from the C library calling back into the program.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char* name;
  int age;
  double score;
} Person;

static int compareInts(const void* a, const void* b) {
  int x = *(const int*)a, y = *(const int*)b;
  return (x > y) - (x < y);
}

static int compareIntsDescending(const void* a, const void* b) {
  return compareInts(b, a);
}

static int compareStrings(const void* a, const void* b) {
  return strcmp(*(const char* const*)a, *(const char* const*)b);
}

static int comparePeople(const void* a, const void* b) {
  const Person* p = a;
  const Person* q = b;
  if (p->age != q->age)
    return p->age - q->age;
  if (p->score != q->score)
    return p->score < q->score ? 1 : -1;  // higher score first
  return strcmp(p->name, q->name);
}

static int calls;
static int countingCompare(const void* a, const void* b) {
  ++calls;
  return compareInts(a, b);
}

static void printInts(const char* label, const int* v, int n) {
  printf("%s:", label);
  for (int i = 0; i < n; ++i)
    printf(" %d", v[i]);
  printf("\n");
}

int main(void) {
  int numbers[] = {42, -7, 19, 0, 3, 88, -15, 23, 3, 61, 5, -1};
  int n = (int)(sizeof numbers / sizeof numbers[0]);
  qsort(numbers, n, sizeof numbers[0], compareInts);
  printInts("ascending", numbers, n);
  static const int keys[] = {-7, 13, 23, 88, 100};
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; ++k) {
    int key = keys[k];
    int* hit = bsearch(&key, numbers, n, sizeof numbers[0], compareInts);
    printf("bsearch %d: %s", key, hit ? "found" : "missing");
    if (hit)
      printf(" at index %d", (int)(hit - numbers));
    printf("\n");
  }
  qsort(numbers, n, sizeof numbers[0], compareIntsDescending);
  printInts("descending", numbers, n);

  const char* words[] = {"pear", "apple", "fig", "banana", "cherry", "date", "elderberry"};
  int w = (int)(sizeof words / sizeof words[0]);
  qsort(words, w, sizeof words[0], compareStrings);
  printf("words:");
  for (int i = 0; i < w; ++i)
    printf(" %s", words[i]);
  printf("\n");
  const char* key = "date";
  const char** found = bsearch(&key, words, w, sizeof words[0], compareStrings);
  printf("bsearch date: index %d\n", found ? (int)(found - words) : -1);
  key = "grape";
  printf("bsearch grape: %s\n",
         bsearch(&key, words, w, sizeof words[0], compareStrings) ? "found" : "missing");

  Person people[] = {{"dora", 31, 7.5}, {"abel", 25, 9.0}, {"carl", 31, 8.25},
                     {"bea", 25, 9.0},  {"eve", 19, 6.0},  {"finn", 31, 7.5}};
  int p = (int)(sizeof people / sizeof people[0]);
  qsort(people, p, sizeof people[0], comparePeople);
  for (int i = 0; i < p; ++i)
    printf("person %d: %-5s age %d score %.2f\n", i, people[i].name, people[i].age,
           people[i].score);

  enum { BIG = 5000 };
  int* big = malloc(BIG * sizeof *big);
  unsigned state = 12345;
  for (int i = 0; i < BIG; ++i) {
    state = state * 1103515245u + 12345u;
    big[i] = (int)((state >> 8) % 100000);
  }
  qsort(big, BIG, sizeof *big, countingCompare);
  int sorted = 1;
  long checksum = 0;
  for (int i = 0; i < BIG; ++i) {
    if (i > 0 && big[i - 1] > big[i])
      sorted = 0;
    checksum = (checksum * 31 + big[i]) % 1000000007L;
  }
  printf("big: sorted %d, comparator called: %s, min %d max %d checksum %ld\n", sorted,
         calls > BIG ? "yes" : "no", big[0], big[BIG - 1], checksum);
  free(big);
  return 0;
}
