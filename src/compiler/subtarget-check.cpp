// SPDX-License-Identifier: MIT
// CPU and feature checks (see subtarget-check.h).
#include "subtarget-check.h"

#include <llvm/ADT/SmallVector.h>
#include <llvm/TargetParser/Triple.h>

#include <cassert>
#include <map>
#include <set>
#include <utility>

namespace rjitd::compiler {
namespace {

std::string baselineFor(const TargetName& name) {
  switch (llvm::Triple(name.triple).getArch()) {
  case llvm::Triple::x86_64: return "+64bit,+x87,+sse,+sse2,-soft-float";
  case llvm::Triple::aarch64: return "+fp-armv8,+neon";
  default: return "";
  }
}

llvm::SmallVector<llvm::StringRef, 16> splitFeatures(llvm::StringRef features) {
  llvm::SmallVector<llvm::StringRef, 16> out;
  features.split(out, ',', -1, /*KeepEmpty=*/false);
  return out;
}

bool isSigned(llvm::StringRef feature) {
  return feature.starts_with("+") || feature.starts_with("-");
}

}  // namespace

SubtargetCheck::SubtargetCheck(const llvm::Target& target, const TargetName& name)
    : target_(target), name_(name), baseline_(baselineFor(name)),
      // The target's own default CPU and no features: creating it prints nothing.
      tables_(target.createMCSubtargetInfo(name.triple, name.defaultCpu, "")) {
  assert(tables_ && "every registered target has an MCSubtargetInfo");
  for (const llvm::SubtargetFeatureKV& kv : tables_->getAllProcessorFeatures())
    features_.insert(kv.Key);
}

bool SubtargetCheck::keepsBaseline(llvm::StringRef cpu, llvm::StringRef features) const {
  if (baseline_.empty())
    return true;
  std::unique_ptr<llvm::MCSubtargetInfo> info(
      target_.createMCSubtargetInfo(name_.triple, cpu, features));
  assert(info && "every registered target has an MCSubtargetInfo");
  return info->checkFeatures(baseline_);
}

std::string SubtargetCheck::describeBaselineLoss(llvm::StringRef cpu,
                                                 llvm::StringRef features) const {
  std::string what = "CPU '" + cpu.str() + "'";
  if (!features.empty())
    what += " with features '" + features.str() + "'";
  return what + " lacks the " + name_.name + " ABI baseline (" + baseline_ + ")";
}

llvm::Error SubtargetCheck::checkRequest(std::string_view cpu, std::string_view features) const {
  std::string where = name_.name + " (" + name_.triple + ")";
  if (!cpu.empty() && !isCpu(cpu))
    return fail(ErrorKind::InvalidRequest, "unknown CPU '" + std::string(cpu) + "' for " + where);
  for (llvm::StringRef feature : splitFeatures(features)) {
    if (!isSigned(feature))
      return fail(ErrorKind::InvalidRequest,
                  "target feature '" + feature.str() + "' must start with '+' or '-'");
    if (!isFeature(feature.drop_front()))
      return fail(ErrorKind::InvalidRequest,
                  "unknown target feature '" + feature.drop_front().str() + "' for " + where);
  }
  llvm::StringRef effectiveCpu =
      cpu.empty() ? llvm::StringRef(name_.defaultCpu) : llvm::StringRef(cpu);
  if (!keepsBaseline(effectiveCpu, features))
    return fail(ErrorKind::InvalidRequest, describeBaselineLoss(effectiveCpu, features));
  return llvm::Error::success();
}

llvm::Error SubtargetCheck::applyToFunctions(llvm::Module& module, std::string_view cpu,
                                             std::string_view features,
                                             DiagnosticSink& sink) const {
  std::set<std::string> warned;
  auto warnOnce = [&](std::string message) {
    if (warned.insert(message).second)
      sink.warn(std::move(message));
  };
  // Most modules repeat one attribute set; check each distinct CPU and feature pair once.
  std::map<std::pair<std::string, std::string>, bool> baselineKept;
  std::string machineCpu = cpu.empty() ? name_.defaultCpu : std::string(cpu);

  for (llvm::Function& function : module) {
    std::string functionName = function.getName().str();
    if (function.getFnAttribute("use-soft-float").getValueAsBool())
      return fail(ErrorKind::InvalidModule, "function '" + functionName +
                                                "' asks for soft float, which is not the " +
                                                name_.triple + " ABI");

    for (llvm::StringRef kind : {"target-cpu", "tune-cpu"}) {
      if (!function.hasFnAttribute(kind))
        continue;
      if (kind == "target-cpu" && !cpu.empty()) {
        function.addFnAttr(kind, cpu);
        continue;
      }
      llvm::StringRef value = function.getFnAttribute(kind).getValueAsString();
      if (!isCpu(value)) {
        warnOnce("ignoring unknown " + kind.str() + " '" + value.str() + "' of function '" +
                 functionName + "'");
        function.removeFnAttr(kind);
      }
    }

    if (function.hasFnAttribute("target-features")) {
      std::string kept;
      llvm::StringRef all = function.getFnAttribute("target-features").getValueAsString();
      for (llvm::StringRef feature : splitFeatures(all)) {
        if (!isSigned(feature) || !isFeature(feature.drop_front())) {
          warnOnce("ignoring unknown target feature '" + feature.str() + "' of function '" +
                   functionName + "'");
          continue;
        }
        if (!kept.empty())
          kept += ',';
        kept += feature.str();
      }
      // The last mention of a feature wins, so appending gives the request the last word.
      if (!features.empty())
        kept += (kept.empty() ? "" : ",") + std::string(features);
      if (kept.empty())
        function.removeFnAttr("target-features");
      else
        function.addFnAttr("target-features", kept);
    }

    // A function's attributes replace the target machine's CPU and features for its code.
    std::string functionCpu = function.hasFnAttribute("target-cpu")
                                  ? function.getFnAttribute("target-cpu").getValueAsString().str()
                                  : machineCpu;
    std::string functionFeatures =
        function.hasFnAttribute("target-features")
            ? function.getFnAttribute("target-features").getValueAsString().str()
            : std::string(features);
    auto key = std::make_pair(functionCpu, functionFeatures);
    auto found = baselineKept.find(key);
    if (found == baselineKept.end())
      found = baselineKept.emplace(key, keepsBaseline(functionCpu, functionFeatures)).first;
    if (!found->second)
      return fail(ErrorKind::InvalidModule,
                  "function '" + functionName +
                      "': " + describeBaselineLoss(functionCpu, functionFeatures));
  }
  return llvm::Error::success();
}

}  // namespace rjitd::compiler
