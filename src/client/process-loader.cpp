// SPDX-License-Identifier: MIT
// A load's parts become a mapped, started, registered Module (see process-loader.h).
#include "process-loader.h"

#include <kj/exception.h>

namespace rjit {

Module::State::~State() {
  if (auto modules = registry.lock(); modules && image)
    modules->remove(image->base());
  image.reset();  // destructors, unmap
  if (channel)
    channel->release(imageId);
  dependencies.clear();
}

}  // namespace rjit

namespace rjit::detail {

void ReleaseChannel::open(const kj::Executor& executorIn, RpcLoader& loaderIn) {
  std::lock_guard<std::mutex> lock(mutex);
  executor = &executorIn;
  loader = &loaderIn;
}

void ReleaseChannel::close() {
  std::lock_guard<std::mutex> lock(mutex);
  executor = nullptr;
  loader = nullptr;
}

void ReleaseChannel::release(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex);
  if (executor == nullptr)
    return;
  // Best effort, and the exception dropped on purpose: if the I/O thread cannot take the job
  // (it is failing), the connection's end frees the image in rjitd.
  kj::runCatchingExceptions([&] { executor->executeSync([&] { loader->release(id); }); });
}

Result<std::shared_ptr<Module::State>> ProcessLoader::map(LoadedParts parts,
                                                          const CompileRequest& request) {
  auto state = std::make_shared<Module::State>();
  state->channel = channel_;  // from here on, a failure releases the image
  state->imageId = parts.imageId;
  for (uint64_t base : parts.dependencies) {
    std::shared_ptr<void> owner = registry->owner(base);
    if (owner == nullptr)
      return Error(ErrorKind::Load, "a module that " +
                                        (request.moduleName.empty() ? std::string("this module")
                                                                    : request.moduleName) +
                                        " links against was unloaded while it was being loaded; "
                                        "load it again");
    state->dependencies.push_back(std::move(owner));
  }
  state->object = std::move(parts.object);
  state->linkMicros = parts.linkMicros;
  for (auto& [name, address] : parts.symbols)
    state->symbols.emplace(std::move(name), address);
  Result<std::unique_ptr<MappedImage>> image =
      MappedImage::create(parts.arena, parts.fd.get(), std::move(parts.spec));
  if (Error* error = failed(image))
    return std::move(*error);
  state->image = std::get<std::unique_ptr<MappedImage>>(std::move(image));
  parts.fd = nullptr;  // the mappings keep the file; the descriptor is no longer needed
  // Constructors are user code: they run here, on the caller's thread, never on the I/O thread
  // (they may call back into the client).
  state->image->start();
  registry->add(
      {state->image->base(), state->image->size(), &state->symbols, std::weak_ptr<void>(state)});
  state->registry = registry;
  return state;
}

}  // namespace rjit::detail
