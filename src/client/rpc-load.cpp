// SPDX-License-Identifier: MIT
// Loading over RPC: the `load` call, the symbol resolver rjitd calls back, and fetching the
// image (see rpc-load.h).
#include "rpc-load.h"

#include "module-request.h"
#include "process-symbols.h"
#include "wire-convert.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <kj/debug.h>
#include <unistd.h>

namespace rjit::detail {

namespace {

/// Answers rjitd's questions about this process's symbols, for one load, in the order of
/// LoadOptions: the program's own (LoadOptions::symbols), then the modules this client has
/// loaded, then the process's global symbols. rjitd answers the first two itself where it can
/// (the symbols travel with the request; it knows the modules loaded on this connection), so it
/// asks about modules of an earlier connection (e.g. before rjitd restarted) and process symbols,
/// whose answers are stable: rjitd remembers them for the connection. Records which loaded
/// modules it answered from: the new module depends on them.
class Resolver final : public proto::SymbolResolver::Server {
public:
  /// `modules` outlives the I/O thread, and so every capability on it.
  Resolver(std::shared_ptr<const LoadOptions> options, const ModuleRegistry& modules,
           std::shared_ptr<std::vector<uint64_t>> used)
      : options(std::move(options)), modules(modules), used(std::move(used)) {}

