#include "eep/worker/model/checkpoint.h"

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace eep::worker {
namespace {

using nlohmann::json;

// Widens `out.size()` elements of `dtype`, starting at element `first_element` of `bytes`.
void convert_to_f32(DType dtype, std::span<const std::byte> bytes, std::size_t first_element,
                    std::span<float> out) {
  const std::size_t elem_bytes = dtype_size_bytes(dtype);
  const std::byte* src = bytes.data() + first_element * elem_bytes;
  EEP_CHECK((first_element + out.size()) * elem_bytes <= bytes.size());
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out.data(), src, out.size() * sizeof(float));
      return;
    case DType::kBF16:
    case DType::kF16:
      for (std::size_t i = 0; i < out.size(); ++i) {
        uint16_t bits;  // memcpy: the mapping gives no alignment guarantee
        std::memcpy(&bits, src + 2 * i, 2);
        out[i] = dtype == DType::kBF16 ? bf16_to_fp32(bits) : fp16_to_fp32(bits);
      }
      return;
    default:
      EEP_CHECK_MSG(false, "not a weight dtype: " << to_string(dtype));
  }
}

// A shard name from the index must be a plain file name in the checkpoint directory.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

Result<json> read_json_file(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) return error(ErrorCode::kIoError, "cannot read " + path.string());
  std::stringstream text;
  text << file.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const json::exception& e) {
    return error(ErrorCode::kDataLoss, path.string() + " is not valid JSON: " + e.what());
  }
}

}  // namespace

Result<Checkpoint> Checkpoint::open(const std::filesystem::path& dir) {
  Checkpoint checkpoint;
  checkpoint.dir_ = dir;
  EEP_ASSIGN_OR_RETURN(checkpoint.config_, load_model_config(dir / kConfigFileName));

  const auto index_path = dir / kIndexFileName;
  const auto single_path = dir / kSingleFileName;
  std::error_code ec;
  if (std::filesystem::exists(index_path, ec)) {
    EEP_ASSIGN_OR_RETURN(json index, read_json_file(index_path));
    const std::string where = index_path.string();
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object() ||
        index["weight_map"].empty()) {
      return error(ErrorCode::kDataLoss, where + ": needs a non-empty \"weight_map\" object");
    }
    std::map<std::string, std::size_t> shard_idx;
    std::vector<std::pair<std::string, std::size_t>> mapped;  // tensor name -> file
    for (const auto& [name, shard] : index["weight_map"].items()) {
      if (!shard.is_string() || !is_plain_file_name(shard.get<std::string>())) {
        return error(ErrorCode::kDataLoss, where + ": tensor '" + name + "' maps to " +
                                               shard.dump() +
                                               ", not a file name in the checkpoint directory");
      }
      const auto [it, inserted] = shard_idx.emplace(shard.get<std::string>(), shard_idx.size());
      if (inserted) {
        EEP_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(dir / it->first));
        checkpoint.files_.push_back(std::move(file));
      }
      mapped.emplace_back(name, it->second);
    }
    for (const auto& [name, file_idx] : mapped) {
      const TensorInfo* info = checkpoint.files_[file_idx].find(name);
      if (info == nullptr) {
        return error(ErrorCode::kDataLoss, where + ": tensor '" + name + "' is mapped to " +
                                               checkpoint.files_[file_idx].path().string() +
                                               ", which does not hold it");
      }
      checkpoint.tensors_.emplace(name, Location{file_idx, info});
    }
  } else if (std::filesystem::exists(single_path, ec)) {
    EEP_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(single_path));
    checkpoint.files_.push_back(std::move(file));
    for (const auto& info : checkpoint.files_[0].tensors()) {
      checkpoint.tensors_.emplace(info.name, Location{0, &info});
    }
  } else {
    return error(ErrorCode::kNotFound, dir.string() + " holds neither " +
                                           std::string(kSingleFileName) + " nor " +
                                           std::string(kIndexFileName));
  }
  EEP_RETURN_IF_ERROR(checkpoint.validate_tensors());
  return checkpoint;
}

