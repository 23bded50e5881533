// eep-mkmodel: writes a Hugging Face-layout Qwen3-MoE checkpoint (config.json + safetensors) with
// seeded random weights, or with --list prints the tensors it would write.
//   eep-mkmodel --preset tiny|small|qwen3-30b-a3b --seed S --out DIR
//               [--dtype bf16|fp32|fp16|fp8] [--fp8-block-size ROWS COLS]
//               [--layers N] [--experts N] [--fused-experts] [--router-skew A] [--list]
//               [--tokenizer DIR]
// --dtype fp8 writes a Hugging Face fine-grained FP8 checkpoint: attention and expert
// projections in F8_E4M3 with F32 block scales (weight_scale_inv), the rest in BF16, and a
// quantization_config in config.json.
// --tokenizer copies a Hugging Face tokenizer (tokenizer.json, tokenizer_config.json,
// generation_config.json, chat_template.jinja, those present) into the checkpoint, sizes the
// vocabulary to hold its ids (rounded up to a multiple of 128, as published checkpoints pad it)
// and takes its EOS ids, so the whole text path runs on a small random model.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "eep/common/config.h"
#include "eep/worker/model/random_checkpoint.h"
#include "eep/worker/model/safetensors.h"
#include "eep/worker/model/tensor_names.h"

namespace {

struct Options {
  std::string preset = "tiny";
  uint64_t seed = 0;
  std::string out;
  std::string dtype = "bf16";
  std::vector<int64_t> fp8_block_size = {128, 128};
  int layers = 0;
  int experts = 0;
  bool fused_experts = false;
  double router_skew = 0.0;
  uint64_t max_shard_mb = 2048;
  bool list = false;
  std::string tokenizer_dir;
};

constexpr int64_t kVocabPadding = 128;
constexpr const char* kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json",
                                           "generation_config.json", "chat_template.jinja"};

struct TokenizerShape {
  int64_t vocab_size = 0;  // one more than the largest id, padded
  std::vector<int64_t> eos_token_ids;
};

eep::Result<nlohmann::json> read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return eep::error(eep::ErrorCode::kIoError, "cannot read " + path.string());
  nlohmann::json value = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_object()) {
    return eep::error(eep::ErrorCode::kInvalidArgument, path.string() + " is not a JSON object");
  }
  return value;
}

// The ids a tokenizer's vocabulary and added tokens use, and its EOS ids: generation_config.json's
// eos_token_id, else the id of tokenizer_config.json's eos_token.
eep::Result<TokenizerShape> tokenizer_shape(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  EEP_ASSIGN_OR_RETURN(nlohmann::json tokenizer, read_json(dir / "tokenizer.json"));
  const auto invalid = [&](const std::string& what) {
    return eep::error(eep::ErrorCode::kInvalidArgument,
                      (dir / "tokenizer.json").string() + ": " + what);
  };
  std::map<std::string, int64_t> ids;
  const nlohmann::json* vocab = nullptr;
  if (tokenizer.contains("model") && tokenizer["model"].is_object() &&
      tokenizer["model"].contains("vocab") && tokenizer["model"]["vocab"].is_object()) {
    vocab = &tokenizer["model"]["vocab"];
  }
  if (vocab == nullptr) return invalid("no model.vocab object");
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer()) return invalid("model.vocab['" + token + "'] is not an id");
    ids[token] = id.get<int64_t>();
  }
  if (tokenizer.contains("added_tokens") && tokenizer["added_tokens"].is_array()) {
    for (const nlohmann::json& added : tokenizer["added_tokens"]) {
      if (!added.is_object() || !added.contains("id") || !added["id"].is_number_integer() ||
          !added.contains("content") || !added["content"].is_string()) {
        return invalid("an added token without an integer id and a content");
      }
      ids[added["content"].get<std::string>()] = added["id"].get<int64_t>();
    }
  }
  TokenizerShape shape;
  int64_t max_id = -1;
  for (const auto& [token, id] : ids) max_id = std::max(max_id, id);
  shape.vocab_size = (max_id + kVocabPadding) / kVocabPadding * kVocabPadding;

  std::error_code ec;
  if (fs::exists(dir / "generation_config.json", ec)) {
    EEP_ASSIGN_OR_RETURN(nlohmann::json generation, read_json(dir / "generation_config.json"));
    const nlohmann::json eos = generation.value("eos_token_id", nlohmann::json());
    if (eos.is_number_integer()) shape.eos_token_ids.push_back(eos.get<int64_t>());
    if (eos.is_array()) {
      for (const nlohmann::json& id : eos) {
        if (id.is_number_integer()) shape.eos_token_ids.push_back(id.get<int64_t>());
      }
    }
  }
  if (shape.eos_token_ids.empty() && fs::exists(dir / "tokenizer_config.json", ec)) {
    EEP_ASSIGN_OR_RETURN(nlohmann::json config, read_json(dir / "tokenizer_config.json"));
    nlohmann::json eos = config.value("eos_token", nlohmann::json());
    if (eos.is_object()) eos = eos.value("content", nlohmann::json());
    if (eos.is_string() && ids.count(eos.get<std::string>()) > 0) {
      shape.eos_token_ids.push_back(ids[eos.get<std::string>()]);
    }
  }
  return shape;
}

