// SPDX-License-Identifier: MIT
// Argument checks of remote calls (see exec-values.h).
#include "exec-values.h"

#include <cstdio>

namespace rjit::detail {

namespace {

const char* elementName(ElementType element) {
  switch (element) {
  case ElementType::I8: return "i8";
  case ElementType::U8: return "u8";
  case ElementType::I16: return "i16";
  case ElementType::U16: return "u16";
  case ElementType::I32: return "i32";
  case ElementType::U32: return "u32";
  case ElementType::I64: return "i64";
  case ElementType::U64: return "u64";
  case ElementType::F32: return "f32";
  case ElementType::F64: return "f64";
  }
  return "?";
}

const char* directionName(Direction direction) {
  switch (direction) {
  case Direction::In: return "in";
  case Direction::Out: return "out";
  case Direction::InOut: return "in-out";
  }
  return "?";
}

std::string number(double v) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.17g", v);
  return text;
}

/// What a C++ type of call<R> needs of an IR integer: nullopt when `bits` (the C++ width) and
/// `isSigned` match `type`.
std::optional<std::string> typedIntegerProblem(uint8_t bits, bool isSigned,
                                               const rjitd::IrType& type) {
  if (type.kind != rjitd::IrType::Kind::Integer)
    return std::nullopt;  // the kind check reports it
  if (bits != type.bits)
    return "a " + std::to_string(bits) + "-bit C++ integer for " + rjitd::formatIrType(type);
  if (isSigned && type.extension == rjitd::IrType::Extension::Zero)
    return "a signed C++ integer for the unsigned " + rjitd::formatIrType(type);
  if (!isSigned && bits != 1 && type.extension == rjitd::IrType::Extension::Sign)
    return "an unsigned C++ integer for the signed " + rjitd::formatIrType(type);
  return std::nullopt;
}

}  // namespace

std::string describeValue(const Value& value) {
  std::string width = value.bits == 0 ? "" : std::to_string(value.bits);
  switch (value.kind) {
  case Value::Kind::Void: return "void";
  case Value::Kind::Signed:
    return (width.empty() ? "signed" : "i" + width) + " " + std::to_string(value.i);
  case Value::Kind::Unsigned:
    return (width.empty() ? "unsigned" : "u" + width) + " " + std::to_string(value.u);
  case Value::Kind::Float: return "float " + number(value.f);
  case Value::Kind::Double: return "double " + number(value.d);
  case Value::Kind::String: return "string \"" + value.text + "\"";
  case Value::Kind::Buffer:
    if (value.buffer == nullptr)
      return "buffer (none)";
    return std::string("buffer ") + elementName(value.buffer->element()) + "[" +
           std::to_string(value.buffer->count()) + "] " + directionName(value.buffer->direction());
  case Value::Kind::Null: return "null";
  case Value::Kind::Pointer: return "pointer " + std::to_string(value.u);
  }
  return "?";
}

rjitd::marshal::Value toMarshal(const Value& value) {
  using M = rjitd::marshal::Value;
  switch (value.kind) {
  case Value::Kind::Void: return M::voidValue();
  case Value::Kind::Signed: return M::signedInt(value.i);
  case Value::Kind::Unsigned: return M::unsignedInt(value.u);
  case Value::Kind::Float: return M::floatNumber(value.f);
  case Value::Kind::Double: return M::doubleNumber(value.d);
  case Value::Kind::String: return M::string(value.text);
  case Value::Kind::Buffer:
  case Value::Kind::Null:
  case Value::Kind::Pointer: return M::pointer(value.u);
  }
  return M::voidValue();
}

