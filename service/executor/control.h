// SPDX-License-Identifier: MIT
// The executor's `Control` server (ipc/executor/executor.capnp): the modules loaded into this
// process, calls by IR signature into them, a program's main, and the client's shared segment.
#pragma once

#include "connection.h"
#include "executor.capnp.h"
#include "process-loader.h"
#include "rpc-load.h"
#include "status-page.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace rjitd::executor {

/// The client's shared segment as mapped here (MAP_SHARED, read-write); unmapped on
/// destruction.
class SegmentMapping final {
public:
  SegmentMapping(void* base, uint64_t size) : base_(base), size_(size) {}
  ~SegmentMapping();
  SegmentMapping(const SegmentMapping&) = delete;
  SegmentMapping& operator=(const SegmentMapping&) = delete;
  char* base() const { return static_cast<char*>(base_); }
  uint64_t size() const { return size_; }

private:
  void* base_;
  uint64_t size_;
};

/// Serves rjitd on the executor's channel; lives on the one (event loop) thread, which is also
/// the thread user code runs on. Owned by the RPC system as this side's bootstrap.
class ControlServer final : public proto::executor::Control::Server {
public:
  /// `page`, `loader` and `processLoader` outlive this object.
  ControlServer(StatusPage& page, rjit::detail::RpcLoader& loader,
                rjit::detail::ProcessLoader& processLoader);
  ~ControlServer();

  /// The connection to rjitd loads go over, once its handshake has succeeded; it owns this
  /// object (through its RPC system), so it outlives it. Set once. rjitd may send Control.load
  /// before the executor's own hello is answered: loads wait for this.
  void setConnection(rjit::detail::Connection& connection);

  kj::Promise<void> load(LoadContext context) override;
  kj::Promise<void> unload(UnloadContext context) override;
  kj::Promise<void> call(CallContext context) override;
  kj::Promise<void> run(RunContext context) override;
  kj::Promise<void> attachSegment(AttachSegmentContext context) override;

private:
  struct LoadedModule {
    std::shared_ptr<rjit::Module::State> state;
    uint64_t imageId = 0;  ///< RpcLoader::release() it once unloaded
  };

  /// The module `id` names; rjitd only names modules it loaded and has not unloaded.
  LoadedModule& module(uint64_t id);
  /// Unloads every module: their destructors run (user code).
  void unloadAll();
  kj::Promise<void> loadNow(LoadContext context);

  StatusPage& page;
  rjit::detail::RpcLoader& loader;
  rjit::detail::ProcessLoader& processLoader;
  rjit::detail::Connection* connection = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> connected;
  kj::ForkedPromise<void> handshake = nullptr;
  std::map<uint64_t, LoadedModule> modules;
  uint64_t nextId = 1;
  std::unique_ptr<SegmentMapping> segment;
  /// NAME=VALUE strings a run put into the environment (putenv keeps pointers to them).
  std::vector<std::string> environment;
};

}  // namespace rjitd::executor
