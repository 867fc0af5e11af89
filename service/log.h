// SPDX-License-Identifier: MIT
// Leveled logging to stderr. Under systemd (JOURNAL_STREAM names our stderr) each line carries
// an sd-daemon priority prefix ("<6>") so journald records the level; otherwise a UTC timestamp
// and the level name. One write(2) per line, so lines from several threads never interleave.
// Every message is escaped on its way out (escapeControls), so text a client chose (module
// names, client names, features, quoted IR) can never start a line of its own or reach a
// terminal as a control sequence.
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

/// `text` with everything that could end a log line or control a terminal written as an escape:
/// newline, carriage return and tab as \n, \r, \t; other C0 controls (ESC as \x1b), DEL, the C1
/// controls (U+0080-U+009F) and bytes that are not valid UTF-8 as \xHH (a C1 control as the bytes
/// of its encoding); the backslash as \\, so an escape in the output always means an escaped byte.
/// Other valid UTF-8 text is unchanged.
std::string escapeControls(std::string_view text);

/// Writes the log to `fd` instead of stderr (a compile worker, whose own stderr is a pipe to
/// it: see compile-backend.cpp). Call before the first line is written: whether lines carry
/// journald's prefixes is decided once, from the descriptor in use then. `fd` must stay open.
void setOutputFd(int fd);

/// Writes one line: `message` passed through escapeControls(), with a level prefix. A
/// multi-line message (an LLVM diagnostic quoting IR) stays one line with "\n" inside: one
/// log call is one journal entry at the call's priority, and a client cannot choose a line's
/// priority or forge a line of its own.
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
