// SPDX-License-Identifier: MIT
// Session.load (see load-service.h).
#include "load-service.h"

#include "linker.h"
#include "log.h"
#include "proto-convert.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <kj/debug.h>
#include <map>
#include <mutex>
#include <optional>
#include <unistd.h>
#include <unordered_map>

namespace rjitd::service {

namespace {

using Clock = std::chrono::steady_clock;
using Resolved = std::unordered_map<std::string, uint64_t>;
using PrepareResult = std::variant<linker::PreparedObject, Failure>;
using LinkResult = std::variant<linker::LinkedImage, Failure>;

constexpr uint64_t MIN_PAGE = 4096, MAX_PAGE = 64 * 1024;

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

/// The client's reservation: which page ranges loaded modules occupy. reserve() runs on link
/// workers, release() on the event loop, hence the mutex.
class ClientArena final {
public:
  ClientArena(uint64_t base, uint64_t size, uint64_t pageSize, uint64_t limit)
      : base(base), size(size), pageSize(pageSize), limit(limit) {
    free.emplace(base, size);
  }

  bool sameAs(uint64_t b, uint64_t s, uint64_t p) const {
    return b == base && s == size && p == pageSize;
  }

  /// First fit. Fails with TooLarge when neither the client's reservation nor rjitd's
  /// per-session limit has room.
  std::variant<uint64_t, Failure> reserve(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex);
    if (used + bytes > limit)
      return Failure{ErrorKind::TooLarge,
                     "the module needs " + std::to_string(bytes) +
                         " bytes of memory; this client's "
                         "loaded modules hold " +
                         std::to_string(used) + " and rjitd allows a client " +
                         std::to_string(limit) +
                         " (rjitd --max-client-memory); unload modules first",
                     {}};
    for (auto it = free.begin(); it != free.end(); ++it) {
      if (it->second < bytes)
        continue;
      uint64_t address = it->first, left = it->second - bytes;
      free.erase(it);
      if (left > 0)
        free.emplace(address + bytes, left);
      used += bytes;
      return address;
    }
    return Failure{ErrorKind::TooLarge,
                   "the module needs " + std::to_string(bytes) + " bytes of memory but the " +
                       std::to_string(size) +
                       "-byte reservation of this client (its memory quota, "
                       "RJIT_MEMORY_QUOTA) has " +
                       std::to_string(size - used) + " bytes free" +
                       (used < size ? " (not in one piece)" : "") +
                       "; unload modules or raise the quota",
                   {}};
  }

  void release(uint64_t address, uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex);
    used -= bytes;
    auto [it, inserted] = free.emplace(address, bytes);
    (void)inserted;
    // Merge with the neighbours.
    auto next = std::next(it);
    if (next != free.end() && it->first + it->second == next->first) {
      it->second += next->second;
      free.erase(next);
    }
    if (it != free.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        free.erase(it);
      }
    }
  }

private:
  const uint64_t base, size, pageSize, limit;
  std::mutex mutex;
  std::map<uint64_t, uint64_t> free;  // address -> bytes
  uint64_t used = 0;
};

}  // namespace

class SessionImages final {
public:
  struct Definition {
    uint64_t address;
    uint64_t module;
    bool weak;
  };
  std::shared_ptr<ClientArena> arena;  // set by the session's first load
  std::unordered_map<std::string, Definition> symbols;
  std::unordered_map<uint64_t, std::string> moduleNames;
  uint64_t nextModule = 1;

  void forget(uint64_t module) {
    for (auto it = symbols.begin(); it != symbols.end();)
      it = it->second.module == module ? symbols.erase(it) : std::next(it);
    moduleNames.erase(module);
  }
};

std::shared_ptr<SessionImages> newSessionImages() {
  return std::make_shared<SessionImages>();
}

