// SPDX-License-Identifier: MIT
// The part of the client that lives on its I/O thread: the connection (made lazily, failing
// over between addresses, remade after a failure), per-call deadlines, the retries after a
// server went away (a broken connection, a restart), and the calls themselves. Everything here
// runs on that one thread.
#pragma once

#include "config.h"
#include "connection.h"
#include "convert.h"
#include "hash-worker.h"
#include "loader.h"

#include <cstdint>
#include <future>
#include <kj/async-io.h>
#include <kj/function.h>
#include <kj/io.h>
#include <map>
#include <memory>
#include <string>

namespace rjit::detail {

/// What a load brings back to the calling thread, which maps and starts the image.
struct LoadedParts {
  kj::AutoCloseFd fd;  ///< the sealed image file
  ImageSpec spec;
  std::shared_ptr<Arena> arena;
  std::vector<std::pair<std::string, uint64_t>> symbols;
  CompiledObject object;
  uint64_t linkMicros = 0;
  uint64_t imageId = 0;  ///< releaseImage() this when the module is unloaded
  /// Bases of modules of this client it links against (rjitd's list and the resolver's).
  std::vector<uint64_t> dependencies;
};

class ClientCore final : private kj::TaskSet::ErrorHandler {
public:
  /// `io` and `config` outlive this object.
  ClientCore(kj::AsyncIoContext& io, const Config& config);
  ~ClientCore();
  ClientCore(const ClientCore&) = delete;
  ClientCore& operator=(const ClientCore&) = delete;

  // Each call below connects if needed and runs within the configured deadline. None rejects:
  // every failure is an Error value.

  kj::Promise<Result<ServerInfo>> serverInfo();
  kj::Promise<Result<ServerStats>> stats();

  /// `request` must outlive the returned promise.
  kj::Promise<Result<CompiledObject>> compile(const CompileRequest& request);

  /// Compiles and links `request` for this process; the image is not mapped yet. `request` must
  /// outlive the returned promise; `options` is shared with the symbol resolver rjitd calls.
  kj::Promise<Result<LoadedParts>> load(const CompileRequest& request,
                                        std::shared_ptr<const LoadOptions> options,
                                        std::shared_ptr<ModuleRegistry> modules);
  /// Drops the capability of an unloaded image: rjitd frees what it kept for it.
  void releaseImage(uint64_t id);

  /// Starts a compile whose outcome settles `promise`.
  void compileAsync(std::shared_ptr<const CompileRequest> request,
                    std::promise<CompiledObject> promise);

  /// Cancels the calls in flight, fails pending compileAsync() futures with
  /// Error(Connection, "client closed") and closes the connection.
  void shutdown();

private:
  template <typename T> struct Call;
  using ConnectionResult = Result<std::shared_ptr<Connection>>;
  using CompileResult = Result<CompiledObject>;

  template <typename T>
  kj::Promise<Result<T>> run(kj::Function<kj::Promise<Result<T>>(Connection&)> op);
  template <typename T> kj::Promise<Result<T>> attempt(Call<T>& call);

  kj::Promise<ConnectionResult> connection();
  /// Tries config.endpoints from `index` on. `handshakeRetried`: the address at `index` has
  /// already been tried again after its server closed a connection during the handshake.
  kj::Promise<ConnectionResult> connectFrom(size_t index, std::string reasons,
                                            bool handshakeRetried);
  void forget(const Connection* connection);
  Error timedOut(const std::string& callAddress, const Connection* connection);

  kj::Promise<CompileResult> compileOn(Connection& connection, const CompileRequest& request);
  /// The cache key of `request`, which must outlive the promise (the hash worker borrows it).
  kj::Promise<rjitd::cache::Key> key(const CompileRequest& request, KeyParams params);
  kj::Promise<CompileResult> lookup(Connection& connection, const CompileRequest& request,
                                    const rjitd::TargetName& target, const rjitd::cache::Key& key);
  kj::Promise<CompileResult> sendCompile(Connection& connection, const CompileRequest& request,
                                         const rjitd::TargetName& target);

  /// What one load() call carries to each attempt (an attempt may be retried).
  struct LoadCall {
    const CompileRequest& request;
    std::shared_ptr<const LoadOptions> options;
    std::shared_ptr<ModuleRegistry> modules;
  };
  kj::Promise<Result<LoadedParts>> loadOn(Connection& connection, const LoadCall& call);
  kj::Promise<Result<LoadedParts>> sendLoad(Connection& connection, const LoadCall& call,
                                            const rjitd::TargetName& target,
                                            const rjitd::cache::Key* key);
  kj::Promise<Result<LoadedParts>> takeImage(Connection& connection,
                                             proto::LoadedImage::Client image, LoadedParts parts,
                                             uint64_t readLimit);
  kj::Promise<Result<bool>> readImage(proto::LoadedImage::Client image,
                                      std::shared_ptr<ImageFile> file, uint64_t offset,
                                      uint64_t size, uint64_t readLimit);

  void settle(uint64_t id, CompileResult&& result);
  kj::Own<kj::TaskSet> newTaskSet();
  void taskFailed(kj::Exception&& exception) override;

  kj::AsyncIoContext& io;
  const Config& config;
  HashWorker hasher;  // destroyed last: joins its thread after every promise on it is gone

  /// The connection new calls use; null until the first call and after a failure.
  std::shared_ptr<Connection> current;
  /// A connect in progress that calls share; each connect has its own generation, so that an
  /// abandoned one (its caller timed out) no longer decides `current`.
  kj::Maybe<kj::ForkedPromise<ConnectionResult>> connecting;
  uint64_t connectGeneration = 0;
  std::string connectingAddress;  // the address being tried, for timeout messages

  std::map<uint64_t, std::promise<CompiledObject>> pending;  // compileAsync() futures
  /// Capabilities of loaded images, by id; dropping one unloads the image in rjitd.
  std::map<uint64_t, proto::LoadedImage::Client> images;
  uint64_t nextImage = 1;
  uint64_t nextPending = 0;
  kj::Own<kj::TaskSet> tasks;  // destroyed first: its tasks use everything above
};

}  // namespace rjit::detail
