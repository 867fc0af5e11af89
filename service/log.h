// SPDX-License-Identifier: MIT
// Leveled logging to stderr. Under systemd (JOURNAL_STREAM names our stderr) each line carries
// an sd-daemon priority prefix ("<6>") so journald records the level; otherwise a UTC timestamp
// and the level name. One write(2) per line, so lines from several threads never interleave.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace rjitd::log {

enum class Level : int { Debug = 0, Info = 1, Warning = 2, Error = 3 };

/// Sets the minimum level written. Thread-safe.
void setLevel(Level level);
bool enabled(Level level);

/// "debug", "info", "warning" (or "warn"), "error"; false for anything else.
bool parseLevel(std::string_view text, Level& out);

void write(Level level, std::string_view message);

template <typename... Args> void print(Level level, const Args&... args) {
  if (!enabled(level))
    return;
  std::ostringstream out;
  (out << ... << args);
  write(level, out.str());
}

template <typename... Args> void debug(const Args&... args) {
  print(Level::Debug, args...);
}
template <typename... Args> void info(const Args&... args) {
  print(Level::Info, args...);
}
template <typename... Args> void warning(const Args&... args) {
  print(Level::Warning, args...);
}
template <typename... Args> void error(const Args&... args) {
  print(Level::Error, args...);
}

}  // namespace rjitd::log
