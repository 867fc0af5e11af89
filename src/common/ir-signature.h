// SPDX-License-Identifier: MIT
// The IR signature of a defined function ("i32(ptr,double)", "zeroext i8(signext i16,...)"):
// the contract between the compiler, which writes it into a compiled object's symbol table, and
// the callers that marshal arguments by it (rjit run, rjit call). No LLVM here: the client
// library links this too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace rjitd {

/// One parameter or result type of an IR signature.
struct IrType {
  enum class Kind : uint8_t {
    Void,     ///< "void" (results only)
    Integer,  ///< "iN"; `bits` is N
    Float,    ///< "float"
    Double,   ///< "double"
    Pointer,  ///< "ptr" (address space 0)
    Other,    ///< any other LLVM type, kept as LLVM spells it in `spelling`
  };
  /// The `signext`/`zeroext` attribute: whether the ABI extends a narrow integer as signed or
  /// unsigned (C's `short` vs `unsigned short`). IR carries no other sign information.
  enum class Extension : uint8_t { None, Sign, Zero };

  Kind kind = Kind::Void;
  uint32_t bits = 0;  ///< Integer: the width, 1..8388608 (LLVM's limit); 0 otherwise
  Extension extension = Extension::None;  ///< only on integers (LLVM's verifier rule)
  std::string spelling;  ///< Other: LLVM's text, e.g. "{ i64, i64 }", "<4 x float>", "half"

  static IrType voidType() { return {}; }
  static IrType integer(uint32_t bits, Extension extension = Extension::None) {
    return {Kind::Integer, bits, extension, {}};
  }
  static IrType floatType() { return {Kind::Float, 0, Extension::None, {}}; }
  static IrType doubleType() { return {Kind::Double, 0, Extension::None, {}}; }
  static IrType pointer() { return {Kind::Pointer, 0, Extension::None, {}}; }
  static IrType other(std::string spelling) {
    return {Kind::Other, 0, Extension::None, std::move(spelling)};
  }

  bool operator==(const IrType&) const = default;
};

/// The type of a function as the compiler records it.
struct IrSignature {
  IrType result;
  std::vector<IrType> params;
  bool variadic = false;  ///< a trailing "..." (C's `...`)

  bool operator==(const IrSignature&) const = default;
};

/// Why a signature string did not parse: the whole text, the 0-based byte offset where the
/// parser stopped, and what it expected there.
struct IrSignatureError {
  std::string text;
  size_t position = 0;
  std::string message;

  /// "malformed IR signature 'i32(i32' at offset 7: expected ')'".
  std::string describe() const;
};

/// "i32", "signext i16", "ptr", "{ i64, i64 }".
std::string formatIrType(const IrType& type);

/// The signature string, byte for byte as the compiler has always written it (caches and
/// clients of older versions parse it): the result, '(', the parameters separated by ',' with no
/// spaces, ",..." (or "..." alone) when variadic, ')'. Each integer type may carry a
/// "signext " or "zeroext " prefix.
std::string formatIrSignature(const IrSignature& signature);

/// "i64 add(i64, i64)": a function's signature as a C-like declaration, for messages (the
/// daemon's and the client's checks of call arguments name the function this way).
std::string describeFunction(std::string_view symbol, const IrSignature& signature);

/// Parses what formatIrSignature writes (and what the compiler wrote before it existed). Types
/// it does not model (structs, vectors, arrays, other floating-point types, pointers in other
/// address spaces) come back as Kind::Other with their spelling, so that every signature the
/// compiler emits parses and formats back to the same text.
std::variant<IrSignature, IrSignatureError> parseIrSignature(std::string_view text);

}  // namespace rjitd
