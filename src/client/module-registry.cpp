// SPDX-License-Identifier: MIT
// A Client's mapped modules (see module-registry.h).
#include "module-registry.h"

namespace rjit::detail {

void ModuleRegistry::add(Entry entry) {
  std::lock_guard<std::mutex> lock(mutex);
  modules[entry.base] = std::move(entry);
}

void ModuleRegistry::remove(uint64_t base) {
  std::lock_guard<std::mutex> lock(mutex);
  modules.erase(base);
}

std::optional<std::pair<uint64_t, uint64_t>> ModuleRegistry::find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex);
  for (const auto& [base, entry] : modules) {
    auto it = entry.symbols->find(name);
    if (it != entry.symbols->end())
      return std::make_pair(it->second, base);
  }
  return std::nullopt;
}

std::shared_ptr<void> ModuleRegistry::owner(uint64_t base) const {
  std::lock_guard<std::mutex> lock(mutex);
  auto it = modules.find(base);
  return it == modules.end() ? nullptr : it->second.owner.lock();
}

}  // namespace rjit::detail