namespace {

/// The capability a client holds for one loaded module: the memfd travels attached to it
/// (getFd), `read` serves the bytes over connections that cannot pass descriptors, and its
/// release unloads the module.
class LoadedImageImpl final : public proto::LoadedImage::Server {
public:
  LoadedImageImpl(std::shared_ptr<SessionImages> images, uint64_t module, linker::LinkedImage image,
                  metrics::Metrics& metrics)
      : images(std::move(images)), module(module), image(std::move(image)), metrics(metrics) {
    metrics.imageLoaded(this->image.size);
  }
  ~LoadedImageImpl() noexcept(false) {
    images->forget(module);
    images->arena->release(image.base, image.size);
    metrics.imageReleased(image.size);
  }

  kj::Maybe<int> getFd() override { return image.memfd.get(); }

  kj::Promise<void> read(ReadContext context) override {
    auto bytes = context.getResults().initBytes(image.size);
    size_t done = 0;
    while (done < image.size) {
      ssize_t n = ::pread(image.memfd.get(), bytes.begin() + done, image.size - done,
                          static_cast<off_t>(done));
      if (n < 0 && errno == EINTR)
        continue;
      KJ_REQUIRE(n > 0, "cannot read the image memfd", strerror(errno));
      done += static_cast<size_t>(n);
    }
    return kj::READY_NOW;
  }

private:
  std::shared_ptr<SessionImages> images;
  uint64_t module;
  linker::LinkedImage image;
  metrics::Metrics& metrics;
};

/// Everything one load carries from step to step.
struct LoadState {
  CompileService& service;
  WorkerPool& linkPool;
  metrics::Metrics& metrics;
  std::shared_ptr<SessionImages> images;
  LoadContext context;
  proto::SymbolResolver::Client resolver;
  std::string moduleName;
  std::string target;  // metrics label
  uint64_t pageSize = 0;
  Served served;
  Clock::time_point linkStart;

