// SPDX-License-Identifier: MIT
// CPU names and target features, checked before LLVM sees them: LLVM prints "is not a
// recognized feature" to stderr for unknown ones and ends the process (report_fatal_error) for
// some known ones, such as an x86_64 module compiled for CPU "i386".
#pragma once

#include <llvm/ADT/StringSet.h>
#include <llvm/IR/Module.h>
#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Support/Error.h>

#include <memory>
#include <string>
#include <string_view>

#include "diagnostics.h"
#include "targets.h"

namespace rjitd::compiler {

/// One target's CPU and feature tables (from its MCSubtargetInfo) and the features its Linux
/// ABI cannot do without (x86_64: 64-bit mode, x87, SSE2, no soft float; AArch64: FP and
/// NEON). Code built without them would not link with, or would crash, the client's code.
class SubtargetCheck final {
public:
  /// `target` and `name` outlive this object.
  SubtargetCheck(const llvm::Target& target, const TargetName& name);
  SubtargetCheck(const SubtargetCheck&) = delete;
  SubtargetCheck& operator=(const SubtargetCheck&) = delete;

  bool isCpu(llvm::StringRef cpu) const { return tables_->isCPUStringValid(cpu); }
  bool isFeature(llvm::StringRef name) const { return features_.contains(name); }

  /// Checks a request's CPU ("" = the target's default) and feature string ("+avx2,-sse4.1"):
  /// an InvalidRequest CompileError naming the unknown CPU or feature, or the baseline the
  /// pair drops.
  llvm::Error checkRequest(std::string_view cpu, std::string_view features) const;

  /// Brings the functions' "target-cpu", "tune-cpu" and "target-features" attributes in line:
  /// unknown CPUs and features are dropped with a warning (what LLVM does, minus its stderr
  /// output); a CPU and features the request names explicitly replace, or are appended to,
  /// the producer's. A function whose CPU and features drop the ABI baseline, or that asks
  /// for soft float, fails with InvalidModule. `cpu` and `features` are the request's,
  /// already checked by checkRequest.
  llvm::Error applyToFunctions(llvm::Module& module, std::string_view cpu,
                               std::string_view features, DiagnosticSink& sink) const;

private:
  /// Whether code for `cpu` with `features` (both known) keeps the ABI baseline.
  bool keepsBaseline(llvm::StringRef cpu, llvm::StringRef features) const;
  std::string describeBaselineLoss(llvm::StringRef cpu, llvm::StringRef features) const;

  const llvm::Target& target_;
  const TargetName& name_;
  std::string baseline_;  ///< feature string for MCSubtargetInfo::checkFeatures; "" = none
  std::unique_ptr<llvm::MCSubtargetInfo> tables_;
  llvm::StringSet<> features_;
};

}  // namespace rjitd::compiler
