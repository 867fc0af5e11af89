// SPDX-License-Identifier: MIT
#include "proto-convert.h"

#include "wire-enums.h"

#include <kj/exception.h>
#include <kj/function.h>

namespace rjitd::service {

namespace {

void toProto(const std::vector<Diagnostic>& in, capnp::List<proto::Diagnostic>::Builder out) {
  for (size_t i = 0; i < in.size(); ++i) {
    auto d = out[i];
    d.setSeverity(toWireSeverity(in[i].severity));
    d.setMessage(in[i].message);
    d.setLine(in[i].line);
    d.setColumn(in[i].column);
  }
}

std::vector<Diagnostic> fromProto(capnp::List<proto::Diagnostic>::Reader in) {
  std::vector<Diagnostic> out;
  out.reserve(in.size());
  for (auto d : in)
    out.push_back({fromWireSeverity(d.getSeverity()), d.getMessage(), d.getLine(), d.getColumn()});
  return out;
}

}  // namespace

// The kinds are mapped by the one table the client uses too (ipc/wire-enums.h).
proto::Error::Kind toProto(ErrorKind kind) {
  return toWireKind(kind);
}

ErrorKind fromProto(proto::Error::Kind kind) {
  return fromWireKind(kind);
}

void toProto(const Served& served, bool withObject, proto::CompiledObject::Builder out) {
  toProto(*served.object, withObject, out);
  out.setKey(capnp::Data::Reader(served.key.data(), served.key.size()));
  out.setFromCache(served.fromCache);
  if (served.fromCache)
    out.setCompileMicros(0);
}

CompileJob toCompileJob(proto::CompileRequest::Reader request) {
  CompileJob job;
  auto module = request.getModule();
  job.module.assign(reinterpret_cast<const char*>(module.begin()), module.size());
  job.moduleName = request.getModuleName();
  if (job.moduleName.empty())
    job.moduleName = "<module>";
  job.target = request.getTarget().getTriple();
  job.cpu = request.getTarget().getCpu();
  job.features = request.getTarget().getFeatures();
  job.optLevel = request.getOptLevel();
  job.format = fromProto(request.getFormat());
  return job;
}

namespace {

/// Runs `read` (which reads request fields); a kj exception it throws is a malformed request.
std::optional<Failure> readOrFailure(kj::FunctionParam<void()> read) {
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { read(); })) {
    return Failure{ErrorKind::InvalidRequest,
                   std::string("malformed request message: ") + e->getDescription().cStr(),
                   {}};
  }
  return std::nullopt;
}

void readAll(proto::CompileRequest::Reader in) {
  (void)in.getModuleName();
  auto target = in.getTarget();
  (void)target.getTriple();
  (void)target.getCpu();
  (void)target.getFeatures();
  (void)in.getModule();
}

}  // namespace

std::optional<Failure> checkReadable(proto::CompileRequest::Reader in) {
  return readOrFailure([&]() { readAll(in); });
}

std::optional<Failure> checkReadable(proto::LookupRequest::Reader in) {
  return readOrFailure([&]() { (void)in.getKey(); });
}

std::optional<Failure> checkReadable(proto::LoadRequest::Reader in) {
  return readOrFailure([&]() {
    readAll(in.getCompile());
    (void)in.getKey();
    (void)in.getArena();
    for (auto symbol : in.getSymbols())
      (void)symbol.getName();
  });
}

std::optional<Failure> checkReadable(proto::CallRequest::Reader in) {
  return readOrFailure([&]() {
    (void)in.getSymbol();
    for (auto value : in.getArguments()) {
      if (value.isString())
        (void)value.getString();
      else if (value.isBuffer() && value.getBuffer().isBytes())
        (void)value.getBuffer().getBytes();
    }
  });
}

std::optional<Failure> checkReadable(proto::RunRequest::Reader in) {
  return readOrFailure([&]() {
    for (auto list : {in.getArgv(), in.getEnv()})
      for (auto text : list)
        (void)text;
    (void)in.getStdin();
  });
}

void toProto(const Failure& failure, proto::Error::Builder out) {
  out.setKind(toProto(failure.kind));
  out.setMessage(failure.message);
  toProto(failure.diagnostics, out.initDiagnostics(failure.diagnostics.size()));
  out.setSignal(failure.signal);
  out.setExitStatus(failure.exitStatus);
  out.setRetryAfterMillis(failure.retryAfterMillis);
}

