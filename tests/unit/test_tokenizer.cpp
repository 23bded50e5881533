#include <catch2/catch.hpp>

#include "eep/coordinator/tokenizer.h"

using namespace eep;
using namespace eep::coordinator;

TEST_CASE("the byte tokenizer round-trips text", "[tokenizer]") {
  auto ids = byte_encode("hé!", 256);
  REQUIRE(ids.is_ok());
  CHECK(*ids == std::vector<int32_t>{'h', 0xC3, 0xA9, '!'});
  CHECK(byte_decode(*ids) == "hé!");
  CHECK(byte_decode(std::vector<int32_t>{'a', 256, 1000, 'b'}) == "ab");  // no text above 255
  CHECK_FALSE(byte_encode("x", 255).is_ok());
}

TEST_CASE("the stream decoder emits whole characters and replaces invalid bytes", "[tokenizer]") {
  Utf8StreamDecoder decoder;
  CHECK(decoder.push(std::vector<int32_t>{'a', 0xE2}) == "a");  // € = E2 82 AC, split
  CHECK(decoder.push(std::vector<int32_t>{0x82}).empty());
  CHECK(decoder.push(std::vector<int32_t>{0xAC, 'b'}) == "€b");
  CHECK(decoder.push(std::vector<int32_t>{0xFF, 'c'}) ==
        "\xEF\xBF\xBD"
        "c");
  CHECK(decoder.push(std::vector<int32_t>{0xF0, 0x9F}).empty());  // a 4-byte start, cut off
  CHECK(decoder.finish() == "\xEF\xBF\xBD");
  CHECK(decoder.finish().empty());

  CHECK(sanitize_utf8("ok") == "ok");
  CHECK(sanitize_utf8("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
  CHECK(sanitize_utf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  CHECK(sanitize_utf8("\xF0\x9F\x98\x80") == "\xF0\x9F\x98\x80");                  // 😀
}
