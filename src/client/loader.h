// SPDX-License-Identifier: MIT
// The client's half of the fast path: reserving address space for rjitd to link into, mapping a
// linked image there with its final protections, and starting and stopping it (unwind info,
// constructors, destructors). No LLVM, no Cap'n Proto: plain POSIX and the C/C++ runtime.
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

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rjit::detail {

/// A PROT_NONE reservation of address space that images are linked for. Unmapped when the last
/// owner (the connection that uses it, the images in it) lets go.
class Arena final {
public:
  /// Reserves `size` bytes (rounded up to pages); throws Error(Load) when the kernel refuses.
  explicit Arena(uint64_t size);
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

/// Segment protection bits, as rjit.capnp's protectionRead/Write/Execute (load.cpp checks).
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

/// A linked image mapped into this process. start() runs its constructors; the destructor (or
/// stop()) runs its destructors, unregisters its unwind info and returns its range to the arena.
class MappedImage final {
public:
  /// Maps `spec`'s segments from `fd` (the sealed image file; not taken over) inside `arena`,
  /// after checking everything rjitd said against the file and the reservation: the file is
  /// sealed and large enough, segments lie inside the image without overlapping and are never
  /// writable and executable, constructors and destructors point into code, the unwind info
  /// into the image. Throws Error(Load) saying what failed; nothing stays mapped then.
  MappedImage(std::shared_ptr<Arena> arena, int fd, ImageSpec spec);
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

/// An image received over TCP, piece by piece, into a memfd of its own; sealed when complete.
class ImageFile final {
public:
  /// Throws Error(Load).
  explicit ImageFile(uint64_t size);
  ~ImageFile();
  ImageFile(const ImageFile&) = delete;
  ImageFile& operator=(const ImageFile&) = delete;
  /// Throws Error(Load).
  void write(uint64_t offset, const void* bytes, size_t size);
  /// Seals the file and hands over its descriptor (the caller closes it). Throws Error(Load).
  int finish();

private:
  int fd = -1;
  uint64_t size;
};

/// All modules this client has mapped, by base address: for symbols one module takes from
/// another (the resolver answers from here, also after rjitd restarted), and for keeping a
/// module loaded while another one uses it. Thread-safe.
class ModuleRegistry final {
public:
  struct Entry {
    uint64_t base = 0, size = 0;
    const std::map<std::string, uint64_t, std::less<>>* symbols = nullptr;  // owned by owner
    std::weak_ptr<void> owner;
  };
  void add(Entry entry);
  void remove(uint64_t base);
  /// The address of `name` in a loaded module and that module's base.
  std::optional<std::pair<uint64_t, uint64_t>> find(const std::string& name) const;
  /// Shares ownership of the module at `base`; null when it is gone.
  std::shared_ptr<void> owner(uint64_t base) const;

private:
  mutable std::mutex mutex;
  std::map<uint64_t, Entry> modules;
};

/// The address of a process symbol for JIT code, and whether it stays valid for the life of the
/// process.
struct ProcessSymbol {
  uint64_t address = 0;  ///< 0: unknown
  bool stable = false;
};

/// The address of `name` in this process for JIT code: `atexit` (which glibc does not export:
/// it lives in libc_nonshared.a) is our own that files the handler under the module it comes
/// from; everything else is dlsym(RTLD_DEFAULT). The object that defines it is pinned
/// (RTLD_NODELETE): loaded code keeps pointers into it, so it must never be unloaded, and rjitd
/// may then reuse the answer for this connection's later loads (`stable`). Not stable when the
/// object cannot be found or pinned (the answer is still right for this load).
ProcessSymbol processSymbol(const std::string& name);

}  // namespace rjit::detail
