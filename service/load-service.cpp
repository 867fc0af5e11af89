// SPDX-License-Identifier: MIT
// Session.load (see load-service.h).
#include "load-service.h"

#include "linker.h"
#include "log.h"
#include "proto-convert.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <kj/debug.h>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unistd.h>
#include <unordered_map>
#include <variant>

namespace rjitd::service {

namespace {

using Clock = std::chrono::steady_clock;
using PrepareResult = std::variant<linker::PreparedObject, Failure>;

/// Page sizes a client may name: what Linux uses on x86_64 and AArch64 (4, 16 and 64 KiB).
constexpr uint64_t MIN_PAGE_BYTES = 4096, MAX_PAGE_BYTES = 64 * 1024;

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
  /// per-client limit has room.
  std::variant<uint64_t, Failure> reserve(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex);
    if (bytes > limit - used)
      return Failure{ErrorKind::TooLarge,
                     "the module needs " + std::to_string(bytes) +
                         " bytes of memory; this client's loaded modules hold " +
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
    auto it = free.emplace(address, bytes).first;
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

/// A range reserved in a client's arena, returned to it on destruction unless handed on. It
/// travels with the link result, so a load abandoned at any step (the client gone, the call
/// cancelled, a failure) gives its range back.
class RangeLease final {
public:
  RangeLease() = default;
  RangeLease(std::shared_ptr<ClientArena> arena, uint64_t base, uint64_t size)
      : arena(std::move(arena)), base(base), size(size) {}
  RangeLease(RangeLease&& other) noexcept
      : arena(std::move(other.arena)), base(other.base), size(other.size) {}
  RangeLease& operator=(RangeLease&& other) noexcept {
    reset();
    arena = std::move(other.arena);
    base = other.base;
    size = other.size;
    return *this;
  }
  ~RangeLease() { reset(); }
  void reset() {
    if (arena)
      arena->release(base, size);
    arena = nullptr;
  }

private:
  std::shared_ptr<ClientArena> arena;
  uint64_t base = 0, size = 0;
};

}  // namespace

class ClientImages final {
public:
  struct Definition {
    uint64_t address;
    uint64_t module;
    bool weak;
  };
  struct Module {
    std::string name;
    uint64_t base;
  };
  std::shared_ptr<ClientArena> arena;  // set by the connection's first load
  std::unordered_map<std::string, Definition> symbols;
  /// Process symbols (libc, the program's own) the client answered as stable on this
  /// connection: later loads use them without a question to the client. A process's libc does
  /// not move, and the client pins every library it answers from (SymbolResolver).
  std::unordered_map<std::string, uint64_t> processSymbols;
  uint64_t processSymbolBytes = 0;  // of their names (LoadLimits::maxRememberedSymbolBytes)
  std::unordered_map<uint64_t, Module> modules;  // loaded now, by id
  uint64_t nextModule = 1;
  uint32_t loading = 0;  // loads in progress; they count against the limits too
  uint64_t bytes = 0;    // what the loaded modules hold

  void forget(uint64_t module) {
    for (auto it = symbols.begin(); it != symbols.end();)
      it = it->second.module == module ? symbols.erase(it) : std::next(it);
    modules.erase(module);
  }
};

std::shared_ptr<ClientImages> newClientImages() {
  return std::make_shared<ClientImages>();
}

namespace {

struct LinkOutcome {
  std::variant<linker::LinkedImage, Failure> result;
  RangeLease range;
  uint64_t micros = 0;
};

/// The capability a client holds for one loaded module: the memfd travels attached to it
/// (getFd), `read` serves the bytes over connections that cannot pass descriptors, and its
/// release unloads the module.
class LoadedImageImpl final : public proto::LoadedImage::Server {
public:
  LoadedImageImpl(LoadEnvironment& env, std::shared_ptr<ClientImages> images, uint64_t module,
                  linker::LinkedImage image, RangeLease range)
      : env(env), images(std::move(images)), module(module), image(std::move(image)),
        range(std::move(range)) {
    env.metrics.imageLoaded(this->image.size);
    ++env.totals.images;
    env.totals.bytes += this->image.size;
    this->images->bytes += this->image.size;
  }
  ~LoadedImageImpl() noexcept(false) {
    images->forget(module);
    images->bytes -= image.size;
    env.metrics.imageReleased(image.size);
    --env.totals.images;
    env.totals.bytes -= image.size;
    // `range` returns the address range to the client's arena.
  }

