// OpenAI's stop strings on streamed text (stop_strings.h): matched across pieces, the string
// excluded, text that may begin a stop string held back until it cannot.
#include <catch2/catch.hpp>

#include <random>

#include "eep/coordinator/stop_strings.h"

using eep::coordinator::StopStringMatcher;

namespace {

// Feeds `pieces` one by one; returns what was shown and whether a stop string ended it. Checks
// on the way that nothing shown is ever taken back (pieces only append).
std::pair<std::string, bool> run(StopStringMatcher matcher,
                                 const std::vector<std::string>& pieces) {
  std::string shown;
  for (const std::string& piece : pieces) {
    StopStringMatcher::Output out = matcher.push(piece);
    shown += out.text;
    if (out.stopped) return {shown, true};
  }
  shown += matcher.finish();
  return {shown, false};
}

}  // namespace

TEST_CASE("a stop string split across pieces ends the text before it", "[stop]") {
  StopStringMatcher matcher({"STOP"});
  auto a = matcher.push("hello ST");
  CHECK(a.text == "hello ");  // "ST" may begin "STOP": held back
  CHECK_FALSE(a.stopped);
  auto b = matcher.push("O");
  CHECK(b.text.empty());
  auto c = matcher.push("P and more");
  CHECK(c.stopped);
  CHECK(c.text.empty());
  CHECK(matcher.push("later").text.empty());  // after the stop, nothing
  CHECK(matcher.finish().empty());
}

TEST_CASE("held-back text comes out once it cannot start a stop string", "[stop]") {
  StopStringMatcher matcher({"\n\n", "END"});
  CHECK(matcher.push("line\n").text == "line");
  CHECK(matcher.push("x").text == "\nx");
  CHECK(matcher.push("EN").text.empty());
  CHECK(matcher.push("D?").stopped);

  StopStringMatcher at_end({"END"});
  CHECK(at_end.push("the EN").text == "the ");
  CHECK(at_end.finish() == "EN");  // the text ended: what was held is shown
}

TEST_CASE("the stop string that ends first wins and empty ones are ignored", "[stop]") {
  CHECK(run(StopStringMatcher({"world", "lo w", ""}), {"hello world"}) ==
        std::pair<std::string, bool>{"hel", true});
  // "lo world" starts first, "wo" ends first; two that end together: the longer.
  CHECK(run(StopStringMatcher({"lo world", "wo"}), {"hello", " world"}).first == "hello ");
  CHECK(run(StopStringMatcher({"o", "llo"}), {"hel", "lo"}).first == "he");
  CHECK(run(StopStringMatcher({"", ""}), {"a", "b"}) == std::pair<std::string, bool>{"ab", false});
  CHECK(StopStringMatcher({""}).empty());
  // Multi-byte characters: held back whole, matched across pieces.
  StopStringMatcher chinese({"停止"});
  CHECK(chinese.push("好的停").text == "好的");
  CHECK(chinese.push("止了").stopped);
  CHECK(run(StopStringMatcher({"停止"}), {"停", "下"}).first == "停下");
}

TEST_CASE("any split of a text into pieces shows what the stop strings allow of it", "[stop]") {
  std::mt19937 rng(7);
  const std::string alphabet = "ab \n";
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int length = static_cast<int>(rng() % 24);
    for (int idx = 0; idx < length; ++idx) text += alphabet[rng() % alphabet.size()];
    std::vector<std::string> stops;
    for (int num = static_cast<int>(rng() % 3) + 1; num > 0; --num) {
      std::string stop;
      for (int idx = static_cast<int>(rng() % 3) + 1; idx > 0; --idx) {
        stop += alphabet[rng() % alphabet.size()];
      }
      stops.push_back(stop);
    }
    // What the whole text allows: up to the stop string that ends first (the longer of two).
    size_t first = std::string::npos;
    size_t first_end = std::string::npos;
    for (const std::string& stop : stops) {
      const size_t pos = text.find(stop);
      if (pos == std::string::npos) continue;
      if (pos + stop.size() < first_end || (pos + stop.size() == first_end && pos < first)) {
        first_end = pos + stop.size();
        first = pos;
      }
    }
    const std::string expected = first == std::string::npos ? text : text.substr(0, first);

    std::vector<std::string> pieces;
    for (size_t pos = 0; pos < text.size();) {
      size_t size = std::min<size_t>(rng() % 4, text.size() - pos);
      pieces.push_back(text.substr(pos, size));
      pos += size;
    }
    INFO("text '" << text << "', " << stops.size() << " stop strings, first '" << stops[0] << "'");
    auto [shown, stopped] = run(StopStringMatcher(stops), pieces);
    CHECK(shown == expected);
    CHECK(stopped == (first != std::string::npos));
  }
}
