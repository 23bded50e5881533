// eep-mkmodel: writes a Hugging Face-layout Qwen3-MoE checkpoint (config.json + safetensors) with
// seeded random weights, or with --list prints the tensors it would write.
//   eep-mkmodel --preset tiny|small|qwen3-30b-a3b --seed S --out DIR [--dtype bf16|fp32|fp16]
//               [--layers N] [--experts N] [--fused-experts] [--router-skew A] [--list]
#include <iostream>

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
  int layers = 0;
  int experts = 0;
  bool fused_experts = false;
  double router_skew = 0.0;
  uint64_t max_shard_mb = 2048;
  bool list = false;
};

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
  app.add_option("--dtype", options.dtype, "Weight dtype: bf16, fp16 or fp32")
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
  } else {
    std::cerr << "eep-mkmodel: --dtype must be bf16, fp16 or fp32, not '" << options.dtype << "'\n";
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
  const auto status = write_random_checkpoint(*config, write_options, options.out);
  if (!status.is_ok()) {
    std::cerr << "eep-mkmodel: " << status.to_string() << "\n";
    return 1;
  }
  std::cout << "wrote " << options.preset << " (seed " << options.seed << ", "
            << to_string(write_options.dtype) << ", " << to_string(write_options.expert_layout)
            << " experts) to " << options.out << "\n";
  return 0;
}
