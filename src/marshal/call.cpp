// SPDX-License-Identifier: MIT
// Calls by IR signature through libffi (see call.h).
#include "call.h"

#include <cstring>
#include <ffi.h>

namespace rjitd::marshal {
namespace {

/// "'f' (i32(i32,ptr))": how every message names the function.
std::string named(std::string_view symbol, const IrSignature& signature) {
  return "'" + std::string(symbol) + "' (" + formatIrSignature(signature) + ")";
}

CallError error(CallError::Kind kind, std::string_view symbol, const IrSignature& signature,
                std::string message, std::optional<size_t> argument = std::nullopt) {
  return {kind, std::string(symbol), formatIrSignature(signature), argument, std::move(message)};
}

CallError badArgument(std::string_view symbol, const IrSignature& signature, size_t index,
                      std::string_view shown, const std::string& problem) {
  return error(CallError::Kind::BadArgument, symbol, signature,
               "argument " + std::to_string(index + 1) + " " + std::string(shown) + " of " +
                   named(symbol, signature) + ": " + problem,
               index);
}

std::optional<CallError> checkCount(std::string_view symbol, const IrSignature& signature,
                                    size_t given) {
  size_t wanted = signature.params.size();
  if (given == wanted)
    return std::nullopt;
  return error(CallError::Kind::ArgumentCount, symbol, signature,
               named(symbol, signature) + " takes " + std::to_string(wanted) + " argument" +
                   (wanted == 1 ? "" : "s") + "; " + std::to_string(given) + " given");
}

/// The libffi type that passes `type` as the C ABI does: `signext`/`zeroext` pick the signed
/// or unsigned type of the width, so that libffi extends a narrow value the way the callee
/// expects; a plain integer is passed as signed (the callee reads only its width).
ffi_type* ffiType(const IrType& type) {
  bool zero = type.extension == IrType::Extension::Zero;
  switch (type.kind) {
  case IrType::Kind::Void: return &ffi_type_void;
  case IrType::Kind::Float: return &ffi_type_float;
  case IrType::Kind::Double: return &ffi_type_double;
  case IrType::Kind::Pointer: return &ffi_type_pointer;
  case IrType::Kind::Integer:
    switch (type.bits) {
    case 1: return type.extension == IrType::Extension::Sign ? &ffi_type_sint8 : &ffi_type_uint8;
    case 8: return zero ? &ffi_type_uint8 : &ffi_type_sint8;
    case 16: return zero ? &ffi_type_uint16 : &ffi_type_sint16;
    case 32: return zero ? &ffi_type_uint32 : &ffi_type_sint32;
    case 64: return zero ? &ffi_type_uint64 : &ffi_type_sint64;
    default: break;
    }
    break;
  case IrType::Kind::Other: break;
  }
  return nullptr;  // checkCallable refused it before
}

/// One argument's bytes as libffi reads them: the member of the parameter's width.
union Slot {
  uint8_t u8;
  uint16_t u16;
  uint32_t u32;
  uint64_t u64;
  float f;
  double d;
  void* p;
};

/// Stores an argument that checkFits accepted into `slot`.
void store(const Value& value, const IrType& type, Slot& slot, char* string) {
  switch (type.kind) {
  case IrType::Kind::Integer: {
    // Two's complement: the low bits of either kind are the value at the parameter's width.
    uint64_t bits = value.kind == Value::Kind::Signed ? static_cast<uint64_t>(value.signedValue)
                                                      : value.unsignedValue;
    switch (type.bits) {
    case 1:
      // A signext i1 holds -1 for true (all bits set), otherwise 1.
      slot.u8 = (bits & 1) == 0 ? 0 : type.extension == IrType::Extension::Sign ? 0xff : 1;
      break;
    case 8: slot.u8 = static_cast<uint8_t>(bits); break;
    case 16: slot.u16 = static_cast<uint16_t>(bits); break;
    case 32: slot.u32 = static_cast<uint32_t>(bits); break;
    default: slot.u64 = bits; break;
    }
    break;
  }
  case IrType::Kind::Float:
    slot.f =
        value.kind == Value::Kind::Float ? value.floatValue : static_cast<float>(value.doubleValue);
    break;
  case IrType::Kind::Double:
    slot.d = value.kind == Value::Kind::Double ? value.doubleValue
                                               : static_cast<double>(value.floatValue);
    break;
  case IrType::Kind::Pointer:
    slot.p = value.kind == Value::Kind::String
                 ? static_cast<void*>(string)
                 : reinterpret_cast<void*>(static_cast<uintptr_t>(value.unsignedValue));
    break;
  case IrType::Kind::Void:
  case IrType::Kind::Other: break;
  }
}

/// The result as a Value. libffi returns an integer narrower than a register widened to a
/// whole `ffi_arg` (extended by the signedness of its ffi_type); the width's own bits are read
/// back and extended by the result's signedness.
Value load(const IrType& type, const unsigned char* raw) {
  switch (type.kind) {
  case IrType::Kind::Void: return Value::voidValue();
  case IrType::Kind::Float: {
    float v;
    std::memcpy(&v, raw, sizeof(v));
    return Value::floatNumber(v);
  }
  case IrType::Kind::Double: {
    double v;
    std::memcpy(&v, raw, sizeof(v));
    return Value::doubleNumber(v);
  }
  case IrType::Kind::Pointer: {
    void* v;
    std::memcpy(&v, raw, sizeof(v));
    return Value::pointer(reinterpret_cast<uintptr_t>(v));
  }
  case IrType::Kind::Integer: {
    uint64_t bits;
    if (type.bits == 64) {
      std::memcpy(&bits, raw, sizeof(bits));
    } else {
      ffi_arg widened;
      std::memcpy(&widened, raw, sizeof(widened));
      bits = static_cast<uint64_t>(widened) & ((uint64_t{1} << type.bits) - 1);
    }
    if (type.extension == IrType::Extension::Zero || type.bits == 1)
      return Value::unsignedInt(bits);
    if (type.bits < 64 && (bits >> (type.bits - 1)) != 0)
      bits |= ~uint64_t{0} << type.bits;  // sign-extend from the width
    return Value::signedInt(static_cast<int64_t>(bits));
  }
  case IrType::Kind::Other: break;
  }
  return Value::voidValue();
}

}  // namespace

std::optional<CallError> checkCallable(std::string_view symbol, const IrSignature& signature) {
  if (signature.variadic)
    return error(CallError::Kind::Unsupported, symbol, signature,
                 named(symbol, signature) +
                     " takes variable arguments; only functions with a fixed parameter list can "
                     "be called by signature");
  for (size_t i = 0; i < signature.params.size(); ++i)
    if (!isMarshalled(signature.params[i]))
      return error(CallError::Kind::Unsupported, symbol, signature,
                   named(symbol, signature) + ": parameter " + std::to_string(i + 1) + " is " +
                       formatIrType(signature.params[i]) +
                       "; calls by signature pass integers (i1, i8, i16, i32, i64), float, "
                       "double and ptr (a string) only");
  if (signature.result.kind != IrType::Kind::Void && !isMarshalled(signature.result))
    return error(CallError::Kind::Unsupported, symbol, signature,
                 named(symbol, signature) + " returns " + formatIrType(signature.result) +
                     "; calls by signature return integers (i1, i8, i16, i32, i64), float, "
                     "double, ptr and void only");
  return std::nullopt;
}

std::variant<std::vector<Value>, CallError>
parseArguments(std::string_view symbol, const IrSignature& signature,
               const std::vector<std::string>& literals) {
  if (auto problem = checkCallable(symbol, signature))
    return std::move(*problem);
  if (auto problem = checkCount(symbol, signature, literals.size()))
    return std::move(*problem);
  std::vector<Value> values;
  values.reserve(literals.size());
  for (size_t i = 0; i < literals.size(); ++i) {
    auto parsed = parseLiteral(literals[i], signature.params[i]);
    if (auto* problem = std::get_if<std::string>(&parsed))
      return badArgument(symbol, signature, i, "'" + literals[i] + "'", *problem);
    values.push_back(std::move(std::get<Value>(parsed)));
  }
  return values;
}

std::variant<Value, CallError> callBySignature(void* function, std::string_view symbol,
                                               const IrSignature& signature,
                                               const std::vector<Value>& arguments) {
  if (auto problem = checkCallable(symbol, signature))
    return std::move(*problem);
  if (auto problem = checkCount(symbol, signature, arguments.size()))
    return std::move(*problem);
  size_t count = arguments.size();
  for (size_t i = 0; i < count; ++i)
    if (auto problem = checkFits(arguments[i], signature.params[i]))
      return badArgument(symbol, signature, i, "(" + formatValue(arguments[i]) + ")", *problem);

  std::vector<ffi_type*> types(count);
  std::vector<Slot> slots(count);
  std::vector<void*> pointers(count);
  // Writable copies (C functions may write into their string arguments, strtok does), reserved
  // so that their buffers stay put for the whole call.
  std::vector<std::string> strings;
  strings.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    types[i] = ffiType(signature.params[i]);
    char* string = nullptr;
    if (arguments[i].kind == Value::Kind::String)
      string = strings.emplace_back(arguments[i].text).data();
    store(arguments[i], signature.params[i], slots[i], string);
    pointers[i] = &slots[i];
  }
  ffi_cif cif;
  if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, static_cast<unsigned>(count), ffiType(signature.result),
                   types.data()) != FFI_OK)
    return error(CallError::Kind::Unsupported, symbol, signature,
                 "libffi cannot call " + named(symbol, signature));
  // At least sizeof(ffi_arg) (libffi's rule for results) and big enough for a double.
  alignas(16) unsigned char raw[16] = {};
  static_assert(sizeof(raw) >= sizeof(ffi_arg) && sizeof(raw) >= sizeof(double));
  ffi_call(&cif, reinterpret_cast<void (*)()>(function), raw, pointers.data());
  return load(signature.result, raw);
}

}  // namespace rjitd::marshal