std::variant<rjitd::IrSignature, std::string> functionSignature(const CompiledObject& object,
                                                                std::string_view symbol) {
  const Symbol* found = nullptr;
  for (const Symbol& s : object.defines)
    if (s.name == symbol)
      found = &s;
  if (found == nullptr || found->kind != Symbol::Kind::Function || found->signature.empty())
    return "'" + std::string(symbol) + "' is not a function the module defines";
  auto parsed = rjitd::parseIrSignature(found->signature);
  if (auto* error = std::get_if<rjitd::IrSignatureError>(&parsed))
    return "'" + std::string(symbol) + "': " + error->describe();
  rjitd::IrSignature signature = std::get<rjitd::IrSignature>(std::move(parsed));
  if (signature.variadic)
    return describeFunction(symbol, signature) +
           " takes variable arguments; only functions with a fixed parameter list can be called";
  for (size_t i = 0; i < signature.params.size(); ++i)
    if (!rjitd::marshal::isMarshalled(signature.params[i]))
      return describeFunction(symbol, signature) + ": parameter " + std::to_string(i + 1) + " is " +
             rjitd::formatIrType(signature.params[i]) +
             "; calls pass integers (i1..i64), float, double and ptr only";
  if (signature.result.kind != rjitd::IrType::Kind::Void &&
      !rjitd::marshal::isMarshalled(signature.result))
    return describeFunction(symbol, signature) + ": its result " +
           rjitd::formatIrType(signature.result) +
           " is not passed back; calls return integers (i1..i64), float, double, ptr or void";
  return signature;
}

std::optional<std::string> checkArguments(std::string_view symbol,
                                          const rjitd::IrSignature& signature,
                                          const std::vector<Value>& args, bool typed,
                                          const RemoteModule::ResultType* result) {
  std::string given;
  for (size_t i = 0; i < args.size(); ++i)
    given += (i == 0 ? "" : ", ") + describeValue(args[i]);
  std::string head = describeFunction(symbol, signature) + " called with (" + given + ")";
  if (args.size() != signature.params.size())
    return head + ": it takes " + std::to_string(signature.params.size()) + " argument" +
           (signature.params.size() == 1 ? "" : "s") + ", not " + std::to_string(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    const Value& arg = args[i];
    const rjitd::IrType& type = signature.params[i];
    std::optional<std::string> problem;
    if (arg.kind == Value::Kind::Buffer || arg.kind == Value::Kind::Null ||
        arg.kind == Value::Kind::String) {
      if (type.kind != rjitd::IrType::Kind::Pointer)
        problem = "a " + std::string(arg.kind == Value::Kind::String ? "string" : "pointer") +
                  " for " + rjitd::formatIrType(type);
      else if (arg.kind == Value::Kind::Buffer && arg.buffer == nullptr)
        problem = std::string("a buffer value without a Buffer");
    } else if (arg.kind == Value::Kind::Void || arg.kind == Value::Kind::Pointer) {
      problem = "cannot pass " + describeValue(arg) + " as an argument";
    } else if (type.kind == rjitd::IrType::Kind::Pointer) {
      problem = "expected a string, a buffer or null for ptr";
    } else if (typed && arg.kind == Value::Kind::Float && type.kind != rjitd::IrType::Kind::Float) {
      problem = "a C++ float for " + rjitd::formatIrType(type);
    } else if (typed && arg.kind == Value::Kind::Double &&
               type.kind != rjitd::IrType::Kind::Double) {
      problem = "a C++ double for " + rjitd::formatIrType(type);
    } else {
      if (typed && arg.bits != 0)
        problem = typedIntegerProblem(arg.bits, arg.kind == Value::Kind::Signed, type);
      if (!problem)
        problem = rjitd::marshal::checkFits(toMarshal(arg), type);
    }
    if (problem)
      return head + ": argument " + std::to_string(i + 1) + ": " + *problem;
  }
  if (result != nullptr) {
    const rjitd::IrType& type = signature.result;
    std::optional<std::string> problem;
    switch (result->kind) {
    case Value::Kind::Void:
      if (type.kind != rjitd::IrType::Kind::Void)
        problem = "void for a function returning " + rjitd::formatIrType(type);
      break;
    case Value::Kind::Signed:
    case Value::Kind::Unsigned:
      if (type.kind != rjitd::IrType::Kind::Integer)
        problem = "an integer for " + rjitd::formatIrType(type);
      else
        problem = typedIntegerProblem(result->bits, result->kind == Value::Kind::Signed, type);
      break;
    case Value::Kind::Float:
      if (type.kind != rjitd::IrType::Kind::Float)
        problem = "float for " + rjitd::formatIrType(type);
      break;
    case Value::Kind::Double:
      if (type.kind != rjitd::IrType::Kind::Double)
        problem = "double for " + rjitd::formatIrType(type);
      break;
    default: problem = "an unsupported result type";
    }
    if (problem)
      return describeFunction(symbol, signature) + " called for a result of " + *problem;
  }
  return std::nullopt;
}

}  // namespace rjit::detail