  kj::Promise<void> resolve(ResolveContext context) override {
    auto names = context.getParams().getNames();
    auto results = context.getResults();
    auto addresses = results.initAddresses(names.size());
    auto stable = results.initStable(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      std::string name(names[i].cStr(), names[i].size());
      if (auto it = options->symbols.find(name); it != options->symbols.end()) {
        addresses.set(i, reinterpret_cast<uint64_t>(it->second));
      } else if (auto found = modules.find(name)) {
        addresses.set(i, found->first);
        used->push_back(found->second);
      } else if (options->processSymbols) {
        ProcessSymbol symbol = processSymbol(name);
        addresses.set(i, symbol.address);
        stable.set(i, symbol.stable);
      }
    }
    return kj::READY_NOW;
  }

private:
  std::shared_ptr<const LoadOptions> options;
  const ModuleRegistry& modules;
  std::shared_ptr<std::vector<uint64_t>> used;
};

static_assert(SEGMENT_READ == proto::PROTECTION_READ && SEGMENT_WRITE == proto::PROTECTION_WRITE &&
              SEGMENT_EXECUTE == proto::PROTECTION_EXECUTE);

}  // namespace

Result<const rjitd::TargetName*> RpcLoader::hostTarget(Connection& connection,
                                                       const CompileRequest& request) {
  const ServerInfo& info = connection.info();
  const rjitd::TargetName* host =
      rjitd::resolveTarget(connection.targets(), HOST_TARGET, info.defaultTriple);
  if (host == nullptr)
    return Error(ErrorKind::UnknownTarget, std::string("rjitd at ") + connection.address() +
                                               " does not serve this host's target (" +
                                               HOST_TARGET + "); it serves " +
                                               rjitd::describeTargets(connection.targets()));
  if (!request.target.empty()) {
    const rjitd::TargetName* asked =
        rjitd::resolveTarget(connection.targets(), request.target, info.defaultTriple);
    if (asked == nullptr || asked->triple != host->triple)
      return Error(ErrorKind::InvalidRequest,
                   "cannot load code for target '" + request.target + "' into this process (" +
                       HOST_TARGET +
                       "); leave the target empty or use compile() for other targets");
  }
  return host;
}

kj::Promise<Result<LoadedParts>>
RpcLoader::loadByKeyOn(Connection& connection, const LoadCall& call, const rjitd::cache::Key& key) {
  Result<const rjitd::TargetName*> target = hostTarget(connection, call.request);
  if (Error* error = failed(target))
    return ready<LoadedParts>(std::move(*error));
  return sendLoad(connection, call, *std::get<const rjitd::TargetName*>(target), &key);
}

kj::Promise<Result<LoadedParts>> RpcLoader::loadOn(Connection& connection, const LoadCall& call) {
  const CompileRequest& request = call.request;
  Result<const rjitd::TargetName*> target = hostTarget(connection, request);
  if (Error* error = failed(target))
    return ready<LoadedParts>(std::move(*error));
  const rjitd::TargetName* host = std::get<const rjitd::TargetName*>(target);
  Result<Done> size = checkSize(request, connection);
  if (Error* error = failed(size))
    return ready<LoadedParts>(std::move(*error));
  if (request.module.size() < config.hashFirstBytes)
    return sendLoad(connection, call, *host, nullptr);
  return moduleKey(hasher, request, *host, connection)
      .then([this, &connection, &call, host](rjitd::cache::Key key) {
        return sendLoad(connection, call, *host, &key)
            .then([this, &connection, &call,
                   host](Result<LoadedParts>&& result) -> kj::Promise<Result<LoadedParts>> {
              Error* error = failed(result);
              if (error != nullptr && error->kind() == ErrorKind::NotFound)
                return sendLoad(connection, call, *host, nullptr);  // send it all
              return ready<LoadedParts>(std::move(result));
            });
      });
}

Result<LoadedParts> toLoadedParts(proto::LoadedModule::Reader ok,
                                  const std::vector<uint64_t>& resolverDependencies) {
  LoadedParts parts;
  parts.spec.base = ok.getBase();
  parts.spec.size = ok.getSize();
  for (auto s : ok.getSegments())
    parts.spec.segments.push_back({s.getAddress(), s.getOffset(), s.getSize(), s.getProtection()});
  for (uint64_t init : ok.getInitializers())
    parts.spec.initializers.push_back(init);
  for (uint64_t fini : ok.getFinalizers())
    parts.spec.finalizers.push_back(fini);
  parts.spec.ehFrameAddress = ok.getEhFrameAddress();
  parts.spec.ehFrameSize = ok.getEhFrameSize();
  for (auto s : ok.getSymbols())
    parts.symbols.emplace_back(std::string(s.getName().cStr(), s.getName().size()), s.getAddress());
  parts.linkMicros = ok.getLinkMicros();
  parts.dependencies = resolverDependencies;
  for (uint64_t base : ok.getDependencies())
    parts.dependencies.push_back(base);
  Result<CompiledObject> object = toCompiledObject(ok.getObject(), true);
  if (Error* error = failed(object))
    return std::move(*error);
  parts.object = std::get<CompiledObject>(std::move(object));
  return parts;
}

kj::Promise<Result<LoadedParts>> RpcLoader::sendLoad(Connection& connection, const LoadCall& call,
                                                     const rjitd::TargetName& target,
                                                     const rjitd::cache::Key* key) {
  Result<std::shared_ptr<Arena>> reserved = connection.arena(config.memoryQuota);
  if (Error* error = failed(reserved))
    return ready<LoadedParts>(std::move(*error));
  std::shared_ptr<Arena> arena = std::get<std::shared_ptr<Arena>>(std::move(reserved));
  auto request = connection.session().loadRequest();
  proto::LoadRequest::Builder load = request.initRequest();
  toProto(call.request, target, key == nullptr, load.initCompile());
  if (key != nullptr)
    load.setKey(capnp::Data::Reader(key->data(), key->size()));
  proto::Arena::Builder a = load.initArena();
  a.setBase(arena->base());
  a.setSize(arena->size());
  a.setPageSize(static_cast<uint32_t>(Arena::pageSize()));
  auto symbols = load.initSymbols(call.options->symbols.size());
  size_t i = 0;
  for (const auto& [name, address] : call.options->symbols) {
    symbols[i].setName(name);
    symbols[i++].setAddress(reinterpret_cast<uint64_t>(address));
  }
  load.setProcessSymbols(call.options->processSymbols);
  auto used = std::make_shared<std::vector<uint64_t>>();
  load.setResolver(kj::heap<Resolver>(call.options, call.modules, used));
  return request.send().then(
      [this, &connection, arena, used](capnp::Response<proto::Session::LoadResults>&& response)
          -> kj::Promise<Result<LoadedParts>> {
        proto::LoadOutcome::Reader outcome = response.getOutcome();
        if (outcome.isError())
          return ready<LoadedParts>(toError(outcome.getError()));
        proto::LoadedModule::Reader ok = outcome.getOk();
        Result<LoadedParts> answered = toLoadedParts(ok, *used);
        if (Error* error = failed(answered))
          return ready<LoadedParts>(std::move(*error));
        LoadedParts parts = std::get<LoadedParts>(std::move(answered));
        parts.arena = arena;
        return takeImage(connection, ok.getImage(), std::move(parts), ok.getReadLimit());
      });
}

namespace {

/// Drops the capability of an image this client never took (a failure or a deadline cut the
/// load short): rjitd then frees it at once rather than when the connection ends.
struct UntakenImage {
  UntakenImage(std::map<uint64_t, proto::LoadedImage::Client>& images, uint64_t id)
      : images(images), id(id) {}
  UntakenImage(const UntakenImage&) = delete;
  UntakenImage& operator=(const UntakenImage&) = delete;
  std::map<uint64_t, proto::LoadedImage::Client>& images;
  uint64_t id;
  bool taken = false;
  ~UntakenImage() {
    if (!taken)
      images.erase(id);
  }
};

}  // namespace

kj::Promise<Result<LoadedParts>> RpcLoader::takeImage(Connection& connection,
                                                      proto::LoadedImage::Client image,
                                                      LoadedParts parts, uint64_t readLimit) {
  uint64_t id = nextImage++;
  images.emplace(id, image);
  parts.imageId = id;
  auto guard = kj::heap<UntakenImage>(images, id);
  UntakenImage& untaken = *guard;
  kj::Promise<Result<LoadedParts>> fetched = nullptr;
  if (connection.passesFds()) {
    fetched = image.getFd().then(
        [parts = std::move(parts)](kj::Maybe<int> fd) mutable -> Result<LoadedParts> {
          KJ_IF_MAYBE (f, fd) {
            // The capability owns its descriptor; ours must outlive it.
            kj::AutoCloseFd copy(::fcntl(*f, F_DUPFD_CLOEXEC, 0));
            if (copy.get() < 0)
              return Error(ErrorKind::Load,
                           std::string("cannot duplicate the image's file descriptor: ") +
                               strerror(errno));
            parts.fd = kj::mv(copy);
            return std::move(parts);
          }
          return Error(ErrorKind::Load, "rjitd sent no file descriptor with the image");
        });
  } else if (readLimit == 0) {
    fetched = ready<LoadedParts>(Error(ErrorKind::Load, "rjitd sent no image read limit"));
  } else {
    // TCP: the bytes travel in pieces and the image file is made here.
    Result<std::unique_ptr<ImageFile>> made = ImageFile::create(parts.spec.size);
    if (Error* error = failed(made))
      return ready<LoadedParts>(std::move(*error));
    // Shared: the pieces' continuations each hold it.
    std::shared_ptr<ImageFile> file = std::get<std::unique_ptr<ImageFile>>(std::move(made));
    uint64_t size = parts.spec.size;
    fetched = readImage(image, file, 0, size, readLimit)
                  .then([file, parts = std::move(parts)](
                            Result<Done>&& read) mutable -> Result<LoadedParts> {
                    if (Error* error = failed(read))
                      return std::move(*error);
                    Result<kj::AutoCloseFd> sealed = file->finish();
                    if (Error* error = failed(sealed))
                      return std::move(*error);
                    parts.fd = std::get<kj::AutoCloseFd>(std::move(sealed));
                    return std::move(parts);
                  });
  }
  return fetched
      .then([&untaken](Result<LoadedParts>&& result) {
        untaken.taken = std::holds_alternative<LoadedParts>(result);
        return kj::mv(result);
      })
      .attach(kj::mv(guard));
}

kj::Promise<Result<Done>> RpcLoader::readImage(proto::LoadedImage::Client image,
                                               std::shared_ptr<ImageFile> file, uint64_t offset,
                                               uint64_t size, uint64_t readLimit) {
  if (offset >= size)
    return ready<Done>(Done{});
  uint64_t piece = std::min(readLimit, size - offset);
  auto request = image.readRequest();
  request.setOffset(offset);
  request.setSize(piece);
  return request.send().then(
      [this, image, file, offset, size, piece,
       readLimit](capnp::Response<proto::LoadedImage::ReadResults>&& response) mutable
      -> kj::Promise<Result<Done>> {
        auto bytes = response.getBytes();
        if (bytes.size() != piece)
          return ready<Done>(Error(ErrorKind::Load, "rjitd sent " + std::to_string(bytes.size()) +
                                                        " bytes of the image, not " +
                                                        std::to_string(piece)));
        Result<Done> written = file->write(offset, bytes.begin(), bytes.size());
        if (Error* error = failed(written))
          return ready<Done>(std::move(*error));
        return readImage(image, file, offset + piece, size, readLimit);
      });
}

void RpcLoader::release(uint64_t imageId) {
  images.erase(imageId);
}

void RpcLoader::releaseAll() {
  images.clear();
}

}  // namespace rjit::detail
