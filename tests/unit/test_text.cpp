#include <catch2/catch.hpp>

#include "eep/common/text.h"

using eep::is_valid_utf8;
using eep::printable;

TEST_CASE("UTF-8 validation follows RFC 3629", "[text]") {
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("plain ascii"));
  CHECK(is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  CHECK_FALSE(is_valid_utf8("\xff"));
  CHECK_FALSE(is_valid_utf8("\xc3"));              // cut
  CHECK_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  CHECK_FALSE(is_valid_utf8("\xe0\x80\xaf"));      // overlong
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));      // a surrogate
  CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xe2\x82"));          // cut
  CHECK_FALSE(is_valid_utf8("\x80"));              // a lone continuation byte
}

TEST_CASE("printable() escapes what is not printable UTF-8 and cuts on a character", "[text]") {
  CHECK(printable("w0") == "w0");
  CHECK(printable("\xff\xfe\x58") == "\\xff\\xfeX");
  CHECK(printable("a\nb\x1b[2J") == "a\\x0ab\\x1b[2J");
  // DEL is a control character too: a terminal may act on it.
  CHECK(printable("a\x7f"
                  "b") ==
        "a\\x7f"
        "b");
  CHECK(printable("~") == "~");  // 0x7E, the last printable ASCII character
  CHECK(printable("back\\slash") == "back\\\\slash");
  CHECK(printable("caf\xc3\xa9") == "caf\xc3\xa9");
  // 63 bytes then a 2-byte character: the cut at 64 keeps the character whole or drops it.
  const std::string text = std::string(63, 'a') + "\xc3\xa9";
  const std::string cut = printable(text, 64);
  CHECK(is_valid_utf8(cut));
  CHECK(cut == std::string(63, 'a') + "...");
  CHECK(printable(text, 65) == text);
  // Whatever goes in, valid UTF-8 comes out.
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes += static_cast<char>(b);
  CHECK(is_valid_utf8(printable(all_bytes, 4096)));
  CHECK(printable(all_bytes, 4096).size() <= 4096 + 3);
}
