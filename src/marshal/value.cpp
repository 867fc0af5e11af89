// SPDX-License-Identifier: MIT
// Argument literals, range checks and result text of calls by IR signature (see value.h).
#include "value.h"

#include <cerrno>
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace rjitd::marshal {
namespace {

/// The integers a parameter of `type` takes: [lo, hi] with lo <= 0 <= hi.
struct IntegerRange {
  int64_t lo;
  uint64_t hi;
};

IntegerRange rangeOf(const IrType& type) {
  uint32_t n = type.bits;
  int64_t signedLo = n == 64 ? INT64_MIN : -(int64_t{1} << (n - 1));
  uint64_t signedHi = n == 64 ? uint64_t{INT64_MAX} : (uint64_t{1} << (n - 1)) - 1;
  uint64_t unsignedHi = n == 64 ? UINT64_MAX : (uint64_t{1} << n) - 1;
  if (type.extension == IrType::Extension::Sign)
    return {signedLo, signedHi};
  // An i1 is a C _Bool: 0 or 1, whatever its attribute.
  if (type.extension == IrType::Extension::Zero || n == 1)
    return {0, unsignedHi};
  // No attribute: an int, unsigned int, long or unsigned long (or a small integer some front
  // end did not mark). The callee reads the same bits either way, so take both ranges.
  return {signedLo, unsignedHi};
}

std::string expectedInteger(const IrType& type) {
  IntegerRange range = rangeOf(type);
  return "expected an integer in [" + std::to_string(range.lo) + ", " + std::to_string(range.hi) +
         "] for " + formatIrType(type);
}

const char* kindName(Value::Kind kind) {
  switch (kind) {
  case Value::Kind::Void: return "void";
  case Value::Kind::Signed:
  case Value::Kind::Unsigned: return "an integer";
  case Value::Kind::Float:
  case Value::Kind::Double: return "a floating-point number";
  case Value::Kind::Pointer: return "a pointer";
  case Value::Kind::String: return "a string";
  }
  return "a value";
}

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/// What strtod/strtof made of a whole text.
enum class Parsed : uint8_t { Ok, NotANumber, OutOfRange };

/// strtod/strtof on the whole text into `value`. An overflow is OutOfRange; an underflow to a
/// denormal or zero is accepted, as a C compiler accepts such a constant.
template <typename T, typename Parse>
Parsed parseNumber(const std::string& text, T& value, Parse parse) {
  if (text.empty() || isSpace(text.front()))
    return Parsed::NotANumber;
  char* end = nullptr;
  errno = 0;
  value = parse(text.c_str(), &end);
  if (*end != '\0')
    return Parsed::NotANumber;
  if (errno == ERANGE && std::isinf(value))
    return Parsed::OutOfRange;
  return Parsed::Ok;
}

}  // namespace

bool isMarshalled(const IrType& type) {
  switch (type.kind) {
  case IrType::Kind::Integer:
    return type.bits == 1 || type.bits == 8 || type.bits == 16 || type.bits == 32 ||
           type.bits == 64;
  case IrType::Kind::Float:
  case IrType::Kind::Double:
  case IrType::Kind::Pointer: return true;
  case IrType::Kind::Void:
  case IrType::Kind::Other: return false;
  }
  return false;
}

std::optional<std::string> checkFits(const Value& value, const IrType& type) {
  if (!isMarshalled(type))
    return "cannot pass a value of type " + formatIrType(type);
  switch (type.kind) {
  case IrType::Kind::Integer: {
    IntegerRange range = rangeOf(type);
    bool fits = false;
    if (value.kind == Value::Kind::Signed)
      fits = value.signedValue >= range.lo &&
             (value.signedValue < 0 || static_cast<uint64_t>(value.signedValue) <= range.hi);
    else if (value.kind == Value::Kind::Unsigned)
      fits = value.unsignedValue <= range.hi;
    else
      return expectedInteger(type) + ", not " + kindName(value.kind);
    if (!fits)
      return expectedInteger(type);
    return std::nullopt;
  }
  case IrType::Kind::Float:
    if (value.kind == Value::Kind::Float)
      return std::nullopt;
    if (value.kind == Value::Kind::Double) {
      if (std::isfinite(value.doubleValue) && std::fabs(value.doubleValue) > FLT_MAX)
        return std::string("expected a number within the range of float");
      return std::nullopt;
    }
    return std::string("expected a number for float, not ") + kindName(value.kind);
  case IrType::Kind::Double:
    if (value.kind == Value::Kind::Double || value.kind == Value::Kind::Float)
      return std::nullopt;
    return std::string("expected a number for double, not ") + kindName(value.kind);
  case IrType::Kind::Pointer:
    if (value.kind == Value::Kind::Pointer || value.kind == Value::Kind::String)
      return std::nullopt;
    return std::string("expected a pointer or a string for ptr, not ") + kindName(value.kind);
  case IrType::Kind::Void:
  case IrType::Kind::Other: break;
  }
  return "cannot pass a value of type " + formatIrType(type);
}

std::variant<Value, std::string> parseLiteral(std::string_view literal, const IrType& type) {
  if (!isMarshalled(type))
    return "cannot pass a value of type " + formatIrType(type);
  std::string text(literal);
  switch (type.kind) {
  case IrType::Kind::Integer: {
    if (text.empty() || isSpace(text.front()))
      return expectedInteger(type);
    char* end = nullptr;
    errno = 0;
    Value value;
    // Separately, so that "-1" is never read as strtoull's 2^64-1.
    if (text.front() == '-')
      value = Value::signedInt(std::strtoll(text.c_str(), &end, 0));
    else
      value = Value::unsignedInt(std::strtoull(text.c_str(), &end, 0));
    if (*end != '\0' || errno == ERANGE)
      return expectedInteger(type);
    if (auto problem = checkFits(value, type))
      return *problem;
    return value;
  }
  case IrType::Kind::Float: {
    float number = 0;
    switch (parseNumber(text, number, [](const char* s, char** e) { return std::strtof(s, e); })) {
    case Parsed::Ok: return Value::floatNumber(number);
    case Parsed::NotANumber: return std::string("expected a number for float");
    case Parsed::OutOfRange: return std::string("expected a number within the range of float");
    }
    break;
  }
  case IrType::Kind::Double: {
    double number = 0;
    switch (parseNumber(text, number, [](const char* s, char** e) { return std::strtod(s, e); })) {
    case Parsed::Ok: return Value::doubleNumber(number);
    case Parsed::NotANumber: return std::string("expected a number for double");
    case Parsed::OutOfRange: return std::string("expected a number within the range of double");
    }
    break;
  }
  case IrType::Kind::Pointer:
    // A command line can give only text: the callee gets a C string.
    return Value::string(std::move(text));
  case IrType::Kind::Void:
  case IrType::Kind::Other: break;
  }
  return "cannot pass a value of type " + formatIrType(type);
}

std::string formatValue(const Value& value) {
  char buffer[64];
  switch (value.kind) {
  case Value::Kind::Void: return "";
  case Value::Kind::Signed:
    std::snprintf(buffer, sizeof(buffer), "%" PRId64, value.signedValue);
    break;
  case Value::Kind::Unsigned:
    std::snprintf(buffer, sizeof(buffer), "%" PRIu64, value.unsignedValue);
    break;
  case Value::Kind::Float:
    std::snprintf(buffer, sizeof(buffer), "%.9g", static_cast<double>(value.floatValue));
    break;
  case Value::Kind::Double:
    std::snprintf(buffer, sizeof(buffer), "%.17g", value.doubleValue);
    break;
  case Value::Kind::Pointer:
    std::snprintf(buffer, sizeof(buffer), "%p",
                  reinterpret_cast<void*>(static_cast<uintptr_t>(value.unsignedValue)));
    break;
  case Value::Kind::String: return value.text;
  }
  return buffer;
}

}  // namespace rjitd::marshal
