// SPDX-License-Identifier: MIT
// Loading into this process, on the caller's thread: a load's parts (rpc-load.h) become a
// mapped, started Module, registered in the Client's one ModuleRegistry, and a Module tells the
// Client's I/O thread when its image is gone.
#pragma once

#include "image-mapper.h"
#include "module-registry.h"
#include "remotejit/client.h"
#include "result.h"
#include "rpc-load.h"

#include <cstdint>
#include <kj/async.h>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace rjit::detail {

/// How a Module, which may outlive its Client, tells the Client's I/O thread that its image is
/// gone. Opened by the I/O thread once it runs, closed before it stops. Thread-safe.
class ReleaseChannel final {
public:
  /// `executor` and `loader` stay valid until close().
  void open(const kj::Executor& executor, RpcLoader& loader);
  /// Later releases do nothing: the connection's end frees the images in rjitd.
  void close();
  /// Has the I/O thread drop image `id`'s capability (best effort).
  void release(uint64_t id);

private:
  std::mutex mutex;
  const kj::Executor* executor = nullptr;  // guarded by mutex; null while closed
  RpcLoader* loader = nullptr;             // guarded by mutex
};

class ProcessLoader;

}  // namespace rjit::detail

namespace rjit {

// Hidden although nested in an exported class: nothing of it is public API.
struct __attribute__((visibility("hidden"))) Module::State {
  std::unique_ptr<detail::MappedImage> image;  ///< null only while being built
  std::map<std::string, uint64_t, std::less<>> symbols;
  CompiledObject object;
  uint64_t linkMicros = 0;
  std::shared_ptr<detail::ReleaseChannel> channel;
  uint64_t imageId = 0;
  /// The Client's registry, once this module is in it; it may be gone before the module.
  std::weak_ptr<detail::ModuleRegistry> registry;
  /// Modules this one links against: they stay loaded as long as this one is (their handles
  /// may be gone), and are unloaded after it.
  std::vector<std::shared_ptr<void>> dependencies;

  ~State();
};

}  // namespace rjit

namespace rjit::detail {

/// Maps what loads bring into this process and owns the Client's one ModuleRegistry.
class ProcessLoader final {
public:
  ProcessLoader() = default;
  ProcessLoader(const ProcessLoader&) = delete;
  ProcessLoader& operator=(const ProcessLoader&) = delete;

  /// The modules mapped so far, for the resolver rjitd asks (valid as long as this object).
  const ModuleRegistry& modules() const { return *registry; }
  ReleaseChannel& channel() { return *channel_; }

  /// Maps `parts`' image, runs its static constructors in the calling thread and registers the
  /// module. Fails with Error(Load) when the image cannot be mapped or a module it links
  /// against was unloaded meanwhile; rjitd is told to free the image then.
  Result<std::shared_ptr<Module::State>> map(LoadedParts parts, const CompileRequest& request);

private:
  /// The one strong owner: Modules, which may outlive the Client, hold weak references.
  std::shared_ptr<ModuleRegistry> registry = std::make_shared<ModuleRegistry>();
  std::shared_ptr<ReleaseChannel> channel_ = std::make_shared<ReleaseChannel>();
};

}  // namespace rjit::detail