Status Checkpoint::validate_tensors() {
  expert_layout_ = find(tensor_names::fused_gate_up_proj(0)) != nullptr ? ExpertLayout::kFused
                                                                        : ExpertLayout::kPerExpert;
  for (const auto& spec : checkpoint_tensor_specs(config_, expert_layout_, DType::kF32)) {
    const TensorInfo* info = find(spec.name);
    if (info == nullptr) {
      return error(ErrorCode::kDataLoss,
                   dir_.string() + ": tensor '" + spec.name + "' " + shape_to_string(spec.shape) +
                       " is missing (" + std::string(to_string(expert_layout_)) +
                       " expert layout); the weights do not match config.json or are incomplete");
    }
    if (!is_weight_dtype(info->dtype)) {
      return error(ErrorCode::kInvalidArgument, dir_.string() + ": tensor '" + spec.name + "' is " +
                                                    std::string(to_string(info->dtype)) +
                                                    "; weights must be F32, BF16 or F16");
    }
    if (info->shape != spec.shape) {
      return error(ErrorCode::kInvalidArgument, dir_.string() + ": tensor '" + spec.name +
                                                    "' has shape " + shape_to_string(info->shape) +
                                                    ", config.json implies " +
                                                    shape_to_string(spec.shape));
    }
  }
  return Status::ok();
}

const TensorInfo* Checkpoint::find(std::string_view name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second.info;
}

Result<Checkpoint::Location> Checkpoint::locate(std::string_view name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return error(ErrorCode::kNotFound,
                 dir_.string() + ": no tensor '" + std::string(name) + "' in the checkpoint");
  }
  return it->second;
}

Status Checkpoint::non_finite_error(std::string_view name, std::size_t element_idx) const {
  return error(ErrorCode::kDataLoss, dir_.string() + ": tensor '" + std::string(name) +
                                         "' holds a NaN or an infinity (element " +
                                         std::to_string(element_idx) +
                                         "): the checkpoint is corrupt, refusing to serve it");
}

Result<std::span<const std::byte>> Checkpoint::raw_data(std::string_view name) const {
  EEP_ASSIGN_OR_RETURN(const Location location, locate(name));
  const std::span<const std::byte> bytes = files_[location.file_idx].data(*location.info);
  if (auto bad = first_non_finite(location.info->dtype, bytes)) {
    return non_finite_error(name, *bad);
  }
  return bytes;
}

Status Checkpoint::read_f32_into(std::string_view name, const std::vector<int64_t>& expected_shape,
                                 std::span<float> out) const {
  EEP_ASSIGN_OR_RETURN(const Location location, locate(name));
  const TensorInfo& info = *location.info;
  if (info.shape != expected_shape) {
    return error(ErrorCode::kInvalidArgument, dir_.string() + ": tensor '" + std::string(name) +
                                                  "' has shape " + shape_to_string(info.shape) +
                                                  ", expected " + shape_to_string(expected_shape));
  }
  if (!is_weight_dtype(info.dtype)) {
    return error(ErrorCode::kInvalidArgument, dir_.string() + ": tensor '" + std::string(name) +
                                                  "' is " + std::string(to_string(info.dtype)) +
                                                  ", not a floating-point weight");
  }
  if (out.size() != static_cast<std::size_t>(info.num_elements())) {
    return error(ErrorCode::kInvalidArgument, "read_f32_into('" + std::string(name) +
                                                  "'): buffer holds " + std::to_string(out.size()) +
                                                  " floats, the tensor " +
                                                  std::to_string(info.num_elements()));
  }
  convert_to_f32(info.dtype, files_[location.file_idx].data(info), 0, out);
  if (auto bad = first_non_finite(std::span<const float>(out))) return non_finite_error(name, *bad);
  return Status::ok();
}

