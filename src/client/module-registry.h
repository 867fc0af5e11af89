// SPDX-License-Identifier: MIT
// The modules one Client has mapped, by base address: for symbols one module takes from another
// (the resolver answers from here, also after rjitd restarted), and for keeping a module loaded
// while another one uses it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace rjit::detail {

/// Owned by the Client (its ProcessLoader); thread-safe.
class ModuleRegistry final {
public:
  struct Entry {
    uint64_t base = 0, size = 0;
    const std::map<std::string, uint64_t, std::less<>>* symbols = nullptr;  // owned by owner
    std::weak_ptr<void> owner;
  };
  ModuleRegistry() = default;
  ModuleRegistry(const ModuleRegistry&) = delete;
  ModuleRegistry& operator=(const ModuleRegistry&) = delete;

  /// Registers a mapped module; its symbols stay the owner's and must outlive the entry.
  void add(Entry entry);
  void remove(uint64_t base);
  /// The address of `name` in a registered module and that module's base; nullopt when none
  /// defines it.
  std::optional<std::pair<uint64_t, uint64_t>> find(const std::string& name) const;
  /// Shares ownership of the module at `base`; null when it is gone.
  std::shared_ptr<void> owner(uint64_t base) const;

private:
  mutable std::mutex mutex;
  std::map<uint64_t, Entry> modules;
};

}  // namespace rjit::detail
