// SPDX-License-Identifier: MIT
// LLVM IR to ELF relocatable object: parse, check the target, verify, optimize, emit (see
// compiler.h for the policy).
#include "compiler.h"

#include "diagnostics.h"
#include "ir-signature.h"
#include "pipeline.h"
#include "subtarget-check.h"

#include <llvm/ADT/SmallVector.h>
#include <llvm/ADT/StringRef.h>
#include <llvm/Analysis/TargetLibraryInfo.h>
#include <llvm/AsmParser/Parser.h>
#include <llvm/Bitcode/BitcodeReader.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/DebugInfo.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Support/CodeGen.h>
#include <llvm/Support/CommandLine.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/ErrorHandling.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/SourceMgr.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>
#include <llvm/TargetParser/Host.h>
#include <llvm/TargetParser/Triple.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace rjitd::compiler {
namespace {

// --- targets ---------------------------------------------------------------------------------

void initializeLlvm() {
  static std::once_flag once;
  std::call_once(once, [] {
    LLVMInitializeX86TargetInfo();
    LLVMInitializeX86Target();
    LLVMInitializeX86TargetMC();
    LLVMInitializeX86AsmPrinter();
    // The asm parsers are needed for inline assembly in modules; without one, code generation
    // aborts the process instead of reporting an error.
    LLVMInitializeX86AsmParser();
    LLVMInitializeAArch64TargetInfo();
    LLVMInitializeAArch64Target();
    LLVMInitializeAArch64TargetMC();
    LLVMInitializeAArch64AsmPrinter();
    LLVMInitializeAArch64AsmParser();

    // The IR and bitcode readers "upgrade" debug info by running the verifier, and a module
    // that fails it (with a current "Debug Info Version" flag) ends in report_fatal_error: one
    // bad request would kill the daemon. Turn the upgrade off process-wide and do its work
    // ourselves after our own verification (see verify()). LLVM is built with RTTI on
    // Debian, so the dynamic_cast checks the option's type.
    llvm::StringMap<llvm::cl::Option*>& options = llvm::cl::getRegisteredOptions();
    auto it = options.find("disable-auto-upgrade-debug-info");
    auto* disableUpgrade =
        it == options.end() ? nullptr : dynamic_cast<llvm::cl::opt<bool>*>(it->second);
    assert(disableUpgrade && "LLVM 19 has -disable-auto-upgrade-debug-info");
    if (disableUpgrade != nullptr)
      disableUpgrade->setValue(true);
  });
}

const llvm::Target* lookupLlvmTarget(const std::string& triple) {
  std::string ignored;
  return llvm::TargetRegistry::lookupTarget(triple, ignored);
}

/// The served target whose canonical triple is `triple`.
llvm::Expected<TargetName> findServedTarget(const std::string& triple) {
  std::vector<TargetName> served = servedTargets();
  for (TargetName& t : served)
    if (t.triple == triple)
      return std::move(t);
  if (triple.empty())
    return fail(ErrorKind::UnknownTarget,
                "no target triple given; this rjitd serves " + describeTargets(served));
  std::string message = "unknown target '" + triple + "'";
  if (const TargetName* alias = resolveTarget(served, triple, ""))
    message += " (a spelling of " + alias->triple + "; requests carry canonical triples)";
  message += "; this rjitd serves " + describeTargets(served);
  return fail(ErrorKind::UnknownTarget, std::move(message));
}

llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
createTargetMachine(const llvm::Target& target, const TargetName& name,
                    const CompileOptions& options) {
  MachineSettings settings = machineSettings(options.optLevel);
  std::string cpu = options.cpu.empty() ? name.defaultCpu : options.cpu;
  std::unique_ptr<llvm::TargetMachine> machine(target.createTargetMachine(
      name.triple, cpu, options.features, settings.options, settings.relocationModel,
      settings.codeModel, settings.codeGenLevel));
  if (!machine)
    return fail(ErrorKind::Internal, "cannot create a target machine for " + name.triple);
  return machine;
}

// --- parsing ---------------------------------------------------------------------------------

bool looksLikeBitcode(std::string_view module) {
  const auto* begin = reinterpret_cast<const unsigned char*>(module.data());
  return llvm::isBitcode(begin, begin + module.size());
}

/// Parses textual IR or bitcode. The module's identifier is left empty: without a
/// source_filename the identifier would become the object's STT_FILE symbol, and the object
/// must depend only on what the cache key covers, not on the request's display name.
llvm::Expected<std::unique_ptr<llvm::Module>> parseModule(std::string_view bytes,
                                                          const CompileOptions& options,
                                                          const std::string& name,
                                                          llvm::LLVMContext& context) {
  bool bitcode = options.format == IrFormat::Bitcode ||
                 (options.format == IrFormat::Auto && looksLikeBitcode(bytes));
  if (bitcode) {
    llvm::MemoryBufferRef buffer(llvm::StringRef(bytes.data(), bytes.size()), "");
    llvm::Expected<std::unique_ptr<llvm::Module>> module = llvm::parseBitcodeFile(buffer, context);
    if (!module) {
      std::string message = llvm::toString(module.takeError());
      return fail(ErrorKind::InvalidModule, name + ": invalid bitcode: " + message,
                  {{Diagnostic::Severity::Error, message, 0, 0}});
    }
    return std::move(*module);
  }

  // The IR lexer finds the end of its input by a NUL after it: parse a NUL-terminated copy.
  std::unique_ptr<llvm::MemoryBuffer> buffer =
      llvm::MemoryBuffer::getMemBufferCopy(llvm::StringRef(bytes.data(), bytes.size()), name);
  auto module = std::make_unique<llvm::Module>("", context);
  llvm::SMDiagnostic error;
  if (llvm::parseAssemblyInto(buffer->getMemBufferRef(), module.get(), nullptr, error)) {
    std::string text;
    llvm::raw_string_ostream os(text);
    error.print(nullptr, os, /*ShowColors=*/false);
    os.flush();
    while (!text.empty() && text.back() == '\n')
      text.pop_back();
    Diagnostic diagnostic{Diagnostic::Severity::Error, error.getMessage().str(), 0, 0};
    if (error.getLineNo() > 0)
      diagnostic.line = static_cast<uint32_t>(error.getLineNo());
    if (error.getColumnNo() >= 0)  // 0-based in LLVM
      diagnostic.column = static_cast<uint32_t>(error.getColumnNo()) + 1;
    return fail(ErrorKind::InvalidModule, std::move(text), {std::move(diagnostic)});
  }
  return module;
}

// --- module policy ---------------------------------------------------------------------------

/// The triple and datalayout policy of compiler.h: never retarget a module, always use the
/// target's datalayout.
llvm::Error adoptTarget(llvm::Module& module, const TargetName& target,
                        const llvm::TargetMachine& machine, DiagnosticSink& sink) {
  llvm::Triple requested(target.triple);
  const std::string& own = module.getTargetTriple();
  if (!own.empty()) {
    llvm::Triple ownTriple(own);
    if (ownTriple.getArch() != requested.getArch() || ownTriple.getOS() != requested.getOS()) {
      std::string message = "module triple '" + own + "' does not match requested target " +
                            target.triple + "; compile it for that target";
      for (const TargetName& other : servedTargets()) {
        llvm::Triple otherTriple(other.triple);
        if (otherTriple.getArch() == ownTriple.getArch() &&
            otherTriple.getOS() == ownTriple.getOS()) {
          message += " or request --target " + other.name;
          break;
        }
      }
      return fail(ErrorKind::TargetMismatch, std::move(message));
    }
  }
  module.setTargetTriple(target.triple);

  llvm::DataLayout layout = machine.createDataLayout();
  if (!module.getDataLayoutStr().empty() && module.getDataLayout() != layout)
    sink.warn("module datalayout '" + module.getDataLayoutStr() + "' differs from " + target.name +
              "'s '" + layout.getStringRepresentation() + "'; using the target's");
  module.setDataLayout(layout);
  return llvm::Error::success();
}

/// Code generation cannot select another target's intrinsics and ends the process ("Cannot
/// select: intrinsic %llvm.aarch64.crc32b"): refuse them up front. Run after verification, so
/// that every intrinsic is declared with its proper signature.
llvm::Error checkIntrinsics(const llvm::Module& module, const TargetName& target) {
  llvm::StringRef own = llvm::Triple::getArchTypePrefix(llvm::Triple(target.triple).getArch());
  for (const llvm::Function& function : module) {
    if (!function.isTargetIntrinsic())
      continue;
    // "llvm.<target prefix>.<name>"
    llvm::StringRef prefix = function.getName().drop_front(5).split('.').first;
    if (prefix != own)
      return fail(ErrorKind::InvalidModule, "the module uses '" + function.getName().str() +
                                                "', an intrinsic of another target than " +
                                                target.triple);
  }
  return llvm::Error::success();
}

/// Runs the verifier. Broken debug info alone is not fatal: it is stripped with a warning, as
/// LLVM's readers would do (we turned their upgrade off, see initializeLlvm).
llvm::Error verify(llvm::Module& module, const std::string& name, DiagnosticSink& sink) {
  std::string text;
  llvm::raw_string_ostream os(text);
  bool brokenDebugInfo = false;
  bool broken = llvm::verifyModule(module, &os, &brokenDebugInfo);
  os.flush();
  while (!text.empty() && text.back() == '\n')
    text.pop_back();
  if (broken)
    return fail(ErrorKind::InvalidModule, name + ": invalid module: " + text,
                {{Diagnostic::Severity::Error, text, 0, 0}});
  if (brokenDebugInfo) {
    llvm::StripDebugInfo(module);
    sink.warn("ignoring invalid debug info: " + text);
  } else {
    unsigned version = llvm::getDebugMetadataVersionFromModule(module);
    if (version != llvm::DEBUG_METADATA_VERSION && llvm::StripDebugInfo(module))
      sink.warn("ignoring debug info with version " + std::to_string(version) + " (LLVM " +
                LLVM_VERSION_STRING + " reads version " +
                std::to_string(llvm::DEBUG_METADATA_VERSION) + ")");
  }
  return llvm::Error::success();
}

// --- optimization and code generation ------------------------------------------------------

llvm::Expected<std::string> emitObject(llvm::Module& module, llvm::TargetMachine& machine) {
  llvm::SmallVector<char, 0> bytes;
  llvm::raw_svector_ostream os(bytes);
  llvm::legacy::PassManager passes;
  llvm::TargetLibraryInfoImpl libraryInfo{llvm::Triple(module.getTargetTriple())};
  // The legacy pass manager takes ownership of the raw pointer.
  passes.add(std::make_unique<llvm::TargetLibraryInfoWrapperPass>(libraryInfo).release());
  if (machine.addPassesToEmitFile(passes, os, nullptr, llvm::CodeGenFileType::ObjectFile))
    return fail(ErrorKind::Internal,
                "target " + module.getTargetTriple() + " cannot emit object files");
  passes.run(module);
  return std::string(bytes.data(), bytes.size());
}

ObjectSymbol::Kind symbolKind(llvm::object::SymbolRef::Type type) {
  switch (type) {
  case llvm::object::SymbolRef::ST_Function: return ObjectSymbol::Kind::Function;
  case llvm::object::SymbolRef::ST_Data: return ObjectSymbol::Kind::Data;
  default: return ObjectSymbol::Kind::Other;
  }
}

/// Fills `defines` (global and weak definitions, by name) and `needs` (undefined symbols,
/// sorted, without duplicates) from the object's symbol table.
llvm::Error readSymbols(CompiledObject& object) {
  llvm::MemoryBufferRef buffer(object.object, "object");
  llvm::Expected<std::unique_ptr<llvm::object::ObjectFile>> file =
      llvm::object::ObjectFile::createObjectFile(buffer);
  if (!file)
    return file.takeError();
  for (const llvm::object::SymbolRef& symbol : (*file)->symbols()) {
    llvm::Expected<uint32_t> flags = symbol.getFlags();
    if (!flags)
      return flags.takeError();
    if ((*flags & llvm::object::SymbolRef::SF_FormatSpecific) != 0)
      continue;
    llvm::Expected<llvm::StringRef> name = symbol.getName();
    if (!name)
      return name.takeError();
    if (name->empty())
      continue;
    if ((*flags & llvm::object::SymbolRef::SF_Undefined) != 0) {
      object.needs.push_back(name->str());
      continue;
    }
    if ((*flags & (llvm::object::SymbolRef::SF_Global | llvm::object::SymbolRef::SF_Weak)) == 0)
      continue;
    llvm::Expected<llvm::object::SymbolRef::Type> type = symbol.getType();
    if (!type)
      return type.takeError();
    object.defines.push_back({name->str(), symbolKind(*type)});
  }
  std::sort(object.needs.begin(), object.needs.end());
  object.needs.erase(std::unique(object.needs.begin(), object.needs.end()), object.needs.end());
  std::sort(object.defines.begin(), object.defines.end(),
            [](const ObjectSymbol& a, const ObjectSymbol& b) { return a.name < b.name; });
  return llvm::Error::success();
}

/// One type of a signature: the kinds IrType models, anything else as LLVM prints it.
IrType irTypeOf(llvm::Type* type, const llvm::AttributeSet& attributes) {
  if (type->isIntegerTy()) {
    IrType::Extension extension = IrType::Extension::None;
    if (attributes.hasAttribute(llvm::Attribute::ZExt))
      extension = IrType::Extension::Zero;
    else if (attributes.hasAttribute(llvm::Attribute::SExt))
      extension = IrType::Extension::Sign;
    return IrType::integer(type->getIntegerBitWidth(), extension);
  }
  if (type->isVoidTy())
    return IrType::voidType();
  if (type->isFloatTy())
    return IrType::floatType();
  if (type->isDoubleTy())
    return IrType::doubleType();
  if (type->isPointerTy() && type->getPointerAddressSpace() == 0)
    return IrType::pointer();
  std::string spelling;
  llvm::raw_string_ostream os(spelling);
  type->print(os);
  return IrType::other(os.str());
}

/// "i32(ptr,double)", "void(i32,...)", "zeroext i8(signext i16)": the IR type of a defined
/// function, for callers that marshal arguments by signature (rjit run, rjit call). The string
/// format is src/common/ir-signature.h's.
std::string signatureOf(const llvm::Function& function) {
  llvm::FunctionType* type = function.getFunctionType();
  const llvm::AttributeList& attributes = function.getAttributes();
  IrSignature signature;
  signature.result = irTypeOf(type->getReturnType(), attributes.getRetAttrs());
  for (unsigned i = 0; i < type->getNumParams(); ++i)
    signature.params.push_back(irTypeOf(type->getParamType(i), attributes.getParamAttrs(i)));
  signature.variadic = type->isVarArg();
  return formatIrSignature(signature);
}

void addSignatures(const llvm::Module& module, CompiledObject& object) {
  for (ObjectSymbol& symbol : object.defines) {
    if (symbol.kind != ObjectSymbol::Kind::Function)
      continue;
    if (const llvm::Function* function = module.getFunction(symbol.name))
      symbol.signature = signatureOf(*function);
  }
}

// --- the whole compile -----------------------------------------------------------------------

llvm::Expected<CompiledObject> compileModule(std::string_view bytes, const CompileOptions& options,
                                             DiagnosticSink& sink) {
  std::string name = options.moduleName.empty() ? "<module>" : options.moduleName;
  if (bytes.empty())
    return fail(ErrorKind::InvalidRequest, name + ": empty module");
  if (options.optLevel > 3)
    return fail(ErrorKind::InvalidRequest,
                "optimization level " + std::to_string(options.optLevel) + " is not 0..3");

  llvm::Expected<TargetName> target = findServedTarget(options.triple);
  if (!target)
    return target.takeError();
  const llvm::Target* llvmTarget = lookupLlvmTarget(target->triple);
  assert(llvmTarget && "servedTargets() lists registered targets only");
  SubtargetCheck subtargets(*llvmTarget, *target);
  if (llvm::Error error = subtargets.checkRequest(options.cpu, options.features))
    return error;
  llvm::Expected<std::unique_ptr<llvm::TargetMachine>> machine =
      createTargetMachine(*llvmTarget, *target, options);
  if (!machine)
    return machine.takeError();

  llvm::LLVMContext context;
  context.setDiagnosticHandlerCallBack(&DiagnosticSink::handle, &sink, /*RespectFilters=*/true);
  llvm::Expected<std::unique_ptr<llvm::Module>> module = parseModule(bytes, options, name, context);
  if (!module)
    return module.takeError();
  llvm::Module& m = **module;

  if (llvm::Error error = adoptTarget(m, *target, **machine, sink))
    return error;
  if (llvm::Error error = verify(m, name, sink))
    return error;
  if (llvm::Error error = checkIntrinsics(m, *target))
    return error;
  if (llvm::Error error = subtargets.applyToFunctions(m, options.cpu, options.features, sink))
    return error;
  prepareAndOptimize(m, **machine, options.optLevel);

  CompiledObject object;
  object.triple = target->triple;
  llvm::Expected<std::string> bytesOut = emitObject(m, **machine);
  if (!bytesOut)
    return bytesOut.takeError();
  // Errors LLVM reports through the context during code generation (bad inline assembly,
  // unsupported constructs) leave a partial object behind.
  if (const Diagnostic* error = sink.firstError())
    return fail(ErrorKind::InvalidModule, name + ": " + error->message);
  object.object = std::move(*bytesOut);
  if (llvm::Error error = readSymbols(object))
    return error;
  addSignatures(m, object);
  return object;
}

}  // namespace

