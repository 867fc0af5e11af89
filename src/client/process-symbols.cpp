// SPDX-License-Identifier: MIT
// Process symbols for loaded code, and the `atexit` it gets (see process-symbols.h).
#include "process-symbols.h"

#include "image-mapper.h"

#include <dlfcn.h>
#include <link.h>

extern "C" {
// glibc.
int __cxa_atexit(void (*fn)(void*), void* arg, void* dso);
}

namespace rjit::detail {

namespace {

/// `atexit` for JIT code (glibc has no exported one: each DSO links its own from
/// libc_nonshared.a with that DSO's handle). The handler runs when its module unloads.
int rjitAtexit(void (*handler)()) {
  uint64_t dso = mappedImageContaining(reinterpret_cast<uint64_t>(handler));
  return __cxa_atexit(reinterpret_cast<void (*)(void*)>(handler), nullptr,
                      reinterpret_cast<void*>(dso));
}

}  // namespace

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
