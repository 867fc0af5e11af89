// SPDX-License-Identifier: MIT
// ClientSymbols: one connection's loaded modules, their definitions and remembered process
// symbols.
#include "client-symbols.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rjitd::service {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

linker::ExportedSymbol strong(std::string name, uint64_t address) {
  return {std::move(name), address, true, false};
}
linker::ExportedSymbol weak(std::string name, uint64_t address) {
  return {std::move(name), address, true, true};
}

TEST(ClientSymbolsTest, LoadedModulesDefineTheirSymbols) {
  ClientSymbols symbols;
  uint64_t a = symbols.add("a.ll", 0x10000, {strong("f", 0x10010), weak("w", 0x10020)});
  uint64_t b = symbols.add("b.ll", 0x20000, {strong("g", 0x20010)});
  EXPECT_NE(a, b);
  EXPECT_EQ(symbols.moduleCount(), 2u);
  EXPECT_EQ(symbols.base(b), 0x20000u);
  const auto* f = symbols.find("f");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->address, 0x10010u);
  EXPECT_EQ(f->module, a);
  EXPECT_FALSE(f->weak);
  EXPECT_TRUE(symbols.find("w")->weak);
  EXPECT_EQ(symbols.find("h"), nullptr);
}

TEST(ClientSymbolsTest, ADuplicateStrongSymbolIsRefusedNamingBothModules) {
  ClientSymbols symbols;
  symbols.add("first.ll", 0x10000, {strong("f", 0x10010), strong("g", 0x10020)});
  auto clash =
      symbols.findDuplicates("second.ll", {strong("h", 1), strong("g", 2), strong("f", 3)});
  ASSERT_TRUE(clash);
  EXPECT_EQ(clash->kind, ErrorKind::LinkFailed);
  EXPECT_THAT(clash->duplicates, ElementsAre("f", "g"));
  EXPECT_TRUE(clash->unresolved.empty());
  EXPECT_THAT(clash->message, HasSubstr("first.ll"));
  EXPECT_THAT(clash->message, HasSubstr("second.ll"));
  EXPECT_FALSE(symbols.findDuplicates("third.ll", {strong("h", 1)}));
}

TEST(ClientSymbolsTest, AWeakDefinitionNeitherClashesNorWinsOverAStrongOne) {
  ClientSymbols symbols;
  uint64_t a = symbols.add("a.ll", 0x10000, {weak("w", 0x10010), strong("s", 0x10020)});
  EXPECT_FALSE(symbols.findDuplicates("b.ll", {strong("w", 0x20010), weak("s", 0x20020)}));
  uint64_t b = symbols.add("b.ll", 0x20000, {strong("w", 0x20010), weak("s", 0x20020)});
  EXPECT_EQ(symbols.find("w")->module, b) << "the strong definition replaces the weak one";
  EXPECT_FALSE(symbols.find("w")->weak);
  EXPECT_EQ(symbols.find("s")->module, a) << "a weak one never replaces anything";
  EXPECT_TRUE(symbols.findDuplicates("c.ll", {strong("w", 1)})) << "w is strong now";
}

TEST(ClientSymbolsTest, RemovingAModuleForgetsExactlyItsDefinitions) {
  ClientSymbols symbols;
  uint64_t a = symbols.add("a.ll", 0x10000, {strong("f", 0x10010)});
  uint64_t b = symbols.add("b.ll", 0x20000, {strong("g", 0x20010)});
  symbols.remove(a);
  EXPECT_FALSE(symbols.loaded(a));
  EXPECT_TRUE(symbols.loaded(b));
  EXPECT_EQ(symbols.find("f"), nullptr);
  ASSERT_NE(symbols.find("g"), nullptr);
  EXPECT_EQ(symbols.moduleCount(), 1u);
  EXPECT_FALSE(symbols.findDuplicates("again.ll", {strong("f", 1)})) << "f may be loaded again";
  uint64_t c = symbols.add("again.ll", 0x10000, {strong("f", 0x10010)});
  EXPECT_NE(c, a) << "module ids are not reused";
}

TEST(ClientSymbolsTest, RememberedProcessSymbolsStayWithinTheirLimits) {
  ClientSymbols symbols;
  EXPECT_TRUE(symbols.rememberProcessSymbol("puts", 0x1000, 3, 12));
  EXPECT_FALSE(symbols.rememberProcessSymbol("puts", 0x2000, 3, 12)) << "known already";
  EXPECT_EQ(symbols.processSymbol("puts"), 0x1000u) << "the first answer stays";
  EXPECT_TRUE(symbols.rememberProcessSymbol("malloc", 0x3000, 3, 12));  // 10 bytes of names
  EXPECT_FALSE(symbols.rememberProcessSymbol("free", 0x4000, 3, 12)) << "past the bytes";
  EXPECT_TRUE(symbols.rememberProcessSymbol("ab", 0x5000, 3, 12));  // exactly 12 bytes
  EXPECT_FALSE(symbols.rememberProcessSymbol("x", 0x6000, 4, 12)) << "past the bytes";
  EXPECT_FALSE(symbols.rememberProcessSymbol("y", 0x6000, 3, 100)) << "past the count";
  EXPECT_EQ(symbols.processSymbolCount(), 3u);
  EXPECT_FALSE(symbols.processSymbol("free"));
}

}  // namespace
}  // namespace rjitd::service
