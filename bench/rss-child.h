// SPDX-License-Identifier: MIT
// What the peak-memory children of bench/fastpath-bench share: their command line, reading the
// module, and what a process can tell about its own memory (/proc/self). Plain C++ and libc only:
// the client-only child must not pull in more.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>

namespace rjitbench {

/// The children's command line: "--name value" pairs (fastpath-bench writes them).
struct ChildOptions {
  std::string server, ir, symbol, triple, cpu;
  int arg = 1;
  unsigned opt = 2, calls = 1;
  unsigned pauseMs = 0;  ///< before exiting: time to look at /proc/PID/smaps
};

/// Reads argv into `options`, taking only the names in `accepted` (e.g. "--ir"). False, with an
/// error on stderr, on any other name.
inline bool parseChildOptions(int argc, char** argv,
                              std::initializer_list<std::string_view> accepted,
                              ChildOptions& options) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view name = argv[i];
    const char* value = argv[i + 1];
    bool known = false;
    for (std::string_view a : accepted)
      known = known || a == name;
    if (known && name == "--server")
      options.server = value;
    else if (known && name == "--ir")
      options.ir = value;
    else if (known && name == "--symbol")
      options.symbol = value;
    else if (known && name == "--triple")
      options.triple = value;
    else if (known && name == "--cpu")
      options.cpu = value;
    else if (known && name == "--arg")
      options.arg = std::atoi(value);
    else if (known && name == "--opt")
      options.opt = static_cast<unsigned>(std::atoi(value));
    else if (known && name == "--calls")
      options.calls = static_cast<unsigned>(std::atoi(value));
    else if (known && name == "--pause-ms")
      options.pauseMs = static_cast<unsigned>(std::atoi(value));
    else {
      std::fprintf(stderr, "error: unknown option %s\n", argv[i]);
      return false;
    }
  }
  return true;
}

/// A "Field:   N kB" line of /proc/self/status (VmHWM is the peak RSS, VmRSS the current),
/// in KiB; -1 if missing.
inline long procStatusKb(const char* field) {
  FILE* file = std::fopen("/proc/self/status", "re");
  if (file == nullptr)
    return -1;
  char line[256];
  size_t length = std::strlen(field);
  long value = -1;
  while (std::fgets(line, sizeof line, file) != nullptr)
    if (std::strncmp(line, field, length) == 0 && line[length] == ':') {
      value = std::strtol(line + length + 1, nullptr, 10);
      break;
    }
  std::fclose(file);
  return value;
}

/// The whole file in one allocation (no stream buffers: the module is 1.5 MB and a second copy
/// would show in the peak); throws nothing, returns false on failure.
inline bool readWholeFile(const char* path, std::string& out) {
  FILE* file = std::fopen(path, "rbe");
  if (file == nullptr)
    return false;
  bool ok = std::fseek(file, 0, SEEK_END) == 0;
  long size = ok ? std::ftell(file) : -1;
  ok = size >= 0 && std::fseek(file, 0, SEEK_SET) == 0;
  if (ok) {
    out.resize(static_cast<size_t>(size));
    ok = std::fread(out.data(), 1, out.size(), file) == out.size();
  }
  std::fclose(file);
  return ok;
}

/// Whether a shared object whose path contains `name` is mapped into this process.
inline bool libraryMapped(const char* name) {
  FILE* file = std::fopen("/proc/self/maps", "re");
  if (file == nullptr)
    return false;
  char line[4096];
  bool found = false;
  while (!found && std::fgets(line, sizeof line, file) != nullptr)
    found = std::strstr(line, name) != nullptr;
  std::fclose(file);
  return found;
}

/// The line every child prints last: its own peak and current RSS, the current RSS split into
/// private anonymous memory and file pages (shared libraries, mostly), and whether libLLVM is
/// mapped.
inline void printMemoryLine() {
  std::printf("memory: vmhwm_kb=%ld vmrss_kb=%ld rssanon_kb=%ld rssfile_kb=%ld llvm_mapped=%d\n",
              procStatusKb("VmHWM"), procStatusKb("VmRSS"), procStatusKb("RssAnon"),
              procStatusKb("RssFile"), libraryMapped("libLLVM") ? 1 : 0);
  std::fflush(stdout);
}

}  // namespace rjitbench
