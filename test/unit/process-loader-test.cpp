// SPDX-License-Identifier: MIT
// Tests for src/client/process-loader: a load's parts become a mapped module registered in the
// Client's one registry, which a module may outlive; modules it links against stay loaded.
#include "process-loader.h"

#include <gtest/gtest.h>

namespace rjit::detail {
namespace {

template <typename T> T valueOf(Result<T>&& result) {
  if (Error* error = failed(result)) {
    ADD_FAILURE() << error->what();
    return T();
  }
  return std::get<T>(std::move(result));
}

/// What a load of a one-page, read-only image defining `symbol` (at offset 8) brings back; no
/// constructors, so mapping it runs no code. Each part has an arena of its own.
LoadedParts imageParts(const std::string& symbol) {
  uint64_t page = Arena::pageSize();
  LoadedParts parts;
  parts.arena = valueOf(Arena::create(4 * page));
  std::unique_ptr<ImageFile> file = valueOf(ImageFile::create(page));
  if (file != nullptr)
    parts.fd = valueOf(file->finish());
  if (parts.arena != nullptr) {
    parts.spec.base = parts.arena->base();
    parts.spec.size = page;
    parts.spec.segments = {{parts.spec.base, 0, page, SEGMENT_READ}};
    parts.symbols = {{symbol, parts.spec.base + 8}};
  }
  return parts;
}

CompileRequest namedRequest() {
  CompileRequest request;
  request.moduleName = "test.ll";
  return request;
}

TEST(ProcessLoaderTest, RegistersAModuleUntilItGoes) {
  ProcessLoader loader;
  LoadedParts parts = imageParts("answer");
  uint64_t base = parts.spec.base;
  std::shared_ptr<Module::State> state = valueOf(loader.map(std::move(parts), namedRequest()));
  ASSERT_NE(state, nullptr);
  EXPECT_EQ(state->image->base(), base);
  EXPECT_EQ(loader.modules().find("answer"), std::make_optional(std::make_pair(base + 8, base)));
  state.reset();
  EXPECT_EQ(loader.modules().find("answer"), std::nullopt);
}

TEST(ProcessLoaderTest, AModuleLinkedAgainstStaysLoadedWhileItsUserIs) {
  ProcessLoader loader;
  std::shared_ptr<Module::State> lib = valueOf(loader.map(imageParts("helper"), namedRequest()));
  ASSERT_NE(lib, nullptr);
  LoadedParts userParts = imageParts("main");
  userParts.dependencies = {lib->image->base()};
  std::shared_ptr<Module::State> user = valueOf(loader.map(std::move(userParts), namedRequest()));
  ASSERT_NE(user, nullptr);
  lib.reset();  // the library's handle is gone; its user still holds it
  EXPECT_NE(loader.modules().find("helper"), std::nullopt);
  user.reset();
  EXPECT_EQ(loader.modules().find("helper"), std::nullopt);
}

TEST(ProcessLoaderTest, AModuleUnloadedMeanwhileFailsTheLoad) {
  ProcessLoader loader;
  LoadedParts parts = imageParts("main");
  parts.dependencies = {Arena::pageSize()};  // no module of this loader lives there
  Result<std::shared_ptr<Module::State>> result = loader.map(std::move(parts), namedRequest());
  ASSERT_NE(failed(result), nullptr);
  EXPECT_EQ(failed(result)->kind(), ErrorKind::Load);
  EXPECT_EQ(loader.modules().find("main"), std::nullopt);
}

TEST(ProcessLoaderTest, AModuleMayOutliveItsLoader) {
  auto loader = std::make_unique<ProcessLoader>();
  std::shared_ptr<Module::State> state = valueOf(loader->map(imageParts("answer"), namedRequest()));
  ASSERT_NE(state, nullptr);
  loader.reset();  // the Client, and with it the registry, goes first
  EXPECT_TRUE(state->registry.expired());
  state.reset();  // unmaps without touching the registry
}

}  // namespace
}  // namespace rjit::detail
