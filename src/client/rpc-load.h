// SPDX-License-Identifier: MIT
// Loading over RPC, on the client's I/O thread: the `load` request, the SymbolResolver
// capability that answers rjitd's questions about this process's symbols, and fetching the
// linked image (its memfd over a Unix socket, its bytes over TCP). Mapping the image into this
// process is process-loader.h's job, on the caller's thread.
#pragma once

#include "client-config.h"
#include "connection.h"
#include "hash-worker.h"
#include "image-mapper.h"
#include "module-registry.h"
#include "remotejit/client.h"
#include "result.h"

#include <cstdint>
#include <kj/async.h>
#include <kj/io.h>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace rjit::detail {

/// This process's architecture as a target name: what loads are linked for, and the target of
/// an executor whose caller names none (a remote run then behaves as a local one).
#if defined(__x86_64__)
inline constexpr const char* HOST_TARGET = "x86_64";
#elif defined(__aarch64__)
inline constexpr const char* HOST_TARGET = "aarch64";
#else
#error "libremotejit-client loads code for x86_64 and AArch64 hosts only"
#endif

/// What a load brings back to the calling thread, which maps and starts the image.
struct LoadedParts {
  kj::AutoCloseFd fd;  ///< the sealed image file
  ImageSpec spec;
  std::shared_ptr<Arena> arena;
  std::vector<std::pair<std::string, uint64_t>> symbols;
  CompiledObject object;
  uint64_t linkMicros = 0;
  uint64_t imageId = 0;  ///< RpcLoader::release() this when the module is unloaded
  /// Bases of modules of this client it links against (rjitd's list and the resolver's).
  std::vector<uint64_t> dependencies;
};

/// What rjitd's answer to a load says, before anything is fetched or mapped: the image's layout
/// (not checked yet: MappedImage::create() does that, checkImage()), its symbols and its object,
/// with `resolverDependencies` (the bases this client's resolver named) ahead of rjitd's list.
/// The arena, the image file and its id are the caller's to fill in. Fails with what
/// toCompiledObject() refuses; a malformed message throws (kj), as any read of a response does.
Result<LoadedParts> toLoadedParts(proto::LoadedModule::Reader ok,
                                  const std::vector<uint64_t>& resolverDependencies);

/// What one load carries to each of its attempts (a call may be retried).
struct LoadCall {
  const CompileRequest& request;
  /// Shared with the resolver rjitd calls back, which may outlive the attempt.
  std::shared_ptr<const LoadOptions> options;
  /// The client's modules; outlives the I/O thread, and so every resolver.
  const ModuleRegistry& modules;
};

/// Runs loads on connections and keeps the capabilities of the images they brought, whose
/// release tells rjitd to free what it keeps for them. Lives on the client's I/O thread.
class RpcLoader final {
public:
  /// `config` and `hasher` outlive this object.
  RpcLoader(const Config& config, HashWorker& hasher) : config(config), hasher(hasher) {}
  RpcLoader(const RpcLoader&) = delete;
  RpcLoader& operator=(const RpcLoader&) = delete;

  /// One attempt of `call` on `connection`, which must outlive the promise: checks the target
  /// and size, asks by key first for a large module (then sends it whole on a miss), and fetches
  /// the image. Failures are values; a broken connection rejects (DISCONNECTED) so that the
  /// caller may retry.
  kj::Promise<Result<LoadedParts>> loadOn(Connection& connection, const LoadCall& call);

  /// One load of the cached object with `key` on `connection` (which must outlive the
  /// promise), sending no module bytes: `call.request.module` is ignored. For an executor,
  /// whose rjitd put the object in its cache just before. Checks the target as loadOn() does;
  /// a key rjitd does not hold is Error(NotFound). A broken connection rejects (DISCONNECTED).
  kj::Promise<Result<LoadedParts>> loadByKeyOn(Connection& connection, const LoadCall& call,
                                               const rjitd::cache::Key& key);

  /// Drops the capability of an unloaded image: rjitd frees what it kept for it.
  void release(uint64_t imageId);
  /// Drops every image's capability (the client is closing).
  void releaseAll();

private:
  /// The host's target among those `connection` serves, after checking that `request` asks
  /// for it (or for none); else the error.
  Result<const rjitd::TargetName*> hostTarget(Connection& connection,
                                              const CompileRequest& request);
  kj::Promise<Result<LoadedParts>> sendLoad(Connection& connection, const LoadCall& call,
                                            const rjitd::TargetName& target,
                                            const rjitd::cache::Key* key);
  kj::Promise<Result<LoadedParts>> takeImage(Connection& connection,
                                             proto::LoadedImage::Client image, LoadedParts parts,
                                             uint64_t readLimit);
  kj::Promise<Result<Done>> readImage(proto::LoadedImage::Client image,
                                      std::shared_ptr<ImageFile> file, uint64_t offset,
                                      uint64_t size, uint64_t readLimit);

  const Config& config;
  HashWorker& hasher;
  /// Capabilities of loaded images, by id; dropping one unloads the image in rjitd.
  std::map<uint64_t, proto::LoadedImage::Client> images;
  uint64_t nextImage = 1;
};

}  // namespace rjit::detail
