// The tokenizer's pieces on small hand-made files: the byte alphabet, the BPE merge order, added
// tokens (the cases of Hugging Face's own added_vocabulary.rs tests), the pre-tokenizer, the
// loader's errors and the incremental detokenizer. Qwen3's real files against Hugging Face's
// library: test_hf_tokenizer_oracle.cpp.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "eep/common/text.h"
#include "eep/coordinator/text/added_tokens.h"
#include "eep/coordinator/text/byte_level.h"
#include "eep/coordinator/text/hf_tokenizer.h"
#include "eep/coordinator/text/incremental_detokenizer.h"
#include "eep/coordinator/text/pretokenizer.h"
#include "eep/coordinator/text/unicode.h"
#include "scratch_dir.h"

using namespace eep;
using namespace eep::coordinator::text;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* kQwenSplit =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A byte-level tokenizer.json: the 256 byte tokens (id = byte), then one token per merge.
json tiny_tokenizer(const std::vector<std::pair<std::string, std::string>>& merges,
                    bool merges_as_arrays = false) {
  json vocab = json::object();
  for (int byte = 0; byte < 256; ++byte) {
    vocab[byte_level_encode(std::string(1, static_cast<char>(byte)))] = byte;
  }
  json merge_list = json::array();
  for (const auto& [left, right] : merges) {
    std::string merged = left + right;
    if (!vocab.contains(merged)) vocab[merged] = static_cast<int>(vocab.size());
    merge_list.push_back(merges_as_arrays ? json::array({left, right}) : json(left + " " + right));
  }
  return {
      {"version", "1.0"},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", kQwenSplit}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", json::array()},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}},
  };
}

HfTokenizer load_json(const json& file) {
  auto tokenizer = HfTokenizer::from_json(file.dump(), "tokenizer.json");
  INFO(tokenizer.status().to_string());
  REQUIRE(tokenizer.is_ok());
  return std::move(tokenizer).value();
}

std::vector<int32_t> encode(const HfTokenizer& tokenizer, std::string_view text) {
  auto ids = tokenizer.encode(text);
  INFO(ids.status().to_string());
  REQUIRE(ids.is_ok());
  return *ids;
}

std::vector<std::string> tokens(const HfTokenizer& tokenizer, std::string_view text) {
  std::vector<std::string> result;
  for (int32_t id : encode(tokenizer, text)) result.push_back(tokenizer.token_of(id).value_or("?"));
  return result;
}

Status load_error(const json& file) {
  return HfTokenizer::from_json(file.dump(), "t.json").status();
}

std::vector<std::pair<std::string, int32_t>> split(const AddedTokenMatcher& matcher,
                                                   std::string_view text) {
  std::vector<TextSegment> segments;
  matcher.split(text, segments);
  std::vector<std::pair<std::string, int32_t>> result;
  for (const TextSegment& segment : segments) {
    result.emplace_back(std::string(segment.text), segment.token_id);
  }
  return result;
}

AddedToken added(int32_t id, std::string content) {
  AddedToken token;
  token.id = id;
  token.content = std::move(content);
  return token;
}

}  // namespace

TEST_CASE("the byte alphabet is GPT-2's: 256 printable characters, both ways", "[tokenizer]") {
  std::set<char32_t> seen;
  for (int byte = 0; byte < 256; ++byte) {
    char32_t c = byte_to_char(static_cast<uint8_t>(byte));
    seen.insert(c);
    CHECK(char_to_byte(c) == byte);
  }
  CHECK(seen.size() == 256);
  CHECK(byte_to_char('a') == U'a');
  CHECK(byte_to_char('~') == U'~');
  CHECK(byte_to_char(' ') == U'\u0120');   // "Ġ", as in every GPT-2-style vocabulary
  CHECK(byte_to_char('\n') == U'\u010A');  // "Ċ"
  CHECK(byte_to_char(0) == U'\u0100');
  CHECK(byte_to_char(0xAD) == U'\u0143');  // the soft hyphen, the last byte moved
  CHECK_FALSE(char_to_byte(U'\u0144').has_value());
  CHECK(byte_level_encode(" hi\n") == "\xC4\xA0hi\xC4\x8A");
  std::string all_bytes;
  for (int byte = 0; byte < 256; ++byte) all_bytes.push_back(static_cast<char>(byte));
  CHECK(byte_level_decode(byte_level_encode(all_bytes)) == all_bytes);
  CHECK_FALSE(byte_level_decode("\xE4\xB8\xAD").has_value());  // a character outside it
}

