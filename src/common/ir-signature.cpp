// SPDX-License-Identifier: MIT
// Formatting and parsing of IR signature strings (see ir-signature.h).
#include "ir-signature.h"

#include <array>
#include <charconv>

namespace rjitd {
namespace {

constexpr std::string_view SIGNEXT = "signext ";
constexpr std::string_view ZEROEXT = "zeroext ";
constexpr std::string_view VARARGS = "...";
/// LLVM's largest integer width (IntegerType::MAX_INT_BITS).
constexpr uint32_t MAX_INT_BITS = 1u << 23;

/// Names of LLVM's first-class types that IrType does not model but a signature may carry.
constexpr std::array<std::string_view, 9> OTHER_NAMES = {
    "half", "bfloat", "fp128", "x86_fp80", "ppc_fp128", "x86_mmx", "x86_amx", "token", "metadata"};
/// Openings of LLVM's composite and parameterised types (structs, vectors, arrays, named
/// types, target extension types, pointers in other address spaces).
constexpr std::array<std::string_view, 6> OTHER_PREFIXES = {"{", "<",       "[",
                                                            "%", "target(", "ptr addrspace("};

bool startsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

/// A failure at `position` of the whole text.
struct Failed {
  size_t position;
  std::string message;
};

/// "i1" .. "i8388608": the width, or 0 when `text` is not an integer type.
uint32_t integerBits(std::string_view text) {
  if (text.size() < 2 || text[0] != 'i' || text[1] == '0')
    return 0;
  uint32_t bits = 0;
  auto [end, error] = std::from_chars(text.data() + 1, text.data() + text.size(), bits);
  if (error != std::errc() || end != text.data() + text.size() || bits > MAX_INT_BITS)
    return 0;
  return bits;
}

/// One type of the signature: `text` starts at `offset` of the whole string.
std::variant<IrType, Failed> parseType(std::string_view text, size_t offset) {
  IrType::Extension extension = IrType::Extension::None;
  size_t typeOffset = offset;
  if (startsWith(text, SIGNEXT) || startsWith(text, ZEROEXT)) {
    extension = startsWith(text, SIGNEXT) ? IrType::Extension::Sign : IrType::Extension::Zero;
    text.remove_prefix(SIGNEXT.size());
    typeOffset += SIGNEXT.size();
  }
  if (text.empty())
    return Failed{typeOffset, "expected a type"};
  if (text.front() == ' ' || text.back() == ' ')
    return Failed{typeOffset, "unexpected space around the type '" + std::string(text) + "'"};

  IrType type;
  if (uint32_t bits = integerBits(text); bits != 0)
    type = IrType::integer(bits, extension);
  else if (text == "void")
    type = IrType::voidType();
  else if (text == "float")
    type = IrType::floatType();
  else if (text == "double")
    type = IrType::doubleType();
  else if (text == "ptr")
    type = IrType::pointer();
  else {
    bool known = false;
    for (std::string_view name : OTHER_NAMES)
      known = known || text == name;
    for (std::string_view prefix : OTHER_PREFIXES)
      known = known || startsWith(text, prefix);
    if (!known)
      return Failed{typeOffset, "unknown type '" + std::string(text) + "'"};
    type = IrType::other(std::string(text));
  }
  // LLVM's verifier allows signext/zeroext on integers only; the compiler copies them from
  // verified IR, so anything else is not a signature it wrote.
  if (extension != IrType::Extension::None && type.kind != IrType::Kind::Integer)
    return Failed{offset,
                  std::string(extension == IrType::Extension::Sign ? "signext" : "zeroext") +
                      " on the non-integer type '" + std::string(text) + "'"};
  return type;
}

/// Where the parameter list starts: the '(' whose matching ')' ends the text. Brackets nest
/// (structs, vectors, `addrspace(1)` in a result type) and quoted names are skipped.
std::variant<size_t, Failed> findParameterList(std::string_view text) {
  std::string closers;  // the closing brackets still expected, innermost last
  size_t open = std::string_view::npos;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"') {
      size_t end = text.find('"', i + 1);
      if (end == std::string_view::npos)
        return Failed{i, "unterminated quoted name"};
      i = end;
      continue;
    }
    switch (c) {
    case '(': closers.push_back(')'); break;
    case '{': closers.push_back('}'); break;
    case '[': closers.push_back(']'); break;
    case '<': closers.push_back('>'); break;
    case ')':
    case '}':
    case ']':
    case '>':
      if (closers.empty() || closers.back() != c)
        return Failed{i, std::string("unbalanced '") + c + "'"};
      closers.pop_back();
      if (closers.empty() && c == ')' && i + 1 == text.size())
        return open;
      break;
    default: break;
    }
    if (c == '(' && closers.size() == 1)
      open = i;
  }
  if (!closers.empty())
    return Failed{text.size(), std::string("expected '") + closers.back() + "'"};
  return Failed{text.size(), "expected a parameter list '(...)' at the end"};
}

