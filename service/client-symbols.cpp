// SPDX-License-Identifier: MIT
// One connection's symbol tables (see client-symbols.h).
#include "client-symbols.h"

#include <algorithm>
#include <kj/debug.h>

namespace rjitd::service {

const ClientSymbols::Definition* ClientSymbols::find(const std::string& name) const {
  auto it = definitions.find(name);
  return it == definitions.end() ? nullptr : &it->second;
}

std::optional<uint64_t> ClientSymbols::processSymbol(const std::string& name) const {
  auto it = processSymbols.find(name);
  if (it == processSymbols.end())
    return std::nullopt;
  return it->second;
}

bool ClientSymbols::rememberProcessSymbol(const std::string& name, uint64_t address,
                                          uint32_t maxSymbols, uint64_t maxBytes) {
  if (processSymbols.size() >= maxSymbols || processSymbolBytes > maxBytes ||
      name.size() > maxBytes - processSymbolBytes)
    return false;
  if (!processSymbols.emplace(name, address).second)
    return false;
  processSymbolBytes += name.size();
  return true;
}

std::optional<linker::LinkError>
ClientSymbols::findDuplicates(const std::string& moduleName,
                              const std::vector<linker::ExportedSymbol>& symbols) const {
  std::optional<linker::LinkError> clash;
  for (const auto& symbol : symbols) {
    auto it = definitions.find(symbol.name);
    if (it == definitions.end() || symbol.weak || it->second.weak)
      continue;
    if (!clash)
      clash = linker::LinkError{
          ErrorKind::LinkFailed,
          "cannot load " + moduleName + ": symbol '" + symbol.name + "' is already defined by " +
              modules.at(it->second.module).name +
              ", loaded earlier by this client; unload that module first or rename one of the "
              "definitions",
          {},
          {}};
    clash->duplicates.push_back(symbol.name);
  }
  if (clash)
    std::sort(clash->duplicates.begin(), clash->duplicates.end());
  return clash;
}

uint64_t ClientSymbols::add(std::string moduleName, uint64_t base,
                            const std::vector<linker::ExportedSymbol>& symbols) {
  uint64_t module = nextModule++;
  modules[module] = {std::move(moduleName), base};
  for (const auto& symbol : symbols) {
    auto [it, inserted] =
        definitions.try_emplace(symbol.name, Definition{symbol.address, module, symbol.weak});
    if (inserted || symbol.weak)
      continue;
    KJ_ASSERT(it->second.weak, "two strong definitions of one symbol", symbol.name);
    it->second = {symbol.address, module, false};  // a strong definition wins over a weak one
  }
  return module;
}

void ClientSymbols::remove(uint64_t module) {
  for (auto it = definitions.begin(); it != definitions.end();)
    it = it->second.module == module ? definitions.erase(it) : std::next(it);
  modules.erase(module);
}

uint64_t ClientSymbols::base(uint64_t module) const {
  auto it = modules.find(module);
  KJ_ASSERT(it != modules.end(), "no such loaded module", module);
  return it->second.base;
}

}  // namespace rjitd::service
