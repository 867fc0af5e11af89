// SPDX-License-Identifier: MIT
// The files `rjit` reads (modules) and writes (objects), with failures as values that say which
// file and why.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace rjitd::cli {

/// "cannot read PATH: REASON" or "cannot write PATH: REASON".
struct FileError {
  std::string message;
};

/// The whole file (or FIFO, or device: read to its end).
std::variant<std::string, FileError> readFile(const std::string& path);

/// Everything `fd` gives until its end, at most `limit` bytes: more is a FileError naming
/// `name` and the limit (the descriptor is left open).
std::variant<std::string, FileError> readBounded(int fd, const std::string& name, size_t limit);

/// Writes all of `bytes` to `fd` (rjit's stdout or stderr); false when it cannot.
bool writeAll(int fd, std::string_view bytes);

/// Writes `bytes` to `path`. A regular file (or a new one) is replaced atomically: the bytes go
/// to a new file PATH.tmp.RANDOM (created exclusively, never through a symlink, removed on
/// failure), which is renamed over PATH, so readers see the old file or the whole new one and a
/// failed write leaves PATH as it was. Anything else that exists (a device such as
/// /dev/null, a FIFO, a terminal) is written in place: renaming over it would replace the node
/// itself, which as root means replacing /dev/null with a regular file.
std::optional<FileError> writeOutput(const std::string& path, std::string_view bytes);

}  // namespace rjitd::cli
