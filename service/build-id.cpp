// SPDX-License-Identifier: MIT
// Reads rjitd's own build id from its program headers (see build-id.h). dl_iterate_phdr
// rather than parsing /proc/self/exe: the loaded notes are already in memory, and no file the
// package manager may have replaced under a running rjitd is read.
#include "build-id.h"

#include <cstring>
#include <elf.h>
#include <link.h>
#include <sys/stat.h>

namespace rjitd::service {
namespace {

int findBuildId(dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  // The first object is the main program.
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE)
      continue;
    const auto* p = reinterpret_cast<const unsigned char*>(info->dlpi_addr + ph.p_vaddr);
    const auto* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) note;
      std::memcpy(&note, p, sizeof note);
      const unsigned char* name = p + sizeof note;
      const unsigned char* desc = name + ((note.n_namesz + 3) & ~3u);
      const unsigned char* next = desc + ((note.n_descsz + 3) & ~3u);
      if (next > end)
        break;
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
          std::memcmp(name, "GNU", 4) == 0) {
        static const char digits[] = "0123456789abcdef";
        for (ElfW(Word) j = 0; j < note.n_descsz; ++j) {
          out->push_back(digits[desc[j] >> 4]);
          out->push_back(digits[desc[j] & 15]);
        }
        return 1;
      }
      p = next;
    }
  }
  return 1;  // only the main program
}

}  // namespace

std::string ownBuildId() {
  std::string id;
  dl_iterate_phdr(findBuildId, &id);
  return id;
}

std::string buildIdentity() {
  std::string id = ownBuildId();
  if (!id.empty())
    return id;
  struct stat st {};
  if (::stat("/proc/self/exe", &st) != 0)
    return "unknown";
  return "exe-" + std::to_string(st.st_size) + "-" +
         std::to_string(st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec);
}

}  // namespace rjitd::service