std::vector<TargetName> servedTargets() {
  initializeLlvm();
  std::vector<TargetName> served;
  for (const TargetName& t : knownTargets())
    if (lookupLlvmTarget(t.triple) != nullptr)
      served.push_back(t);
  return served;
}

std::string defaultTriple() {
  // The host's triple in rjitd's canonical spelling ("x86_64-pc-linux-gnu" is an alias).
  std::string host = llvm::sys::getProcessTriple();
  if (const TargetName* t = resolveTarget(knownTargets(), host, ""))
    return t->triple;
  std::vector<TargetName> served = servedTargets();
  return served.empty() ? host : served.front().triple;
}

std::string llvmVersion() {
  return LLVM_VERSION_STRING;
}

CompileResult compile(std::string_view module, const CompileOptions& options) {
  auto start = std::chrono::steady_clock::now();
  initializeLlvm();
  DiagnosticSink sink;
  llvm::Expected<CompiledObject> object = compileModule(module, options, sink);
  std::vector<Diagnostic> diagnostics = sink.take();
  if (!object) {
    Failure failure;
    llvm::handleAllErrors(
        object.takeError(),
        [&](const CompileError& error) {
          if (failure.message.empty())
            failure = error.failure();
        },
        [&](const llvm::ErrorInfoBase& error) {
          if (failure.message.empty())
            failure = {ErrorKind::Internal, "compiler: " + error.message(), {}};
        });
    // Warnings collected before the failure come first, then the failure's own diagnostics.
    diagnostics.insert(diagnostics.end(), failure.diagnostics.begin(), failure.diagnostics.end());
    failure.diagnostics = std::move(diagnostics);
    return failure;
  }
  object->diagnostics = std::move(diagnostics);
  object->compileMicros =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now() - start)
                                .count());
  return std::move(*object);
}

}  // namespace rjitd::compiler

namespace rjitd::compiler {
namespace {
FatalErrorHandler fatalHandler = nullptr;
}  // namespace

void setFatalErrorHandler(FatalErrorHandler handler) {
  fatalHandler = handler;
  llvm::install_fatal_error_handler(
      [](void*, const char* reason, bool) {
        if (fatalHandler != nullptr)
          fatalHandler(reason);
      },
      nullptr);
}

namespace {
OutOfMemoryHandler outOfMemoryHandler = nullptr;
}  // namespace

void setOutOfMemoryHandler(OutOfMemoryHandler handler) {
  outOfMemoryHandler = handler;
  llvm::install_bad_alloc_error_handler(
      [](void*, const char*, bool) {
        if (outOfMemoryHandler != nullptr)
          outOfMemoryHandler();
        // LLVM requires that this handler never returns.
        std::abort();
      },
      nullptr);
}

}  // namespace rjitd::compiler