  kj::Maybe<int> getFd() override { return image.memfd.get(); }

  kj::Promise<void> read(ReadContext context) override {
    uint64_t offset = context.getParams().getOffset(), size = context.getParams().getSize();
    KJ_REQUIRE(offset <= image.size && size <= image.size - offset,
               "read beyond the end of the image", offset, size, image.size);
    KJ_REQUIRE(size <= env.limits.maxReadBytes, "read larger than LoadedModule.readLimit", size);
    auto bytes = context.getResults().initBytes(size);
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::pread(image.memfd.get(), bytes.begin() + done, size - done,
                          static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR)
        continue;
      KJ_REQUIRE(n > 0, "cannot read the image memfd", strerror(errno));
      done += static_cast<size_t>(n);
    }
    return kj::READY_NOW;
  }

private:
  LoadEnvironment& env;
  std::shared_ptr<ClientImages> images;
  uint64_t module;
  linker::LinkedImage image;
  RangeLease range;
};

/// Imports resolved for one load, the modules of this client they come from, and the names
/// the client was asked about (answered 0 or not: it is not asked again).
struct Resolution {
  std::unordered_map<std::string, uint64_t> addresses;
  std::set<uint64_t> modules;
  std::set<std::string> asked;
};

/// Everything one load carries from step to step.
struct LoadState {
  LoadEnvironment& env;
  std::shared_ptr<ClientImages> images;
  LoadContext context;
  proto::SymbolResolver::Client resolver;
  std::unordered_map<std::string, uint64_t> offered;  // LoadRequest.symbols
  bool processSymbols = true;                         // LoadRequest.processSymbols
  std::string moduleName;
  std::string target;  // metrics label
  uint64_t pageSize = 0;
  Served served;
  Clock::time_point linkStart;