TEST_CASE("BPE merges the lowest rank first and the leftmost of equal ranks", "[tokenizer]") {
  HfTokenizer tokenizer = load_json(tiny_tokenizer({{"a", "a"}, {"b", "c"}, {"aa", "a"}}));
  CHECK(tokens(tokenizer, "aaaa") == std::vector<std::string>{"aa", "aa"});
  CHECK(tokens(tokenizer, "aaa") == std::vector<std::string>{"aaa"});  // (aa)a, then aa+a
  CHECK(tokens(tokenizer, "abc") == std::vector<std::string>{"a", "bc"});
  // A rank decides, not the order in the text: "ab" ranks before "ca".
  HfTokenizer ranked = load_json(tiny_tokenizer({{"a", "b"}, {"c", "a"}, {"ab", "c"}}));
  CHECK(tokens(ranked, "cab") == std::vector<std::string>{"c", "ab"});
  HfTokenizer reversed = load_json(tiny_tokenizer({{"c", "a"}, {"a", "b"}}));
  CHECK(tokens(reversed, "cab") == std::vector<std::string>{"ca", "b"});
  // The array form of merges gives the same tokenizer.
  HfTokenizer arrays = load_json(tiny_tokenizer({{"a", "a"}, {"b", "c"}, {"aa", "a"}}, true));
  CHECK(encode(arrays, "aaaa abc") == encode(tokenizer, "aaaa abc"));
  // The space joins the word after it (the regex keeps " a" together): "Ġ" + "a".
  HfTokenizer spaced = load_json(tiny_tokenizer({{"\xC4\xA0", "a"}}));
  CHECK(tokens(spaced, "a a") == std::vector<std::string>{"a",
                                                          "\xC4\xA0"
                                                          "a"});
}

TEST_CASE("BPE's heap path for long pieces merges as the short path does", "[tokenizer]") {
  // Pieces of up to 24 bytes take the quadratic scan, longer ones the heap: "ab" * n merges to
  // "abab" pairs either way, and an odd tail stays "ab".
  HfTokenizer tokenizer = load_json(tiny_tokenizer({{"a", "b"}, {"ab", "ab"}}));
  for (int n : {1, 3, 12, 13, 50, 501}) {
    std::string text;
    for (int idx = 0; idx < n; ++idx) text += "ab";
    std::vector<std::string> expected(static_cast<size_t>(n / 2), "abab");
    if (n % 2) expected.push_back("ab");
    INFO("n = " << n);
    CHECK(tokens(tokenizer, text) == expected);
  }
  // Long random words of a and b come back whole.
  std::mt19937 random(7);
  for (int round = 0; round < 50; ++round) {
    std::string word;
    for (int idx = 0; idx < 200; ++idx) word.push_back("ab"[random() % 2]);
    CHECK(tokenizer.decode(encode(tokenizer, word)) == word);
  }
}

TEST_CASE("BPE with ignore_merges takes a whole-word token first", "[tokenizer]") {
  json file = tiny_tokenizer({{"a", "b"}, {"b", "c"}});
  file["model"]["vocab"]["abc"] = 300;
  CHECK(tokens(load_json(file), "abc") == std::vector<std::string>{"ab", "c"});
  file["model"]["ignore_merges"] = true;
  CHECK(tokens(load_json(file), "abc") == std::vector<std::string>{"abc"});
}

