// SPDX-License-Identifier: MIT
// libFuzzer target: typed arguments of calls by IR signature. The input's first line is an IR
// signature; what follows is either argument literals, one per line, as `rjit call` takes them
// (src/marshal: parseArguments, parseLiteral, checkFits, formatValue), or, when the first byte
// is '#', a Cap'n Proto CallRequest checked by the daemon before it reaches an executor
// (service/execute-service.h checkCallArguments). Besides memory errors it checks that every
// value parseArguments makes fits its parameter (checkFits) and prints.
#include "call.h"
#include "execute-service.h"
#include "fuzz-message.h"
#include "ir-signature.h"
#include "value.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <kj/exception.h>
#include <string>
#include <string_view>
#include <vector>

namespace {

using rjitd::IrSignature;

void literals(std::string_view symbol, const IrSignature& signature, std::string_view rest) {
  std::vector<std::string> lines;
  while (!rest.empty() && lines.size() < 64) {
    size_t end = rest.find('\n');
    lines.emplace_back(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  }
  // Each literal against each parameter type on its own, as `rjit call` reports one at a time.
  for (const auto& type : signature.params) {
    if (!rjitd::marshal::isMarshalled(type))
      continue;  // parseArguments refuses the call first (checkCallable)
    for (const auto& line : lines) {
      auto value = rjitd::marshal::parseLiteral(line, type);
      if (auto* v = std::get_if<rjitd::marshal::Value>(&value)) {
        if (auto problem = rjitd::marshal::checkFits(*v, type)) {
          fprintf(stderr, "parseLiteral('%s') made a value that does not fit %s: %s\n",
                  line.c_str(), rjitd::formatIrType(type).c_str(), problem->c_str());
          abort();
        }
        (void)rjitd::marshal::formatValue(*v);
      }
    }
  }
  auto parsed = rjitd::marshal::parseArguments(symbol, signature, lines);
  if (auto* values = std::get_if<std::vector<rjitd::marshal::Value>>(&parsed)) {
    for (size_t i = 0; i < values->size(); ++i) {
      if (rjitd::marshal::checkFits((*values)[i], signature.params[i])) {
        fprintf(stderr, "parseArguments made argument %zu that does not fit\n", i);
        abort();
      }
    }
  }
}

void wire(std::string_view symbol, const IrSignature& signature, const uint8_t* data, size_t size) {
  auto words = rjitd::fuzz::toWords(data, size);
  // Malformed messages throw kj exceptions, which rjitd's RPC edge turns into invalid-request
  // answers: expected here, not a finding.
  kj::runCatchingExceptions([&]() {
    capnp::FlatArrayMessageReader reader(words, rjitd::fuzz::fuzzReaderOptions());
    auto request = reader.getRoot<rjitd::proto::CallRequest>();
    (void)rjitd::service::checkCallArguments(symbol, signature, request.getArguments(), 1u << 20,
                                             uint64_t{1} << 16, 1u << 22);
    (void)rjitd::service::checkCallArguments(symbol, signature, request.getArguments(), 1u << 20,
                                             std::nullopt);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  bool wireMode = !input.empty() && input[0] == '#';
  if (wireMode)
    input.remove_prefix(1);
  size_t end = input.find('\n');
  if (end == std::string_view::npos)
    return 0;
  auto parsed = rjitd::parseIrSignature(input.substr(0, end));
  auto* signature = std::get_if<IrSignature>(&parsed);
  if (signature == nullptr)
    return 0;
  std::string_view rest = input.substr(end + 1);
  if (wireMode)
    wire("f", *signature, reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
  else
    literals("f", *signature, rest);
  return 0;
}
