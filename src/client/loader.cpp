// SPDX-License-Identifier: MIT
// Mapping, starting and stopping linked images in this process (see loader.h).
#include "loader.h"

#include "remotejit/client.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

extern "C" {
// libgcc_s (the unwinder of every glibc C++ program): registers a zero-terminated .eh_frame.
void __register_frame(void* begin);
void __deregister_frame(void* begin);
// glibc.
int __cxa_atexit(void (*fn)(void*), void* arg, void* dso);
void __cxa_finalize(void* dso);
}

namespace rjit::detail {

namespace {

constexpr uint8_t READ = SEGMENT_READ, WRITE = SEGMENT_WRITE, EXEC = SEGMENT_EXECUTE;

Error loadError(const std::string& what) {
  return Error(ErrorKind::Load, what + ": " + std::strerror(errno));
}

/// Every image mapped in this process, in load order: for the exit handler, and for `atexit`
/// calls from JIT code, which are filed under the image their handler lives in.
struct Registry {
  std::mutex mutex;
  std::vector<MappedImage*> images;
  std::once_flag exitHandler;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: the exit handler uses it
  return *r;
}

/// At exit, images still loaded stop as a dlopen()ed library would: destructors run while the
/// code is still mapped (the process's own atexit handlers registered later ran already).
void stopAllAtExit() {
  std::vector<MappedImage*> images;
  {
    std::lock_guard<std::mutex> lock(registry().mutex);
    images = registry().images;
  }
  for (auto it = images.rbegin(); it != images.rend(); ++it)
    (*it)->stop();
}

uint64_t imageContaining(uint64_t address) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  for (MappedImage* image : registry().images)
    if (address >= image->base() && address < image->base() + image->size())
      return image->base();
  return 0;
}

/// `atexit` for JIT code (glibc has no exported one: each DSO links its own from
/// libc_nonshared.a with that DSO's handle). The handler runs when its module unloads.
int rjitAtexit(void (*handler)()) {
  uint64_t dso = imageContaining(reinterpret_cast<uint64_t>(handler));
  return __cxa_atexit(reinterpret_cast<void (*)(void*)>(handler), nullptr,
                      reinterpret_cast<void*>(dso));
}

template <typename F> F* at(uint64_t address) {
  return reinterpret_cast<F*>(address);
}

}  // namespace

// --- Arena ----------------------------------------------------------------------------------

