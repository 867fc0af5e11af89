// SPDX-License-Identifier: MIT
// `rjit run`: which forms of a C program's `main` it calls, and the call itself.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

namespace rjitd::cli {

/// How many of (int argc, char** argv, char** envp) the `main` of IR signature `signature`
/// takes: 0 for `int main(void)`, 1 for `int main(int)`, 2 or 3. Anything else (another result
/// type, other parameters, a variadic main, a malformed signature) gives a message saying what
/// `main` is and which forms are accepted.
std::variant<size_t, std::string> mainParameterCount(std::string_view signature);

/// Calls the `main` at `address` with the first `count` (from mainParameterCount) of argc,
/// argv and envp, through a pointer of its own type, and returns its result.
int callMain(void* address, size_t count, int argc, char** argv, char** envp);

}  // namespace rjitd::cli
