#include "eep/common/text.h"

#include <algorithm>
#include <cstdint>

namespace eep {
namespace {

// The length of the well-formed UTF-8 sequence at the start of `bytes`, or 0 when there is none
// (RFC 3629, table 3-7 of the Unicode standard).
size_t utf8_sequence_length(std::string_view bytes) {
  if (bytes.empty()) return 0;
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(bytes[i]); };
  const uint8_t lead = byte(0);
  if (lead < 0x80) return 1;
  size_t length = 0;
  uint8_t second_min = 0x80;
  uint8_t second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_min = 0xA0;  // overlong
    if (lead == 0xED) second_max = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_min = 0x90;  // overlong
    if (lead == 0xF4) second_max = 0x8F;  // past U+10FFFF
  } else {
    return 0;
  }
  if (bytes.size() < length) return 0;
  if (byte(1) < second_min || byte(1) > second_max) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return length;
}

}  // namespace

bool is_valid_utf8(std::string_view bytes) {
  while (!bytes.empty()) {
    const size_t length = utf8_sequence_length(bytes);
    if (length == 0) return false;
    bytes.remove_prefix(length);
  }
  return true;
}

std::string printable(std::string_view bytes, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(std::min(bytes.size(), max_bytes) + 3);
  while (!bytes.empty()) {
    const size_t length = utf8_sequence_length(bytes);
    const auto lead = static_cast<uint8_t>(bytes.front());
    std::string piece;
    if (length == 0 || (length == 1 && (lead < 0x20 || lead == 0x7F))) {
      piece = {'\\', 'x', kHex[lead >> 4], kHex[lead & 0xF]};
    } else if (lead == '\\') {
      piece = "\\\\";
    } else {
      piece = std::string(bytes.substr(0, length));
    }
    if (out.size() + piece.size() > max_bytes) {
      out += "...";
      break;
    }
    out += piece;
    bytes.remove_prefix(length == 0 ? 1 : length);
  }
  return out;
}

}  // namespace eep
