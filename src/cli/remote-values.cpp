// SPDX-License-Identifier: MIT
// Conversions between src/marshal's values and the client library's (see remote-values.h).
#include "remote-values.h"

namespace rjitd::cli {

std::vector<rjit::Value> toRemoteValues(const std::vector<rjitd::marshal::Value>& values) {
  using Kind = rjitd::marshal::Value::Kind;
  std::vector<rjit::Value> out;
  for (const rjitd::marshal::Value& v : values) {
    rjit::Value r;
    switch (v.kind) {
    case Kind::Signed:
      r.kind = rjit::Value::Kind::Signed;
      r.i = v.signedValue;
      break;
    case Kind::Unsigned:
      r.kind = rjit::Value::Kind::Unsigned;
      r.u = v.unsignedValue;
      break;
    case Kind::Float:
      r.kind = rjit::Value::Kind::Float;
      r.f = v.floatValue;
      break;
    case Kind::Double:
      r.kind = rjit::Value::Kind::Double;
      r.d = v.doubleValue;
      break;
    case Kind::String:
      r.kind = rjit::Value::Kind::String;
      r.text = v.text;
      break;
    case Kind::Void:
    case Kind::Pointer:
      // parseLiteral never makes these; the client's check refuses them by name.
      r.kind = rjit::Value::Kind::Pointer;
      r.u = v.unsignedValue;
      break;
    }
    out.push_back(std::move(r));
  }
  return out;
}

rjitd::marshal::Value fromRemoteValue(const rjit::Value& value) {
  using M = rjitd::marshal::Value;
  switch (value.kind) {
  case rjit::Value::Kind::Signed: return M::signedInt(value.i);
  case rjit::Value::Kind::Unsigned: return M::unsignedInt(value.u);
  case rjit::Value::Kind::Float: return M::floatNumber(value.f);
  case rjit::Value::Kind::Double: return M::doubleNumber(value.d);
  case rjit::Value::Kind::String: return M::string(value.text);
  case rjit::Value::Kind::Pointer: return M::pointer(value.u);
  case rjit::Value::Kind::Null: return M::pointer(0);
  case rjit::Value::Kind::Void:
  case rjit::Value::Kind::Buffer: break;
  }
  return M::voidValue();
}

}  // namespace rjitd::cli
