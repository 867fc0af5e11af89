// SPDX-License-Identifier: MIT
// Compile errors and the diagnostic sink (see diagnostics.h).
#include "diagnostics.h"

#include <llvm/IR/DiagnosticPrinter.h>
#include <llvm/Support/raw_ostream.h>

namespace rjitd::compiler {

char CompileError::ID = 0;

CompileError::CompileError(ErrorKind kind, std::string message, std::vector<Diagnostic> diagnostics)
    : failure_{kind, std::move(message), std::move(diagnostics)} {}

void CompileError::log(llvm::raw_ostream& os) const {
  os << failure_.message;
}

std::error_code CompileError::convertToErrorCode() const {
  return llvm::inconvertibleErrorCode();
}

llvm::Error fail(ErrorKind kind, std::string message, std::vector<Diagnostic> diagnostics) {
  return llvm::make_error<CompileError>(kind, std::move(message), std::move(diagnostics));
}

void DiagnosticSink::add(Diagnostic::Severity severity, std::string message) {
  diagnostics_.push_back({severity, std::move(message), 0, 0});
}

const Diagnostic* DiagnosticSink::firstError() const {
  for (const Diagnostic& d : diagnostics_)
    if (d.severity == Diagnostic::Severity::Error)
      return &d;
  return nullptr;
}

void DiagnosticSink::handle(const llvm::DiagnosticInfo* info, void* context) {
  Diagnostic::Severity severity;
  switch (info->getSeverity()) {
  case llvm::DS_Error: severity = Diagnostic::Severity::Error; break;
  case llvm::DS_Warning: severity = Diagnostic::Severity::Warning; break;
  case llvm::DS_Note: severity = Diagnostic::Severity::Note; break;
  case llvm::DS_Remark: return;  // nobody asked for optimization remarks
  default: return;
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  llvm::DiagnosticPrinterRawOStream printer(os);
  info->print(printer);
  os.flush();
  // Positions in code-generation diagnostics come from debug info and name the producer's
  // source file, not the module, so they stay in the text; without debug info LLVM writes a
  // meaningless "<unknown>:0:0: ".
  llvm::StringRef message = llvm::StringRef(text).trim();
  message.consume_front("<unknown>:0:0: ");
  static_cast<DiagnosticSink*>(context)->add(severity, message.str());
}

}  // namespace rjitd::compiler
