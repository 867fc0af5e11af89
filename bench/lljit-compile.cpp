// SPDX-License-Identifier: MIT
// In-process LLVM ORC LLJIT compile, the comparison MISSION.md names. Compiles as rjitd's
// compiler does (same triple, CPU, datalayout, verifier, and the target machine settings and
// pass pipeline from src/compiler/pipeline.h, shared so they cannot drift apart) so that the
// difference measured is rjitd's, not a different compile.
#include "lljit-compile.h"

#include "pipeline.h"

#include <llvm/AsmParser/Parser.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/CodeGen.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/SourceMgr.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Triple.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace rjitbench {
namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

[[noreturn]] void fail(const std::string& what, llvm::Error error) {
  throw std::runtime_error("LLJIT: " + what + ": " + llvm::toString(std::move(error)));
}

template <typename T> T take(llvm::Expected<T> value, const std::string& what) {
  if (!value)
    fail(what, value.takeError());
  return std::move(*value);
}

void initialize() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
  });
}

struct Compiled {
  std::unique_ptr<llvm::orc::LLJIT> jit;
  llvm::orc::ExecutorAddr address;
  LljitTimes times;
};

Compiled compile(std::string_view text, const LljitOptions& options) {
  initialize();
  auto start = Clock::now();

  // rjitd's own settings (emulated TLS, init_array, PIC, small code model, codegen level).
  rjitd::compiler::MachineSettings settings = rjitd::compiler::machineSettings(options.optLevel);
  llvm::orc::JITTargetMachineBuilder machineBuilder{llvm::Triple(options.triple)};
  machineBuilder.setCPU(options.cpu);
  machineBuilder.setOptions(settings.options);
  machineBuilder.setCodeGenOptLevel(settings.codeGenLevel);
  machineBuilder.setRelocationModel(settings.relocationModel);
  machineBuilder.setCodeModel(settings.codeModel);
  std::unique_ptr<llvm::TargetMachine> machine =
      take(machineBuilder.createTargetMachine(), "target machine");

  Compiled out;
  out.jit =
      take(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(machineBuilder).create(), "create");

  auto parseStart = Clock::now();
  auto context = std::make_unique<llvm::LLVMContext>();
  // The IR lexer needs a NUL after its input, hence the copy (rjitd's compiler copies too).
  std::unique_ptr<llvm::MemoryBuffer> buffer = llvm::MemoryBuffer::getMemBufferCopy(
      llvm::StringRef(text.data(), text.size()), "bench-module");
  llvm::SMDiagnostic diagnostic;
  std::unique_ptr<llvm::Module> module =
      llvm::parseAssembly(buffer->getMemBufferRef(), diagnostic, *context);
  if (!module) {
    std::string message;
    llvm::raw_string_ostream os(message);
    diagnostic.print(nullptr, os, false);
    throw std::runtime_error("LLJIT: parse: " + os.str());
  }
  module->setTargetTriple(options.triple);
  module->setDataLayout(out.jit->getDataLayout());
  std::string verifyMessage;
  llvm::raw_string_ostream verifyOs(verifyMessage);
  if (llvm::verifyModule(*module, &verifyOs))
    throw std::runtime_error("LLJIT: invalid module: " + verifyOs.str());
  out.times.parseMs = msSince(parseStart);

  auto optStart = Clock::now();
  rjitd::compiler::prepareAndOptimize(*module, *machine, options.optLevel);
  out.times.optMs = msSince(optStart);

  auto lookupStart = Clock::now();
  if (llvm::Error error =
          out.jit->addIRModule(llvm::orc::ThreadSafeModule(std::move(module), std::move(context))))
    fail("addIRModule", std::move(error));
  out.address = take(out.jit->lookup(options.symbol), "lookup " + options.symbol);
  out.times.lookupMs = msSince(lookupStart);
  out.times.totalMs = msSince(start);
  return out;
}

}  // namespace

LljitTimes lljitCompile(std::string_view module, const LljitOptions& options) {
  Compiled compiled = compile(module, options);
  LljitTimes times = compiled.times;
  compiled.jit.reset();  // tear-down (freeing the JIT'd memory) is not part of the compile
  return times;
}

int lljitRun(std::string_view module, const LljitOptions& options, unsigned argument) {
  Compiled compiled = compile(module, options);
  return compiled.address.toPtr<int (*)(unsigned)>()(argument);
}

struct LljitModule::Impl {
  Compiled compiled;
};

LljitModule::LljitModule(std::string_view module, const LljitOptions& options)
    : impl_(std::make_unique<Impl>(Impl{compile(module, options)})) {}
LljitModule::~LljitModule() = default;
LljitModule::LljitModule(LljitModule&&) noexcept = default;
LljitModule& LljitModule::operator=(LljitModule&&) noexcept = default;

const LljitTimes& LljitModule::times() const {
  return impl_->compiled.times;
}

void* LljitModule::address(const std::string& symbol) {
  return take(impl_->compiled.jit->lookup(symbol), "lookup " + symbol).toPtr<void*>();
}

}  // namespace rjitbench
