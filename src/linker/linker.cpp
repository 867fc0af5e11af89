// SPDX-License-Identifier: MIT
// JITLink for another address space, into a sealed memfd (see linker.h).
//
// Structure, after LLVM's own InProcessMemoryManager and ORC's ObjectLinkingLayer, cut down to
// what a link for a process we never run code in needs:
//  - MemfdMemoryManager: BasicLayout over one memfd; working memory is our read-write mapping
//    of it, target addresses are in the client's reservation. No protections are applied here
//    (the client maps each segment with its own), and no allocation actions run here (they
//    would run in the wrong process): a graph that has any is refused.
//  - ClientLinkContext: resolves imports from the map the caller collected (the client's
//    dlsym answers and earlier modules), defines __dso_handle, keeps `.init_array`/
//    `.fini_array` alive and reads their relocated entries, records the `.eh_frame` range
//    (the client registers it: EHFrameRegistrationPlugin would register it in rjitd) and the
//    exported symbols.
// The whole link runs synchronously on the calling thread: every asynchronous hook of JITLink
// (allocate, lookup, finalize) is answered before it returns.
#include "linker.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <sys/mman.h>
#include <unistd.h>

#include <llvm/ExecutionEngine/JITLink/EHFrameSupport.h>
#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/JITLink/JITLinkMemoryManager.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/MemoryBuffer.h>

namespace rjitd::linker {

namespace jl = llvm::jitlink;
using llvm::orc::ExecutorAddr;

struct PreparedObject::Impl {
  std::shared_ptr<const CompiledObject> object;  // the graph's blocks point into its bytes
  std::string moduleName;
  std::unique_ptr<jl::LinkGraph> graph;
  std::vector<Import> imports;
};

PreparedObject::PreparedObject(std::unique_ptr<Impl> impl) : impl(std::move(impl)) {}
PreparedObject::~PreparedObject() = default;
PreparedObject::PreparedObject(PreparedObject&&) noexcept = default;
PreparedObject& PreparedObject::operator=(PreparedObject&&) noexcept = default;
const std::vector<Import>& PreparedObject::imports() const {
  return impl->imports;
}

namespace {

constexpr const char* DSO_HANDLE = "__dso_handle";

/// The largest image rjitd links (code, data and bss together); far above any client quota.
constexpr uint64_t MAX_IMAGE_BYTES = 64ull << 30;

/// The linker's typed llvm::Error: a LinkError travelling through JITLink's callbacks, which
/// pass an llvm::Error from our hooks (allocate, lookup) to notifyFailed unchanged. Errors of
/// kind LinkFailed are parts of a sentence ("cannot link M: " is put before them once, in
/// toLinkError); errors of other kinds are whole sentences and leave the linker as they are.
class LinkFailure final : public llvm::ErrorInfo<LinkFailure> {
public:
  static char ID;

  explicit LinkFailure(LinkError error) : error(std::move(error)) {}

  LinkError& get() { return error; }