TEST_CASE("added tokens: leftmost, then longest, as Hugging Face matches them", "[tokenizer]") {
  AddedTokenMatcher matcher({added(1, "<a>"), added(2, "<a><b>"), added(3, "b>")});
  using Split = std::vector<std::pair<std::string, int32_t>>;
  CHECK(split(matcher, "x<a><b>y") == Split{{"x", -1}, {"<a><b>", 2}, {"y", -1}});
  CHECK(split(matcher, "<a><a>") == Split{{"<a>", 1}, {"<a>", 1}});
  CHECK(split(matcher, "<ab>") == Split{{"<a", -1}, {"b>", 3}});
  CHECK(split(matcher, "") == Split{});
  CHECK(split(matcher, "plain") == Split{{"plain", -1}});
}

TEST_CASE("added tokens: single_word, lstrip and rstrip as in Hugging Face's own tests",
          "[tokenizer]") {
  using Split = std::vector<std::pair<std::string, int32_t>>;
  // added_vocabulary.rs, test_single_word_is_correct (lowercased input).
  AddedToken mask = added(0, "<mask>");
  mask.single_word = true;
  AddedTokenMatcher single({mask});
  CHECK(split(single, "<mask> my name <mask> a<mask> <mask>ony <mask>") ==
        Split{{"<mask>", 0},
              {" my name ", -1},
              {"<mask>", 0},
              {" a<mask> <mask>ony ", -1},
              {"<mask>", 0}});
  // test_single_word_is_unicode_correct: punctuation is no word, a combining mark is.
  CHECK(split(single, "<mask>, <mask>- \u25cc\u0330<mask>") ==
        Split{{"<mask>", 0}, {", ", -1}, {"<mask>", 0}, {"- \u25cc\u0330<mask>", -1}});
  // test_lstrip_unicode_space.
  AddedToken stripped = mask;
  stripped.lstrip = true;
  stripped.rstrip = true;
  AddedTokenMatcher strip({stripped});
  CHECK(split(strip, "hi <mask> there\t<mask>\t<mask>\u2000") ==
        Split{{"hi", -1}, {" <mask> ", 0}, {"there", -1}, {"\t<mask>\t", 0}, {"<mask>\u2000", 0}});
}

TEST_CASE("added tokens in a tokenizer: special ones are skipped by decode", "[tokenizer]") {
  json file = tiny_tokenizer({{"h", "i"}});
  file["added_tokens"] = {
      {{"id", 400}, {"content", "<|end|>"}, {"special", true}, {"normalized", false}},
      {{"id", 401}, {"content", "<think>"}, {"special", false}, {"normalized", false}},
      {{"id", 402}, {"content", "caf\u00e9"}, {"special", false}, {"normalized", true}},
  };
  HfTokenizer tokenizer = load_json(file);
  CHECK(tokenizer.vocab_size() == 403);
  std::vector<int32_t> ids = encode(tokenizer, "hi<|end|><think>hi");
  CHECK(ids == std::vector<int32_t>{256, 400, 401, 256});
  CHECK(tokenizer.decode(ids) == "hi<think>hi");
  CHECK(tokenizer.decode(ids, false) == "hi<|end|><think>hi");
  CHECK(tokenizer.is_special(400));
  CHECK_FALSE(tokenizer.is_special(401));
  CHECK(tokenizer.id_of("<think>") == 401);
  CHECK(tokenizer.token_of(400) == "<|end|>");
  // A normalized added token matches after NFC: "cafe" + U+0301 is "caf\u00e9".
  CHECK(encode(tokenizer, "cafe\u0301!") == std::vector<int32_t>{402, '!'});
  // Ids the vocabulary lacks decode to nothing.
  CHECK(tokenizer.decode(std::vector<int32_t>{'o', -1, 5000, 'k'}) == "ok");
}

