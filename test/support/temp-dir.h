// SPDX-License-Identifier: MIT
// A private temporary directory for one test, removed with everything in it when it goes out of
// scope.
#pragma once

#include <string>
#include <string_view>

namespace rjit::test {

/// Creates a fresh directory (mkdtemp) under $TMPDIR, or /tmp when TMPDIR is unset or not an
/// absolute path. Aborts with a message if it cannot be created: a test without its directory
/// has nothing meaningful left to check. The destructor removes the tree and reports (without
/// failing) anything it could not remove.
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /// Absolute path of the directory, without a trailing slash.
  const std::string& path() const;
  /// path() + "/" + name. Creates nothing.
  std::string file(std::string_view name) const;

private:
  std::string path_;
};

}  // namespace rjit::test
