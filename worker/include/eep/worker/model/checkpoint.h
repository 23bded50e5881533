// A Hugging Face Qwen3-MoE checkpoint directory: config.json plus model.safetensors, or shards
// listed by model.safetensors.index.json. open() validates everything before any weight is read:
// the config, every file's header, the index, and the presence, dtype and shape of every tensor
// the config implies. Reads widen BF16/F16 to fp32 on the fly from the memory mapping, so a rank
// that loads only its own experts only touches those pages.
//
// FP8 checkpoints (config.json with a quantization_config, see quantization_config.h): the
// attention and expert projections may be F8_E4M3 with a weight_scale_inv beside each (layout in
// block_fp8.h); open() checks each scale tensor's presence, dtype, shape and values, and every
// fp32 read dequantizes block by block, so callers see fp32 weights whatever the file holds.
//
// Thread-safety: after open(), every const method may be called from several threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eep/common/status.h"
#include "eep/worker/model/model_config.h"
#include "eep/worker/model/safetensors.h"
#include "eep/worker/model/tensor_names.h"

namespace eep::worker {

inline constexpr std::string_view kConfigFileName = "config.json";
inline constexpr std::string_view kSingleFileName = "model.safetensors";
inline constexpr std::string_view kIndexFileName = "model.safetensors.index.json";

// One expert's SwiGLU weights in fp32, row-major: gate_proj and up_proj [I, H], down_proj [H, I].
struct ExpertWeights {
  std::vector<float> gate_proj;
  std::vector<float> up_proj;
  std::vector<float> down_proj;
};

// Destination buffers for read_expert_into; each must hold exactly I*H floats.
struct ExpertWeightsSpan {
  std::span<float> gate_proj;
  std::span<float> up_proj;
  std::span<float> down_proj;
};

class Checkpoint {
 public:
  // kNotFound: no config.json or no weights file; kDataLoss: a file is truncated or corrupt, a
  // tensor the config implies (or an F8_E4M3 weight's scales) is missing, or a scale is NaN,
  // infinite, zero or negative; kInvalidArgument: unsupported config, a weight of a dtype other
  // than F32/BF16/F16 (F8_E4M3 only for the quantizable projections of an FP8 config), or a
  // tensor whose shape disagrees with config.json.
  static Result<Checkpoint> open(const std::filesystem::path& dir);

  const ModelConfig& config() const { return config_; }
  const std::filesystem::path& dir() const { return dir_; }
  ExpertLayout expert_layout() const { return expert_layout_; }
  std::size_t num_files() const { return files_.size(); }

  // nullptr when the checkpoint has no such tensor.
  const TensorInfo* find(std::string_view name) const;
  // The tensor's stored bytes (little-endian, its own dtype; F8_E4M3 codes without their
  // scales), e.g. to upload bf16 as is. Every
  // read (this one and the fp32 ones below) refuses a tensor holding a NaN or an infinity
  // (kDataLoss naming it): a model with one emits garbage.
  Result<std::span<const std::byte>> raw_data(std::string_view name) const;

  // Reads a tensor as fp32 after checking its shape: a mismatch is kInvalidArgument naming the
  // tensor, the expected and the found shape. `out` must hold exactly the element count.
  Status read_f32_into(std::string_view name, const std::vector<int64_t>& expected_shape,
                       std::span<float> out) const;
  Result<std::vector<float>> read_f32(std::string_view name,
                                      const std::vector<int64_t>& expected_shape) const;
  // Elements [first_element, first_element + out.size()) of a weight, counted row-major over the
  // whole tensor, as fp32: widened from F32/BF16/F16 or dequantized from F8_E4M3 with its block
  // scales. The one path every host-side weight read takes (the reads above, read_expert_into,
  // the CUDA backend's bf16 upload), so FP8 serves wherever BF16 does. kInvalidArgument for a
  // range outside the tensor or a tensor that is not a weight.
  Status read_f32_elements(std::string_view name, int64_t first_element,
                           std::span<float> out) const;

  // One expert's weights, from whichever layout the checkpoint uses.
  Status read_expert_into(int layer_idx, int expert_idx, const ExpertWeightsSpan& out) const;
  Result<ExpertWeights> read_expert(int layer_idx, int expert_idx) const;

 private:
  struct Location {
    std::size_t file_idx = 0;
    const TensorInfo* info = nullptr;  // points into files_[file_idx], which never moves
    // For an F8_E4M3 weight: its weight_scale_inv (validated by open()).
    std::size_t scale_file_idx = 0;
    const TensorInfo* scale = nullptr;
  };

  Status validate_tensors();
  // An F8_E4M3 weight `spec`: allowed by the config and the tensor's role, its scales valid.
  Status validate_fp8_weight(const TensorSpec& spec);
  Status read_elements(std::string_view name, const Location& location, int64_t first_element,
                       std::span<float> out) const;
  Result<Location> locate(std::string_view name) const;
  // kDataLoss naming the tensor and the element that is NaN or infinite.
  Status non_finite_error(std::string_view name, std::size_t element_idx) const;

  std::filesystem::path dir_;
  ModelConfig config_;
  ExpertLayout expert_layout_ = ExpertLayout::kPerExpert;
  // Location::info points into a file's tensor list: a SafetensorsFile owns that list on the
  // heap, so moving files (vector growth, moving the Checkpoint) keeps the addresses valid.
  std::vector<SafetensorsFile> files_;
  std::map<std::string, Location, std::less<>> tensors_;
};

}  // namespace eep::worker
