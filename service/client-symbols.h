// SPDX-License-Identifier: MIT
// The symbol tables of one client connection: the modules it has loaded, the symbols they
// define, and the process symbols the client called stable.
#pragma once

#include "linker.h"

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace rjitd::service {

/// What one connection's loaded modules define, so that a later module links against an
/// earlier one, plus the process symbols (libc, the program's own) the client answered as
/// stable, so that later loads need not ask again. Invariants: every definition belongs to a
/// loaded module; a name has at most one strong definition; the remembered process symbols
/// stay within the limits given to rememberProcessSymbol(). Event-loop thread only.
class ClientSymbols final {
public:
  struct Definition {
    uint64_t address = 0;
    uint64_t module = 0;  ///< the id add() returned
    bool weak = false;
  };

  ClientSymbols() = default;
  ClientSymbols(const ClientSymbols&) = delete;
  ClientSymbols& operator=(const ClientSymbols&) = delete;

  /// The definition loaded modules give `name`, or null.
  const Definition* find(const std::string& name) const;

  /// The address the client called stable for process symbol `name`, if it did.
  std::optional<uint64_t> processSymbol(const std::string& name) const;

  /// Remembers a process symbol the client called stable, unless that would take the table
  /// past `maxSymbols` names or `maxBytes` bytes of names (then the client is asked again next
  /// time), or the name is known already. Returns whether it was added.
  bool rememberProcessSymbol(const std::string& name, uint64_t address, uint32_t maxSymbols,
                             uint64_t maxBytes);
  size_t processSymbolCount() const { return processSymbols.size(); }

  /// A LinkFailed LinkError when a strong definition in `symbols` clashes with a strong one of
  /// a loaded module: it names both modules, the first clashing symbol, and all of them in
  /// `duplicates`. nullopt when `moduleName`'s symbols can be added.
  std::optional<linker::LinkError>
  findDuplicates(const std::string& moduleName,
                 const std::vector<linker::ExportedSymbol>& symbols) const;

  /// Adds a module loaded at `base` with its symbols and returns its id. A strong definition
  /// replaces a weak one; a weak one never replaces anything. `symbols` must have passed
  /// findDuplicates() (a clash is a bug here, not bad input).
  uint64_t add(std::string moduleName, uint64_t base,
               const std::vector<linker::ExportedSymbol>& symbols);

  /// Forgets module `module` and every definition it gave.
  void remove(uint64_t module);

  /// Whether module `module` is loaded now.
  bool loaded(uint64_t module) const { return modules.count(module) != 0; }
  /// The base address of loaded module `module` (it must be loaded).
  uint64_t base(uint64_t module) const;
  /// Loaded modules now.
  size_t moduleCount() const { return modules.size(); }

private:
  struct Module {
    std::string name;
    uint64_t base = 0;
  };
  std::unordered_map<std::string, Definition> definitions;
  std::unordered_map<uint64_t, Module> modules;  // loaded now, by id
  uint64_t nextModule = 1;
  std::unordered_map<std::string, uint64_t> processSymbols;
  uint64_t processSymbolBytes = 0;  // of their names
};

}  // namespace rjitd::service
