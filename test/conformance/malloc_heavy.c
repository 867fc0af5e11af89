// SPDX-License-Identifier: MIT
// Conformance: heavy malloc/calloc/realloc/free use — a linked list, a chained hash table that
// grows, and a growing array (calloc in the table).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Node {
  int value;
  struct Node* next;
} Node;

typedef struct Entry {
  char* key;
  int value;
  struct Entry* next;
} Entry;

typedef struct {
  Entry** buckets;
  size_t bucketCount;
  size_t size;
} Table;

static unsigned long hashKey(const char* s) {
  unsigned long h = 14695981039346656037UL;
  for (; *s != '\0'; ++s)
    h = (h ^ (unsigned char)*s) * 1099511628211UL;
  return h;
}

static void tableGrow(Table* t) {
  size_t count = t->bucketCount ? t->bucketCount * 2 : 8;
  Entry** buckets = calloc(count, sizeof *buckets);
  for (size_t i = 0; i < t->bucketCount; ++i) {
    for (Entry* e = t->buckets[i]; e != NULL;) {
      Entry* next = e->next;
      size_t b = hashKey(e->key) % count;
      e->next = buckets[b];
      buckets[b] = e;
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = buckets;
  t->bucketCount = count;
}

static Entry** tableFind(Table* t, const char* key) {
  Entry** slot = &t->buckets[hashKey(key) % t->bucketCount];
  while (*slot != NULL && strcmp((*slot)->key, key) != 0)
    slot = &(*slot)->next;
  return slot;
}

static void tablePut(Table* t, const char* key, int value) {
  if (t->bucketCount == 0 || t->size * 4 >= t->bucketCount * 3)
    tableGrow(t);
  Entry** slot = tableFind(t, key);
  if (*slot != NULL) {
    (*slot)->value = value;  // an update
    return;
  }
  Entry* e = malloc(sizeof *e);
  *e = (Entry){malloc(strlen(key) + 1), value, NULL};
  strcpy(e->key, key);
  *slot = e;
  ++t->size;
}

static int tableRemove(Table* t, const char* key) {
  Entry** slot = tableFind(t, key);
  if (*slot == NULL)
    return 0;
  Entry* e = *slot;
  *slot = e->next;
  free(e->key);
  free(e);
  --t->size;
  return 1;
}

int main(void) {
  Node* head = NULL;
  for (int i = 1; i <= 20000; ++i) {
    Node* n = malloc(sizeof *n);
    n->value = i;
    n->next = head;
    head = n;
  }
  Node* reversed = NULL;
  while (head != NULL) {
    Node* next = head->next;
    head->next = reversed;
    reversed = head;
    head = next;
  }
  long sum = 0;
  int first = reversed->value, count = 0;
  for (Node *n = reversed, *next; n != NULL; n = next, ++count) {
    next = n->next;
    sum += n->value;
    free(n);
  }
  printf("list: %d nodes, first %d, sum %ld\n", count, first, sum);

  Table table = {NULL, 0, 0};
  char key[32];
  for (int i = 0; i < 10000; ++i) {
    snprintf(key, sizeof key, "key-%d", i);
    tablePut(&table, key, i * 3);
  }
  tablePut(&table, "key-42", -1);
  printf("table: size %zu, buckets %zu\n", table.size, table.bucketCount);
  int removed = 0;
  long valueSum = 0;
  for (int i = 0; i < 10000; ++i) {
    snprintf(key, sizeof key, "key-%d", i);
    if (i % 2 == 0)
      removed += tableRemove(&table, key);
    else if (*tableFind(&table, key) != NULL)
      valueSum += (*tableFind(&table, key))->value;
  }
  printf("table: removed %d, size %zu, value sum %ld, key-42 %s\n", removed, table.size, valueSum,
         *tableFind(&table, "key-42") ? "present" : "absent");
  for (size_t i = 0; i < table.bucketCount; ++i)
    while (table.buckets[i] != NULL)
      tableRemove(&table, table.buckets[i]->key);
  free(table.buckets);
  printf("table emptied: size %zu\n", table.size);

  size_t capacity = 1, length = 0;
  int* array = malloc(capacity * sizeof *array);
  int reallocs = 0;
  long arraySum = 0;
  for (int i = 0; i < 100000; ++i) {
    if (length == capacity) {
      capacity *= 2;
      array = realloc(array, capacity * sizeof *array);
      ++reallocs;
    }
    array[length++] = i % 1000;
    arraySum += array[length - 1];
  }
  free(array);
  printf("array: length %zu, capacity %zu, reallocs %d, sum %ld\n", length, capacity, reallocs,
         arraySum);
  return 0;
}
