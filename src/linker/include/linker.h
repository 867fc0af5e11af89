// SPDX-License-Identifier: MIT
// Links a cached relocatable object for *another* process's address space (the client's, for
// the same-host fast path), with LLVM JITLink, into a sealed memfd the other process maps.
//
// rjitd never executes the code and never needs executable memory: JITLink lays out and
// relocates the sections in a shared-memory file mapped read-write here, at the addresses the
// client reserved; the client maps the file's pages at those addresses with their final
// protections (code read+execute, data read-write copy-on-write).
//
// Why a memfd (see docs/ARCHITECTURE.md, "Same-host fast path"): it has no name in /dev/shm
// (works where /dev/shm is noexec, leaves nothing behind when a process dies), travels over the
// Unix socket with SCM_RIGHTS, and can be sealed so that the client knows rjitd cannot change
// code after the hand-off. Boost.Interprocess cannot map memory executable or seal it, so it is
// not used here.
//
// This header is LLVM-free; linker.cpp keeps LLVM to itself (like the compiler).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "compiled-object.h"

// The daemon's fd owner (kj::AutoCloseFd) here too: the linker runs only inside rjitd, which
// links kj anyway, and its image memfd goes straight to the RPC layer's getFd().
#include <kj/io.h>

namespace rjitd::linker {

/// Protection bits of a segment in the client.
enum Protection : uint8_t { READ = 1, WRITE = 2, EXEC = 4 };

/// One page-aligned piece of the image: `size` bytes at client address `address`, stored at
/// `offset` in the memfd. Never both WRITE and EXEC.
struct Segment {
  uint64_t address = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint8_t protection = 0;
};

struct ExportedSymbol {
  std::string name;
  uint64_t address = 0;
  bool function = false;
  bool weak = false;
};

/// A linked module: the sealed memfd and everything the client needs to map and start it.
struct LinkedImage {
  kj::AutoCloseFd memfd;  ///< sealed (no write, grow, shrink, or new seals); `size` bytes
  uint64_t base = 0;
  uint64_t size = 0;
  std::vector<Segment> segments;
  std::vector<ExportedSymbol> symbols;  ///< global (default-visibility) definitions
  /// Static constructors (`.init_array`, llvm.global_ctors) in the order to run them on load,
  /// and destructors (`.fini_array`, llvm.global_dtors) in the order to run them on unload.
  std::vector<uint64_t> initializers;
  std::vector<uint64_t> finalizers;
  /// The `.eh_frame` section (zero-terminated) to register with the unwinder; 0 when none.
  uint64_t ehFrameAddress = 0;
  uint64_t ehFrameSize = 0;
};

/// A symbol the object references but does not define.
struct Import {
  std::string name;
  bool weak = false;  ///< a weak reference: may stay unresolved (address 0)
};

/// Why a link (or the parse before it) failed, as data: the linker's typed error, LLVM-free.
/// Inside linker.cpp it travels as an llvm::ErrorInfo; the daemon converts it once into its
/// Failure (service/load-service.cpp). The same value describes a module whose symbols clash
/// with an earlier module's, which only the daemon can see (`duplicates`).
struct LinkError {
  /// LinkFailed for the object's own faults (unresolved or duplicate symbols, an object the
  /// linker cannot place or parse), TooLarge when no memory is left for it (the reservation
  /// callback's kind), InvalidRequest for a bad page size, Internal for rjitd's own faults.
  ErrorKind kind = ErrorKind::LinkFailed;
  /// The whole sentence for the user, naming the module (as before the typed error existed).
  std::string message;
  /// Strong imports that nobody resolved, sorted; empty unless the link failed for them.
  std::vector<std::string> unresolved;
  /// Symbols defined both by this module and by one loaded earlier, sorted.
  std::vector<std::string> duplicates;
};

/// Reserves `size` bytes (a multiple of the page size) in the client's address space and
/// returns the start address, or a LinkError saying why not (kind TooLarge for a full quota;
/// a kind other than LinkFailed, whose message link() returns unchanged). Called at most once per
/// link; when the link fails after it, the caller frees the range.
using Reserve = std::function<std::variant<uint64_t, LinkError>(uint64_t size)>;

/// An object parsed for linking: what it imports. Owns the parsed form; link() consumes it.
class PreparedObject final {
public:
  ~PreparedObject();
  PreparedObject(PreparedObject&&) noexcept;
  PreparedObject& operator=(PreparedObject&&) noexcept;

  /// Undefined symbols except those the linker itself defines (`__dso_handle`), sorted.
  const std::vector<Import>& imports() const;

  struct Impl;

private:
  friend std::variant<PreparedObject, LinkError> prepare(std::shared_ptr<const CompiledObject>,
                                                         std::string);
  friend std::variant<LinkedImage, LinkError>
  link(PreparedObject, const std::unordered_map<std::string, uint64_t>&, uint64_t, const Reserve&);
  explicit PreparedObject(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl;
};

/// Whether the linker defines `name` itself for every image (`__dso_handle`), so that nobody
/// needs to be asked for its address.
bool definesItself(std::string_view name);

/// Parses `object` (an ELF relocatable object for x86_64 or AArch64) for linking; it is kept
/// alive until the link is done. `moduleName` appears in errors. Thread-safe. Fails with a
/// LinkFailed LinkError for an object JITLink cannot parse.
std::variant<PreparedObject, LinkError> prepare(std::shared_ptr<const CompiledObject> object,
                                                std::string moduleName);

/// Links `object` for a client whose page size is `pageSize`, in memory from `reserve`.
/// `resolved` maps imported names to their client addresses; a strong import missing from it
/// fails the link with a LinkError naming every unresolved symbol (in its message and in
/// `unresolved`). `__dso_handle` is the image's base address (unique per loaded module, as
/// `__cxa_atexit` and `__cxa_finalize` need). Thread-safe; runs JITLink synchronously on the
/// calling thread.
std::variant<LinkedImage, LinkError> link(PreparedObject object,
                                          const std::unordered_map<std::string, uint64_t>& resolved,
                                          uint64_t pageSize, const Reserve& reserve);

}  // namespace rjitd::linker