Failure fromProto(proto::Error::Reader in) {
  Failure f{fromProto(in.getKind()), in.getMessage(), fromProto(in.getDiagnostics())};
  f.signal = in.getSignal();
  f.exitStatus = in.getExitStatus();
  f.retryAfterMillis = in.getRetryAfterMillis();
  return f;
}

void toProto(const CompiledObject& obj, bool withObject, proto::CompiledObject::Builder out) {
  if (withObject)
    out.setObject(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(obj.object.data()),
                                      obj.object.size()));
  out.setTriple(obj.triple);
  auto defines = out.initDefines(obj.defines.size());
  for (size_t i = 0; i < obj.defines.size(); ++i) {
    defines[i].setName(obj.defines[i].name);
    defines[i].setKind(toWireSymbolKind(obj.defines[i].kind));
    defines[i].setSignature(obj.defines[i].signature);
  }
  auto needs = out.initNeeds(obj.needs.size());
  for (size_t i = 0; i < obj.needs.size(); ++i)
    needs.set(i, obj.needs[i]);
  toProto(obj.diagnostics, out.initDiagnostics(obj.diagnostics.size()));
  out.setCompileMicros(obj.compileMicros);
}

CompiledObject fromProto(proto::CompiledObject::Reader in) {
  CompiledObject obj;
  obj.triple = in.getTriple();
  auto bytes = in.getObject();
  obj.object.assign(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  for (auto s : in.getDefines())
    obj.defines.push_back({s.getName(), fromWireSymbolKind(s.getKind()), s.getSignature()});
  for (auto n : in.getNeeds())
    obj.needs.emplace_back(n);
  obj.diagnostics = fromProto(in.getDiagnostics());
  obj.compileMicros = in.getCompileMicros();
  return obj;
}

void toProto(const compiler::CompileOptions& o, proto::CompileRequest::Builder out) {
  out.setModuleName(o.moduleName);
  auto target = out.initTarget();
  target.setTriple(o.triple);
  target.setCpu(o.cpu);
  target.setFeatures(o.features);
  out.setOptLevel(static_cast<uint8_t>(o.optLevel));
  switch (o.format) {
  case compiler::IrFormat::Auto: out.setFormat(proto::IrFormat::AUTO); break;
  case compiler::IrFormat::Text: out.setFormat(proto::IrFormat::TEXT); break;
  case compiler::IrFormat::Bitcode: out.setFormat(proto::IrFormat::BITCODE); break;
  }
}

compiler::IrFormat fromProto(proto::IrFormat format) {
  switch (format) {
  case proto::IrFormat::TEXT: return compiler::IrFormat::Text;
  case proto::IrFormat::BITCODE: return compiler::IrFormat::Bitcode;
  case proto::IrFormat::AUTO: break;
  }
  return compiler::IrFormat::Auto;
}

compiler::CompileOptions fromProto(proto::CompileRequest::Reader in) {
  compiler::CompileOptions o;
  o.moduleName = in.getModuleName();
  o.triple = in.getTarget().getTriple();
  o.cpu = in.getTarget().getCpu();
  o.features = in.getTarget().getFeatures();
  o.optLevel = in.getOptLevel();
  o.format = fromProto(in.getFormat());
  return o;
}

void toProto(const linker::LinkedImage& image, proto::LoadedModule::Builder out) {
  out.setBase(image.base);
  out.setSize(image.size);
  auto segments = out.initSegments(image.segments.size());
  for (size_t i = 0; i < image.segments.size(); ++i) {
    segments[i].setAddress(image.segments[i].address);
    segments[i].setOffset(image.segments[i].offset);
    segments[i].setSize(image.segments[i].size);
    segments[i].setProtection(image.segments[i].protection);
  }
  auto symbols = out.initSymbols(image.symbols.size());
  for (size_t i = 0; i < image.symbols.size(); ++i) {
    symbols[i].setName(image.symbols[i].name);
    symbols[i].setAddress(image.symbols[i].address);
    symbols[i].setFunction(image.symbols[i].function);
  }
  auto inits = out.initInitializers(image.initializers.size());
  for (size_t i = 0; i < image.initializers.size(); ++i)
    inits.set(i, image.initializers[i]);
  auto finis = out.initFinalizers(image.finalizers.size());
  for (size_t i = 0; i < image.finalizers.size(); ++i)
    finis.set(i, image.finalizers[i]);
  out.setEhFrameAddress(image.ehFrameAddress);
  out.setEhFrameSize(image.ehFrameSize);
}

}  // namespace rjitd::service
