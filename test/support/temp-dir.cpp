// SPDX-License-Identifier: MIT
// RAII temporary directory for tests (see temp-dir.h).
#include "temp-dir.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

namespace rjit::test {

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = (tmp != nullptr && tmp[0] == '/') ? tmp : "/tmp";
  // Drop trailing slashes (TMPDIR=/ becomes "", giving "/rjit-test-XXXXXX").
  while (!base.empty() && base.back() == '/')
    base.pop_back();
  std::string pattern = base + "/rjit-test-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    std::fprintf(stderr, "error: cannot create a temporary directory %s: %s\n", pattern.c_str(),
                 std::strerror(errno));
    std::abort();
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  // Not fatal: the test has already passed or failed on its own merits; say what was left.
  if (ec)
    std::fprintf(stderr, "warning: cannot remove temporary directory %s: %s\n", path_.c_str(),
                 ec.message().c_str());
}

const std::string& TempDir::path() const {
  return path_;
}

std::string TempDir::file(std::string_view name) const {
  std::string out = path_;
  out += '/';
  out += name;
  return out;
}

}  // namespace rjit::test
