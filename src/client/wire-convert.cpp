// SPDX-License-Identifier: MIT
// Wire structs to public structs, and kj exceptions to rjit::Error (see convert.h).
#include "wire-convert.h"

#include "cache-key.h"
#include "wire-enums.h"

#include <chrono>
#include <string_view>

namespace rjit::detail {

namespace {

std::string text(capnp::Text::Reader t) {
  return std::string(t.cStr(), t.size());
}

std::string bytes(capnp::Data::Reader d) {
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

std::string where(std::string_view endpoint) {
  return endpoint.empty() ? std::string("rjitd") : "rjitd at " + std::string(endpoint);
}

// The public severities and symbol kinds are the shared ones by number (asserted in result.h),
// so the wire tables of ipc/wire-enums.h serve the client too.
Diagnostic::Severity toSeverity(proto::Diagnostic::Severity severity) {
  return static_cast<Diagnostic::Severity>(rjitd::fromWireSeverity(severity));
}

Symbol::Kind toSymbolKind(proto::Symbol::Kind kind) {
  return static_cast<Symbol::Kind>(rjitd::fromWireSymbolKind(kind));
}

std::vector<Diagnostic> toDiagnostics(capnp::List<proto::Diagnostic>::Reader list) {
  std::vector<Diagnostic> out;
  out.reserve(list.size());
  for (proto::Diagnostic::Reader d : list)
    out.push_back({toSeverity(d.getSeverity()), text(d.getMessage()), d.getLine(), d.getColumn()});
  return out;
}

std::vector<std::string> toStrings(capnp::List<capnp::Text>::Reader list) {
  std::vector<std::string> out;
  out.reserve(list.size());
  for (capnp::Text::Reader t : list)
    out.push_back(text(t));
  return out;
}

}  // namespace

// Whether `exception` is Cap'n Proto refusing a message over a size limit: the sender's
// ("larger than our single-message size limit", TwoPartyVatNetwork) or the reader's ("Message
// is too large", "Exceeded message traversal limit", capnp/serialize.c++ and arena.c++). Those
// come as plain FAILED (or, when the peer aborted the connection over one, DISCONNECTED)
// exceptions whose only distinguishing mark is their text, so this is the one place that reads
// it.
bool overMessageSizeLimit(const kj::Exception& exception) {
  std::string_view text(exception.getDescription().cStr(), exception.getDescription().size());
  for (std::string_view mark :
       {"single-message size limit", "Message is too large", "Exceeded message traversal limit"})
    if (text.find(mark) != std::string_view::npos)
      return true;
  return false;
}

Error toError(const kj::Exception& exception, std::string_view endpoint) {
  if (overMessageSizeLimit(exception))
    // Never the transport's words alone: what was too large, and which limits decide.
    return Error(ErrorKind::TooLarge,
                 "a request to or an answer from " + where(endpoint) +
                     " was larger than the message size the reading side accepts (rjitd sets "
                     "its own with --max-module-bytes, --max-call-bytes and --max-object-bytes); "
                     "send a smaller module or call, or raise those limits (Cap'n Proto: " +
                     describe(exception) + ")");
  switch (exception.getType()) {
  case kj::Exception::Type::DISCONNECTED:
    return Error(ErrorKind::Connection,
                 "connection to " + where(endpoint) + " broke: " + describe(exception));
  case kj::Exception::Type::OVERLOADED:
    return Error(ErrorKind::Overloaded, where(endpoint) + " is overloaded: " + describe(exception));
  default:
    return Error(ErrorKind::Internal,
                 "request to " + where(endpoint) + " failed: " + describe(exception));
  }
}

std::string describe(const kj::Exception& exception) {
  kj::StringPtr d = exception.getDescription();
  return std::string(d.cStr(), d.size());
}

ServerInfo toServerInfo(proto::ServerHello::Reader hello, std::string endpoint) {
  ServerInfo info;
  info.endpoint = std::move(endpoint);
  info.protocolVersion = hello.getProtocolVersion();
  info.rjitdVersion = text(hello.getRjitdVersion());
  info.llvmVersion = text(hello.getLlvmVersion());
  info.compilerIdentity = text(hello.getCompilerIdentity());
  for (proto::TargetInfo::Reader t : hello.getTargets())
    info.targets.push_back({text(t.getName()), text(t.getTriple()), toStrings(t.getAliases()),
                            text(t.getDefaultCpu())});
  info.defaultTriple = text(hello.getDefaultTriple());
  info.maxModuleBytes = hello.getLimits().getMaxModuleBytes();
  return info;
}

std::vector<rjitd::TargetName> toTargetNames(proto::ServerHello::Reader hello) {
  std::vector<rjitd::TargetName> out;
  for (proto::TargetInfo::Reader t : hello.getTargets())
    out.push_back({text(t.getName()), text(t.getTriple()), toStrings(t.getAliases()),
                   text(t.getDefaultCpu())});
  return out;
}

ServerStats toServerStats(proto::ServerStats::Reader s) {
  ServerStats out;
  proto::CacheStats::Reader cache = s.getCache();
  out.cacheEntries = cache.getEntries();
  out.cacheBytes = cache.getBytes();
  out.cacheBudgetBytes = cache.getBudgetBytes();
  out.cacheHits = cache.getHits();
  out.cacheMisses = cache.getMisses();
  out.cacheEvictions = cache.getEvictions();
  out.compiles = s.getCompiles();
  out.compileFailures = s.getCompileFailures();
  out.compilesInFlight = s.getCompilesInFlight();
  out.requests = s.getRequests();
  out.moduleBytesReceived = s.getModuleBytesReceived();
  out.lookups = s.getLookups();
  out.lookupHits = s.getLookupHits();
  out.sessions = s.getSessions();
  out.workers = s.getWorkers();
  out.uptimeMillis = s.getUptimeMillis();
  out.connections = s.getConnections();
  out.compileWorkerRestarts = s.getCompileWorkerRestarts();
  out.loads = s.getLoads();
  out.links = s.getLinks();
  out.linkFailures = s.getLinkFailures();
  out.loadedImages = s.getLoadedImages();
  out.loadedImageBytes = s.getLoadedImageBytes();
  out.symbolQuestions = s.getSymbolQuestions();
  for (auto r : s.getRequestCounts())
    out.requestCounts.push_back({text(r.getMethod()), text(r.getResult()), r.getCount()});
  for (auto e : s.getErrorCounts())
    out.errorCounts.push_back({text(e.getKind()), e.getCount()});
  out.executes = s.getExecutes();
  out.executeFailures = s.getExecuteFailures();
  out.executors = s.getExecutors();
  out.executorRestarts = s.getExecutorRestarts();
  for (auto r : s.getExecuteCounts())
    out.executeCounts.push_back({text(r.getMethod()), text(r.getResult()), r.getCount()});
  for (proto::TargetStats::Reader t : s.getTargets())
    out.targets.push_back({text(t.getTarget()), t.getCacheLookups(), t.getCacheHits(),
                           t.getCompiles(), t.getCompileFailures(), t.getLoads(),
                           t.getLoadFailures(), t.getLinks(), t.getLinkFailures(), t.getExecutes(),
                           t.getExecuteFailures(), t.getCompileSeconds(), t.getLoadSeconds(),
                           t.getLinkSeconds(), t.getExecuteSeconds()});
  for (proto::TierStats::Reader t : s.getTiers())
    out.tiers.push_back({text(t.getTier()), text(t.getAddress()), t.getEntries(), t.getBytes(),
                         t.getBudgetBytes(), t.getHits(), t.getMisses(), t.getEvictions(),
                         t.getStored(), t.getRejected(), t.getErrors(), t.getAvailable(),
                         t.getLeaseWaits()});
  return out;
}

Error toError(proto::Error::Reader error) {
  std::string message = text(error.getMessage());
  uint32_t retryAfter = error.getRetryAfterMillis();
  if (retryAfter != 0)
    message += " (rjitd asks to retry after " + std::to_string(retryAfter) + " ms)";
  Error out(toPublicKind(rjitd::fromWireKind(error.getKind())), message,
            toDiagnostics(error.getDiagnostics()));
  out.withRetryAfter(std::chrono::milliseconds(retryAfter));
  return out;
}

Result<CompiledObject> toCompiledObject(proto::CompiledObject::Reader o, bool bodySent) {
  std::optional<rjitd::cache::Key> key = rjitd::cache::keyFromBytes(bytes(o.getKey()));
  if (!key)
    return Error(ErrorKind::Internal, "rjitd answered with a cache key of " +
                                          std::to_string(o.getKey().size()) +
                                          " bytes; a key has 32");
  CompiledObject out;
  out.key = rjitd::cache::toHex(*key);
  out.object = bytes(o.getObject());
  out.triple = text(o.getTriple());
  for (proto::Symbol::Reader s : o.getDefines())
    out.defines.push_back({text(s.getName()), toSymbolKind(s.getKind()), text(s.getSignature())});
  out.needs = toStrings(o.getNeeds());
  out.diagnostics = toDiagnostics(o.getDiagnostics());
  out.fromCache = o.getFromCache();
  out.bodySent = bodySent;
  out.compileMicros = o.getCompileMicros();
  return out;
}

Result<CompiledObject> toCompiledObject(proto::CompileOutcome::Reader outcome, bool bodySent) {
  if (outcome.isError())
    return toError(outcome.getError());
  return toCompiledObject(outcome.getOk(), bodySent);
}

void toProto(const CompileRequest& request, const rjitd::TargetName& target, bool withModule,
             proto::CompileRequest::Builder out) {
  auto ptr = [](const std::string& s) { return kj::StringPtr(s.c_str(), s.size()); };
  out.setModuleName(ptr(request.moduleName));
  proto::TargetSpec::Builder spec = out.initTarget();
  spec.setTriple(ptr(target.triple));
  spec.setCpu(ptr(request.cpu));  // as given: the server applies the same default
  spec.setFeatures(ptr(request.features));
  out.setOptLevel(static_cast<uint8_t>(request.optLevel));
  out.setFormat(toProto(request.format));
  // TODO(perf): a copy; referenceExternalData() would avoid it, but the RPC layer may still be
  // writing the message after a deadline has released the caller's bytes.
  if (withModule)
    out.setModule(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(request.module.data()),
                                      request.module.size()));
}

proto::IrFormat toProto(IrFormat format) {
  switch (format) {
  case IrFormat::Auto: return proto::IrFormat::AUTO;
  case IrFormat::Text: return proto::IrFormat::TEXT;
  case IrFormat::Bitcode: return proto::IrFormat::BITCODE;
  }
  return proto::IrFormat::AUTO;
}

}  // namespace rjit::detail
