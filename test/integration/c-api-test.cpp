// SPDX-License-Identifier: MIT
// The C API (remotejit/remotejit.h) from C: test/unit/c-api-example.c, built as C99 against
// the real client library, run against a real rjitd. It checks its own results and prints
// them; its exit status and output are the contract here.
#include <cstdlib>

#include "fixture.h"

namespace rjit::test {
namespace {

class CApiTest : public DaemonTest {};

TEST_P(CApiTest, CProgramLoadsCallsAndReportsLinkFailure) {
  const char* example = std::getenv("RJIT_C_API_EXAMPLE");
  ASSERT_NE(example, nullptr) << "RJIT_C_API_EXAMPLE is not set (run the tests through meson)";
  auto env = environmentWith({{"RJIT_SERVER", daemon->endpoint()}},
                             {"RJIT_TIMEOUT_MS", "RJIT_HASH_FIRST_BYTES"});
  auto result =
      runCommand(work, {example, genPath("c-api-module.ll"), genPath("c-api-unresolved.ll")}, env);
  EXPECT_TRUE(result.status.exitedWith(0)) << result.status.describe() << "\nstdout:\n"
                                           << result.out << "stderr:\n"
                                           << result.err;
  EXPECT_NE(result.out.find("add=5 scaled=16\n"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("unresolved: link-failed: "), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("no_such_function"), std::string::npos) << result.out;
  EXPECT_TRUE(result.out.ends_with("ok\n")) << result.out;
}

RJIT_INSTANTIATE_DAEMON_MODES(CApiTest);

}  // namespace

}  // namespace rjit::test
