// SPDX-License-Identifier: MIT
#include "log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sys/stat.h>
#include <unistd.h>

namespace rjitd::log {

namespace {

std::atomic<int> minLevel{static_cast<int>(Level::Info)};

// journald sets JOURNAL_STREAM=DEV:INODE for the stream it reads; prefixes only make sense
// when stderr is still that stream (not redirected by the caller).
bool stderrIsJournal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr)
    return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2)
    return false;
  struct stat st;
  if (fstat(STDERR_FILENO, &st) != 0)
    return false;
  return st.st_dev == dev && st.st_ino == ino;
}

const char* levelName(Level level) {
  switch (level) {
  case Level::Debug: return "debug";
  case Level::Info: return "info";
  case Level::Warning: return "warning";
  case Level::Error: return "error";
  }
  return "info";
}

const char* journalPrefix(Level level) {
  switch (level) {  // sd-daemon.h: SD_DEBUG, SD_INFO, SD_WARNING, SD_ERR
  case Level::Debug: return "<7>";
  case Level::Info: return "<6>";
  case Level::Warning: return "<4>";
  case Level::Error: return "<3>";
  }
  return "<6>";
}

}  // namespace

void setLevel(Level level) {
  minLevel.store(static_cast<int>(level));
}

bool enabled(Level level) {
  return static_cast<int>(level) >= minLevel.load();
}

bool parseLevel(std::string_view text, Level& out) {
  if (text == "debug")
    out = Level::Debug;
  else if (text == "info")
    out = Level::Info;
  else if (text == "warning" || text == "warn")
    out = Level::Warning;
  else if (text == "error")
    out = Level::Error;
  else
    return false;
  return true;
}

void write(Level level, std::string_view message) {
  static const bool journal = stderrIsJournal();
  std::string line;
  if (journal) {
    line = journalPrefix(level);
  } else {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tm utc;
    gmtime_r(&ts.tv_sec, &utc);
    char stamp[40];
    size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    line = stamp;
  }
  line += levelName(level);
  line += ": ";
  line += message;
  line += '\n';
  // One write per line: atomic with respect to other threads' lines. A failed log write has
  // nowhere to be reported, so its result is deliberately ignored.
  [[maybe_unused]] ssize_t r = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace rjitd::log
