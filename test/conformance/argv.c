// SPDX-License-Identifier: MIT
// Conformance: main's argc/argv (argv[0] differs between a native run and `rjit run`, so it is
// only checked, not printed). Returns argc - 1, the number of arguments (3 for the suite's).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  printf("argc = %d\n", argc);
  printf("argv[0] present: %s\n", argc > 0 && argv[0] != NULL && argv[0][0] != '\0' ? "yes" : "no");
  printf("argv[argc] is NULL: %s\n", argv[argc] == NULL ? "yes" : "no");
  size_t totalLength = 0;
  for (int i = 1; i < argc; ++i) {
    size_t length = strlen(argv[i]);
    totalLength += length;
    printf("argv[%d] = \"%s\" (length %zu, %s)\n", i, argv[i], length,
           strchr(argv[i], ' ') != NULL ? "has spaces" : "one word");
    char* end = NULL;
    long number = strtol(argv[i], &end, 10);
    if (end != argv[i] && *end == '\0')
      printf("  numeric: %ld, doubled %ld\n", number, 2 * number);
  }
  printf("total length: %zu\n", totalLength);
  // argv strings are writable (C11 5.1.2.2.1).
  if (argc > 1) {
    argv[1][0] = 'A';
    printf("modified argv[1] = %s\n", argv[1]);
  }
  for (int i = argc - 1; i >= 1; --i)
    printf("%s%s", argv[i], i > 1 ? " <- " : "\n");
  return argc - 1;
}
