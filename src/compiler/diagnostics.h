// SPDX-License-Identifier: MIT
// How the compiler's parts report: a typed llvm::Error carrying a rjitd::Failure, and a sink
// for the warnings (and code-generation errors) LLVM reports through its LLVMContext.
#pragma once

#include <llvm/IR/DiagnosticInfo.h>
#include <llvm/Support/Error.h>

#include <string>
#include <vector>

#include "compiled-object.h"

namespace rjitd::compiler {

/// A compile failure as the caller gets it back: kind, message and the diagnostics that belong
/// to it. compile() turns this error (or any other llvm::Error) into a rjitd::Failure.
class CompileError final : public llvm::ErrorInfo<CompileError> {
public:
  static char ID;

  CompileError(ErrorKind kind, std::string message, std::vector<Diagnostic> diagnostics);

  const Failure& failure() const { return failure_; }

  void log(llvm::raw_ostream& os) const override;
  std::error_code convertToErrorCode() const override;

private:
  Failure failure_;
};

/// A CompileError as an llvm::Error.
llvm::Error fail(ErrorKind kind, std::string message, std::vector<Diagnostic> diagnostics = {});

/// Collects what LLVM reports through an LLVMContext (optimizer warnings, code-generation
/// errors such as bad inline assembly) and what the compiler itself warns about. Without a
/// handler LLVM prints to stderr, and exits on an error. One sink per compile, one thread.
class DiagnosticSink final {
public:
  void add(Diagnostic::Severity severity, std::string message);
  void warn(std::string message) { add(Diagnostic::Severity::Warning, std::move(message)); }

  /// The first error reported, if any.
  const Diagnostic* firstError() const;

  /// Moves the collected diagnostics out, in the order they were reported.
  std::vector<Diagnostic> take() { return std::move(diagnostics_); }

  /// An LLVMContext diagnostic handler (setDiagnosticHandlerCallBack) whose context is the
  /// DiagnosticSink. Remarks are dropped.
  static void handle(const llvm::DiagnosticInfo* info, void* context);

private:
  std::vector<Diagnostic> diagnostics_;
};

}  // namespace rjitd::compiler