  void log(llvm::raw_ostream& os) const override { os << error.message; }
  std::error_code convertToErrorCode() const override { return llvm::inconvertibleErrorCode(); }

private:
  LinkError error;
};

char LinkFailure::ID = 0;

llvm::Error fail(ErrorKind kind, std::string message, std::vector<std::string> unresolved = {}) {
  return llvm::make_error<LinkFailure>(
      LinkError{kind, std::move(message), std::move(unresolved), {}});
}

std::string errnoText(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

uint64_t alignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

uint8_t toProtection(llvm::orc::MemProt prot) {
  auto bits = static_cast<unsigned>(prot);
  auto has = [bits](llvm::orc::MemProt p) { return (bits & static_cast<unsigned>(p)) != 0; };
  return (has(llvm::orc::MemProt::Read) ? READ : 0) | (has(llvm::orc::MemProt::Write) ? WRITE : 0) |
         (has(llvm::orc::MemProt::Exec) ? EXEC : 0);
}

/// The memfd being filled: our read-write mapping of it, unmapped on destruction.
struct Image {
  kj::AutoCloseFd memfd;
  char* local = nullptr;
  uint64_t base = 0;
  uint64_t size = 0;
  std::vector<Segment> segments;

  Image() = default;
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;
  ~Image() { unmap(); }
  void unmap() {
    if (local != nullptr)
      ::munmap(local, size);
    local = nullptr;
  }
};

/// One allocation per link (one link per manager): the graph's segments, page-aligned, one
/// after the other in one memfd, at client addresses from `reserve`.
class MemfdMemoryManager final : public jl::JITLinkMemoryManager {
public:
  MemfdMemoryManager(uint64_t pageSize, const Reserve& reserve, Image& image)
      : pageSize(pageSize), reserve(reserve), image(image) {}

  void allocate(const jl::JITLinkDylib*, jl::LinkGraph& G,
                OnAllocatedFunction onAllocated) override {
    // BasicLayout adds block sizes without overflow checks: sections that sum past 2^64 (bss
    // sections of 2^60 bytes each cost nothing in an object file) would wrap its segment
    // sizes, and apply() would copy content beyond the memfd we map for them. Bound the whole
    // graph first, with every alignment pad counted.
    uint64_t total = 0;
    for (auto& section : G.sections()) {
      if (section.getMemLifetime() == llvm::orc::MemLifetime::NoAlloc)
        continue;
      for (auto* block : section.blocks()) {
        if (__builtin_add_overflow(total, block->getSize(), &total) ||
            __builtin_add_overflow(total, block->getAlignment(), &total) || total > MAX_IMAGE_BYTES)
          return tooLarge(onAllocated);
      }
    }
    jl::BasicLayout layout(G);
    auto sizes = layout.getContiguousPageBasedLayoutSizes(pageSize);
    if (!sizes)
      return onAllocated(sizes.takeError());
    for (auto& [group, segment] : layout.segments()) {
      uint64_t bytes = 0;
      if (__builtin_add_overflow(segment.ContentSize, segment.ZeroFillSize, &bytes))
        return tooLarge(onAllocated);
    }
    if (sizes->total() > MAX_IMAGE_BYTES)
      return tooLarge(onAllocated);
    // At least a page, so that every module has its own base address (its __dso_handle).
    total = std::max<uint64_t>(sizes->total(), pageSize);
    auto reserved = reserve(total);
    if (auto* f = std::get_if<LinkError>(&reserved))
      return onAllocated(llvm::make_error<LinkFailure>(std::move(*f)));
    image.base = std::get<uint64_t>(reserved);
    image.size = total;
    if (llvm::Error err = createFile(G.getName()))
      return onAllocated(std::move(err));

    uint64_t offset = 0;
    // Standard segments first, then finalize-lifetime ones (kept mapped like the rest: there is
    // no finalization step in the client to discard them after).
    for (auto lifetime : {llvm::orc::MemLifetime::Standard, llvm::orc::MemLifetime::Finalize}) {
      for (auto& [group, segment] : layout.segments()) {
        if (group.getMemLifetime() != lifetime)
          continue;
        uint8_t protection = toProtection(group.getMemProt());
        if ((protection & WRITE) && (protection & EXEC))
          return onAllocated(llvm::make_error<llvm::StringError>(
              "the object has a section that is both writable and executable; rjitd never "
              "maps memory writable and executable at once",
              llvm::inconvertibleErrorCode()));
        uint64_t size = alignUp(segment.ContentSize + segment.ZeroFillSize, pageSize);
        segment.WorkingMem = image.local + offset;
        segment.Addr = ExecutorAddr(image.base + offset);
        // A segment of zero-sized blocks only (`unsigned char foo[1][0];` alone in .bss) takes
        // no pages: its blocks get the address where the next segment starts, or the image's
        // end, as ld places zero-sized objects. The client gets no segment for it (mmap
        // cannot map 0 bytes).
        if (size != 0)
          image.segments.push_back({image.base + offset, offset, size, protection});
        offset += size;
      }
    }
    if (llvm::Error err = layout.apply())
      return onAllocated(std::move(err));
    onAllocated(std::make_unique<InFlight>(G, image.base));
  }

  void deallocate(std::vector<FinalizedAlloc> allocs, OnDeallocatedFunction done) override {
    // The image outlives the link (LinkedImage owns it); nothing to free here.
    for (auto& alloc : allocs)
      alloc.release();
    done(llvm::Error::success());
  }

private:
  class InFlight final : public InFlightAlloc {
  public:
    InFlight(jl::LinkGraph& G, uint64_t base) : G(G), base(base) {}
    void finalize(OnFinalizedFunction onFinalized) override {
      if (!G.allocActions().empty())
        // Actions would run in rjitd, not in the client; none of the passes we use adds any.
        return onFinalized(fail(ErrorKind::LinkFailed,
                                "the object needs finalization actions in the target process, "
                                "which rjitd does not support"));
      onFinalized(FinalizedAlloc(ExecutorAddr(base)));
    }
    void abandon(OnAbandonedFunction onAbandoned) override { onAbandoned(llvm::Error::success()); }

  private:
    jl::LinkGraph& G;
    uint64_t base;
  };

  void tooLarge(OnAllocatedFunction& onAllocated) {
    onAllocated(fail(ErrorKind::TooLarge, "the module's code and data need more than " +
                                              std::to_string(MAX_IMAGE_BYTES >> 30) +
                                              " GiB, the most rjitd links for a client"));
  }

  /// A system call on the image file failed: out of descriptors, memory or space is rjitd's
  /// state, never the module's fault (overloaded: retry later); anything else is internal.
  llvm::Error resourceFailure(const char* what) {
    int error = errno;
    bool exhausted = error == EMFILE || error == ENFILE || error == ENOMEM || error == ENOSPC;
    return fail(exhausted ? ErrorKind::Overloaded : ErrorKind::Internal, errnoText(what));
  }

  llvm::Error createFile(const std::string& name) {
    std::string label = "rjitd:" + name.substr(0, 200);
    kj::AutoCloseFd fd(::memfd_create(label.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (fd.get() < 0)
      return resourceFailure("memfd_create");
    if (::ftruncate(fd.get(), static_cast<off_t>(image.size)) != 0)
      return resourceFailure("ftruncate of the image memfd");
    void* local = ::mmap(nullptr, image.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (local == MAP_FAILED)
      return resourceFailure("mmap of the image memfd");
    image.memfd = std::move(fd);
    image.local = static_cast<char*>(local);
    return llvm::Error::success();
  }

  uint64_t pageSize;
  const Reserve& reserve;
  Image& image;
};

/// `.init_array.00101` → 101; `.init_array` → 65535 (after every numbered priority, as ld
/// orders them). nullopt for other sections. `reverse`: a legacy `.ctors`/`.dtors` section,
/// whose entries run last to first.
struct InitSection {
  bool init = true;
  bool legacy = false;
  unsigned priority = 65535;
};

std::optional<InitSection> classify(llvm::StringRef name) {
  InitSection s;
  llvm::StringRef rest;
  if (name.starts_with(".init_array")) {
    rest = name.drop_front(strlen(".init_array"));
  } else if (name.starts_with(".fini_array")) {
    s.init = false;
    rest = name.drop_front(strlen(".fini_array"));
  } else if (name.starts_with(".ctors")) {
    s.legacy = true;
    rest = name.drop_front(strlen(".ctors"));
  } else if (name.starts_with(".dtors")) {
    s.init = false;
    s.legacy = true;
    rest = name.drop_front(strlen(".dtors"));
  } else {
    return std::nullopt;
  }
  if (rest.empty())
    return s;
  unsigned priority = 0;
  if (!rest.consume_front(".") || rest.getAsInteger(10, priority))
    return std::nullopt;
  // Legacy .ctors.N numbers run the other way round (65535 - priority).
  s.priority = s.legacy ? 65535 - priority : priority;
  return s;
}

class ClientLinkContext final : public jl::JITLinkContext {
public:
  ClientLinkContext(const std::unordered_map<std::string, uint64_t>& resolved,
                    MemfdMemoryManager& memory, Image& image, LinkedImage& out,
                    llvm::Error& failure, bool& finalized)
      : JITLinkContext(nullptr), resolved(resolved), memory(memory), image(image), out(out),
        failure(failure), finalized(finalized) {}

  jl::JITLinkMemoryManager& getMemoryManager() override { return memory; }

  void notifyFailed(llvm::Error err) override { failure = std::move(err); }

  void lookup(const LookupMap& symbols,
              std::unique_ptr<jl::JITLinkAsyncLookupContinuation> continuation) override {
    llvm::JITSymbolFlags flags = llvm::JITSymbolFlags::Exported;
    jl::AsyncLookupResult result;
    std::vector<std::string> missing;
    for (const auto& [name, lookupFlags] : symbols) {
      if (name == DSO_HANDLE) {
        result[name] = llvm::orc::ExecutorSymbolDef(ExecutorAddr(image.base), flags);
        continue;
      }
      auto it = resolved.find(name.str());
      if (it != resolved.end() && it->second != 0)
        result[name] = llvm::orc::ExecutorSymbolDef(ExecutorAddr(it->second), flags);
      else if (lookupFlags != jl::SymbolLookupFlags::WeaklyReferencedSymbol)
        missing.push_back(name.str());
    }
    if (!missing.empty()) {
      std::sort(missing.begin(), missing.end());
      std::string list;
      for (const auto& name : missing)
        list += (list.empty() ? "'" : ", '") + name + "'";
      std::string message =
          "unresolved symbol" + std::string(missing.size() > 1 ? "s " : " ") + list;
      return continuation->run(fail(ErrorKind::LinkFailed, std::move(message), std::move(missing)));
    }
    continuation->run(std::move(result));
  }

  llvm::Error notifyResolved(jl::LinkGraph&) override { return llvm::Error::success(); }

  void notifyFinalized(jl::JITLinkMemoryManager::FinalizedAlloc alloc) override {
    alloc.release();  // the image is ours (LinkedImage), not the memory manager's
    finalized = true;
  }

  llvm::Error modifyPassConfig(jl::LinkGraph& G, jl::PassConfiguration& config) override {
    // Nothing references constructor tables: keep them, or dead-stripping drops them.
    config.PrePrunePasses.push_back([](jl::LinkGraph& G) {
      for (auto& section : G.sections()) {
        if (!classify(section.getName()))
          continue;
        for (auto* block : section.blocks())
          G.addAnonymousSymbol(*block, 0, block->getSize(), false, true);
      }
      return llvm::Error::success();
    });
    config.PostFixupPasses.push_back(
        jl::createEHFrameRecorderPass(G.getTargetTriple(), [this](ExecutorAddr addr, size_t size) {
          out.ehFrameAddress = addr.getValue();
          out.ehFrameSize = size;
        }));
    config.PostFixupPasses.push_back([this](jl::LinkGraph& G) { return collect(G); });
    return llvm::Error::success();
  }

private:
  /// After fixups: the exported symbols and the relocated constructor/destructor tables.
  llvm::Error collect(jl::LinkGraph& G) {
    for (auto* symbol : G.defined_symbols()) {
      if (!symbol->hasName() || symbol->getScope() != jl::Scope::Default)
        continue;
      out.symbols.push_back({symbol->getName().str(), symbol->getAddress().getValue(),
                             symbol->isCallable(), symbol->getLinkage() == jl::Linkage::Weak});
    }
    std::sort(out.symbols.begin(), out.symbols.end(),
              [](const ExportedSymbol& a, const ExportedSymbol& b) { return a.name < b.name; });

    struct Entry {
      unsigned priority;
      uint64_t order;  // address: the order within and across sections of one priority
      uint64_t target;
    };
    std::vector<Entry> inits, finis;
    unsigned pointerSize = G.getPointerSize();
    for (auto& section : G.sections()) {
      auto kind = classify(section.getName());
      if (!kind)
        continue;
      for (auto* block : section.blocks()) {
        if (block->isZeroFill() || block->getSize() % pointerSize != 0)
          return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                         "malformed constructor table in section %s",
                                         section.getName().str().c_str());
        llvm::ArrayRef<char> content = block->getContent();
        for (size_t i = 0; i < content.size(); i += pointerSize) {
          uint64_t target = 0;
          std::memcpy(&target, content.data() + i, pointerSize);  // little-endian targets only
          uint64_t address = block->getAddress().getValue() + i;
          // Legacy tables run last to first: order them by descending address.
          uint64_t order = kind->legacy ? ~address : address;
          if (target == 0 || target == ~uint64_t(0))
            continue;  // .ctors sentinels
          (kind->init ? inits : finis).push_back({kind->priority, order, target});
        }
      }
    }
    auto byPriority = [](const Entry& a, const Entry& b) {
      return a.priority != b.priority ? a.priority < b.priority : a.order < b.order;
    };
    std::sort(inits.begin(), inits.end(), byPriority);
    std::sort(finis.begin(), finis.end(), byPriority);
    for (const auto& e : inits)
      out.initializers.push_back(e.target);
    // Destructors run in the reverse of the order a table lists them (as the ELF loader does).
    for (auto it = finis.rbegin(); it != finis.rend(); ++it)
      out.finalizers.push_back(it->target);
    return llvm::Error::success();
  }

  const std::unordered_map<std::string, uint64_t>& resolved;
  MemfdMemoryManager& memory;
  Image& image;
  LinkedImage& out;
  llvm::Error& failure;
  bool& finalized;
};

/// The one conversion of the linker's llvm::Error into its LLVM-free LinkError. A typed error
/// of another kind than LinkFailed (the reservation's, a size limit's, rjitd's own) is a whole
/// sentence and wins; everything else (our LinkFailed parts, JITLink's own errors) is joined
/// into "cannot link M: ..." with the unresolved names gathered as data.
LinkError toLinkError(llvm::Error err, const std::string& moduleName) {
  std::optional<LinkError> whole;
  LinkError joined;
  std::string text;
  auto append = [&text](const std::string& part) { text += (text.empty() ? "" : "\n") + part; };
  llvm::handleAllErrors(
      std::move(err),
      [&](LinkFailure& failure) {
        LinkError& e = failure.get();
        if (e.kind != ErrorKind::LinkFailed) {
          if (!whole)
            whole = std::move(e);
          return;
        }
        append(e.message);
        joined.unresolved.insert(joined.unresolved.end(), e.unresolved.begin(), e.unresolved.end());
        joined.duplicates.insert(joined.duplicates.end(), e.duplicates.begin(), e.duplicates.end());
      },
      [&](const llvm::ErrorInfoBase& other) { append(other.message()); });
  if (whole)
    return std::move(*whole);
  joined.kind = ErrorKind::LinkFailed;
  joined.message = "cannot link " + moduleName + ": " + text;
  return joined;
}

/// Runs JITLink over the prepared graph into a new image and seals it.
llvm::Expected<LinkedImage> linkImage(PreparedObject::Impl& in,
                                      const std::unordered_map<std::string, uint64_t>& resolved,
                                      uint64_t pageSize, const Reserve& reserve) {
  if (pageSize == 0 || (pageSize & (pageSize - 1)) != 0)
    return fail(ErrorKind::InvalidRequest,
                "page size " + std::to_string(pageSize) + " is not a power of two");
  Image image;
  LinkedImage out;
  llvm::Error failure = llvm::Error::success();
  bool finalized = false;
  MemfdMemoryManager memory(pageSize, reserve, image);
  // jl::link runs synchronously here (every hook above answers at once) and destroys the
  // context when done, so `failure`, `finalized` and `out` are settled when it returns.
  jl::link(std::move(in.graph),
           std::make_unique<ClientLinkContext>(resolved, memory, image, out, failure, finalized));
  if (failure)
    return failure;
  if (!finalized || image.local == nullptr)
    return fail(ErrorKind::Internal, "the link of " + in.moduleName + " did not finish");
  // Drop our writable mapping before sealing: F_SEAL_WRITE refuses while one exists.
  image.unmap();
  if (::fcntl(image.memfd.get(), F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    return fail(ErrorKind::Internal, errnoText("sealing the image memfd"));
  out.memfd = std::move(image.memfd);
  out.base = image.base;
  out.size = image.size;
  out.segments = std::move(image.segments);
  return out;
}

}  // namespace

bool definesItself(std::string_view name) {
  return name == DSO_HANDLE;
}

std::variant<PreparedObject, LinkError> prepare(std::shared_ptr<const CompiledObject> object,
                                                std::string moduleName) {
  auto impl = std::make_unique<PreparedObject::Impl>();
  impl->object = std::move(object);
  impl->moduleName = std::move(moduleName);
  llvm::MemoryBufferRef buffer(impl->object->object, impl->moduleName);
  auto graph = jl::createLinkGraphFromObject(buffer);
  if (!graph)
    return toLinkError(graph.takeError(), impl->moduleName);
  impl->graph = std::move(*graph);
  for (auto* symbol : impl->graph->external_symbols()) {
    if (!symbol->hasName() || symbol->getName() == DSO_HANDLE)
      continue;
    impl->imports.push_back({symbol->getName().str(), symbol->isWeaklyReferenced()});
  }
  std::sort(impl->imports.begin(), impl->imports.end(),
            [](const Import& a, const Import& b) { return a.name < b.name; });
  return PreparedObject(std::move(impl));
}

std::variant<LinkedImage, LinkError> link(PreparedObject prepared,
                                          const std::unordered_map<std::string, uint64_t>& resolved,
                                          uint64_t pageSize, const Reserve& reserve) {
  PreparedObject::Impl& in = *prepared.impl;
  llvm::Expected<LinkedImage> linked = linkImage(in, resolved, pageSize, reserve);
  if (!linked)
    return toLinkError(linked.takeError(), in.moduleName);
  return std::move(*linked);
}

}  // namespace rjitd::linker
