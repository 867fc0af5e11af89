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
/// Where lines go: stderr, unless a compile worker moved the log off it (setOutputFd).
std::atomic<int> outputFd{STDERR_FILENO};

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
  if (fstat(outputFd.load(), &st) != 0)
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

// Length of the valid UTF-8 sequence at the start of `text`, or 0 when it does not start with
// one (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
size_t utf8SequenceLength(std::string_view text) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char lead = byte(0);
  size_t length;
  unsigned char low = 0x80, high = 0xbf;  // the range of the second byte
  if (lead < 0x80)
    return 1;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0)
      low = 0xa0;  // overlong
    else if (lead == 0xed)
      high = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0)
      low = 0x90;  // overlong
    else if (lead == 0xf4)
      high = 0x8f;  // past U+10FFFF
  } else {
    return 0;
  }
  if (text.size() < length || byte(1) < low || byte(1) > high)
    return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xbf)
      return 0;
  }
  return length;
}

// The two-character escape of `c`, or nullptr when it has none.
const char* shortEscape(unsigned char c) {
  switch (c) {
  case '\\': return "\\\\";
  case '\n': return "\\n";
  case '\r': return "\\r";
  case '\t': return "\\t";
  default: return nullptr;
  }
}

void appendHex(std::string& out, unsigned char c) {
  static constexpr char DIGITS[] = "0123456789abcdef";
  out += "\\x";
  out += DIGITS[c >> 4];
  out += DIGITS[c & 0xf];
}

}  // namespace

std::string escapeControls(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (const char* escape = shortEscape(c)) {
      out += escape;
      ++i;
      continue;
    }
    size_t length = c < 0x80 ? 0 : utf8SequenceLength(text.substr(i));
    // U+0080-U+009F (C2 80-C2 9F): terminals read some of them as CSI and friends.
    bool c1 = length == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) <= 0x9f;
    if (length == 0 || c1) {
      size_t n = c1 ? 2 : 1;
      for (size_t k = 0; k < n; ++k)
        appendHex(out, static_cast<unsigned char>(text[i + k]));
      i += n;
      continue;
    }
    out.append(text.substr(i, length));
    i += length;
  }
  return out;
}

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

void setOutputFd(int fd) {
  outputFd.store(fd);
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
  line += escapeControls(message);
  line += '\n';
  // One write per line: atomic with respect to other threads' lines. A failed log write has
  // nowhere to be reported, so its result is deliberately ignored.
  [[maybe_unused]] ssize_t r = ::write(outputFd.load(), line.data(), line.size());
}

}  // namespace rjitd::log