eep::Status copy_tokenizer_files(const std::filesystem::path& from,
                                 const std::filesystem::path& to) {
  namespace fs = std::filesystem;
  for (const char* name : kTokenizerFiles) {
    std::error_code ec;
    if (!fs::exists(from / name, ec)) continue;
    fs::copy_file(from / name, to / name, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      return eep::error(eep::ErrorCode::kIoError, "cannot copy " + (from / name).string() + " to " +
                                                      to.string() + ": " + ec.message());
    }
  }
  return eep::Status::ok();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace eep::worker;
  Options options;
  CLI::App app{"Write a Qwen3-MoE checkpoint with seeded random weights"};
  eep::add_config_option(app);
  app.add_option("--preset", options.preset, "Model shape: tiny, small or qwen3-30b-a3b")
      ->capture_default_str();
  app.add_option("--seed", options.seed, "Random seed (same seed, same weights)")
      ->capture_default_str();
  app.add_option("--out", options.out, "Output directory (created if needed)");
  app.add_option("--dtype", options.dtype,
                 "Weight dtype: bf16, fp16, fp32 or fp8 (block-scaled F8_E4M3 projections, the "
                 "rest bf16)")
      ->capture_default_str();
  app.add_option("--fp8-block-size", options.fp8_block_size,
                 "With --dtype fp8: weight_block_size, rows and columns of each scaled block")
      ->expected(2)
      ->capture_default_str();
  app.add_option("--layers", options.layers, "Override the number of layers");
  app.add_option("--experts", options.experts,
                 "Override the number of experts (top-k is capped to it)");
  app.add_flag("--fused-experts", options.fused_experts,
               "Write transformers 5.x fused expert tensors (gate_up_proj, down_proj)");
  app.add_option("--router-skew", options.router_skew,
                 "Bias the router towards low expert ids (0 = uniform; 4 = strongly Zipf-like)")
      ->capture_default_str();
  app.add_option("--max-shard-mb", options.max_shard_mb,
                 "Split into shards with an index above this size")
      ->capture_default_str();
  app.add_flag("--list", options.list, "Print every tensor's name, dtype and shape; write nothing");
  app.add_option("--tokenizer", options.tokenizer_dir,
                 "Copy this Hugging Face tokenizer (tokenizer.json and its config files) into the "
                 "checkpoint and size the vocabulary to fit it");
  if (auto exit_code = eep::parse_args(app, argc, argv)) return *exit_code;

  auto config = model_preset(options.preset);
  if (!config.is_ok()) {
    std::cerr << "eep-mkmodel: " << config.status().to_string() << "\n";
    return 2;
  }
  if (options.layers > 0) config->num_hidden_layers = options.layers;
  if (options.experts > 0) {
    config->num_experts = options.experts;
    config->num_experts_per_tok = std::min(config->num_experts_per_tok, options.experts);
  }
  if (!options.tokenizer_dir.empty()) {
    auto shape = tokenizer_shape(options.tokenizer_dir);
    if (!shape.is_ok()) {
      std::cerr << "eep-mkmodel: " << shape.status().to_string() << "\n";
      return 2;
    }
    config->vocab_size = static_cast<int>(std::max<int64_t>(config->vocab_size, shape->vocab_size));
    config->eos_token_ids = shape->eos_token_ids;
  }
  RandomCheckpointOptions write_options;
  write_options.seed = options.seed;
  write_options.expert_layout =
      options.fused_experts ? ExpertLayout::kFused : ExpertLayout::kPerExpert;
  write_options.router_skew = options.router_skew;
  write_options.max_shard_bytes = options.max_shard_mb << 20;
  if (options.dtype == "bf16" || options.dtype == "bfloat16") {
    write_options.dtype = DType::kBF16;
  } else if (options.dtype == "fp16" || options.dtype == "float16") {
    write_options.dtype = DType::kF16;
  } else if (options.dtype == "fp32" || options.dtype == "float32") {
    write_options.dtype = DType::kF32;
  } else if (options.dtype == "fp8" || options.dtype == "float8_e4m3fn") {
    write_options.dtype = DType::kF8E4M3;
    write_options.fp8_block_rows = options.fp8_block_size[0];
    write_options.fp8_block_cols = options.fp8_block_size[1];
    Fp8BlockQuantization quantization;  // for --list; write_random_checkpoint sets its own
    quantization.block_rows = options.fp8_block_size[0];
    quantization.block_cols = options.fp8_block_size[1];
    config->quantization = quantization;
    if (quantization.block_rows < 1 || quantization.block_cols < 1 || options.fused_experts) {
      std::cerr << "eep-mkmodel: --dtype fp8 needs a positive --fp8-block-size and per-expert "
                   "tensors (no --fused-experts)\n";
      return 2;
    }
  } else {
    std::cerr << "eep-mkmodel: --dtype must be bf16, fp16, fp32 or fp8, not '" << options.dtype
              << "'\n";
    return 2;
  }
  if (const auto valid = config->validate(); !valid.is_ok()) {
    std::cerr << "eep-mkmodel: " << valid.to_string() << "\n";
    return 2;
  }

  if (options.list) {
    uint64_t total_bytes = 0;
    const auto specs =
        checkpoint_tensor_specs(*config, write_options.expert_layout, write_options.dtype);
    for (const auto& spec : specs) {
      std::cout << spec.name << " " << to_string(spec.dtype) << " " << shape_to_string(spec.shape)
                << "\n";
      total_bytes += spec.num_bytes();
    }
    std::cerr << specs.size() << " tensors, " << total_bytes << " bytes\n";
    return 0;
  }
  if (options.out.empty()) {
    std::cerr << "eep-mkmodel: --out DIR is required (or --list)\n";
    return 2;
  }
  auto status = write_random_checkpoint(*config, write_options, options.out);
  if (status.is_ok() && !options.tokenizer_dir.empty()) {
    status = copy_tokenizer_files(options.tokenizer_dir, options.out);
  }
  if (!status.is_ok()) {
    std::cerr << "eep-mkmodel: " << status.to_string() << "\n";
    return 1;
  }
  std::cout << "wrote " << options.preset << " (seed " << options.seed << ", "
            << to_string(write_options.dtype) << ", " << to_string(write_options.expert_layout)
            << " experts) to " << options.out << "\n";
  return 0;
}
