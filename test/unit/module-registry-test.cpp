// SPDX-License-Identifier: MIT
// Tests for src/client/module-registry: symbols found across a client's modules, and a module
// kept alive only by its owner.
#include "module-registry.h"

#include <gtest/gtest.h>

namespace rjit::detail {
namespace {

using Symbols = std::map<std::string, uint64_t, std::less<>>;

TEST(ModuleRegistryTest, FindsSymbolsAndTheirModule) {
  ModuleRegistry registry;
  Symbols first{{"f", 0x1010}}, second{{"g", 0x2020}};
  auto owner1 = std::make_shared<int>(1), owner2 = std::make_shared<int>(2);
  registry.add({0x1000, 0x1000, &first, owner1});
  registry.add({0x2000, 0x1000, &second, owner2});
  EXPECT_EQ(registry.find("g"),
            std::make_optional(std::make_pair(uint64_t{0x2020}, uint64_t{0x2000})));
  EXPECT_EQ(registry.find("f")->second, 0x1000u);
  EXPECT_EQ(registry.find("h"), std::nullopt);
  registry.remove(0x2000);
  EXPECT_EQ(registry.find("g"), std::nullopt);
}

TEST(ModuleRegistryTest, OwnerIsSharedWhileItLives) {
  ModuleRegistry registry;
  Symbols symbols;
  auto owner = std::make_shared<int>(7);
  registry.add({0x1000, 0x1000, &symbols, owner});
  std::shared_ptr<void> held = registry.owner(0x1000);
  EXPECT_EQ(held, owner);
  held.reset();
  owner.reset();  // the module's handle and state are gone
  EXPECT_EQ(registry.owner(0x1000), nullptr);
  EXPECT_EQ(registry.owner(0x5000), nullptr);
}

}  // namespace
}  // namespace rjit::detail
