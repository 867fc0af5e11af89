// SPDX-License-Identifier: MIT
// libFuzzer target: the IR signature parser (src/common/ir-signature.*) on arbitrary text. Beyond
// memory errors it checks the parser's contract: whatever parses formats back to text that
// parses to the same signature, and an error's position lies within the text.
#include "ir-signature.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = rjitd::parseIrSignature(text);
  if (auto* error = std::get_if<rjitd::IrSignatureError>(&parsed)) {
    if (error->position > text.size()) {
      fprintf(stderr, "error position %zu past the text's %zu bytes\n", error->position,
              text.size());
      abort();
    }
    (void)error->describe();
    return 0;
  }
  const auto& signature = std::get<rjitd::IrSignature>(parsed);
  std::string formatted = rjitd::formatIrSignature(signature);
  auto again = rjitd::parseIrSignature(formatted);
  auto* reparsed = std::get_if<rjitd::IrSignature>(&again);
  if (reparsed == nullptr || !(*reparsed == signature)) {
    fprintf(stderr, "'%s' formats as '%s', which does not parse back to it\n",
            std::string(text).c_str(), formatted.c_str());
    abort();
  }
  (void)rjitd::describeFunction("f", signature);
  return 0;
}
