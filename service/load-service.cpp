// SPDX-License-Identifier: MIT
// Session.load (see load-service.h): the orchestration. Its parts are units of their own: the
// reservation's ranges (address-ranges.h), the connection's symbol tables (client-symbols.h),
// import resolution (symbol-resolver.h), the LoadedImage capability (loaded-image.h), the
// linker (src/linker) and the wire conversion (proto-convert.h).
#include "load-service.h"

#include "address-ranges.h"
#include "client-symbols.h"
#include "linker.h"
#include "loaded-image.h"
#include "proto-convert.h"
#include "symbol-resolver.h"

#include <chrono>
#include <kj/debug.h>
#include <optional>
#include <set>
#include <unordered_map>
#include <variant>

namespace rjitd::service {

/// What one connection has loaded: its reservation's ranges (named by its first load), its
/// symbol tables, and the loads under way (which count against the limits like loaded modules).
class ClientImages final {
public:
  /// The reservation this load names: the connection's first load creates its ranges, later
  /// loads must name the same reservation. InvalidRequest Failure otherwise.
  Outcome<std::shared_ptr<AddressRanges>> useRanges(uint64_t base, uint64_t size, uint64_t pageSize,
                                                    uint64_t limit) {
    // Checked on every load, so that a malformed reservation gets the same answer whether or
    // not it comes first.
    auto created = AddressRanges::create(base, size, pageSize, limit);
    if (ranges == nullptr || failureOf(created) != nullptr) {
      if (auto* r = std::get_if<std::shared_ptr<AddressRanges>>(&created))
        ranges = *r;
      return created;
    }
    if (auto f = ranges->checkSame(base, size, pageSize))
      return *f;
    return ranges;
  }

  ClientSymbols& symbols() { return tables; }

  /// Modules loaded and loads under way.
  uint32_t held() const { return static_cast<uint32_t>(tables.moduleCount()) + loading; }

  /// Counts a load under way until the returned object is destroyed.
  static kj::Own<void> startLoading(std::shared_ptr<ClientImages> images) {
    ++images->loading;
    return kj::heap(kj::defer([images = kj::mv(images)]() { --images->loading; }));
  }

private:
  std::shared_ptr<AddressRanges> ranges;
  ClientSymbols tables;
  uint32_t loading = 0;
};

std::shared_ptr<ClientImages> newClientImages() {
  return std::make_shared<ClientImages>();
}

namespace {

using Clock = std::chrono::steady_clock;

/// The one conversion of the linker's typed error into the daemon's Failure. The names it
/// carries are in its message already; the wire has no fields for them.
Failure toFailure(linker::LinkError&& error) {
  return Failure{error.kind, std::move(error.message), {}};
}

struct LinkOutcome {
  std::variant<linker::LinkedImage, linker::LinkError> result;
  RangeLease range;
  uint64_t micros = 0;
};

/// Everything one load carries from step to step.
struct LoadState {
  LoadEnvironment& env;
  std::shared_ptr<ClientImages> images;
  LoadContext context;
  proto::SymbolResolver::Client resolver;
  std::unordered_map<std::string, uint64_t> offered;  // LoadRequest.symbols
  bool processSymbols = true;                         // LoadRequest.processSymbols
  std::shared_ptr<AddressRanges> ranges;
  std::string moduleName;
  std::string target;   // metrics label, and the lane of the link queue
  uint64_t client = 0;  // the connection, for the link queue's fairness
  uint64_t pageSize = 0;
  Served served;
  Clock::time_point linkStart;