  std::optional<ErrorKind> fail(const Failure& f) {
    toProto(f, context.getResults().initOutcome().initError());
    return f.kind;
  }
  std::optional<ErrorKind> linkFailed(const Failure& f) {
    env.metrics.linkDone(target, f.kind, Clock::now() - linkStart);
    return fail(f);
  }
};

Failure invalid(std::string message) {
  return Failure{ErrorKind::InvalidRequest, std::move(message), {}};
}

std::optional<Failure> checkArena(uint64_t base, uint64_t size, uint64_t page) {
  if (page < MIN_PAGE_BYTES || page > MAX_PAGE_BYTES || (page & (page - 1)) != 0)
    return invalid("page size " + std::to_string(page) + " is not a power of two from " +
                   std::to_string(MIN_PAGE_BYTES) + " to " + std::to_string(MAX_PAGE_BYTES));
  if (size == 0 || base % page != 0 || size % page != 0 || base == 0 || base + size < base)
    return invalid("the client's reservation (base " + hex(base) + ", " + std::to_string(size) +
                   " bytes) is empty, not page-aligned or wraps around");
  return std::nullopt;
}

std::optional<Failure> checkLimits(const LoadEnvironment& env, const ClientImages& images) {
  uint32_t held = static_cast<uint32_t>(images.modules.size()) + images.loading;
  if (held >= env.limits.maxClientImages)
    return Failure{ErrorKind::TooLarge,
                   "this client holds " + std::to_string(held) +
                       " loaded modules, the most rjitd allows one client; unload modules first",
                   {}};
  if (env.totals.images >= env.limits.maxImages || env.totals.bytes >= env.limits.maxImageBytes)
    return Failure{ErrorKind::Overloaded,
                   "rjitd holds " + std::to_string(env.totals.images) + " loaded modules (" +
                       std::to_string(env.totals.bytes) +
                       " bytes) for its clients, the most it allows; retry after some are "
                       "unloaded",
                   {}};
  return std::nullopt;
}

/// Resolves the `names` rjitd can answer without the client: the request's own symbols,
/// definitions of modules this connection loaded, then process symbols the client called stable.
/// Returns the rest, which only the client can answer.
std::vector<std::string> resolveKnown(LoadState& s, Resolution& r,
                                      const std::vector<std::string>& names) {
  std::vector<std::string> rest;
  for (const std::string& name : names) {
    if (linker::definesItself(name) || r.addresses.count(name) != 0 || r.asked.count(name) != 0)
      continue;
    if (auto offered = s.offered.find(name); offered != s.offered.end()) {
      r.addresses.emplace(name, offered->second);
    } else if (auto it = s.images->symbols.find(name); it != s.images->symbols.end()) {
      r.addresses.emplace(name, it->second.address);
      r.modules.insert(it->second.module);
    } else if (auto process = s.images->processSymbols.find(name);
               s.processSymbols && process != s.images->processSymbols.end()) {
      r.addresses.emplace(name, process->second);
    } else {
      rest.push_back(name);
    }
  }
  return rest;
}

/// Asks the client's resolver for `names` and records its answers in `r` (and the stable ones
/// for this connection). Fails if the client does not answer in time.
kj::Promise<void> askClient(LoadState& s, std::shared_ptr<Resolution> r,
                            std::vector<std::string> names) {
  if (names.empty())
    return kj::READY_NOW;
  s.env.metrics.symbolQuestionAsked();
  auto request = s.resolver.resolveRequest();
  auto list = request.initNames(names.size());
  for (size_t i = 0; i < names.size(); ++i)
    list.set(i, names[i]);
  auto answer =
      request.send().then([&s, r, names = kj::mv(names)](
                              capnp::Response<proto::SymbolResolver::ResolveResults>&& response) {
        auto addresses = response.getAddresses();
        auto stable = response.getStable();
        KJ_REQUIRE(addresses.size() == names.size(),
                   "the client's symbol resolver answered with the wrong number of addresses");
        bool withStable = stable.size() == names.size();
        ClientImages& images = *s.images;
        const LoadLimits& limits = s.env.limits;
        for (size_t i = 0; i < names.size(); ++i) {
          r->asked.insert(names[i]);
          if (addresses[i] == 0)
            continue;
          r->addresses.emplace(names[i], addresses[i]);
          if (withStable && stable[i] &&
              images.processSymbols.size() < limits.maxRememberedSymbols &&
              names[i].size() <= limits.maxRememberedSymbolBytes - images.processSymbolBytes &&
              images.processSymbols.emplace(names[i], addresses[i]).second)
            images.processSymbolBytes += names[i].size();
        }
      });
  // A client that never answers must not hold its load (and rjitd's drain) forever.
  auto deadline = s.env.timer.afterDelay(s.env.limits.resolveTimeout.count() * kj::MILLISECONDS)
                      .then([timeout = s.env.limits.resolveTimeout]() {
                        KJ_FAIL_REQUIRE("no answer within the time limit",
                                        std::to_string(timeout.count()) + " ms");
                      });
  return answer.exclusiveJoin(kj::mv(deadline));
}

/// The link result, answered on the event loop: registers the module's symbols for this client
/// and hands out its capability.
std::optional<ErrorKind> finish(LoadState& s, LinkOutcome&& outcome,
                                const std::set<uint64_t>& dependencies) {
  if (auto* f = std::get_if<Failure>(&outcome.result))
    return s.linkFailed(*f);
  linker::LinkedImage image = std::get<linker::LinkedImage>(kj::mv(outcome.result));
  for (uint64_t dependency : dependencies)
    if (s.images->modules.count(dependency) == 0)
      return s.linkFailed(Failure{ErrorKind::LinkFailed,
                                  "cannot load " + s.moduleName +
                                      ": a module it links against was unloaded while it was "
                                      "being linked; load it again",
                                  {}});
  for (const auto& symbol : image.symbols) {
    auto it = s.images->symbols.find(symbol.name);
    if (it == s.images->symbols.end() || symbol.weak || it->second.weak)
      continue;
    return s.linkFailed(
        Failure{ErrorKind::LinkFailed,
                "cannot load " + s.moduleName + ": symbol '" + symbol.name +
                    "' is already defined by " + s.images->modules[it->second.module].name +
                    ", loaded earlier by this client; unload that module first or rename one "
                    "of the definitions",
                {}});
  }
  s.env.metrics.linkDone(s.target, std::nullopt, Clock::now() - s.linkStart);

  uint64_t module = s.images->nextModule++;
  s.images->modules[module] = {s.moduleName, image.base};
  for (const auto& symbol : image.symbols) {
    auto [it, inserted] = s.images->symbols.try_emplace(
        symbol.name, ClientImages::Definition{symbol.address, module, symbol.weak});
    if (!inserted && it->second.weak && !symbol.weak)
      it->second = {symbol.address, module, false};  // a strong definition wins over a weak one
  }

  auto ok = s.context.getResults().initOutcome().initOk();
  toProto(s.served, false, ok.initObject());
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
  ok.setLinkMicros(outcome.micros);
  auto deps = ok.initDependencies(dependencies.size());
  size_t i = 0;
  for (uint64_t dependency : dependencies)
    deps.set(i++, s.images->modules[dependency].base);
  ok.setReadLimit(s.env.limits.maxReadBytes);
  ok.setImage(
      kj::heap<LoadedImageImpl>(s.env, s.images, module, kj::mv(image), kj::mv(outcome.range)));
  return std::nullopt;
}

/// What a link worker hands back: the link's outcome or, when the object imports names that
/// nobody has answered yet (the compiler's `needs` list did not have them), the parsed object
/// and those names, for the event loop to ask the client about.
struct Unanswered {
  std::shared_ptr<linker::PreparedObject> object;
  std::vector<std::string> names;
};
using LinkStep = std::variant<LinkOutcome, Unanswered>;

/// Runs on a link worker: parses the object (unless `prepared` is set), then links it. Everything
/// it touches is its own, thread-safe (the arena) or left alone by the event loop while the
/// worker runs (`r`).
LinkStep linkOnWorker(std::shared_ptr<const CompiledObject> compiled, const std::string& name,
                      std::shared_ptr<linker::PreparedObject> prepared,
                      std::shared_ptr<const Resolution> r, std::shared_ptr<ClientArena> arena,
                      uint64_t pageSize) {
  Clock::time_point start = Clock::now();
  LinkOutcome out;
  if (prepared == nullptr) {
    PrepareResult parsed = linker::prepare(std::move(compiled), name);
    if (auto* f = std::get_if<Failure>(&parsed)) {
      out.result = std::move(*f);
      return out;
    }
    prepared = std::make_shared<linker::PreparedObject>(
        std::get<linker::PreparedObject>(std::move(parsed)));
    std::vector<std::string> unanswered;
    for (const auto& import : prepared->imports())
      if (r->addresses.count(import.name) == 0 && r->asked.count(import.name) == 0)
        unanswered.push_back(import.name);
    if (!unanswered.empty())
      return Unanswered{std::move(prepared), std::move(unanswered)};
  }
  linker::Reserve reserve = [&](uint64_t bytes) -> std::variant<uint64_t, Failure> {
    auto reserved = arena->reserve(bytes);
    if (auto* address = std::get_if<uint64_t>(&reserved))
      out.range = RangeLease(arena, *address, bytes);
    return reserved;
  };
  out.result = linker::link(std::move(*prepared), r->addresses, pageSize, reserve);
  if (std::holds_alternative<Failure>(out.result))
    out.range.reset();
  out.micros = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
  return out;
}

kj::Promise<std::optional<ErrorKind>> linkStep(LoadState& s, std::shared_ptr<Resolution> r,
                                               std::shared_ptr<linker::PreparedObject> prepared);

/// Asks the client for `names`, then goes on with the link; a client that does not answer
/// fails the load.
kj::Promise<std::optional<ErrorKind>>
askThenLink(LoadState& s, std::shared_ptr<Resolution> r, std::vector<std::string> names,
            std::shared_ptr<linker::PreparedObject> prepared) {
  return askClient(s, r, kj::mv(names))
      .then([&s, r, prepared]() { return linkStep(s, r, prepared); },
            [&s](kj::Exception&& e) -> kj::Promise<std::optional<ErrorKind>> {
              // Also what a client that went away gets: an answer nobody reads.
              return s.linkFailed(invalid("the client did not answer rjitd's question for the "
                                          "addresses of its symbols: " +
                                          std::string(e.getDescription().cStr())));
            });
}

/// One trip to a link worker: parse and link (usually), or parse and come back for answers.
kj::Promise<std::optional<ErrorKind>> linkStep(LoadState& s, std::shared_ptr<Resolution> r,
                                               std::shared_ptr<linker::PreparedObject> prepared) {
  return s.env.linkPool
      .run<LinkStep>([object = s.served.object, name = s.moduleName, prepared, r,
                      arena = s.images->arena, pageSize = s.pageSize]() mutable {
        return linkOnWorker(std::move(object), name, std::move(prepared), r, std::move(arena),
                            pageSize);
      })
      .then([&s, r](LinkStep&& step) -> kj::Promise<std::optional<ErrorKind>> {
        if (auto* more = std::get_if<Unanswered>(&step)) {
          // Names the `needs` list missed: answer what rjitd knows, ask the client the rest.
          std::vector<std::string> rest = resolveKnown(s, *r, more->names);
          return askThenLink(s, r, kj::mv(rest), kj::mv(more->object));
        }
        return finish(s, std::get<LinkOutcome>(kj::mv(step)), r->modules);
      });
}

/// Links the served object for the client. The imports rjitd can answer itself are resolved
/// first, the client is asked about the rest in one question, and then a link worker parses and
/// links the object in one go: a warm load whose imports are all known costs no round trip to
/// the client and one trip to a worker.
kj::Promise<std::optional<ErrorKind>> link(LoadState& s) {
  s.linkStart = Clock::now();
  auto r = std::make_shared<Resolution>();
  std::vector<std::string> rest = resolveKnown(s, *r, s.served.object->needs);
  return askThenLink(s, r, kj::mv(rest), nullptr);
}

}  // namespace

kj::Promise<std::optional<ErrorKind>> serveLoad(LoadEnvironment& env, std::string target,
                                                std::shared_ptr<ClientImages> images,
                                                LoadContext context) {
  using Answer = kj::Promise<std::optional<ErrorKind>>;
  auto request = context.getParams().getRequest();
  auto state = kj::heap<LoadState>(LoadState{.env = env,
                                             .images = std::move(images),
                                             .context = context,
                                             .resolver = request.getResolver(),
                                             .target = std::move(target)});
  LoadState& s = *state;
  if (auto f = checkLimits(env, *s.images))
    return Answer(s.fail(*f));
  auto arena = request.getArena();
  s.pageSize = arena.getPageSize();
  if (auto f = checkArena(arena.getBase(), arena.getSize(), s.pageSize))
    return Answer(s.fail(*f));
  if (s.images->arena == nullptr)
    s.images->arena = std::make_shared<ClientArena>(arena.getBase(), arena.getSize(), s.pageSize,
                                                    env.limits.maxClientImageBytes);
  else if (!s.images->arena->sameAs(arena.getBase(), arena.getSize(), s.pageSize))
    return Answer(s.fail(invalid("a connection loads into one reservation, named by its first "
                                 "load; this request names another (base " +
                                 hex(arena.getBase()) + ")")));
  auto offered = request.getSymbols();
  if (offered.size() > env.limits.maxOfferedSymbols)
    return Answer(s.fail(invalid("the load offers " + std::to_string(offered.size()) +
                                 " symbols (LoadOptions::symbols); rjitd accepts at most " +
                                 std::to_string(env.limits.maxOfferedSymbols) +
                                 " per load: offer only what the module uses")));
  uint64_t offeredBytes = 0;
  for (auto symbol : offered) {
    offeredBytes += symbol.getName().size();
    if (offeredBytes > env.limits.maxOfferedSymbolBytes)
      return Answer(
          s.fail(invalid("the names of the symbols the load offers (LoadOptions::symbols) "
                         "add up to more than " +
                         std::to_string(env.limits.maxOfferedSymbolBytes) +
                         " bytes, the most rjitd accepts per load")));
    s.offered.emplace(std::string(symbol.getName().cStr(), symbol.getName().size()),
                      symbol.getAddress());  // the first of a name wins
  }
  s.processSymbols = request.getProcessSymbols();
  CompileJob job = toCompileJob(request.getCompile());
  s.moduleName = job.moduleName;
  auto keyBytes = request.getKey();
  std::string key(reinterpret_cast<const char*>(keyBytes.begin()), keyBytes.size());
  context.releaseParams();

  kj::Promise<ServeResult> served = nullptr;
  if (job.module.empty() && !key.empty()) {
    auto parsed = cache::keyFromBytes(key);
    if (!parsed)
      return Answer(s.fail(invalid("load key is " + std::to_string(key.size()) +
                                   " bytes; a key is a 32-byte SHA-256 digest")));
    served = env.service.lookup(*parsed);
  } else {
    served = env.service.compile(kj::mv(job));
  }
  ++s.images->loading;
  auto loadingDone = kj::defer([images = s.images]() { --images->loading; });
  return served
      .then([&s](ServeResult&& result) -> kj::Promise<std::optional<ErrorKind>> {
        if (auto* f = std::get_if<Failure>(&result))
          return s.fail(*f);
        s.served = std::get<Served>(kj::mv(result));
        return link(s);
      })
      .attach(kj::mv(state), kj::mv(loadingDone));
}

}  // namespace rjitd::service
