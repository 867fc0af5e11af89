// SPDX-License-Identifier: MIT
// Remote execute: system calls executors may not make (a fork bomb, socket(), opening a file).
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int64_t fork_bomb(void) {
  int64_t children = 0;
  for (;;) {
    if (fork() >= 0)
      ++children;
  }
  return children;
}

int64_t open_socket(void) {
  return socket(AF_INET, SOCK_STREAM, 0);
}

int64_t read_passwd(void) {
  FILE* file = fopen("/etc/passwd", "r");
  if (file == NULL)
    return -1;
  int64_t bytes = 0;
  while (fgetc(file) != EOF)
    ++bytes;
  fclose(file);
  return bytes;
}
