// SPDX-License-Identifier: MIT
// Remote execute: a program (`rjit run --remote`) that reads its argv, environment and stdin,
// writes to stdout and stderr, and exits with argc.
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    printf("arg %d: %s\n", i, argv[i]);
  const char* value = getenv("EXEC_TEST_VAR");
  printf("EXEC_TEST_VAR=%s\n", value != NULL ? value : "(unset)");
  size_t bytes = 0, lines = 0;
  for (int c; (c = getchar()) != EOF; ++bytes)
    lines += c == '\n';
  printf("stdin: %zu bytes, %zu lines\n", bytes, lines);
  fprintf(stderr, "to stderr\n");
  return argc;
}
