// GPT-2's byte-level alphabet: every byte 0..255 is one printable Unicode character, so that a
// byte-level BPE vocabulary can spell any byte string with ordinary characters (tokenizer.json's
// "ByteLevel" pre-tokenizer and decoder). Printable Latin-1 bytes map to themselves; the others
// (controls, space, DEL, NBSP, soft hyphen) to U+0100 and up, in byte order. Pure; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace eep::coordinator::text {

// The character that spells `byte`.
char32_t byte_to_char(uint8_t byte);

// The byte that `c` spells, or nullopt when `c` is not in the alphabet.
std::optional<uint8_t> char_to_byte(char32_t c);

// `bytes` spelled in the alphabet, as UTF-8 (what the ByteLevel pre-tokenizer makes of a piece).
std::string byte_level_encode(std::string_view bytes);

// The bytes that a token of the vocabulary (UTF-8 in the alphabet) spells; nullopt when one of
// its characters is outside the alphabet or it is not valid UTF-8 (the ByteLevel decoder then
// keeps the token's own bytes, as Hugging Face's does).
std::optional<std::string> byte_level_decode(std::string_view token);

}  // namespace eep::coordinator::text
