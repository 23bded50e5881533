#include "eep/worker/model/checkpoint.h"

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eep/worker/model/block_fp8.h"

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
    if (info->shape != spec.shape) {
      return error(ErrorCode::kInvalidArgument, dir_.string() + ": tensor '" + spec.name +
                                                    "' has shape " + shape_to_string(info->shape) +
                                                    ", config.json implies " +
                                                    shape_to_string(spec.shape));
    }
    if (info->dtype == DType::kF8E4M3) {
      EEP_RETURN_IF_ERROR(validate_fp8_weight(spec));
    } else if (!is_weight_dtype(info->dtype)) {
      return error(ErrorCode::kInvalidArgument,
                   dir_.string() + ": tensor '" + spec.name + "' is " +
                       std::string(to_string(info->dtype)) +
                       "; weights must be F32, BF16 or F16 (or F8_E4M3 with block scales for "
                       "the projections of an FP8 checkpoint)");
    }
  }
  return Status::ok();
}

Status Checkpoint::validate_fp8_weight(const TensorSpec& spec) {
  const std::string where = dir_.string() + ": tensor '" + spec.name + "' is F8_E4M3";
  if (!config_.quantization) {
    return error(ErrorCode::kInvalidArgument,
                 where +
                     " but config.json has no quantization_config; FP8 weights need "
                     "{\"quant_method\": \"fp8\", \"weight_block_size\": [rows, cols], ...} "
                     "to be read");
  }
  if (spec.name.ends_with(".mlp.experts.gate_up_proj") ||
      spec.name.ends_with(".mlp.experts.down_proj")) {
    return error(ErrorCode::kInvalidArgument,
                 where +
                     ": FP8 fused expert tensors are not supported; store the experts per "
                     "expert (mlp.experts.{e}.gate_proj.weight ...), as published FP8 "
                     "checkpoints do");
  }
  if (!tensor_names::is_fp8_quantizable(spec.name)) {
    return error(ErrorCode::kInvalidArgument,
                 where +
                     ", but only the attention projections (q/k/v/o_proj) and the experts' "
                     "gate/up/down_proj may be FP8; embeddings, norms, the router (mlp.gate) "
                     "and lm_head must be F32, BF16 or F16");
  }
  const std::string scale_name = tensor_names::weight_scale_inv(spec.name);
  const auto scale = tensors_.find(scale_name);
  if (scale == tensors_.end()) {
    return error(ErrorCode::kDataLoss, where + " but its block scales '" + scale_name +
                                           "' are missing: it cannot be dequantized");
  }
  const TensorInfo& scale_info = *scale->second.info;
  const Fp8BlockGeometry geometry{spec.shape[0], spec.shape[1], config_.quantization->block_rows,
                                  config_.quantization->block_cols};
  if (!is_weight_dtype(scale_info.dtype)) {
    return error(ErrorCode::kInvalidArgument, dir_.string() + ": scales '" + scale_name + "' are " +
                                                  std::string(to_string(scale_info.dtype)) +
                                                  "; they must be F32, BF16 or F16");
  }
  if (scale_info.shape != geometry.scale_shape()) {
    return error(ErrorCode::kInvalidArgument,
                 dir_.string() + ": scales '" + scale_name + "' have shape " +
                     shape_to_string(scale_info.shape) + "; weight_block_size [" +
                     std::to_string(geometry.block_rows) + ", " +
                     std::to_string(geometry.block_cols) + "] over " + shape_to_string(spec.shape) +
                     " implies " + shape_to_string(geometry.scale_shape()));
  }
  std::vector<float> scales(static_cast<std::size_t>(scale_info.num_elements()));
  convert_to_f32(scale_info.dtype, files_[scale->second.file_idx].data(scale_info), 0, scales);
  if (auto bad = first_invalid_scale(scales)) {
    return error(ErrorCode::kDataLoss,
                 dir_.string() + ": scales '" + scale_name + "' hold " +
                     std::to_string(scales[*bad]) + " at element " + std::to_string(*bad) +
                     "; a block scale must be finite and positive: the checkpoint is corrupt");
  }
  Location& weight = tensors_.find(spec.name)->second;
  weight.scale_file_idx = scale->second.file_idx;
  weight.scale = &scale_info;
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
  if (out.size() != static_cast<std::size_t>(info.num_elements())) {
    return error(ErrorCode::kInvalidArgument, "read_f32_into('" + std::string(name) +
                                                  "'): buffer holds " + std::to_string(out.size()) +
                                                  " floats, the tensor " +
                                                  std::to_string(info.num_elements()));
  }
  return read_elements(name, location, 0, out);
}