  /// A failure of the link step, counted in the link metrics; the RPC edge answers it.
  Failure linkFailed(Failure f) {
    env.metrics.linkDone(target, f.kind, Clock::now() - linkStart);
    return f;
  }
  KnownSymbols known() const { return {offered, images->symbols(), processSymbols}; }
};

Failure invalid(std::string message) {
  return Failure{ErrorKind::InvalidRequest, std::move(message), {}};
}

std::optional<Failure> checkLimits(const LoadEnvironment& env, const ClientImages& images) {
  uint32_t held = images.held();
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

/// Asks the client about `names` (counted in the metrics when there are any).
kj::Promise<Outcome<Done>> ask(LoadState& s, std::shared_ptr<Resolution> r,
                               std::vector<std::string> names) {
  if (!names.empty())
    s.env.metrics.symbolQuestionAsked();
  const LoadLimits& limits = s.env.limits;
  return askClient(
      s.resolver, kj::mv(names), kj::mv(r), s.images->symbols(), s.env.timer,
      {limits.resolveTimeout, limits.maxRememberedSymbols, limits.maxRememberedSymbolBytes});
}

/// What the module's release undoes: its symbols, its share of the totals, its address range.
kj::Own<void> bookkeeping(LoadEnvironment& env, std::shared_ptr<ClientImages> images,
                          uint64_t module, uint64_t size, RangeLease range) {
  env.metrics.imageLoaded(size);
  ++env.totals.images;
  env.totals.bytes += size;
  return kj::heap(kj::defer([&env, images = kj::mv(images), module, size]() {
           images->symbols().remove(module);
           env.metrics.imageReleased(size);
           --env.totals.images;
           env.totals.bytes -= size;
         }))
      .attach(kj::mv(range));  // destroyed after the deferred action: the range goes back last
}

/// The link result, answered on the event loop: registers the module's symbols for this client
/// and hands out its capability.
Outcome<Done> finish(LoadState& s, LinkOutcome&& outcome, const std::set<uint64_t>& dependencies) {
  if (auto* e = std::get_if<linker::LinkError>(&outcome.result))
    return s.linkFailed(toFailure(kj::mv(*e)));
  linker::LinkedImage image = std::get<linker::LinkedImage>(kj::mv(outcome.result));
  ClientSymbols& symbols = s.images->symbols();
  for (uint64_t dependency : dependencies)
    if (!symbols.loaded(dependency))
      return s.linkFailed(Failure{ErrorKind::LinkFailed,
                                  "cannot load " + s.moduleName +
                                      ": a module it links against was unloaded while it was "
                                      "being linked; load it again",
                                  {}});
  if (auto clash = symbols.findDuplicates(s.moduleName, image.symbols))
    return s.linkFailed(toFailure(kj::mv(*clash)));
  s.env.metrics.linkDone(s.target, std::nullopt, Clock::now() - s.linkStart);

  uint64_t module = symbols.add(s.moduleName, image.base, image.symbols);
  auto ok = s.context.getResults().initOutcome().initOk();
  toProto(s.served, false, ok.initObject());
  toProto(image, ok);
  ok.setLinkMicros(outcome.micros);
  auto deps = ok.initDependencies(dependencies.size());
  size_t i = 0;
  for (uint64_t dependency : dependencies)
    deps.set(i++, symbols.base(dependency));
  ok.setReadLimit(s.env.limits.maxReadBytes);
  uint64_t size = image.size;
  ok.setImage(
      kj::heap<LoadedImage>(kj::mv(image), s.env.limits.maxReadBytes, s.env.linkPool,
                            bookkeeping(s.env, s.images, module, size, kj::mv(outcome.range))));
  return Done{};
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
/// it touches is its own, thread-safe (the ranges) or left alone by the event loop while the
/// worker runs (`r`).
LinkStep linkOnWorker(std::shared_ptr<const CompiledObject> compiled, const std::string& name,
                      std::shared_ptr<linker::PreparedObject> prepared,
                      std::shared_ptr<const Resolution> r, std::shared_ptr<AddressRanges> ranges,
                      uint64_t pageSize) {
  Clock::time_point start = Clock::now();
  LinkOutcome out;
  if (prepared == nullptr) {
    auto parsed = linker::prepare(std::move(compiled), name);
    if (auto* e = std::get_if<linker::LinkError>(&parsed)) {
      out.result = std::move(*e);
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
  // The linker knows no daemon Failure (its errors are its own type, converted back by
  // toFailure): a full reservation reaches it as a LinkError of the same kind and message.
  linker::Reserve reserve = [&](uint64_t bytes) -> std::variant<uint64_t, linker::LinkError> {
    auto reserved = ranges->reserve(bytes);
    if (Failure* f = failureOf(reserved))
      return linker::LinkError{f->kind, std::move(f->message), {}, {}};
    uint64_t address = std::get<uint64_t>(reserved);
    out.range = RangeLease(ranges, address, bytes);
    return address;
  };
  out.result = linker::link(std::move(*prepared), r->addresses, pageSize, reserve);
  if (std::holds_alternative<linker::LinkError>(out.result))
    out.range.reset();
  out.micros = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
  return out;
}

kj::Promise<Outcome<Done>> linkStep(LoadState& s, std::shared_ptr<Resolution> r,
                                    std::shared_ptr<linker::PreparedObject> prepared);

/// Asks the client for `names`, then goes on with the link; a client that answers wrongly or
/// not in time fails the load (askClient says with which kind). A client gone and rjitd's own
/// faults pass on as exceptions, for the RPC edge.
kj::Promise<Outcome<Done>> askThenLink(LoadState& s, std::shared_ptr<Resolution> r,
                                       std::vector<std::string> names,
                                       std::shared_ptr<linker::PreparedObject> prepared) {
  return ask(s, r, kj::mv(names))
      .then([&s, r, prepared](Outcome<Done>&& asked) -> kj::Promise<Outcome<Done>> {
        if (const Failure* f = failureOf(asked))
          return Outcome<Done>(s.linkFailed(*f));
        return linkStep(s, r, prepared);
      });
}

/// One trip to a link worker: parse and link (usually), or parse and come back for answers.
kj::Promise<Outcome<Done>> linkStep(LoadState& s, std::shared_ptr<Resolution> r,
                                    std::shared_ptr<linker::PreparedObject> prepared) {
  // The worker owns everything it touches (shared or copied): a load called off while it links
  // leaves the worker nothing of the dropped LoadState to read.
  kj::Function<LinkStep()> job = [object = s.served.object, name = s.moduleName, prepared, r,
                                  ranges = s.ranges, pageSize = s.pageSize]() mutable {
    return linkOnWorker(std::move(object), name, std::move(prepared), r, std::move(ranges),
                        pageSize);
  };
  kj::Promise<Outcome<LinkStep>> linked = nullptr;
  if (Admission* admission = s.env.linkAdmission) {
    linked =
        admission->admit(s.target, s.client)
            .then([&s, admission, job = kj::mv(job)](
                      Admission::Admitted&& admitted) mutable -> kj::Promise<Outcome<LinkStep>> {
              if (Failure* f = failureOf(admitted))
                return Outcome<LinkStep>(kj::mv(*f));
              return admission
                  ->runHolding<LinkStep>(s.env.linkPool,
                                         std::get<Admission::Slot>(kj::mv(admitted)), kj::mv(job))
                  .then([](LinkStep&& step) { return Outcome<LinkStep>(kj::mv(step)); });
            });
  } else {
    linked = s.env.linkPool.run<LinkStep>(kj::mv(job)).then([](LinkStep&& step) {
      return Outcome<LinkStep>(kj::mv(step));
    });
  }
  return linked.then([&s, r](Outcome<LinkStep>&& outcome) -> kj::Promise<Outcome<Done>> {
    if (Failure* f = failureOf(outcome))
      return Outcome<Done>(kj::mv(*f));  // overloaded, or abandoned by the drain
    LinkStep& step = std::get<LinkStep>(outcome);
    if (auto* more = std::get_if<Unanswered>(&step)) {
      // Names the `needs` list missed: answer what rjitd knows, ask the client the rest.
      std::vector<std::string> rest = resolveKnown(s.known(), *r, more->names);
      return askThenLink(s, r, kj::mv(rest), kj::mv(more->object));
    }
    return finish(s, std::get<LinkOutcome>(kj::mv(step)), r->modules);
  });
}

/// Links the served object for the client. The imports rjitd can answer itself are resolved
/// first, the client is asked about the rest in one question, and then a link worker parses and
/// links the object in one go: a warm load whose imports are all known costs no round trip to
/// the client and one trip to a worker.
kj::Promise<Outcome<Done>> link(LoadState& s) {
  s.linkStart = Clock::now();
  auto r = std::make_shared<Resolution>();
  std::vector<std::string> rest = resolveKnown(s.known(), *r, s.served.object->needs);
  return askThenLink(s, r, kj::mv(rest), nullptr);
}

}  // namespace

kj::Promise<Outcome<Done>> serveLoad(LoadEnvironment& env, std::string target,
                                     std::shared_ptr<ClientImages> images, uint64_t client,
                                     LoadContext context) {
  using Answer = kj::Promise<Outcome<Done>>;
  auto request = context.getParams().getRequest();
  auto state = kj::heap<LoadState>(LoadState{.env = env,
                                             .images = std::move(images),
                                             .context = context,
                                             .resolver = request.getResolver(),
                                             .target = std::move(target),
                                             .client = client});
  LoadState& s = *state;
  if (auto f = checkLimits(env, *s.images))
    return Answer(kj::mv(*f));
  // A full link queue answers now, before any compile is spent on the load.
  if (env.linkAdmission != nullptr)
    if (auto refused = env.linkAdmission->refusal(s.target, client))
      return Answer(kj::mv(*refused));
  auto arena = request.getArena();
  s.pageSize = arena.getPageSize();
  auto ranges = s.images->useRanges(arena.getBase(), arena.getSize(), s.pageSize,
                                    env.limits.maxClientImageBytes);
  if (Failure* f = failureOf(ranges))
    return Answer(kj::mv(*f));
  s.ranges = std::get<std::shared_ptr<AddressRanges>>(kj::mv(ranges));
  auto offered = request.getSymbols();
  if (offered.size() > env.limits.maxOfferedSymbols)
    return Answer(invalid("the load offers " + std::to_string(offered.size()) +
                          " symbols (LoadOptions::symbols); rjitd accepts at most " +
                          std::to_string(env.limits.maxOfferedSymbols) +
                          " per load: offer only what the module uses"));
  uint64_t offeredBytes = 0;
  for (auto symbol : offered) {
    offeredBytes += symbol.getName().size();
    if (offeredBytes > env.limits.maxOfferedSymbolBytes)
      return Answer(invalid("the names of the symbols the load offers (LoadOptions::symbols) "
                            "add up to more than " +
                            std::to_string(env.limits.maxOfferedSymbolBytes) +
                            " bytes, the most rjitd accepts per load"));
    s.offered.emplace(std::string(symbol.getName().cStr(), symbol.getName().size()),
                      symbol.getAddress());  // the first of a name wins
  }
  s.processSymbols = request.getProcessSymbols();
  CompileJob job = toCompileJob(request.getCompile());
  job.client = client;
  s.moduleName = job.moduleName;
  auto keyBytes = request.getKey();
  std::string key(reinterpret_cast<const char*>(keyBytes.begin()), keyBytes.size());
  context.releaseParams();

  kj::Promise<ServeResult> served = nullptr;
  if (job.module.empty() && !key.empty()) {
    auto parsed = cache::keyFromBytes(key);
    if (!parsed)
      return Answer(invalid("load key is " + std::to_string(key.size()) +
                            " bytes; a key is a 32-byte SHA-256 digest"));
    served = env.service.lookup(*parsed, s.target);
  } else {
    served = env.service.compile(kj::mv(job));
  }
  auto loadingDone = ClientImages::startLoading(s.images);
  return served
      .then([&s](ServeResult&& result) -> kj::Promise<Outcome<Done>> {
        if (Failure* f = failureOf(result))
          return Outcome<Done>(kj::mv(*f));
        s.served = std::get<Served>(kj::mv(result));
        return link(s);
      })
      .attach(kj::mv(state), kj::mv(loadingDone));
}

}  // namespace rjitd::service
