// SPDX-License-Identifier: MIT
// `rjit run`'s `main`: which prefixes of (int, char**, char**) it accepts, the exact refusals,
// and the call of each form with its arguments.
#include "program-main.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace rjitd::cli {
namespace {

/// What mainParameterCount refuses a well-formed signature with.
std::string refusal(const std::string& signature) {
  return "'main' has type " + signature +
         "; expected int main(void), int main(int), int main(int, char**) or "
         "int main(int, char**, char**)";
}

TEST(ProgramMain, AcceptsEveryPrefixOfTheHostedForm) {
  struct Case {
    const char* signature;
    size_t count;
  };
  const Case cases[] = {
      {"i32()", 0},
      {"i32(i32)", 1},
      {"i32(i32,ptr)", 2},
      {"i32(i32,ptr,ptr)", 3},
      // signext/zeroext on an int: what targets whose ABI extends it write.
      {"signext i32(signext i32,ptr)", 2},
  };
  for (const Case& c : cases) {
    auto result = mainParameterCount(c.signature);
    ASSERT_TRUE(std::holds_alternative<size_t>(result))
        << c.signature << ": " << std::get<std::string>(result);
    EXPECT_EQ(std::get<size_t>(result), c.count) << c.signature;
  }
}

TEST(ProgramMain, RefusesOtherTypesWithTheAcceptedForms) {
  const char* refused[] = {
      "i32(i32,ptr,ptr,ptr)",  // a fourth parameter
      "i32(ptr)",              // argv without argc
      "i32(i64)",              // argc of the wrong width
      "i32(i32,i32)",          // argv not a pointer
      "i32(i32,ptr,double)",   // envp not a pointer
      "i32(...)",              // variadic
      "i32(i32,...)",          // variadic after argc
      "i64()",                 // a result other than int
      "void()",                // no result
      "i32({ i32, i32 })",     // a type the parser keeps as Other
  };
  for (const char* signature : refused) {
    auto result = mainParameterCount(signature);
    ASSERT_TRUE(std::holds_alternative<std::string>(result)) << signature;
    EXPECT_EQ(std::get<std::string>(result), refusal(signature));
  }
}

TEST(ProgramMain, SaysWhyASignatureDoesNotParse) {
  auto result = mainParameterCount("i32(i32");
  ASSERT_TRUE(std::holds_alternative<std::string>(result));
  EXPECT_EQ(std::get<std::string>(result),
            "'main' has an unreadable type: malformed IR signature 'i32(i32' at offset 7: "
            "expected ')'");
}

int mainOfNone() {
  return 40;
}
int mainOfArgc(int argc) {
  return 41 + argc;
}
int mainOfArgv(int argc, char** argv) {
  return argc == 2 && std::strcmp(argv[1], "two") == 0 && argv[2] == nullptr ? 42 : -1;
}
int mainOfEnvp(int argc, char** argv, char** envp) {
  return argc == 2 && std::strcmp(argv[0], "one") == 0 && std::strcmp(envp[0], "K=V") == 0 &&
                 envp[1] == nullptr
             ? 43
             : -1;
}

TEST(ProgramMain, CallsEachFormWithItsArguments) {
  char one[] = "one", two[] = "two", kv[] = "K=V";
  char* argv[] = {one, two, nullptr};
  char* envp[] = {kv, nullptr};
  EXPECT_EQ(callMain(reinterpret_cast<void*>(&mainOfNone), 0, 2, argv, envp), 40);
  EXPECT_EQ(callMain(reinterpret_cast<void*>(&mainOfArgc), 1, 2, argv, envp), 43);
  EXPECT_EQ(callMain(reinterpret_cast<void*>(&mainOfArgv), 2, 2, argv, envp), 42);
  EXPECT_EQ(callMain(reinterpret_cast<void*>(&mainOfEnvp), 3, 2, argv, envp), 43);
}

}  // namespace
}  // namespace rjitd::cli
