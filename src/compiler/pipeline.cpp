// SPDX-License-Identifier: MIT
// Code generation settings and the optimization pipeline (see pipeline.h).
#include "pipeline.h"

#include <llvm/IR/Function.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/Module.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Target/TargetMachine.h>

namespace rjitd::compiler {

MachineSettings machineSettings(unsigned optLevel) {
  MachineSettings settings;
  // JITLink rejects native TLS relocations (R_X86_64_TPOFF32, AArch64 TLSLE); emulated TLS
  // calls __emutls_get_address instead, as LLJIT does by default.
  settings.options.EmulatedTLS = true;
  // Constructors go to .init_array as with clang and llc on Linux (not the legacy .ctors).
  settings.options.UseInitArray = true;
  // The client maps the object wherever its address range allows: position-independent code
  // with the small code model, which JITLink supports on both served architectures.
  settings.relocationModel = llvm::Reloc::PIC_;
  settings.codeModel = llvm::CodeModel::Small;
  switch (optLevel) {
  case 0: settings.codeGenLevel = llvm::CodeGenOptLevel::None; break;
  case 1: settings.codeGenLevel = llvm::CodeGenOptLevel::Less; break;
  case 2: settings.codeGenLevel = llvm::CodeGenOptLevel::Default; break;
  default: settings.codeGenLevel = llvm::CodeGenOptLevel::Aggressive; break;
  }
  return settings;
}

namespace {

/// Whether `function` reads its own frame or return address, or jumps with a
/// `__builtin_longjmp` buffer: inlined, it would read its caller's frame instead. Such code is
/// written `noinline` (GCC's documentation and tests do), and in `clang -O0` output that mark
/// looks the same as the `noinline` clang adds to every function.
bool readsItsOwnFrame(const llvm::Function& function) {
  for (const llvm::BasicBlock& block : function)
    for (const llvm::Instruction& instruction : block) {
      const auto* intrinsic = llvm::dyn_cast<llvm::IntrinsicInst>(&instruction);
      if (intrinsic == nullptr)
        continue;
      switch (intrinsic->getIntrinsicID()) {
      case llvm::Intrinsic::frameaddress:
      case llvm::Intrinsic::returnaddress:
      case llvm::Intrinsic::addressofreturnaddress:
      case llvm::Intrinsic::sponentry:
      case llvm::Intrinsic::eh_dwarf_cfa:
      case llvm::Intrinsic::eh_sjlj_setjmp:
      case llvm::Intrinsic::eh_sjlj_longjmp: return true;
      default: break;
      }
    }
  return false;
}

}  // namespace

void applyOptnonePolicy(llvm::Module& module, unsigned optLevel) {
  if (optLevel == 0)
    return;
  for (llvm::Function& function : module) {
    if (!function.hasFnAttribute(llvm::Attribute::OptimizeNone))
      continue;
    function.removeFnAttr(llvm::Attribute::OptimizeNone);
    if (!readsItsOwnFrame(function))
      function.removeFnAttr(llvm::Attribute::NoInline);
  }
}

void optimize(llvm::Module& module, llvm::TargetMachine& machine, unsigned optLevel) {
  // Tuning as clang sets it: vectorizers and unrolling from -O2 up.
  llvm::PipelineTuningOptions tuning;
  tuning.LoopVectorization = optLevel >= 2;
  tuning.SLPVectorization = optLevel >= 2;
  tuning.LoopUnrolling = optLevel >= 2;
  tuning.LoopInterleaving = optLevel >= 2;

  llvm::LoopAnalysisManager loops;
  llvm::FunctionAnalysisManager functions;
  llvm::CGSCCAnalysisManager sccs;
  llvm::ModuleAnalysisManager modules;
  llvm::PassBuilder builder(&machine, tuning);
  builder.registerModuleAnalyses(modules);
  builder.registerCGSCCAnalyses(sccs);
  builder.registerFunctionAnalyses(functions);
  builder.registerLoopAnalyses(loops);
  builder.crossRegisterProxies(loops, functions, sccs, modules);

  llvm::ModulePassManager passes;
  switch (optLevel) {
  case 0: passes = builder.buildO0DefaultPipeline(llvm::OptimizationLevel::O0); break;
  case 1: passes = builder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O1); break;
  case 2: passes = builder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O2); break;
  default: passes = builder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3); break;
  }
  passes.run(module, modules);
}

}  // namespace rjitd::compiler