uint64_t Arena::pageSize() {
  static const uint64_t size = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

Arena::Arena(uint64_t size) {
  size_ = (size + pageSize() - 1) / pageSize() * pageSize();
  void* p = ::mmap(nullptr, size_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throw loadError("cannot reserve " + std::to_string(size_) +
                    " bytes of address space for loaded code (RJIT_MEMORY_QUOTA)");
  base_ = reinterpret_cast<uint64_t>(p);
}

Arena::~Arena() {
  ::munmap(reinterpret_cast<void*>(base_), size_);
}

bool Arena::clear(uint64_t address, uint64_t size) const {
  if (address < base_ || size > size_ || address - base_ > size_ - size)
    return false;
  void* p = ::mmap(reinterpret_cast<void*>(address), size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  return p != MAP_FAILED;
}

// --- MappedImage ----------------------------------------------------------------------------

MappedImage::MappedImage(std::shared_ptr<Arena> arenaIn, int fd, ImageSpec specIn)
    : arena(std::move(arenaIn)), spec(std::move(specIn)) {
  uint64_t page = Arena::pageSize();
  auto invalid = [](const std::string& what) {
    return Error(ErrorKind::Load, "rjitd sent an invalid image: " + what);
  };
  if (spec.size == 0 || spec.base % page != 0 || spec.size % page != 0 ||
      spec.base < arena->base() || spec.size > arena->size() ||
      spec.base - arena->base() > arena->size() - spec.size)
    throw invalid("it lies outside this client's reservation");
  // The seal is what makes shared code pages safe to map: nobody can write them any more.
  int seals = ::fcntl(fd, F_GET_SEALS);
  constexpr int REQUIRED = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
  if (seals < 0 || (seals & REQUIRED) != REQUIRED)
    throw invalid("its file is not sealed against writing and resizing");
  struct stat st;
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < spec.size)
    throw invalid("its file is smaller than the image");
  std::vector<SegmentSpec> sorted = spec.segments;
  std::sort(sorted.begin(), sorted.end(),
            [](const SegmentSpec& a, const SegmentSpec& b) { return a.address < b.address; });
  uint64_t end = spec.base;
  for (const SegmentSpec& s : sorted) {
    bool inside = s.address >= end && s.size <= spec.size &&
                  s.address - spec.base <= spec.size - s.size && s.offset <= spec.size &&
                  s.size <= spec.size - s.offset;
    // An empty segment is legal (a section of zero-sized objects only); it is not mapped.
    if (!inside || s.address % page != 0 || s.offset % page != 0 ||
        ((s.protection & WRITE) && (s.protection & EXEC)))
      throw invalid("a segment (address " + std::to_string(s.address) + ", " +
                    std::to_string(s.size) + " bytes, protection " + std::to_string(s.protection) +
                    ") is out of place or writable and executable");
    end = s.address + s.size;
  }
  auto inCode = [&](uint64_t address) {
    for (const SegmentSpec& s : spec.segments)
      if ((s.protection & EXEC) && address >= s.address && address - s.address < s.size)
        return true;
    return false;
  };
  for (uint64_t fn : spec.initializers)
    if (!inCode(fn))
      throw invalid("a constructor lies outside its code");
  for (uint64_t fn : spec.finalizers)
    if (!inCode(fn))
      throw invalid("a destructor lies outside its code");
  if (spec.ehFrameSize != 0 && (spec.ehFrameAddress < spec.base || spec.ehFrameSize > spec.size ||
                                spec.ehFrameAddress - spec.base > spec.size - spec.ehFrameSize))
    throw invalid("its unwind info lies outside it");

  // Map from a read-only descriptor of the same file: the kernel then never counts a shared
  // mapping as writable (before Linux 6.7, mapping a write-sealed memfd MAP_SHARED from a
  // read-write descriptor fails with EPERM even without PROT_WRITE), and such a mapping can
  // never be mprotect()ed writable. Private (copy-on-write) mappings need no write access.
  std::string self = "/proc/self/fd/" + std::to_string(fd);
  int readOnly = ::open(self.c_str(), O_RDONLY | O_CLOEXEC);
  int source = readOnly >= 0 ? readOnly : fd;
  for (const SegmentSpec& s : spec.segments) {
    if (s.size == 0)
      continue;  // mmap cannot map 0 bytes
    int prot = ((s.protection & READ) ? PROT_READ : 0) | ((s.protection & WRITE) ? PROT_WRITE : 0) |
               ((s.protection & EXEC) ? PROT_EXEC : 0);
    // Writable data is a private copy; everything else shares rjitd's sealed pages.
    int flags = MAP_FIXED | ((s.protection & WRITE) ? MAP_PRIVATE : MAP_SHARED);
    void* p = ::mmap(reinterpret_cast<void*>(s.address), s.size, prot, flags, source,
                     static_cast<off_t>(s.offset));
    if (p == MAP_FAILED) {
      Error error = loadError("cannot map a segment of the loaded module");
      if (readOnly >= 0)
        ::close(readOnly);
      arena->clear(spec.base, spec.size);
      throw error;
    }
  }
  if (readOnly >= 0)
    ::close(readOnly);
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().images.push_back(this);
}

MappedImage::~MappedImage() {
  stop();
  {
    std::lock_guard<std::mutex> lock(registry().mutex);
    auto& images = registry().images;
    images.erase(std::remove(images.begin(), images.end(), this), images.end());
  }
  arena->clear(spec.base, spec.size);
}

void MappedImage::start() {
  std::call_once(registry().exitHandler, [] { std::atexit(stopAllAtExit); });
  std::lock_guard<std::recursive_mutex> lock(mutex);
  if (started)
    return;
  started = true;
  if (spec.ehFrameAddress != 0 && spec.ehFrameSize != 0) {
    __register_frame(at<void>(spec.ehFrameAddress));
    framesRegistered = true;
  }
  for (uint64_t init : spec.initializers)
    at<void()>(init)();
}

void MappedImage::stop() {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  if (!started || stopped)
    return;
  stopped = true;
  // As at the exit of a native program: first the handlers the module registered with
  // __cxa_atexit (C++ static destructors, atexit), then its destructor functions.
  __cxa_finalize(reinterpret_cast<void*>(spec.base));
  for (uint64_t fini : spec.finalizers)
    at<void()>(fini)();
  if (framesRegistered)
    __deregister_frame(at<void>(spec.ehFrameAddress));
  framesRegistered = false;
}

// --- helpers --------------------------------------------------------------------------------

ImageFile::ImageFile(uint64_t size) : size(size) {
  fd = ::memfd_create("rjit-image", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    throw loadError("cannot create a memfd for the loaded module");
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    Error error = loadError("cannot size the loaded module's memfd");
    ::close(fd);
    throw error;
  }
}

ImageFile::~ImageFile() {
  if (fd >= 0)
    ::close(fd);
}

void ImageFile::write(uint64_t offset, const void* bytes, size_t n) {
  if (offset > size || n > size - offset)
    throw Error(ErrorKind::Load, "rjitd sent image bytes beyond the image's end");
  const char* p = static_cast<const char*>(bytes);
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      throw loadError("cannot write the loaded module to its memfd");
    p += w;
    offset += static_cast<uint64_t>(w);
    n -= static_cast<size_t>(w);
  }
}

int ImageFile::finish() {
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    throw loadError("cannot seal the loaded module's memfd");
  return std::exchange(fd, -1);
}

void ModuleRegistry::add(Entry entry) {
  std::lock_guard<std::mutex> lock(mutex);
  modules[entry.base] = std::move(entry);
}

void ModuleRegistry::remove(uint64_t base) {
  std::lock_guard<std::mutex> lock(mutex);
  modules.erase(base);
}

std::optional<std::pair<uint64_t, uint64_t>> ModuleRegistry::find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex);
  for (const auto& [base, entry] : modules) {
    auto it = entry.symbols->find(name);
    if (it != entry.symbols->end())
      return std::make_pair(it->second, base);
  }
  return std::nullopt;
}

