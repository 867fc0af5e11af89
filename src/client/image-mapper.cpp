// SPDX-License-Identifier: MIT
// Checking, mapping, starting and stopping linked images in this process (see image-mapper.h).
#include "image-mapper.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

extern "C" {
// libgcc_s (the unwinder of every glibc C++ program): registers a zero-terminated .eh_frame.
void __register_frame(void* begin);
void __deregister_frame(void* begin);
// glibc.
void __cxa_finalize(void* dso);
}

namespace rjit::detail {

namespace {

constexpr uint8_t READ = SEGMENT_READ, WRITE = SEGMENT_WRITE, EXEC = SEGMENT_EXECUTE;

Error loadError(const std::string& what) {
  return Error(ErrorKind::Load, what + ": " + std::strerror(errno));
}

/// Every image mapped in this process, in load order. The client's one piece of process-wide
/// state, and it has to be: at exit the images of every Client must stop (a Module may outlive
/// its Client), and JIT code's `atexit` is a plain function pointer that has no Client to ask
/// which image a handler belongs to (process-symbols.cpp).
struct ProcessImages {
  std::mutex mutex;
  std::vector<MappedImage*> images;
  std::once_flag exitHandler;
};

/// Holds the one ProcessImages and never destroys it (a union member's destructor runs only
/// when called): the exit handler, and Modules that static destructors release after it ran,
/// use it until the process is gone.
union NeverDestroyed {
  NeverDestroyed() : images() {}
  ~NeverDestroyed() {}
  ProcessImages images;
};

ProcessImages& processImages() {
  static NeverDestroyed holder;
  return holder.images;
}

/// At exit, images still loaded stop as a dlopen()ed library would: destructors run while the
/// code is still mapped (the process's own atexit handlers registered later ran already).
void stopAllAtExit() {
  std::vector<MappedImage*> images;
  {
    std::lock_guard<std::mutex> lock(processImages().mutex);
    images = processImages().images;
  }
  for (auto it = images.rbegin(); it != images.rend(); ++it)
    (*it)->stop();
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

Result<std::shared_ptr<Arena>> Arena::create(uint64_t size) {
  size = (size + pageSize() - 1) / pageSize() * pageSize();
  void* p = ::mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return loadError("cannot reserve " + std::to_string(size) +
                     " bytes of address space for loaded code (RJIT_MEMORY_QUOTA)");
  return std::make_shared<Arena>(Token(), reinterpret_cast<uint64_t>(p), size);
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

Result<Done> checkImage(const ImageSpec& spec, uint64_t arenaBase, uint64_t arenaSize,
                        uint64_t page) {
  auto invalid = [](const std::string& what) {
    return Error(ErrorKind::Load, "rjitd sent an invalid image: " + what);
  };
  if (spec.size == 0 || spec.base % page != 0 || spec.size % page != 0 || spec.base < arenaBase ||
      spec.size > arenaSize || spec.base - arenaBase > arenaSize - spec.size)
    return invalid("it lies outside this client's reservation");
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
      return invalid("a segment (address " + std::to_string(s.address) + ", " +
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
      return invalid("a constructor lies outside its code");
  for (uint64_t fn : spec.finalizers)
    if (!inCode(fn))
      return invalid("a destructor lies outside its code");
  if (spec.ehFrameSize != 0 && (spec.ehFrameAddress < spec.base || spec.ehFrameSize > spec.size ||
                                spec.ehFrameAddress - spec.base > spec.size - spec.ehFrameSize))
    return invalid("its unwind info lies outside it");
  return Done{};
}

Result<std::unique_ptr<MappedImage>> MappedImage::create(std::shared_ptr<Arena> arena, int fd,
                                                         ImageSpec spec) {
  Result<Done> checked = checkImage(spec, arena->base(), arena->size(), Arena::pageSize());
  if (Error* error = failed(checked))
    return std::move(*error);
  auto invalid = [](const std::string& what) {
    return Error(ErrorKind::Load, "rjitd sent an invalid image: " + what);
  };
  // The seal is what makes shared code pages safe to map: nobody can write them any more.
  int seals = ::fcntl(fd, F_GET_SEALS);
  constexpr int REQUIRED = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
  if (seals < 0 || (seals & REQUIRED) != REQUIRED)
    return invalid("its file is not sealed against writing and resizing");
  struct stat st;
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < spec.size)
    return invalid("its file is smaller than the image");

  // Map from a read-only descriptor of the same file: the kernel then never counts a shared
  // mapping as writable (before Linux 6.7, mapping a write-sealed memfd MAP_SHARED from a
  // read-write descriptor fails with EPERM even without PROT_WRITE), and such a mapping can
  // never be mprotect()ed writable. Private (copy-on-write) mappings need no write access.
  // rjitd sends a read-only descriptor already (then nothing is opened: an executor, under its
  // seccomp filter, may open no file); an older rjitd sent the read-write one.
  kj::AutoCloseFd readOnly;
  int mode = ::fcntl(fd, F_GETFL);
  if (mode < 0 || (mode & O_ACCMODE) != O_RDONLY) {
    std::string self = "/proc/self/fd/" + std::to_string(fd);
    readOnly = kj::AutoCloseFd(::open(self.c_str(), O_RDONLY | O_CLOEXEC));
  }
  int source = readOnly.get() >= 0 ? readOnly.get() : fd;
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
      arena->clear(spec.base, spec.size);
      return error;
    }
  }
  return std::make_unique<MappedImage>(Token(), std::move(arena), std::move(spec));
}

MappedImage::MappedImage(Token, std::shared_ptr<Arena> arenaIn, ImageSpec specIn)
    : arena(std::move(arenaIn)), spec(std::move(specIn)) {
  std::lock_guard<std::mutex> lock(processImages().mutex);
  processImages().images.push_back(this);
}

MappedImage::~MappedImage() {
  stop();
  {
    std::lock_guard<std::mutex> lock(processImages().mutex);
    auto& images = processImages().images;
    images.erase(std::remove(images.begin(), images.end(), this), images.end());
  }
  arena->clear(spec.base, spec.size);
}

void MappedImage::start() {
  std::call_once(processImages().exitHandler, [] { std::atexit(stopAllAtExit); });
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

uint64_t mappedImageContaining(uint64_t address) {
  std::lock_guard<std::mutex> lock(processImages().mutex);
  for (MappedImage* image : processImages().images)
    if (address >= image->base() && address < image->base() + image->size())
      return image->base();
  return 0;
}

// --- ImageFile ------------------------------------------------------------------------------

Result<std::unique_ptr<ImageFile>> ImageFile::create(uint64_t size) {
  kj::AutoCloseFd fd(::memfd_create("rjit-image", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd.get() < 0)
    return loadError("cannot create a memfd for the loaded module");
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
    return loadError("cannot size the loaded module's memfd");
  return std::make_unique<ImageFile>(Token(), kj::mv(fd), size);
}

Result<Done> ImageFile::write(uint64_t offset, const void* bytes, size_t n) {
  if (fd.get() < 0 || offset > size || n > size - offset)
    return Error(ErrorKind::Load, "rjitd sent image bytes beyond the image's end");
  const char* p = static_cast<const char*>(bytes);
  while (n > 0) {
    ssize_t w = ::pwrite(fd.get(), p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return loadError("cannot write the loaded module to its memfd");
    p += w;
    offset += static_cast<uint64_t>(w);
    n -= static_cast<size_t>(w);
  }
  return Done{};
}

Result<kj::AutoCloseFd> ImageFile::finish() {
  if (fd.get() < 0 ||
      ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    return loadError("cannot seal the loaded module's memfd");
  return kj::mv(fd);
}

}  // namespace rjit::detail
