// SPDX-License-Identifier: MIT
#include "compiled-object.h"

namespace rjitd {

const char* errorKindName(ErrorKind kind) {
  switch (kind) {
  case ErrorKind::Internal: return "internal";
  case ErrorKind::InvalidModule: return "invalid-module";
  case ErrorKind::UnknownTarget: return "unknown-target";
  case ErrorKind::TargetMismatch: return "target-mismatch";
  case ErrorKind::TooLarge: return "too-large";
  case ErrorKind::InvalidRequest: return "invalid-request";
  case ErrorKind::NotFound: return "not-found";
  case ErrorKind::ShuttingDown: return "shutting-down";
  case ErrorKind::ProtocolMismatch: return "protocol-mismatch";
  case ErrorKind::Overloaded: return "overloaded";
  case ErrorKind::Connection: return "connection";
  case ErrorKind::Timeout: return "timeout";
  case ErrorKind::Configuration: return "configuration";
  case ErrorKind::LinkFailed: return "link-failed";
  case ErrorKind::Load: return "load";
  case ErrorKind::Crashed: return "crashed";
  case ErrorKind::OutOfMemory: return "out-of-memory";
  case ErrorKind::Exited: return "exited";
  case ErrorKind::OutputLimit: return "output-limit";
  case ErrorKind::SandboxViolation: return "sandbox-violation";
  case ErrorKind::SignatureMismatch: return "signature-mismatch";
  case ErrorKind::PermissionDenied: return "permission-denied";
  }
  return "unknown";
}

size_t CompiledObject::footprintBytes() const {
  size_t n = sizeof(*this) + triple.size() + object.size();
  for (const ObjectSymbol& s : defines)
    n += sizeof(s) + s.name.size() + s.signature.size();
  for (const std::string& s : needs)
    n += sizeof(s) + s.size();
  for (const Diagnostic& d : diagnostics)
    n += sizeof(d) + d.message.size();
  return n;
}

}  // namespace rjitd