TEST_CASE("decode replaces invalid UTF-8 as Rust's from_utf8_lossy does", "[tokenizer]") {
  HfTokenizer tokenizer = load_json(tiny_tokenizer({}));
  auto decode_bytes = [&](std::string_view bytes) {
    std::vector<int32_t> ids(bytes.begin(), bytes.end());
    for (int32_t& id : ids) id &= 0xFF;
    return tokenizer.decode(ids);
  };
  CHECK(decode_bytes("\xE4\xB8\xAD") == "\xE4\xB8\xAD");
  CHECK(decode_bytes("a\xFF"
                     "b") ==
        "a\xEF\xBF\xBD"
        "b");
  CHECK(decode_bytes("\xE4\xB8"
                     "x") ==
        "\xEF\xBF\xBD"
        "x");                                                     // one U+FFFD for a cut character
  CHECK(decode_bytes("\xF0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD");  // 0x80 cannot follow 0xF0
}

TEST_CASE("the pre-tokenizer splits as Qwen3's regex says, with Unicode's white space",
          "[tokenizer]") {
  json spec = tiny_tokenizer({})["pre_tokenizer"];
  auto pre_tokenizer = PreTokenizer::from_json(spec, "t.json");
  REQUIRE(pre_tokenizer.is_ok());
  auto pieces = [&](std::string_view text) {
    std::vector<std::string_view> views;
    REQUIRE(pre_tokenizer->split(text, views).is_ok());
    return std::vector<std::string>(views.begin(), views.end());
  };
  using Pieces = std::vector<std::string>;
  CHECK(pieces("Hello world's 2024!") ==
        Pieces{"Hello", " world", "'s", " ", "2", "0", "2", "4", "!"});
  CHECK(pieces("IT'S  ok\n\n") == Pieces{"IT", "'S", " ", " ok", "\n\n"});
  CHECK(pieces("a   b") == Pieces{"a", "  ", " b"});
  // U+180E is no white space since Unicode 6.3 (PCRE2's \s would take it; we spell \s out).
  CHECK(pieces("a \u180e") == Pieces{"a", " \u180e"});
  CHECK(pieces("") == Pieces{});
}

TEST_CASE("the normalizer composes with NFC and refuses what it does not know", "[tokenizer]") {
  auto nfc = UnicodeNormalizer::from_json({{"type", "NFC"}}, "t.json");
  REQUIRE(nfc.is_ok());
  CHECK(nfc->apply("e\u0301 \u212b").value() == "\u00e9 \u00c5");
  auto lowercase = UnicodeNormalizer::from_json({{"type", "Lowercase"}}, "t.json");
  CHECK(lowercase.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(lowercase.status().message(), Catch::Contains("Lowercase"));
  CHECK(is_word_char(U'a'));
  CHECK(is_word_char(U'\u0330'));
  CHECK(is_word_char(U'_'));
  CHECK_FALSE(is_word_char(U'-'));
  CHECK(is_white_space(U'\u2000'));
  CHECK_FALSE(is_white_space(U'\u180e'));
}

TEST_CASE("malformed or unsupported tokenizer files are errors naming the file and field",
          "[tokenizer]") {
  auto check_error = [](const json& file, const std::string& needle) {
    Status status = load_error(file);
    INFO(status.to_string());
    CHECK(status.code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(status.message(), Catch::Contains("t.json") && Catch::Contains(needle));
  };
  json good = tiny_tokenizer({{"a", "b"}});
  CHECK(HfTokenizer::from_json("{\"model\": ", "t.json").status().code() ==
        ErrorCode::kInvalidArgument);
  CHECK_THAT(HfTokenizer::from_json("{\"model\": ", "t.json").status().message(),
             Catch::Contains("not valid JSON"));
  json no_vocab = good;
  no_vocab["model"].erase("vocab");
  check_error(no_vocab, "model.vocab");
  json bad_merge = good;
  bad_merge["model"]["merges"].push_back("a zz");
  check_error(bad_merge, "model.merges[1] names \"zz\"");
  json three = good;
  three["model"]["merges"].push_back("a b c");
  check_error(three, "model.merges[1]");
  json bad_id = good;
  bad_id["model"]["vocab"]["q"] = "seven";
  check_error(bad_id, "model.vocab[\"q\"]");
  json regex = good;
  regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  check_error(regex, "PCRE2 refuses");
  json unigram = good;
  unigram["model"]["type"] = "Unigram";
  check_error(unigram, "Unigram");
  json metaspace = good;
  metaspace["pre_tokenizer"] = {{"type", "Metaspace"}};
  check_error(metaspace, "Metaspace");
  json decoder = good;
  decoder["decoder"] = {{"type", "WordPiece"}};
  check_error(decoder, "WordPiece");
  json merged = good;
  merged["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithNext";
  check_error(merged, "MergedWithNext");
  json duplicate = good;
  duplicate["added_tokens"] = {{{"id", 300}, {"content", "<x>"}},
                               {{"id", 300}, {"content", "<y>"}}};
  check_error(duplicate, "added_tokens[1]");
}

TEST_CASE("load reads the files beside tokenizer.json, and no tokenizer.json is kNotFound",
          "[tokenizer]") {
  fs::path dir = eep::testing::process_scratch_dir("eep-tokenizer") / "checkpoint";
  fs::create_directories(dir);
  auto missing = HfTokenizer::load(dir);
  CHECK(missing.status().code() == ErrorCode::kNotFound);
  CHECK_THAT(missing.status().message(), Catch::Contains("no tokenizer.json"));

  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
  };
  write("tokenizer.json", "{not json");
  auto broken = HfTokenizer::load(dir);
  CHECK(broken.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(broken.status().message(), Catch::Contains("tokenizer.json"));

  json file = tiny_tokenizer({});
  file["added_tokens"] = {
      {{"id", 256}, {"content", "<s>"}, {"special", true}},
      {{"id", 257}, {"content", "</s>"}, {"special", true}},
  };
  write("tokenizer.json", file.dump());
  write("tokenizer_config.json", json{{"bos_token", {{"content", "<s>"}, {"lstrip", false}}},
                                      {"eos_token", "</s>"},
                                      {"add_bos_token", true},
                                      {"model_max_length", 4096},
                                      {"chat_template",
                                       {{{"name", "default"}, {"template", "{{ messages }}"}},
                                        {{"name", "tool_use"}, {"template", "{{ tools }}"}}}}}
                                     .dump());
  auto loaded = HfTokenizer::load(dir);
  REQUIRE(loaded.is_ok());
  CHECK(loaded->config().bos_token == "<s>");
  CHECK(loaded->config().add_bos_token);
  CHECK(loaded->config().model_max_length == 4096);
  CHECK(loaded->config().chat_template == "{{ messages }}");
  CHECK(loaded->config().named_chat_templates.at("tool_use") == "{{ tools }}");
  CHECK(loaded->eos_token_ids() == std::vector<int32_t>{257});  // no generation_config.json

  write("generation_config.json",
        json{{"eos_token_id", {257, 256}}, {"temperature", 0.6}, {"top_k", 20}}.dump());
  loaded = HfTokenizer::load(dir);
  REQUIRE(loaded.is_ok());
  CHECK(loaded->eos_token_ids() == std::vector<int32_t>{257, 256});
  CHECK(loaded->generation_config().temperature == 0.6);
  CHECK(loaded->generation_config().top_k == 20);
  CHECK_FALSE(loaded->generation_config().top_p.has_value());

  write("generation_config.json", json{{"eos_token_id", "two"}}.dump());
  auto bad_generation = HfTokenizer::load(dir);
  CHECK(bad_generation.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(bad_generation.status().message(),
             Catch::Contains("generation_config.json") && Catch::Contains("eos_token_id"));
  write("generation_config.json", json{{"eos_token_id", 257}}.dump());
  write("tokenizer_config.json", json{{"chat_template", 7}}.dump());
  CHECK_THAT(HfTokenizer::load(dir).status().message(),
             Catch::Contains("tokenizer_config.json") && Catch::Contains("chat_template"));
  // A template in chat_template.jinja, as recent transformers write it.
  write("tokenizer_config.json", json{{"eos_token", "</s>"}}.dump());
  write("chat_template.jinja", "{% for m in messages %}{{ m }}{% endfor %}");
  loaded = HfTokenizer::load(dir);
  REQUIRE(loaded.is_ok());
  CHECK(loaded->config().chat_template == "{% for m in messages %}{{ m }}{% endfor %}");
}

TEST_CASE("a TemplateProcessing post-processor adds its special tokens on request", "[tokenizer]") {
  json file = tiny_tokenizer({});
  file["added_tokens"] = {{{"id", 256}, {"content", "<s>"}, {"special", true}}};
  file["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {256}}, {"tokens", {"<s>"}}}}}}};
  HfTokenizer tokenizer = load_json(file);
  CHECK(tokenizer.encode("hi", true).value() == std::vector<int32_t>{256, 'h', 'i'});
  CHECK(tokenizer.encode("hi", false).value() == std::vector<int32_t>{'h', 'i'});
}

TEST_CASE("encode takes invalid UTF-8 as its U+FFFD replacement", "[tokenizer]") {
  HfTokenizer tokenizer = load_json(tiny_tokenizer({}));
  CHECK(encode(tokenizer,
               "a\xFF"
               "b") == encode(tokenizer,
                              "a\xEF\xBF\xBD"
                              "b"));
  CHECK(encode(tokenizer, "\xE4\xB8") == encode(tokenizer, "\xEF\xBF\xBD"));
}

TEST_CASE("the incremental detokenizer streams what decode gives, characters whole",
          "[tokenizer]") {
  json file = tiny_tokenizer({});
  file["added_tokens"] = {{{"id", 300}, {"content", "<|end|>"}, {"special", true}}};
  HfTokenizer tokenizer = load_json(file);
  // U+4E2D in three byte tokens: nothing until the last byte.
  std::vector<int32_t> ids;
  for (char byte : std::string("\xE4\xB8\xAD")) {
    ids.push_back(*tokenizer.id_of(byte_level_encode(std::string(1, byte))));
  }
  IncrementalDetokenizer stream(tokenizer);
  CHECK(stream.push(ids[0]).empty());
  CHECK(stream.push(ids[1]).empty());
  CHECK(stream.push(ids[2]) == "\xE4\xB8\xAD");
  CHECK(stream.push(300).empty());  // skipped special token
  CHECK(stream.push('x') == "x");
  CHECK(stream.push(ids[0]).empty());
  CHECK(stream.finish() == "\xEF\xBF\xBD");  // a cut character at the end
  IncrementalDetokenizer keep_special(tokenizer, false);
  CHECK(keep_special.push(300) == "<|end|>");

  // Random ids over the byte tokens and a few others: pieces are valid UTF-8 and join to decode.
  std::mt19937 random(11);
  for (int round = 0; round < 2000; ++round) {
    std::vector<int32_t> sequence(1 + random() % 12);
    for (int32_t& id : sequence) {
      int kind = static_cast<int>(random() % 10);
      id = kind == 0 ? 300 : kind == 1 ? 5000 : static_cast<int32_t>(random() % 257);
    }
    for (bool skip : {true, false}) {
      IncrementalDetokenizer detokenizer(tokenizer, skip);
      std::string joined;
      for (int32_t id : sequence) {
        std::string piece = detokenizer.push(id);
        CHECK(is_valid_utf8(piece));
        joined += piece;
      }
      joined += detokenizer.finish();
      REQUIRE(joined == tokenizer.decode(sequence, skip));
    }
  }
}
