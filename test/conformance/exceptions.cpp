// SPDX-License-Identifier: MIT
// Conformance: C++ exceptions thrown and caught across several frames — std::runtime_error, a
// custom hierarchy, rethrow, catch(...), std::exception_ptr, exceptions thrown by libstdc++
// itself, through a function pointer, and RAII destructors running during unwinding.
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Guard {
  explicit Guard(std::string name) : name(std::move(name)) {
    std::cout << "enter " << this->name << '\n';
  }
  ~Guard() { std::cout << "leave " << name << '\n'; }
  std::string name;
};

class AppError : public std::exception {
public:
  explicit AppError(int code) : code_(code), text_("app error " + std::to_string(code)) {}
  const char* what() const noexcept override { return text_.c_str(); }
  int code() const { return code_; }

private:
  int code_;
  std::string text_;
};

class ParseError : public AppError {
public:
  ParseError(int code, int line) : AppError(code), line(line) {}
  int line;
};

int parseDigit(char c, int line) {
  if (c < '0' || c > '9')
    throw ParseError(22, line);
  return c - '0';
}

int level3(int n) {
  Guard g("level3");
  if (n == 1)
    throw std::runtime_error("runtime failure at level 3");
  if (n == 2)
    throw AppError(7);
  if (n == 3)
    return parseDigit('x', 41);
  if (n == 4)
    throw 42;
  return n * 10;
}

int level2(int n) {
  Guard g("level2");
  return level3(n) + 1;
}

int level1(int n) {
  Guard g("level1");
  try {
    return level2(n);
  } catch (const AppError& e) {
    std::cout << "level1 saw '" << e.what() << "', rethrowing\n";
    throw;
  }
}

void callThrough(void (*fn)()) {
  fn();
}
void throwsLogicError() {
  throw std::logic_error("thrown through a function pointer");
}

}  // namespace

int main() {
  int caught = 0;
  for (int n = 0; n <= 4; ++n) {
    std::cout << "-- case " << n << '\n';
    try {
      int result = level1(n);
      std::cout << "result " << result << '\n';
    } catch (const ParseError& e) {
      ++caught;
      std::cout << "ParseError code " << e.code() << " line " << e.line << '\n';
    } catch (const AppError& e) {
      ++caught;
      std::cout << "AppError: " << e.what() << '\n';
    } catch (const std::exception& e) {
      ++caught;
      std::cout << "std::exception: " << e.what() << '\n';
    } catch (...) {
      ++caught;
      std::cout << "unknown exception\n";
    }
  }

  std::vector<int> v{1, 2, 3};
  try {
    std::cout << v.at(10) << '\n';
  } catch (const std::out_of_range&) {
    ++caught;
    std::cout << "out_of_range from vector::at\n";
  }
  try {
    std::cout << std::stoi("not a number") << '\n';
  } catch (const std::invalid_argument&) {
    ++caught;
    std::cout << "invalid_argument from stoi\n";
  }

  std::exception_ptr saved;
  try {
    callThrough(throwsLogicError);
  } catch (...) {
    saved = std::current_exception();
  }
  try {
    if (saved)
      std::rethrow_exception(saved);
  } catch (const std::logic_error& e) {
    ++caught;
    std::cout << "rethrown exception_ptr: " << e.what() << '\n';
  }

  try {
    try {
      throw std::runtime_error("inner");
    } catch (const std::runtime_error& e) {
      std::throw_with_nested(std::runtime_error(std::string("outer wrapping ") + e.what()));
    }
  } catch (const std::runtime_error& e) {
    ++caught;
    std::cout << "caught: " << e.what() << '\n';
    try {
      std::rethrow_if_nested(e);
    } catch (const std::runtime_error& inner) {
      std::cout << "nested: " << inner.what() << '\n';
    }
  }

  std::cerr << "caught " << caught << " exceptions\n";
  return caught == 8 ? 0 : 1;
}