std::shared_ptr<void> ModuleRegistry::owner(uint64_t base) const {
  std::lock_guard<std::mutex> lock(mutex);
  auto it = modules.find(base);
  return it == modules.end() ? nullptr : it->second.owner.lock();
}

ProcessSymbol processSymbol(const std::string& name) {
  auto lookup = [&name]() {
    return name == "atexit" ? reinterpret_cast<void*>(&rjitAtexit)
                            : ::dlsym(RTLD_DEFAULT, name.c_str());
  };
  void* address = lookup();
  ProcessSymbol out{reinterpret_cast<uint64_t>(address), false};
  Dl_info info;
  link_map* object = nullptr;
  if (address == nullptr ||
      ::dladdr1(address, &info, reinterpret_cast<void**>(&object), RTLD_DL_LINKMAP) == 0 ||
      object == nullptr)
    return out;
  if (object->l_name == nullptr || object->l_name[0] == '\0') {
    out.stable = true;  // the program itself
    return out;
  }
  // Pin the library: RTLD_NODELETE stays set after the handle is closed (as LLVM's
  // DynamicLibrary::getPermanentLibrary keeps the libraries JIT code links against). Another
  // thread may have unloaded it between dlsym and here: only an answer that is the same once
  // the library is pinned is stable. One that cannot be pinned is asked for on every load.
  if (void* handle = ::dlopen(object->l_name, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE)) {
    ::dlclose(handle);
    out.stable = lookup() == address;
  }
  return out;
}

}  // namespace rjit::detail
