#include "eep/coordinator/text/byte_level.h"

#include <array>

namespace eep::coordinator::text {
namespace {

struct ByteAlphabet {
  std::array<char32_t, 256> char_of_byte{};
  std::array<int16_t, 512> byte_of_char{};  // every character of the alphabet is below U+0200

  ByteAlphabet() {
    byte_of_char.fill(-1);
    auto printable = [](int byte) {
      return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
    };
    int num_shifted = 0;
    for (int byte = 0; byte < 256; ++byte) {
      char32_t c = printable(byte) ? static_cast<char32_t>(byte) : 0x100 + num_shifted++;
      char_of_byte[byte] = c;
      byte_of_char[c] = static_cast<int16_t>(byte);
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet kAlphabet;
  return kAlphabet;
}

void append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else {  // the alphabet stays below U+0800
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

}  // namespace

char32_t byte_to_char(uint8_t byte) {
  return alphabet().char_of_byte[byte];
}

std::optional<uint8_t> char_to_byte(char32_t c) {
  if (c >= alphabet().byte_of_char.size() || alphabet().byte_of_char[c] < 0) return std::nullopt;
  return static_cast<uint8_t>(alphabet().byte_of_char[c]);
}

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char byte : bytes) append_utf8(byte_to_char(static_cast<uint8_t>(byte)), out);
  return out;
}

std::optional<std::string> byte_level_decode(std::string_view token) {
  std::string bytes;
  bytes.reserve(token.size());
  size_t idx = 0;
  while (idx < token.size()) {
    auto lead = static_cast<unsigned char>(token[idx]);
    char32_t c;
    if (lead < 0x80) {
      c = lead;
      idx += 1;
    } else if ((lead & 0xE0) == 0xC0 && idx + 1 < token.size() &&
               (static_cast<unsigned char>(token[idx + 1]) & 0xC0) == 0x80) {
      c = ((lead & 0x1F) << 6) | (static_cast<unsigned char>(token[idx + 1]) & 0x3F);
      idx += 2;
    } else {
      return std::nullopt;  // three- and four-byte characters are all outside the alphabet
    }
    std::optional<uint8_t> byte = char_to_byte(c);
    if (!byte) return std::nullopt;
    bytes.push_back(static_cast<char>(*byte));
  }
  return bytes;
}

}  // namespace eep::coordinator::text
