// SPDX-License-Identifier: MIT
// Code generation settings and the optimization pipeline (see pipeline.h).
#include "pipeline.h"

#include <llvm/IR/Constants.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/Module.h>
#include <llvm/Passes/PassBuilder.h>

#include <llvm/Target/TargetMachine.h>
#include <vector>

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

/// `c` with every undef and poison part replaced by zeros; `c` itself when it has none.
llvm::Constant* zeroUndefParts(llvm::Constant* c) {
  if (llvm::isa<llvm::UndefValue>(c))  // poison too
    return llvm::Constant::getNullValue(c->getType());
  auto* aggregate = llvm::dyn_cast<llvm::ConstantAggregate>(c);
  if (aggregate == nullptr)
    return c;  // scalars, strings (ConstantData*), expressions: nothing undef to refine
  std::vector<llvm::Constant*> parts;
  bool changed = false;
  for (llvm::Use& use : aggregate->operands()) {
    auto* part = llvm::cast<llvm::Constant>(use.get());
    parts.push_back(zeroUndefParts(part));
    changed = changed || parts.back() != part;
  }
  if (!changed)
    return c;
  if (auto* structType = llvm::dyn_cast<llvm::StructType>(c->getType()))
    return llvm::ConstantStruct::get(structType, parts);
  if (auto* arrayType = llvm::dyn_cast<llvm::ArrayType>(c->getType()))
    return llvm::ConstantArray::get(arrayType, parts);
  return llvm::ConstantVector::get(parts);
}

/// clang 19 initialises a union with `= {}` (or `= {0}`) from a constant whose bytes past the
/// first member are undef: `{ i32 0, [12 x i8] undef }` for `union { int i, j[4]; }`, copied
/// into locals with memcpy. The optimizer may fold a read of those bytes to any value, and
/// does: `t.j[1]` becomes garbage, and a branch or an index on it a crash. The object file
/// stores undef bytes as zeros, so that -O0, lli and GCC-built programs read zeros (C23 and
/// GCC zero the whole union). Zero them before optimizing, so that every level reads what
/// the object file holds; choosing a value for undef is always a correct refinement.
void zeroUndefInInitializers(llvm::Module& module) {
  for (llvm::GlobalVariable& global : module.globals()) {
    if (!global.hasInitializer())
      continue;
    llvm::Constant* initializer = global.getInitializer();
    llvm::Constant* zeroed = zeroUndefParts(initializer);
    if (zeroed != initializer)
      global.setInitializer(zeroed);
  }
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

void prepareAndOptimize(llvm::Module& module, llvm::TargetMachine& machine, unsigned optLevel) {
  applyOptnonePolicy(module, optLevel);
  zeroUndefInInitializers(module);
  optimize(module, machine, optLevel);
}

}  // namespace rjitd::compiler
