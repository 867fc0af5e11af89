// SPDX-License-Identifier: MIT
// `rjit run`: which forms of a C program's `main` it calls, and the call itself.
#include "program-main.h"

#include "ir-signature.h"

#include <cassert>
#include <iterator>

namespace rjitd::cli {

std::variant<size_t, std::string> mainParameterCount(std::string_view signature) {
  auto parsed = parseIrSignature(signature);
  if (auto* error = std::get_if<IrSignatureError>(&parsed))
    return "'main' has an unreadable type: " + error->describe();
  const IrSignature& type = std::get<IrSignature>(parsed);
  // C's hosted forms (C11 5.1.2.2.1) and their prefixes, which compilers accept too: the
  // parameters a main declares are a prefix of (int, char**, char**).
  const IrType forms[] = {IrType::integer(32), IrType::pointer(), IrType::pointer()};
  bool accepted = type.result.kind == IrType::Kind::Integer && type.result.bits == 32 &&
                  !type.variadic && type.params.size() <= std::size(forms);
  for (size_t i = 0; accepted && i < type.params.size(); ++i) {
    const IrType& param = type.params[i];
    // An int may carry signext/zeroext on targets whose ABI extends it (not x86-64 or AArch64).
    accepted = param.kind == forms[i].kind && param.bits == forms[i].bits;
  }
  if (!accepted)
    return "'main' has type " + std::string(signature) +
           "; expected int main(void), int main(int), int main(int, char**) or "
           "int main(int, char**, char**)";
  return type.params.size();
}

int callMain(void* address, size_t count, int argc, char** argv, char** envp) {
  // Each form through its own function type: calling a function through a pointer of another
  // type is undefined, even where the C ABI would forgive extra arguments.
  switch (count) {
  case 0: return reinterpret_cast<int (*)()>(address)();
  case 1: return reinterpret_cast<int (*)(int)>(address)(argc);
  case 2: return reinterpret_cast<int (*)(int, char**)>(address)(argc, argv);
  case 3: return reinterpret_cast<int (*)(int, char**, char**)>(address)(argc, argv, envp);
  default: break;
  }
  assert(false && "callMain with a parameter count mainParameterCount does not give");
  return 1;
}

}  // namespace rjitd::cli
