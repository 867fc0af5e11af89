// SPDX-License-Identifier: MIT
// libFuzzer target: the client's checks of rjitd's answer to a load, before it maps anything.
// The input is a Cap'n Proto LoadedModule, decoded as the client library decodes one
// (src/client/rpc-load.h toLoadedParts), then checked against a real reservation of this
// process (checkImage) with its addresses taken as offsets from the reservation's base (so that
// the fuzzer can reach images that lie inside it). An image the checks accept is mapped for
// real from a sealed memfd (MappedImage::create) and unmapped, never started: a check that lets
// a segment out of the reservation would map over this process's own memory, which the oracle
// below and AddressSanitizer catch.
#include "fuzz-message.h"
#include "image-mapper.h"
#include "rpc-load.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <kj/exception.h>

namespace {

using rjit::detail::Arena;
using rjit::detail::failed;
using rjit::detail::ImageSpec;

constexpr uint64_t ARENA_BYTES = 64ull << 20;
/// Images larger than this are checked but not mapped (a memfd per input must stay cheap).
constexpr uint64_t MAX_MAPPED_BYTES = 4ull << 20;

std::shared_ptr<Arena>& arena() {
  static std::shared_ptr<Arena> reserved = [] {
    auto made = Arena::create(ARENA_BYTES);
    if (failed(made) != nullptr)
      abort();
    return std::get<std::shared_ptr<Arena>>(std::move(made));
  }();
  return reserved;
}

[[noreturn]] void accepted(const char* what, const ImageSpec& spec) {
  fprintf(stderr, "checkImage accepted an image with %s (base %#llx, size %#llx)\n", what,
          static_cast<unsigned long long>(spec.base), static_cast<unsigned long long>(spec.size));
  abort();
}

/// What checkImage promises of an image it accepts (image-mapper.h).
void checkPromises(const ImageSpec& spec, uint64_t base, uint64_t size) {
  uint64_t end = base + size;
  if (spec.base < base || spec.size > size || spec.base - base > size - spec.size)
    accepted("an image outside the reservation", spec);
  for (const auto& s : spec.segments) {
    if (s.address < spec.base || s.size > spec.size || s.address - spec.base > spec.size - s.size)
      accepted("a segment outside the image", spec);
    if ((s.protection & rjit::detail::SEGMENT_WRITE) &&
        (s.protection & rjit::detail::SEGMENT_EXECUTE))
      accepted("a writable and executable segment", spec);
    if (s.address + s.size > end)
      accepted("a segment past the reservation", spec);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto words = rjitd::fuzz::toWords(data, size);
  // A malformed message throws a kj exception in the client's I/O thread, where the load's
  // promise rejects with it: an answer, not a crash.
  kj::runCatchingExceptions([&]() {
    capnp::FlatArrayMessageReader reader(words, rjitd::fuzz::fuzzReaderOptions());
    auto answered = rjit::detail::toLoadedParts(reader.getRoot<rjitd::proto::LoadedModule>(),
                                                std::vector<uint64_t>{});
    if (failed(answered) != nullptr)
      return;
    ImageSpec spec = std::get<rjit::detail::LoadedParts>(std::move(answered)).spec;
    const uint64_t base = arena()->base();
    spec.base += base;
    for (auto& s : spec.segments)
      s.address += base;
    for (auto& a : spec.initializers)
      a += base;
    for (auto& a : spec.finalizers)
      a += base;
    spec.ehFrameAddress += base;
    auto checked = rjit::detail::checkImage(spec, base, arena()->size(), Arena::pageSize());
    if (failed(checked) != nullptr)
      return;
    checkPromises(spec, base, arena()->size());
    if (spec.size > MAX_MAPPED_BYTES)
      return;
    auto file = rjit::detail::ImageFile::create(spec.size);
    if (failed(file) != nullptr)
      return;
    auto sealed = std::get<std::unique_ptr<rjit::detail::ImageFile>>(file)->finish();
    if (failed(sealed) != nullptr)
      return;
    auto fd = std::get<kj::AutoCloseFd>(std::move(sealed));
    // Mapped and unmapped again (never started: nothing of the image runs).
    (void)rjit::detail::MappedImage::create(arena(), fd.get(), spec);
  });
  return 0;
}
