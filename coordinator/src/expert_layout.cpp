#include "eep/coordinator/expert_layout.h"

#include <filesystem>
#include <fstream>

namespace eep::coordinator {
namespace {

// Far above any real model; keeps placement sizes (layers x slots) sane for a corrupt file.
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxExperts = 1 << 16;

Result<int> positive_int(const nlohmann::json& config, const char* key, int64_t max,
                         std::string_view source) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) {
    return error(ErrorCode::kInvalidArgument,
                 std::string(source) + ": missing \"" + key + "\"; is this a Qwen3-MoE config?");
  }
  if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > max) {
    return error(ErrorCode::kInvalidArgument,
                 std::string(source) + ": \"" + key + "\" = " + it->dump() +
                     " must be an integer in [1, " + std::to_string(max) + "]");
  }
  return static_cast<int>(it->get<int64_t>());
}

}  // namespace

int ExpertLayout::slots_per_rank(int world_size) const {
  return (num_experts + num_redundant_experts + world_size - 1) / world_size;
}

Result<Placement> ExpertLayout::initial_placement(int world_size) const {
  if (world_size < 1) {
    return error(ErrorCode::kInvalidArgument,
                 "a placement needs at least one rank, got " + std::to_string(world_size));
  }
  return Placement::round_robin(num_layers, num_experts, world_size, slots_per_rank(world_size));
}

Result<ExpertLayout> parse_expert_layout(const nlohmann::json& config, std::string_view source,
                                         int num_redundant_experts) {
  if (!config.is_object()) {
    return error(ErrorCode::kInvalidArgument,
                 std::string(source) + ": a model config must be a JSON object");
  }
  if (num_redundant_experts < 0) {
    return error(ErrorCode::kInvalidArgument, "--num-redundant-experts must be >= 0, got " +
                                                  std::to_string(num_redundant_experts));
  }
  ExpertLayout layout;
  EEP_ASSIGN_OR_RETURN(layout.num_layers,
                       positive_int(config, "num_hidden_layers", kMaxLayers, source));
  const char* experts_key = config.contains("num_experts") ? "num_experts" : "num_local_experts";
  EEP_ASSIGN_OR_RETURN(layout.num_experts, positive_int(config, experts_key, kMaxExperts, source));
  layout.num_redundant_experts = num_redundant_experts;
  return layout;
}

Result<ExpertLayout> read_expert_layout(const std::string& model_dir, int num_redundant_experts) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  std::ifstream in(path);
  if (!in) {
    return error(ErrorCode::kNotFound,
                 "cannot read " + path +
                     ": --model must be a checkpoint directory holding config.json (the "
                     "coordinator reads the number of layers and experts from it)");
  }
  nlohmann::json config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) {
    return error(ErrorCode::kInvalidArgument, path + " is not valid JSON");
  }
  return parse_expert_layout(config, path, num_redundant_experts);
}

}  // namespace eep::coordinator