  void fail(const Failure& f) { toProto(f, context.getResults().initOutcome().initError()); }
};

Failure invalid(std::string message) {
  return Failure{ErrorKind::InvalidRequest, std::move(message), {}};
}

std::optional<Failure> checkArena(uint64_t base, uint64_t size, uint64_t page) {
  if (page < MIN_PAGE || page > MAX_PAGE || (page & (page - 1)) != 0)
    return invalid("page size " + std::to_string(page) + " is not a power of two from 4096 to " +
                   std::to_string(MAX_PAGE));
  if (size == 0 || base % page != 0 || size % page != 0 || base == 0 || base + size < base)
    return invalid("the client's reservation (base " + hex(base) + ", " + std::to_string(size) +
                   " bytes) is empty, not page-aligned or wraps around");
  return std::nullopt;
}

kj::Promise<Resolved> resolve(LoadState& s, const std::vector<linker::Import>& imports) {
  Resolved resolved;
  std::vector<std::string> ask;
  for (const auto& import : imports) {
    auto it = s.images->symbols.find(import.name);
    if (it != s.images->symbols.end())
      resolved.emplace(import.name, it->second.address);  // a module this session loaded
    else
      ask.push_back(import.name);
  }
  if (ask.empty())
    return kj::Promise<Resolved>(kj::mv(resolved));
  auto request = s.resolver.resolveRequest();
  auto names = request.initNames(ask.size());
  for (size_t i = 0; i < ask.size(); ++i)
    names.set(i, ask[i]);
  return request.send().then(
      [resolved = kj::mv(resolved), ask = kj::mv(ask)](
          capnp::Response<proto::SymbolResolver::ResolveResults>&& response) mutable {
        auto addresses = response.getAddresses();
        KJ_REQUIRE(addresses.size() == ask.size(), "the client's symbol resolver answered "
                                                   "with the wrong number of addresses");
        for (size_t i = 0; i < ask.size(); ++i)
          if (addresses[i] != 0)
            resolved.emplace(ask[i], addresses[i]);
        return kj::mv(resolved);
      });
}

/// The link result, answered on the event loop: registers the module's symbols in the session
/// and hands out its capability.
std::optional<ErrorKind> finish(LoadState& s, LinkResult&& result, uint64_t linkMicros) {
  if (auto* f = std::get_if<Failure>(&result)) {
    s.metrics.linkDone(s.target, f->kind, Clock::now() - s.linkStart);
    s.fail(*f);
    return f->kind;
  }
  linker::LinkedImage image = std::get<linker::LinkedImage>(kj::mv(result));
  for (const auto& symbol : image.symbols) {
    auto it = s.images->symbols.find(symbol.name);
    if (it == s.images->symbols.end() || symbol.weak || it->second.weak)
      continue;
    s.images->arena->release(image.base, image.size);
    Failure f{ErrorKind::LinkFailed,
              "cannot load " + s.moduleName + ": symbol '" + symbol.name +
                  "' is already defined by " + s.images->moduleNames[it->second.module] +
                  ", loaded earlier by this client; unload that module first or rename one "
                  "of the definitions",
              {}};
    s.metrics.linkDone(s.target, f.kind, Clock::now() - s.linkStart);
    s.fail(f);
    return f.kind;
  }
  s.metrics.linkDone(s.target, std::nullopt, Clock::now() - s.linkStart);

  uint64_t module = s.images->nextModule++;
  s.images->moduleNames[module] = s.moduleName;
  for (const auto& symbol : image.symbols)
    s.images->symbols.emplace(symbol.name,
                              SessionImages::Definition{symbol.address, module, symbol.weak});

  auto ok = s.context.getResults().initOutcome().initOk();
  toProto(*s.served.object, false, ok.initObject());
  ok.getObject().setKey(capnp::Data::Reader(s.served.key.data(), s.served.key.size()));
  ok.getObject().setFromCache(s.served.fromCache);
  if (s.served.fromCache)
    ok.getObject().setCompileMicros(0);
  ok.setBase(image.base);
  ok.setSize(image.size);
  auto segments = ok.initSegments(image.segments.size());
  for (size_t i = 0; i < image.segments.size(); ++i) {
    segments[i].setAddress(image.segments[i].address);
    segments[i].setOffset(image.segments[i].offset);
    segments[i].setSize(image.segments[i].size);
    segments[i].setProtection(image.segments[i].protection);
  }
  auto symbols = ok.initSymbols(image.symbols.size());
  for (size_t i = 0; i < image.symbols.size(); ++i) {
    symbols[i].setName(image.symbols[i].name);
    symbols[i].setAddress(image.symbols[i].address);
    symbols[i].setFunction(image.symbols[i].function);
  }
  auto inits = ok.initInitializers(image.initializers.size());
  for (size_t i = 0; i < image.initializers.size(); ++i)
    inits.set(i, image.initializers[i]);
  auto finis = ok.initFinalizers(image.finalizers.size());
  for (size_t i = 0; i < image.finalizers.size(); ++i)
    finis.set(i, image.finalizers[i]);
  ok.setEhFrameAddress(image.ehFrameAddress);
  ok.setEhFrameSize(image.ehFrameSize);
  ok.setLinkMicros(linkMicros);
  ok.setImage(kj::heap<LoadedImageImpl>(s.images, module, kj::mv(image), s.metrics));
  return std::nullopt;
}

kj::Promise<std::optional<ErrorKind>> link(LoadState& s) {
  s.linkStart = Clock::now();
  std::shared_ptr<const CompiledObject> object = s.served.object;
  return s.linkPool
      .run<PrepareResult>([object, name = s.moduleName]() { return linker::prepare(object, name); })
      .then([&s](PrepareResult&& prepared) -> kj::Promise<std::optional<ErrorKind>> {
        if (auto* f = std::get_if<Failure>(&prepared)) {
          s.metrics.linkDone(s.target, f->kind, Clock::now() - s.linkStart);
          s.fail(*f);
          return std::optional<ErrorKind>(f->kind);
        }
        auto object = std::make_shared<linker::PreparedObject>(
            std::get<linker::PreparedObject>(kj::mv(prepared)));
        return resolve(s, object->imports())
            .then(
                [&s, object](Resolved&& resolved) {
                  std::shared_ptr<ClientArena> arena = s.images->arena;
                  uint64_t pageSize = s.pageSize;
                  return s.linkPool
                      .run<std::pair<LinkResult, uint64_t>>(
                          [object, resolved = kj::mv(resolved), arena,
                           pageSize]() -> std::pair<LinkResult, uint64_t> {
                            Clock::time_point start = Clock::now();
                            std::optional<std::pair<uint64_t, uint64_t>> range;
                            linker::Reserve reserve =
                                [&](uint64_t bytes) -> std::variant<uint64_t, Failure> {
                              auto r = arena->reserve(bytes);
                              if (auto* address = std::get_if<uint64_t>(&r))
                                range.emplace(*address, bytes);
                              return r;
                            };
                            LinkResult result =
                                linker::link(kj::mv(*object), resolved, pageSize, reserve);
                            if (std::holds_alternative<Failure>(result) && range)
                              arena->release(range->first, range->second);
                            uint64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(
                                                  Clock::now() - start)
                                                  .count();
                            return {kj::mv(result), micros};
                          })
                      .then([&s](std::pair<LinkResult, uint64_t>&& r) {
                        return finish(s, kj::mv(r.first), r.second);
                      });
                },
                [&s](kj::Exception&& e) -> std::optional<ErrorKind> {
                  if (e.getType() == kj::Exception::Type::DISCONNECTED)
                    throw kj::mv(e);  // the client is gone: nobody to answer
                  Failure f{ErrorKind::InvalidRequest,
                            "the client's symbol resolver failed: " +
                                std::string(e.getDescription().cStr()),
                            {}};
                  s.fail(f);
                  return f.kind;
                });
      });
}

}  // namespace

