// eep-generate: one process, one rank, one sequence at a time: the debugging and correctness tool.
//   eep-generate --model DIR --prompt-ids 1,2,3 [--prompt-ids 4,5 ...] --max-tokens N
//                [--temperature T --top-p P --seed S] [--dump-logits FILE]
// Prints the generated token ids (comma-separated) on stdout, one line per prompt in the order
// given, timing on stderr. Several prompts run one after another in one process, each a fresh
// sequence, so a test's oracle loads the model once.
#include <CLI/CLI.hpp>
#include <iostream>
#include <sstream>

#include "eep/common/config.h"
#include "eep/common/log.h"
#include "eep/worker/engine/generate.h"
#include "eep/worker/model/checkpoint.h"
#include "eep/worker/model/safetensors.h"

namespace {

std::optional<std::vector<int32_t>> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    try {
      size_t used = 0;
      const long value = std::stol(item, &used);
      if (used != item.size() || value < 0 || value > INT32_MAX) return std::nullopt;
      ids.push_back(static_cast<int32_t>(value));
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace eep::worker;
  std::string model_dir, dump_path;
  std::vector<std::string> prompt_texts;
  GenerateOptions options;
  BackendOptions backend_options;
  CLI::App app{"eep-generate: run the model on one rank on token ids and print the tokens"};
  eep::add_config_option(app);
  app.add_option("--model", model_dir, "Checkpoint directory (config.json + safetensors)")
      ->required();
  app.add_option("--prompt-ids", prompt_texts,
                 "Prompt token ids, comma-separated; repeat the option for more prompts")
      ->required();
  app.add_option("--max-tokens", options.max_tokens, "Tokens to generate")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--temperature", options.temperature, "0 = greedy")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  app.add_option("--top-p", options.top_p, "Nucleus sampling mass")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--seed", options.seed, "Sampling seed")->capture_default_str();
  app.add_flag("--ignore-eos", options.ignore_eos, "Keep generating after an EOS token");
  app.add_option("--prefill-chunk", options.prefill_chunk, "Prefill in chunks of this many tokens")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--device", backend_options.device, "cpu or cuda")
      ->transform(CLI::CheckedTransformer(device_by_name()))
      ->option_text("cpu|cuda (default cpu)");
  app.add_option("--device-idx", backend_options.device_idx, "GPU index (cuda)")
      ->check(CLI::Range(0, 1023));
  app.add_flag("!--no-cuda-graphs", backend_options.cuda_graphs,
               "cuda: run decode steps eagerly instead of from captured CUDA graphs");
  app.add_option("--gpu-memory-utilization", backend_options.gpu_memory_utilization,
                 "cuda: share of the GPU's memory to use")
      ->check(CLI::Range(0.05, 0.99));
  app.add_option("--block-size", backend_options.block_size, "KV cache block size")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--dump-logits", dump_path,
                 "Write the logits that chose each token to this safetensors file ('logits' "
                 "[num_tokens, vocab] f32)");
  if (auto exit_code = eep::parse_args(app, argc, argv)) return *exit_code;
  eep::set_log_speaker("generate");

  std::vector<std::vector<int32_t>> prompts;
  size_t longest_prompt = 0;
  for (const std::string& text : prompt_texts) {
    auto prompt = parse_ids(text);
    if (!prompt || prompt->empty()) {
      EEP_LOG_ERROR("--prompt-ids must be non-negative integers separated by commas, got '" << text
                                                                                            << "'");
      return 2;
    }
    longest_prompt = std::max(longest_prompt, prompt->size());
    prompts.push_back(std::move(*prompt));
  }
  if (!dump_path.empty() && prompts.size() > 1) {
    EEP_LOG_ERROR("--dump-logits takes one prompt, got " << prompts.size());
    return 2;
  }
  auto checkpoint = Checkpoint::open(model_dir);
  if (!checkpoint.is_ok()) {
    EEP_LOG_ERROR(checkpoint.status().to_string());
    return 1;
  }
  const ModelConfig& config = checkpoint->config();
  options.keep_logits = !dump_path.empty();
  const int block_size = backend_options.block_size;
  backend_options.num_kv_blocks =
      static_cast<int>((longest_prompt + options.max_tokens + block_size - 1) / block_size);
  backend_options.max_num_seqs = 1;
  backend_options.max_num_batched_tokens = std::max<int>(
      16, options.prefill_chunk > 0 ? options.prefill_chunk : static_cast<int>(longest_prompt));
  auto backend = make_backend(backend_options, config);
  if (!backend.is_ok()) {
    EEP_LOG_ERROR(backend.status().to_string());
    return 1;
  }
  auto num_kv_blocks =
      install_single_rank(**backend, checkpoint.value(), backend_options.num_kv_blocks);
  if (!num_kv_blocks.is_ok()) {
    EEP_LOG_ERROR(num_kv_blocks.status().to_string());
    return 1;
  }
  KvBlockManager blocks(num_kv_blocks.value(), block_size);
  GenerateResult result;
  for (const std::vector<int32_t>& prompt : prompts) {
    auto generated = generate((*backend)->executor(), blocks, prompt, options);
    if (!generated.is_ok()) {
      EEP_LOG_ERROR(generated.status().to_string());
      return 1;
    }
    result = std::move(generated).value();
    for (size_t i = 0; i < result.token_ids.size(); ++i) {
      std::cout << (i ? "," : "") << result.token_ids[i];
    }
    std::cout << "\n";
    const double decode_tokens = static_cast<double>(result.token_ids.size()) - 1;
    std::cerr << "prefill: " << prompt.size() << " tokens in " << result.prefill_seconds << " s ("
              << prompt.size() / result.prefill_seconds << " tok/s); decode: " << decode_tokens
              << " tokens in " << result.decode_seconds << " s ("
              << (decode_tokens > 0 ? decode_tokens / result.decode_seconds : 0.0)
              << " tok/s); finish: " << result.finish_reason << "\n";
  }
  if (!dump_path.empty()) {
    TensorData logits;
    logits.spec = {
        "logits", DType::kF32, {static_cast<int64_t>(result.token_ids.size()), config.vocab_size}};
    logits.bytes = std::as_bytes(std::span(result.logits));
    eep::Status written = write_safetensors(dump_path, std::span(&logits, 1));
    if (!written.is_ok()) {
      EEP_LOG_ERROR(written.to_string());
      return 1;
    }
  }
  return 0;
}
