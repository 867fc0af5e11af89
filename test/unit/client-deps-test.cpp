// SPDX-License-Identifier: MIT
// Checks the architecture's first promise: libremotejit-client carries no LLVM, nor the
// daemon's private protocol. Reads the library's DT_NEEDED entries and symbol table straight
// from its ELF sections (no readelf or nm, no LLVM).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <elf.h>
#include <fstream>
#include <gtest/gtest.h>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rjit::test {
namespace {

/// An ELF64 little-endian file read whole, with its section header table, or an error message.
struct ElfFile {
  std::string image;
  std::vector<Elf64_Shdr> sections;
  std::string error;
};

/// Names read from an ELF file (DT_NEEDED entries, symbols), or an error message.
struct Names {
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

ElfFile readElf(const std::string& path) {
  ElfFile out;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    out.error = "cannot open " + path;
    return out;
  }
  out.image.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  const std::string& image = out.image;

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
  for (uint64_t i = 0; i < count; ++i) {
    auto shdr = section(i);
    if (!shdr) {
      out.error = path + ": truncated section header table";
      return out;
    }
    out.sections.push_back(*shdr);
  }
  return out;
}

/// The string table a section links to (sh_link), checked to lie inside the file.
std::optional<Elf64_Shdr> linkedStrtab(const ElfFile& elf, const Elf64_Shdr& shdr) {
  if (shdr.sh_link >= elf.sections.size())
    return std::nullopt;
  const Elf64_Shdr& strtab = elf.sections[shdr.sh_link];
  if (strtab.sh_type != SHT_STRTAB || strtab.sh_offset > elf.image.size() ||
      elf.image.size() - strtab.sh_offset < strtab.sh_size)
    return std::nullopt;
  return strtab;
}

/// The NUL-terminated string at `offset` in `strtab`, or nullopt when it lies outside.
std::optional<std::string> stringAt(const ElfFile& elf, const Elf64_Shdr& strtab, uint64_t offset) {
  if (offset >= strtab.sh_size)
    return std::nullopt;
  const char* start = elf.image.data() + strtab.sh_offset + offset;
  return std::string(start, strnlen(start, strtab.sh_size - offset));
}

/// DT_NEEDED names of an ELF64 little-endian file.
Names readNeeded(const std::string& path) {
  Names out;
  ElfFile elf = readElf(path);
  if (!elf.error.empty()) {
    out.error = elf.error;
    return out;
  }
  bool foundDynamic = false;
  for (const Elf64_Shdr& shdr : elf.sections) {
    if (shdr.sh_type != SHT_DYNAMIC)
      continue;
    foundDynamic = true;
    auto strtab = linkedStrtab(elf, shdr);
    if (!strtab) {
      out.error = path + ": bad string table for the dynamic section";
      return out;
    }
    for (uint64_t off = 0; off + sizeof(Elf64_Dyn) <= shdr.sh_size; off += sizeof(Elf64_Dyn)) {
      auto dyn = readAt<Elf64_Dyn>(elf.image, shdr.sh_offset + off);
      if (!dyn) {
        out.error = path + ": truncated dynamic section";
        return out;
      }
      if (dyn->d_tag == DT_NULL)
        break;
      if (dyn->d_tag != DT_NEEDED)
        continue;
      auto name = stringAt(elf, *strtab, dyn->d_un.d_val);
      if (!name) {
        out.error = path + ": DT_NEEDED name outside the string table";
        return out;
      }
      out.names.push_back(std::move(*name));
    }
  }
  if (!foundDynamic)
    out.error = path + " has no dynamic section (not a shared object or dynamic executable)";
  return out;
}

/// The (mangled) names in an ELF64 file's full symbol table (.symtab, local symbols included),
/// what `nm` lists. A stripped file has none, which is an error here.
Names readSymbols(const std::string& path) {
  Names out;
  ElfFile elf = readElf(path);
  if (!elf.error.empty()) {
    out.error = elf.error;
    return out;
  }
  bool foundSymtab = false;
  for (const Elf64_Shdr& shdr : elf.sections) {
    if (shdr.sh_type != SHT_SYMTAB)
      continue;
    foundSymtab = true;
    auto strtab = linkedStrtab(elf, shdr);
    if (!strtab) {
      out.error = path + ": bad string table for the symbol table";
      return out;
    }
    for (uint64_t off = 0; off + sizeof(Elf64_Sym) <= shdr.sh_size; off += sizeof(Elf64_Sym)) {
      auto sym = readAt<Elf64_Sym>(elf.image, shdr.sh_offset + off);
      if (!sym) {
        out.error = path + ": truncated symbol table";
        return out;
      }
      auto name = stringAt(elf, *strtab, sym->st_name);
      if (!name) {
        out.error = path + ": symbol name outside the string table";
        return out;
      }
      if (!name->empty())
        out.names.push_back(std::move(*name));
    }
  }
  if (!foundSymtab)
    out.error = path + " has no symbol table (stripped)";
  return out;
}

bool anyStartsWith(const std::vector<std::string>& names, std::string_view prefix) {
  return std::any_of(names.begin(), names.end(),
                     [prefix](const std::string& n) { return n.starts_with(prefix); });
}

/// The names that contain `part`.
std::vector<std::string> containing(const std::vector<std::string>& names, std::string_view part) {
  std::vector<std::string> out;
  std::copy_if(names.begin(), names.end(), std::back_inserter(out),
               [part](const std::string& n) { return n.find(part) != std::string::npos; });
  return out;
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
  Names self = readNeeded("/proc/self/exe");
  ASSERT_EQ(self.error, "");
  EXPECT_TRUE(anyStartsWith(self.names, "libc.so.")) << joined(self.names);
  EXPECT_TRUE(anyStartsWith(self.names, "libstdc++.so.")) << joined(self.names);

  // And this test's own functions are in its symbol table (meson does not strip test programs).
  Names symbols = readSymbols("/proc/self/exe");
  ASSERT_EQ(symbols.error, "");
  EXPECT_FALSE(containing(symbols.names, "ClientDepsTest").empty());
}

TEST(ClientDepsTest, ParserRejectsNonElf) {
  Names bad = readNeeded("/proc/self/cmdline");
  EXPECT_NE(bad.error, "");
  EXPECT_TRUE(bad.names.empty());
  EXPECT_NE(readNeeded("/nonexistent/lib.so").error, "");
}

TEST(ClientDepsTest, ClientLibraryDoesNotNeedLlvm) {
  const char* lib = std::getenv("RJIT_CLIENT_LIB");
  ASSERT_NE(lib, nullptr) << "RJIT_CLIENT_LIB is not set (test/meson.build sets it)";
  Names needed = readNeeded(lib);
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

TEST(ClientDepsTest, ClientLibraryHasNoCompileWorkerProtocol) {
  // ipc/compile-worker/compile-worker.capnp is the daemon's private protocol with its compile
  // workers; the client library links only the client protocol (ipc/rjit.capnp).
  const char* lib = std::getenv("RJIT_CLIENT_LIB");
  ASSERT_NE(lib, nullptr) << "RJIT_CLIENT_LIB is not set (test/meson.build sets it)";
  Names symbols = readSymbols(lib);
  ASSERT_EQ(symbols.error, "");

  // The client protocol's code is there (namespace rjitd::proto): the symbol table was read.
  EXPECT_FALSE(containing(symbols.names, "_ZN5rjitd5proto").empty());
  // Nothing from namespace rjitd::proto::worker, and not WorkerAnswer's schema
  // (capnp::schemas::s_f93cb44f2252a349; the id is in the generated compile-worker.capnp.h).
  EXPECT_EQ(joined(containing(symbols.names, "5rjitd5proto6worker")), "");
  EXPECT_EQ(joined(containing(symbols.names, "f93cb44f2252a349")), "");
}

}  // namespace
}  // namespace rjit::test