Result<std::vector<float>> Checkpoint::read_f32(std::string_view name,
                                                const std::vector<int64_t>& expected_shape) const {
  int64_t count = 1;
  for (int64_t dim : expected_shape) count *= dim;
  std::vector<float> out(static_cast<std::size_t>(count < 0 ? 0 : count));
  EEP_RETURN_IF_ERROR(read_f32_into(name, expected_shape, out));
  return out;
}

Status Checkpoint::read_expert_into(int layer_idx, int expert_idx,
                                    const ExpertWeightsSpan& out) const {
  if (layer_idx < 0 || layer_idx >= config_.num_hidden_layers || expert_idx < 0 ||
      expert_idx >= config_.num_experts) {
    return error(ErrorCode::kInvalidArgument,
                 "expert (layer " + std::to_string(layer_idx) + ", expert " +
                     std::to_string(expert_idx) + ") is outside the model's " +
                     std::to_string(config_.num_hidden_layers) + " layers x " +
                     std::to_string(config_.num_experts) + " experts");
  }
  const int64_t hidden = config_.hidden_size;
  const int64_t inter = config_.moe_intermediate_size;
  const std::size_t matrix_elements = static_cast<std::size_t>(hidden * inter);
  if (out.gate_proj.size() != matrix_elements || out.up_proj.size() != matrix_elements ||
      out.down_proj.size() != matrix_elements) {
    return error(ErrorCode::kInvalidArgument,
                 "read_expert_into: each buffer must hold moe_intermediate_size * hidden_size = " +
                     std::to_string(matrix_elements) + " floats");
  }
  if (expert_layout_ == ExpertLayout::kPerExpert) {
    EEP_RETURN_IF_ERROR(read_f32_into(tensor_names::expert_gate_proj(layer_idx, expert_idx),
                                      {inter, hidden}, out.gate_proj));
    EEP_RETURN_IF_ERROR(read_f32_into(tensor_names::expert_up_proj(layer_idx, expert_idx),
                                      {inter, hidden}, out.up_proj));
    return read_f32_into(tensor_names::expert_down_proj(layer_idx, expert_idx), {hidden, inter},
                         out.down_proj);
  }
  // Fused: gate_up_proj [E, 2I, H] holds gate rows then up rows; down_proj [E, H, I].
  // Shapes were checked against config.json in open().
  EEP_ASSIGN_OR_RETURN(const Location gate_up, locate(tensor_names::fused_gate_up_proj(layer_idx)));
  EEP_ASSIGN_OR_RETURN(const Location down, locate(tensor_names::fused_down_proj(layer_idx)));
  const auto gate_up_bytes = files_[gate_up.file_idx].data(*gate_up.info);
  const std::size_t gate_first = static_cast<std::size_t>(expert_idx) * 2 * matrix_elements;
  convert_to_f32(gate_up.info->dtype, gate_up_bytes, gate_first, out.gate_proj);
  convert_to_f32(gate_up.info->dtype, gate_up_bytes, gate_first + matrix_elements, out.up_proj);
  convert_to_f32(down.info->dtype, files_[down.file_idx].data(*down.info),
                 static_cast<std::size_t>(expert_idx) * matrix_elements, out.down_proj);
  for (const std::span<float> part : {out.gate_proj, out.up_proj, out.down_proj}) {
    if (auto bad = first_non_finite(std::span<const float>(part))) {
      return non_finite_error("layer " + std::to_string(layer_idx) + " expert " +
                                  std::to_string(expert_idx) + " of the fused expert tensors",
                              *bad);
    }
  }
  return Status::ok();
}

Result<ExpertWeights> Checkpoint::read_expert(int layer_idx, int expert_idx) const {
  const auto matrix_elements =
      static_cast<std::size_t>(config_.hidden_size) * config_.moe_intermediate_size;
  ExpertWeights weights;
  weights.gate_proj.resize(matrix_elements);
  weights.up_proj.resize(matrix_elements);
  weights.down_proj.resize(matrix_elements);
  EEP_RETURN_IF_ERROR(read_expert_into(layer_idx, expert_idx,
                                       {weights.gate_proj, weights.up_proj, weights.down_proj}));
  return weights;
}

}  // namespace eep::worker