kj::Promise<std::optional<ErrorKind>> serveLoad(CompileService& service, WorkerPool& linkPool,
                                                metrics::Metrics& metrics, const LoadLimits& limits,
                                                std::shared_ptr<SessionImages> images,
                                                LoadContext context) {
  using Answer = kj::Promise<std::optional<ErrorKind>>;
  auto request = context.getParams().getRequest();
  auto state = kj::heap<LoadState>(LoadState{service,
                                             linkPool,
                                             metrics,
                                             std::move(images),
                                             context,
                                             request.getResolver(),
                                             {},
                                             {},
                                             0,
                                             {},
                                             {}});
  LoadState& s = *state;
  auto arena = request.getArena();
  s.pageSize = arena.getPageSize();
  if (auto f = checkArena(arena.getBase(), arena.getSize(), s.pageSize)) {
    s.fail(*f);
    return Answer(std::optional<ErrorKind>(f->kind));
  }
  if (s.images->arena == nullptr)
    s.images->arena = std::make_shared<ClientArena>(arena.getBase(), arena.getSize(), s.pageSize,
                                                    limits.maxSessionImageBytes);
  else if (!s.images->arena->sameAs(arena.getBase(), arena.getSize(), s.pageSize)) {
    Failure f = invalid("a session loads into one reservation, named by its first load; this "
                        "request names another (base " +
                        hex(arena.getBase()) + ")");
    s.fail(f);
    return Answer(std::optional<ErrorKind>(f.kind));
  }
  CompileJob job = toCompileJob(request.getCompile());
  s.moduleName = job.moduleName;
  const TargetName* target = resolveTarget(service.targets(), job.target, service.defaultTriple());
  s.target = target != nullptr ? target->name : std::string(metrics::UNKNOWN_TARGET);
  auto keyBytes = request.getKey();
  std::string key(reinterpret_cast<const char*>(keyBytes.begin()), keyBytes.size());
  context.releaseParams();

  kj::Promise<ServeResult> served = nullptr;
  if (job.module.empty() && !key.empty()) {
    auto parsed = cache::keyFromBytes(key);
    if (!parsed) {
      Failure f = invalid("load key is " + std::to_string(key.size()) +
                          " bytes; a key is a 32-byte SHA-256 digest");
      s.fail(f);
      return Answer(std::optional<ErrorKind>(f.kind));
    }
    served = service.lookup(*parsed);
  } else {
    served = service.compile(kj::mv(job));
  }
  return served
      .then([&s](ServeResult&& result) -> kj::Promise<std::optional<ErrorKind>> {
        if (auto* f = std::get_if<Failure>(&result)) {
          s.fail(*f);
          return std::optional<ErrorKind>(f->kind);
        }
        s.served = std::get<Served>(kj::mv(result));
        return link(s);
      })
      .attach(kj::mv(state));
}

}  // namespace rjitd::service
