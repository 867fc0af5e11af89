// SPDX-License-Identifier: MIT
// The `LoadedImage` capability: one module linked for a client, its sealed memfd attached.
#pragma once

#include "linker.h"
#include "worker-pool.h"

#include <cstdint>
#include <kj/memory.h>
#include <memory>
#include <rjit.capnp.h>

namespace rjitd::service {

/// The capability a client holds for one loaded module: the memfd travels attached to it
/// (getFd), `read` serves the bytes over connections that cannot pass descriptors, and its
/// release unloads the module (runs `onRelease`). Event-loop thread only.
class LoadedImage final : public proto::LoadedImage::Server {
public:
  /// `reads` runs the reads (off the event loop: one may copy `maxReadBytes`) and outlives
  /// this object. `onRelease` (the module's bookkeeping: its symbols, its address range, the
  /// totals) is destroyed with this object.
  LoadedImage(linker::LinkedImage image, uint64_t maxReadBytes, WorkerPool& reads,
              kj::Own<void> onRelease);
  ~LoadedImage() noexcept(false);

  kj::Maybe<int> getFd() override;

  /// Rejects (FAILED) a piece that is not inside the image or is larger than maxReadBytes.
  kj::Promise<void> read(ReadContext context) override;

private:
  /// Shared with reads in flight: the client may release the capability while a worker still
  /// reads from the memfd.
  std::shared_ptr<const kj::AutoCloseFd> memfd;
  const uint64_t size;
  const uint64_t maxReadBytes;
  WorkerPool& reads;
  kj::Own<void> onRelease;
};

}  // namespace rjitd::service