/// Splits the parameter list (between the parentheses) at its top-level commas.
std::vector<std::pair<std::string_view, size_t>> splitParameters(std::string_view inner,
                                                                 size_t offset) {
  std::vector<std::pair<std::string_view, size_t>> items;
  if (inner.empty())
    return items;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= inner.size(); ++i) {
    char c = i < inner.size() ? inner[i] : ',';
    if (c == '"') {
      i = inner.find('"', i + 1);  // balanced: findParameterList checked every quote
      continue;
    }
    if (c == '(' || c == '{' || c == '[' || c == '<')
      ++depth;
    else if (c == ')' || c == '}' || c == ']' || c == '>')
      --depth;
    else if (c == ',' && depth == 0) {
      items.emplace_back(inner.substr(start, i - start), offset + start);
      start = i + 1;
    }
  }
  return items;
}

}  // namespace

std::string IrSignatureError::describe() const {
  return "malformed IR signature '" + text + "' at offset " + std::to_string(position) + ": " +
         message;
}

std::string formatIrType(const IrType& type) {
  std::string out;
  if (type.extension == IrType::Extension::Sign)
    out = SIGNEXT;
  else if (type.extension == IrType::Extension::Zero)
    out = ZEROEXT;
  switch (type.kind) {
  case IrType::Kind::Void: return out + "void";
  case IrType::Kind::Integer: return out + "i" + std::to_string(type.bits);
  case IrType::Kind::Float: return out + "float";
  case IrType::Kind::Double: return out + "double";
  case IrType::Kind::Pointer: return out + "ptr";
  case IrType::Kind::Other: return out + type.spelling;
  }
  return out + type.spelling;
}

std::string formatIrSignature(const IrSignature& signature) {
  std::string out = formatIrType(signature.result) + "(";
  for (size_t i = 0; i < signature.params.size(); ++i) {
    if (i != 0)
      out += ',';
    out += formatIrType(signature.params[i]);
  }
  if (signature.variadic)
    out += signature.params.empty() ? "..." : ",...";
  return out + ")";
}

std::variant<IrSignature, IrSignatureError> parseIrSignature(std::string_view text) {
  auto fail = [&](Failed failed) {
    return IrSignatureError{std::string(text), failed.position, std::move(failed.message)};
  };
  auto open = findParameterList(text);
  if (auto* failed = std::get_if<Failed>(&open))
    return fail(std::move(*failed));
  size_t paramsAt = std::get<size_t>(open);

  IrSignature signature;
  auto result = parseType(text.substr(0, paramsAt), 0);
  if (auto* failed = std::get_if<Failed>(&result))
    return fail(std::move(*failed));
  signature.result = std::move(std::get<IrType>(result));

  std::string_view inner = text.substr(paramsAt + 1, text.size() - paramsAt - 2);
  auto items = splitParameters(inner, paramsAt + 1);
  for (size_t i = 0; i < items.size(); ++i) {
    auto [item, offset] = items[i];
    if (item == VARARGS) {
      if (i + 1 != items.size())
        return fail({offset, "'...' must be the last parameter"});
      signature.variadic = true;
      break;
    }
    auto param = parseType(item, offset);
    if (auto* failed = std::get_if<Failed>(&param))
      return fail(std::move(*failed));
    if (std::get<IrType>(param).kind == IrType::Kind::Void)
      return fail({offset, "void is not a parameter type"});
    signature.params.push_back(std::move(std::get<IrType>(param)));
  }
  return signature;
}

std::string describeFunction(std::string_view symbol, const IrSignature& signature) {
  std::string out = formatIrType(signature.result) + " " + std::string(symbol) + "(";
  for (size_t i = 0; i < signature.params.size(); ++i)
    out += (i == 0 ? "" : ", ") + formatIrType(signature.params[i]);
  if (signature.variadic)
    out += signature.params.empty() ? "..." : ", ...";
  return out + ")";
}

}  // namespace rjitd
