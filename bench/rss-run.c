// SPDX-License-Identifier: MIT
// rss-run: runs a program and reports its wall time and peak RSS, for bench/fastpath-bench.
//
// Why a helper: Linux keeps a process's peak RSS (ru_maxrss) across execve, and a child
// started by fork or posix_spawn first runs in (a copy of) its parent's address space. A child
// of the benchmark, which links LLVM and has JIT-compiled code, would therefore report at
// least the benchmark's own RSS. This helper is a small plain-C process: the grandchild it
// forks starts from its few hundred KiB, so wait4's ru_maxrss is the program's own peak.
//
//   rss-run [--timeout SECONDS] -- PROGRAM [ARGS...]
//     Runs PROGRAM in its own process group (killed as a group after the timeout, default
//     60 s). Its stdout and stderr are ours. When it ends, prints one line to stderr:
//       rss-run: status=exit N|signal N|timeout wall_ms=W maxrss_kb=K user_ms=U sys_ms=S
//     and exits 0 (the status is in the line).
//
//   RSS_RUN_WRAP_EXEC=PATH RSS_RUN_WRAP_REPORT=FILE rss-run ARGS...   (ARGS not starting "--")
//     Wrapper mode, for a program that another program starts (llvm-jitlink's -oop-executor):
//     runs PATH with ARGS, appends the same line to FILE, and exits with PATH's exit status.
//     Descriptors are inherited, so an executor's pipes keep working.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile pid_t child = -1;
static volatile sig_atomic_t timedOut = 0;

static void onAlarm(int signo) {
  (void)signo;
  timedOut = 1;
  if (child > 0)
    kill(-child, SIGKILL);
}

static double nowMs(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double tvMs(struct timeval tv) {
  return (double)tv.tv_sec * 1e3 + (double)tv.tv_usec / 1e3;
}

/// Runs argv[0] (with PATH search) and waits; writes the report line to `out`. Returns the
/// wait status, or -1 if it could not start.
static int runAndReport(char** argv, int ownGroup, unsigned timeout, FILE* out) {
  double start = nowMs();
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "rss-run: fork: %s\n", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    if (ownGroup)
      setpgid(0, 0);
    execvp(argv[0], argv);
    fprintf(stderr, "rss-run: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  child = pid;
  if (ownGroup) {
    setpgid(pid, pid);  // also here: no race with the timeout's kill(-pid)
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = onAlarm;
    sigaction(SIGALRM, &action, NULL);
    alarm(timeout);
  } else {
    // Wrapper: our copies of the inherited descriptors (an executor's pipes) must not keep
    // them open after the program exits.
    for (int fd = 3; fd < 1024; ++fd)
      if (fd != fileno(out))
        close(fd);
  }
  int status = 0;
  struct rusage usage;
  memset(&usage, 0, sizeof usage);
  pid_t waited;
  do
    waited = wait4(pid, &status, 0, &usage);
  while (waited < 0 && errno == EINTR);
  alarm(0);
  double wall = nowMs() - start;
  if (waited < 0) {
    fprintf(stderr, "rss-run: wait4: %s\n", strerror(errno));
    return -1;
  }
  if (ownGroup)
    kill(-pid, SIGKILL);  // whatever the program left behind in its group
  char what[64];
  if (timedOut)
    snprintf(what, sizeof what, "timeout");
  else if (WIFEXITED(status))
    snprintf(what, sizeof what, "exit %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(what, sizeof what, "signal %d", WTERMSIG(status));
  else
    snprintf(what, sizeof what, "status %d", status);
  fprintf(out, "rss-run: status=%s wall_ms=%.3f maxrss_kb=%ld user_ms=%.1f sys_ms=%.1f\n", what,
          wall, usage.ru_maxrss, tvMs(usage.ru_utime), tvMs(usage.ru_stime));
  fflush(out);
  return status;
}

int main(int argc, char** argv) {
  if (argc >= 2 && strncmp(argv[1], "--", 2) != 0) {
    const char* exec = getenv("RSS_RUN_WRAP_EXEC");
    const char* report = getenv("RSS_RUN_WRAP_REPORT");
    if (exec == NULL || report == NULL) {
      fprintf(stderr, "usage: rss-run [--timeout SECONDS] -- PROGRAM [ARGS...]\n");
      return 2;
    }
    // Opened before the fork (close-on-exec): after it, the wrapper closes every other
    // descriptor it inherited.
    FILE* out = fopen(report, "ae");
    if (out == NULL) {
      fprintf(stderr, "rss-run: cannot open %s: %s\n", report, strerror(errno));
      return 2;
    }
    argv[0] = (char*)exec;
    int status = runAndReport(argv, 0, 0, out);
    if (status < 0)
      return 127;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  unsigned timeout = 60;
  int i = 1;
  if (i + 1 < argc && strcmp(argv[i], "--timeout") == 0) {
    timeout = (unsigned)strtoul(argv[i + 1], NULL, 10);
    i += 2;
  }
  if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc || timeout == 0) {
    fprintf(stderr, "usage: rss-run [--timeout SECONDS] -- PROGRAM [ARGS...]\n");
    return 2;
  }
  runAndReport(argv + i + 1, 1, timeout, stderr);
  return 0;
}