Status Checkpoint::read_f32_elements(std::string_view name, int64_t first_element,
                                     std::span<float> out) const {
  EEP_ASSIGN_OR_RETURN(const Location location, locate(name));
  return read_elements(name, location, first_element, out);
}

Status Checkpoint::read_elements(std::string_view name, const Location& location,
                                 int64_t first_element, std::span<float> out) const {
  const TensorInfo& info = *location.info;
  const auto num_out = static_cast<int64_t>(out.size());
  if (first_element < 0 || first_element > info.num_elements() - num_out) {
    return error(ErrorCode::kInvalidArgument,
                 "reading elements [" + std::to_string(first_element) + ", " +
                     std::to_string(first_element + num_out) + ") of tensor '" + std::string(name) +
                     "', which has " + std::to_string(info.num_elements()));
  }
  const std::span<const std::byte> bytes = files_[location.file_idx].data(info);
  if (info.dtype == DType::kF8E4M3) {
    if (location.scale == nullptr) {  // a tensor beside the model's, which open() did not check
      return error(ErrorCode::kInvalidArgument,
                   dir_.string() + ": tensor '" + std::string(name) +
                       "' is F8_E4M3 but not one of the model's quantized weights, so it has no "
                       "checked block scales to be read with");
    }
    const TensorInfo& scale = *location.scale;
    // Small (1/16384 of the weight with 128 x 128 blocks), and validated by open().
    std::vector<float> scales(static_cast<std::size_t>(scale.num_elements()));
    convert_to_f32(scale.dtype, files_[location.scale_file_idx].data(scale), 0, scales);
    const Fp8BlockGeometry geometry{info.shape[0], info.shape[1], config_.quantization->block_rows,
                                    config_.quantization->block_cols};
    dequantize_fp8_blocks(geometry, bytes, scales, first_element, out);
  } else if (is_weight_dtype(info.dtype)) {
    convert_to_f32(info.dtype, bytes, static_cast<std::size_t>(first_element), out);
  } else {
    return error(ErrorCode::kInvalidArgument, dir_.string() + ": tensor '" + std::string(name) +
                                                  "' is " + std::string(to_string(info.dtype)) +
                                                  ", not a floating-point weight");
  }
  if (auto bad = first_non_finite(std::span<const float>(out))) {
    return non_finite_error(name, static_cast<std::size_t>(first_element) + *bad);
  }
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
  const std::string gate_up_name = tensor_names::fused_gate_up_proj(layer_idx);
  const std::string down_name = tensor_names::fused_down_proj(layer_idx);
  EEP_ASSIGN_OR_RETURN(const Location gate_up, locate(gate_up_name));
  EEP_ASSIGN_OR_RETURN(const Location down, locate(down_name));
  const auto num_matrix_elements = static_cast<int64_t>(matrix_elements);
  const int64_t gate_first = int64_t{expert_idx} * 2 * num_matrix_elements;
  EEP_RETURN_IF_ERROR(read_elements(gate_up_name, gate_up, gate_first, out.gate_proj));
  EEP_RETURN_IF_ERROR(
      read_elements(gate_up_name, gate_up, gate_first + num_matrix_elements, out.up_proj));
  return read_elements(down_name, down, int64_t{expert_idx} * num_matrix_elements, out.down_proj);
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
