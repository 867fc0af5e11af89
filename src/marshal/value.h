// SPDX-License-Identifier: MIT
// Typed scalar values of calls by IR signature: how an argument literal becomes a value for a
// parameter type, whether a value fits a type, and how a result prints.
#pragma once

#include "ir-signature.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace rjitd::marshal {

/// An argument of, or the result of, a call by signature. Integers keep the signedness they
/// were written or produced with: an i64 parameter takes both -1 and 18446744073709551615.
struct Value {
  enum class Kind : uint8_t {
    Void,      ///< the result of a void function
    Signed,    ///< `signedValue`
    Unsigned,  ///< `unsignedValue`
    Float,     ///< `floatValue`
    Double,    ///< `doubleValue`
    Pointer,   ///< an address in the calling process, in `unsignedValue`
    String,    ///< `text`: the callee gets a pointer to a NUL-terminated copy (ptr parameters)
  };
  Kind kind = Kind::Void;
  int64_t signedValue = 0;
  uint64_t unsignedValue = 0;
  float floatValue = 0;
  double doubleValue = 0;
  std::string text;

  static Value voidValue() { return {}; }
  static Value signedInt(int64_t v) { return {Kind::Signed, v, 0, 0, 0, {}}; }
  static Value unsignedInt(uint64_t v) { return {Kind::Unsigned, 0, v, 0, 0, {}}; }
  static Value floatNumber(float v) { return {Kind::Float, 0, 0, v, 0, {}}; }
  static Value doubleNumber(double v) { return {Kind::Double, 0, 0, 0, v, {}}; }
  static Value pointer(uint64_t address) { return {Kind::Pointer, 0, address, 0, 0, {}}; }
  static Value string(std::string v) { return {Kind::String, 0, 0, 0, 0, std::move(v)}; }

  bool operator==(const Value&) const = default;
};

/// Whether calls by signature can pass or return `type`: integers of 1, 8, 16, 32 or 64 bits,
/// float, double, ptr (and void, as a result only; the caller checks that).
bool isMarshalled(const IrType& type);

/// Converts an argument as a user writes it (on a command line) to a value for `type`:
/// integers in decimal, 0x hex or 0 octal; floating-point numbers as strtod reads them
/// ("1.5", "-2e3", "inf", "nan"); for ptr, any text, passed as a C string. Integer ranges:
/// `signext` takes the signed range of the width, `zeroext` (and i1) the unsigned one, and an
/// integer without either takes both (IR does not say which C type it was). On failure returns
/// what was expected, e.g. "expected an integer in [-128, 255] for i8".
std::variant<Value, std::string> parseLiteral(std::string_view text, const IrType& type);

/// Whether `value` can be passed for a parameter of `type` (by the ranges parseLiteral uses;
/// a Double for a float must be within float's range). nullopt when it can, else what was
/// expected.
std::optional<std::string> checkFits(const Value& value, const IrType& type);

/// The value as `rjit call` prints a result: integers in decimal, a float with 9 and a double
/// with 17 significant digits (enough to read back the same number), a pointer as %p prints
/// it, a string as itself, void as "".
std::string formatValue(const Value& value);

}  // namespace rjitd::marshal
