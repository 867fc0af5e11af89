// SPDX-License-Identifier: MIT
// How rjitd turns an -O level into code generation settings and an optimization pipeline:
// one definition for the compiler and for bench/lljit-compile.cpp, whose in-process LLJIT
// reference must compile exactly as rjitd does. Internal and LLVM-typed: include it only from
// src/compiler sources and the LLJIT benchmark (compiler.h is the LLVM-free public header).
#pragma once

#include <llvm/Support/CodeGen.h>
#include <llvm/Target/TargetOptions.h>

namespace llvm {
class Module;
class TargetMachine;
}  // namespace llvm

namespace rjitd::compiler {

/// The target machine settings every rjitd compile uses besides triple, CPU and features.
struct MachineSettings {
  llvm::TargetOptions options;
  llvm::Reloc::Model relocationModel;
  llvm::CodeModel::Model codeModel;
  llvm::CodeGenOptLevel codeGenLevel;
};

/// The settings for -O`optLevel` (0..3; above 3 counts as 3).
MachineSettings machineSettings(unsigned optLevel);

/// At -O1..-O3 the requested level applies to every function: drops `optnone noinline`, which
/// `clang -O0` output puts on every function and which would make -O2 a no-op.
void applyOptnonePolicy(llvm::Module& module, unsigned optLevel);

/// Everything rjitd does to a verified module before code generation, in order: the optnone
/// policy, undef bytes of global initializers made zeros (see zeroUndefInInitializers in
/// pipeline.cpp), then the -O`optLevel` pipeline. The compiler and the LLJIT benchmark call
/// this one function, so the benchmark's reference cannot drift from what rjitd runs.
void prepareAndOptimize(llvm::Module& module, llvm::TargetMachine& machine, unsigned optLevel);

/// Runs the new pass manager's default pipeline for -O`optLevel` over `module`, with the tuning
/// clang uses (vectorizers and unrolling from -O2 up). `machine` must be the one the module's
/// code will be generated with.
void optimize(llvm::Module& module, llvm::TargetMachine& machine, unsigned optLevel);

}  // namespace rjitd::compiler
