// SPDX-License-Identifier: MIT
// Mapping into this process, the client's half of the fast path: reserving address space for
// rjitd to link into, checking and mapping a linked image there with its final protections, and
// starting and stopping it (unwind info, constructors, destructors). No LLVM, no Cap'n Proto:
// plain POSIX and the C/C++ runtime.
//
// Mechanisms, and why:
//  - The reservation is anonymous PROT_NONE MAP_NORESERVE memory: it costs no memory, keeps
//    other mappings out of the range rjitd links for, and its size is the client's quota.
//  - Segments are mapped from the image's memfd with MAP_FIXED over the reservation: code
//    PROT_READ|PROT_EXEC and read-only data PROT_READ as MAP_SHARED (the pages are shared with
//    rjitd's image and every mapping of it; the seal guarantees nobody can write them), writable
//    data PROT_READ|PROT_WRITE as MAP_PRIVATE (copy-on-write: the process's writes stay its
//    own). No page is ever writable and executable, and nothing is mprotect()ed to executable,
//    so this works under MemoryDenyWriteExecute-style policies and with a noexec /dev/shm.
//  - Unwind info is registered with libgcc's __register_frame, which the C++ runtime's unwinder
//    consults for PCs outside any loaded ELF object, so exceptions cross JIT and host frames.
//  - Destructors registered with __cxa_atexit against the module's __dso_handle (rjitd sets it
//    to the image base) run at unload through glibc's __cxa_finalize(base), as for a dlclose.
#pragma once

#include "result.h"

#include <cstdint>
#include <kj/io.h>
#include <memory>
#include <mutex>
#include <vector>

namespace rjit::detail {

/// A PROT_NONE reservation of address space that images are linked for. Unmapped when the last
/// owner (the connection that uses it, the images in it) lets go.
class Arena final {
  struct Token {
    explicit Token() = default;
  };

public:
  /// Reserves `size` bytes (rounded up to pages); fails with Error(Load) when the kernel
  /// refuses.
  static Result<std::shared_ptr<Arena>> create(uint64_t size);
  /// For create() only (the Token is private).
  Arena(Token, uint64_t base, uint64_t size) : base_(base), size_(size) {}
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  uint64_t base() const { return base_; }
  uint64_t size() const { return size_; }
  static uint64_t pageSize();

  /// Returns [address, address+size) to the reservation (PROT_NONE again); true on success.
  bool clear(uint64_t address, uint64_t size) const;

private:
  uint64_t base_ = 0;
  uint64_t size_ = 0;
};

/// Segment protection bits, as rjit.capnp's protectionRead/Write/Execute (rpc-load.cpp checks).
enum : uint8_t { SEGMENT_READ = 1, SEGMENT_WRITE = 2, SEGMENT_EXECUTE = 4 };

struct SegmentSpec {
  uint64_t address = 0, offset = 0, size = 0;
  uint8_t protection = 0;  // 1 read | 2 write | 4 execute
};

struct ImageSpec {
  uint64_t base = 0, size = 0;
  std::vector<SegmentSpec> segments;
  std::vector<uint64_t> initializers, finalizers;
  uint64_t ehFrameAddress = 0, ehFrameSize = 0;
};

/// Checks what rjitd said about an image against the reservation it must lie in (`arenaBase`,
/// `arenaSize`, pages of `pageSize`): the image lies inside it, segments lie inside the image
/// without overlapping and are never writable and executable, constructors and destructors
/// point into code, the unwind info into the image. Fails with Error(Load) saying what is wrong.
Result<Done> checkImage(const ImageSpec& spec, uint64_t arenaBase, uint64_t arenaSize,
                        uint64_t pageSize);

/// A linked image mapped into this process. start() runs its constructors; the destructor (or
/// stop()) runs its destructors, unregisters its unwind info and returns its range to the arena.
class MappedImage final {
  struct Token {
    explicit Token() = default;
  };

public:
  /// Maps `spec`'s segments from `fd` (the sealed image file; not taken over) inside `arena`,
  /// after checking the spec (checkImage) and that the file is sealed and large enough. Fails
  /// with Error(Load) saying what failed; nothing stays mapped then.
  static Result<std::unique_ptr<MappedImage>> create(std::shared_ptr<Arena> arena, int fd,
                                                     ImageSpec spec);
  /// For create() only (the Token is private): takes over the mapped image.
  MappedImage(Token, std::shared_ptr<Arena> arena, ImageSpec spec);
  ~MappedImage();
  MappedImage(const MappedImage&) = delete;
  MappedImage& operator=(const MappedImage&) = delete;

  /// Registers unwind info and runs the static constructors, in the calling thread.
  void start();
  /// Runs destructors (__cxa_atexit handlers of the module, then fini tables) once; later calls
  /// and the destructor do nothing more. Also run for every started image at process exit.
  void stop();

  uint64_t base() const { return spec.base; }
  uint64_t size() const { return spec.size; }

private:
  std::shared_ptr<Arena> arena;
  ImageSpec spec;
  // start/stop may race with the exit handler; recursive because user code they run may call
  // exit(), whose handler stops this image again on the same thread.
  std::recursive_mutex mutex;
  bool started = false, stopped = false, framesRegistered = false;
};

/// The base of the image mapped in this process that contains `address`, or 0.
uint64_t mappedImageContaining(uint64_t address);

/// An image received over TCP, piece by piece, into a memfd of its own; sealed when complete.
class ImageFile final {
  struct Token {
    explicit Token() = default;
  };

public:
  /// A memfd of `size` bytes; fails with Error(Load).
  static Result<std::unique_ptr<ImageFile>> create(uint64_t size);
  /// For create() only (the Token is private).
  ImageFile(Token, kj::AutoCloseFd fd, uint64_t size) : fd(kj::mv(fd)), size(size) {}
  ImageFile(const ImageFile&) = delete;
  ImageFile& operator=(const ImageFile&) = delete;
  /// Writes `n` bytes at `offset`; fails with Error(Load), also for bytes beyond the end.
  Result<Done> write(uint64_t offset, const void* bytes, size_t n);
  /// Seals the file and hands over its descriptor; the file is spent then. Fails with
  /// Error(Load).
  Result<kj::AutoCloseFd> finish();

private:
  kj::AutoCloseFd fd;
  uint64_t size;
};

}  // namespace rjit::detail
