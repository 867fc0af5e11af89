// SPDX-License-Identifier: MIT
// Checks the architecture's first promise: libremotejit-client carries no LLVM. Reads the
// library's DT_NEEDED entries straight from its ELF dynamic section (no readelf, no LLVM).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <elf.h>
#include <fstream>
#include <gtest/gtest.h>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace rjit::test {
namespace {

/// DT_NEEDED names of an ELF64 little-endian file, or an error message.
struct Needed {
  std::vector<std::string> names;
  std::string error;
};

template <typename T> std::optional<T> readAt(const std::string& image, uint64_t offset) {
  if (offset > image.size() || image.size() - offset < sizeof(T))
    return std::nullopt;
  T value;
  std::memcpy(&value, image.data() + offset, sizeof(T));
  return value;
}

Needed readNeeded(const std::string& path) {
  Needed out;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    out.error = "cannot open " + path;
    return out;
  }
  std::string image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  auto ehdr = readAt<Elf64_Ehdr>(image, 0);
  if (!ehdr || std::memcmp(ehdr->e_ident, ELFMAG, SELFMAG) != 0) {
    out.error = path + " is not an ELF file";
    return out;
  }
  if (ehdr->e_ident[EI_CLASS] != ELFCLASS64 || ehdr->e_ident[EI_DATA] != ELFDATA2LSB) {
    out.error = path + " is not a little-endian ELF64 file";
    return out;
  }
  if (ehdr->e_shoff == 0 || ehdr->e_shentsize != sizeof(Elf64_Shdr)) {
    out.error = path + " has no usable section header table";
    return out;
  }
  auto section = [&](uint64_t i) {
    return readAt<Elf64_Shdr>(image, ehdr->e_shoff + i * sizeof(Elf64_Shdr));
  };
  // With 0xff00 sections or more, e_shnum is 0 and the real count is in section 0's sh_size.
  uint64_t count = ehdr->e_shnum;
  if (count == 0) {
    auto first = section(0);
    if (!first) {
      out.error = path + ": truncated section header table";
      return out;
    }
    count = first->sh_size;
  }

  bool foundDynamic = false;
  for (uint64_t i = 0; i < count; ++i) {
    auto shdr = section(i);
    if (!shdr) {
      out.error = path + ": truncated section header table";
      return out;
    }
    if (shdr->sh_type != SHT_DYNAMIC)
      continue;
    foundDynamic = true;
    auto strtab = section(shdr->sh_link);
    if (!strtab || strtab->sh_type != SHT_STRTAB || strtab->sh_offset > image.size() ||
        image.size() - strtab->sh_offset < strtab->sh_size) {
      out.error = path + ": bad string table for the dynamic section";
      return out;
    }
    for (uint64_t off = 0; off + sizeof(Elf64_Dyn) <= shdr->sh_size; off += sizeof(Elf64_Dyn)) {
      auto dyn = readAt<Elf64_Dyn>(image, shdr->sh_offset + off);
      if (!dyn) {
        out.error = path + ": truncated dynamic section";
        return out;
      }
      if (dyn->d_tag == DT_NULL)
        break;
      if (dyn->d_tag != DT_NEEDED)
        continue;
      uint64_t nameOff = dyn->d_un.d_val;
      if (nameOff >= strtab->sh_size) {
        out.error = path + ": DT_NEEDED name outside the string table";
        return out;
      }
      const char* start = image.data() + strtab->sh_offset + nameOff;
      size_t max = strtab->sh_size - nameOff;
      out.names.emplace_back(start, strnlen(start, max));
    }
  }
  if (!foundDynamic)
    out.error = path + " has no dynamic section (not a shared object or dynamic executable)";
  return out;
}

bool anyStartsWith(const std::vector<std::string>& names, std::string_view prefix) {
  return std::any_of(names.begin(), names.end(),
                     [prefix](const std::string& n) { return n.starts_with(prefix); });
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

TEST(ClientDepsTest, ParserReadsThisExecutable) {
  // Proves the parser on a file whose dependencies are certain: every dynamically linked C++
  // test program needs libc and libstdc++.
  Needed self = readNeeded("/proc/self/exe");
  ASSERT_EQ(self.error, "");
  EXPECT_TRUE(anyStartsWith(self.names, "libc.so.")) << joined(self.names);
  EXPECT_TRUE(anyStartsWith(self.names, "libstdc++.so.")) << joined(self.names);
}

TEST(ClientDepsTest, ParserRejectsNonElf) {
  Needed bad = readNeeded("/proc/self/cmdline");
  EXPECT_NE(bad.error, "");
  EXPECT_TRUE(bad.names.empty());
  EXPECT_NE(readNeeded("/nonexistent/lib.so").error, "");
}

TEST(ClientDepsTest, ClientLibraryDoesNotNeedLlvm) {
  const char* lib = std::getenv("RJIT_CLIENT_LIB");
  ASSERT_NE(lib, nullptr) << "RJIT_CLIENT_LIB is not set (test/meson.build sets it)";
  Needed needed = readNeeded(lib);
  ASSERT_EQ(needed.error, "");

  for (const std::string& name : needed.names) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    EXPECT_EQ(lower.find("llvm"), std::string::npos) << lib << " needs " << name;
    EXPECT_EQ(lower.find("clang"), std::string::npos) << lib << " needs " << name;
  }
  // The client speaks Cap'n Proto RPC: if these are missing the parser read the wrong thing
  // (or the library is empty), and the absence of LLVM above would prove nothing.
  EXPECT_TRUE(anyStartsWith(needed.names, "libcapnp")) << lib << " needs: " << joined(needed.names);
  EXPECT_TRUE(anyStartsWith(needed.names, "libkj")) << lib << " needs: " << joined(needed.names);
}

} // namespace
} // namespace rjit::test
