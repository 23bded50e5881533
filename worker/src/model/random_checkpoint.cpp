#include "eep/worker/model/random_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "eep/common/check.h"
#include "eep/worker/model/block_fp8.h"
#include "eep/worker/model/checkpoint.h"
#include "eep/worker/model/safetensors.h"

namespace eep::worker {
namespace {

using nlohmann::json;

// Elements generated and converted per append: bounds memory whatever the tensor size.
constexpr std::size_t kChunkElements = 1 << 24;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t tensor_key(uint64_t seed, std::string_view name) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a
  for (char c : name) hash = (hash ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return splitmix64(hash ^ splitmix64(seed));
}

// How one logical tensor's values are drawn: offset + scale * U(-sqrt3, sqrt3) (std = scale).
// row_bias: the router skew, added by emit_tensor as row_bias / (row_idx + 1) per element.
struct Distribution {
  uint64_t key = 0;
  float scale = 0.0f;
  float offset = 0.0f;
  float row_bias = 0.0f;
};

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// `fan_in`: the last dimension of the [out, in] matrix the name belongs to.
Distribution distribution_for(const std::string& name, int64_t fan_in, const ModelConfig& config,
                              const RandomCheckpointOptions& options) {
  Distribution dist;
  dist.key = tensor_key(options.seed, name);
  if (name == tensor_names::embed_tokens()) {
    dist.scale = 1.0f;
    // With skew, every token carries a shared positive mean that the router rows point along.
    dist.offset = options.router_skew > 0.0 ? 1.0f : 0.0f;
  } else if (ends_with(name, "norm.weight")) {
    dist.scale = 0.02f;
    dist.offset = 1.0f;
  } else {
    dist.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
    if (ends_with(name, "mlp.gate.weight")) {
      // Row e gets +A/(e+1)/H per element: its logit gains A/(e+1) times the normalised
      // hidden state's mean (about 0.7 with the embedding offset above).
      dist.row_bias = static_cast<float>(options.router_skew / config.hidden_size);
    }
  }
  return dist;
}

void generate(const Distribution& dist, uint64_t first, std::span<float> out) {
  constexpr float kSqrt3 = 1.7320508f;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const uint64_t element_idx = first + i;
    const uint64_t bits = splitmix64(dist.key + element_idx);
    const float unit = static_cast<float>(bits >> 40) * (2.0f / 16777216.0f) - 1.0f;  // [-1, 1)
    out[i] = dist.offset + dist.scale * kSqrt3 * unit;
  }
}

class TensorStreamer {
 public:
  // Generates `num_elements` values of `dist` and appends them to `writer` as `dtype` (F32, BF16
  // or F16) in chunks. Each chunk is generated and converted by several threads (a qwen3-30b-a3b
  // checkpoint is 61 GB).
  Status emit(const Distribution& dist, uint64_t num_elements, DType dtype,
              SafetensorsWriter& writer) {
    const std::size_t width = dtype_size_bytes(dtype);
    for (uint64_t first = 0; first < num_elements; first += kChunkElements) {
      const auto count =
          static_cast<std::size_t>(std::min<uint64_t>(kChunkElements, num_elements - first));
      values_.resize(count);
      bytes_.resize(count * width);
      const std::size_t num_parts =
          count < (1u << 20) ? 1
                             : std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
      const std::size_t part = (count + num_parts - 1) / num_parts;
      std::vector<std::future<void>> parts;
      for (std::size_t begin = 0; begin < count; begin += part) {
        const std::size_t n = std::min(part, count - begin);
        parts.push_back(
            std::async(num_parts == 1 ? std::launch::deferred : std::launch::async, [&, begin, n] {
              generate(dist, first + begin, {values_.data() + begin, n});
              convert({values_.data() + begin, n}, dtype, bytes_.data() + begin * width);
            }));
      }
      for (auto& p : parts) p.get();
      EEP_RETURN_IF_ERROR(writer.append(bytes_));
    }
    return Status::ok();
  }

  // Converts to `dtype` and appends.
  Status emit_values(std::span<const float> values, DType dtype, SafetensorsWriter& writer) {
    bytes_.resize(values.size() * dtype_size_bytes(dtype));
    convert(values, dtype, bytes_.data());
    return writer.append(bytes_);
  }

  // Generates the [rows, cols] weight of `dist` whole, quantizes it block by block and appends
  // the codes; its scales wait for their own tensor (emit_fp8_scales), which follows the weight.
  Status emit_fp8(const Distribution& dist, const TensorSpec& spec,
                  const Fp8BlockQuantization& quantization, SafetensorsWriter& writer) {
    const Fp8BlockGeometry geometry{spec.shape[0], spec.shape[1], quantization.block_rows,
                                    quantization.block_cols};
    const int64_t num_col_blocks = geometry.num_col_blocks();
    values_.resize(static_cast<std::size_t>(geometry.rows * geometry.cols));
    bytes_.resize(values_.size());
    std::vector<float> scales(static_cast<std::size_t>(geometry.num_row_blocks() * num_col_blocks));
    // Bands of whole row blocks are weights of their own (their rows, their scale rows), so
    // several threads generate and quantize a large weight's bands side by side.
    const std::size_t num_parts =
        values_.size() < (1u << 20)
            ? 1
            : std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
    const int64_t num_bands = geometry.num_row_blocks();
    const int64_t bands_per_part =
        (num_bands + static_cast<int64_t>(num_parts) - 1) / static_cast<int64_t>(num_parts);
    std::vector<std::future<void>> parts;
    for (int64_t first_band = 0; first_band < num_bands; first_band += bands_per_part) {
      parts.push_back(
          std::async(num_parts == 1 ? std::launch::deferred : std::launch::async, [&, first_band] {
            const int64_t row_begin = first_band * geometry.block_rows;
            const int64_t row_end =
                std::min(geometry.rows, (first_band + bands_per_part) * geometry.block_rows);
            const Fp8BlockGeometry band{row_end - row_begin, geometry.cols, geometry.block_rows,
                                        geometry.block_cols};
            const auto offset = static_cast<std::size_t>(row_begin * geometry.cols);
            const auto count = static_cast<std::size_t>(band.rows * band.cols);
            const std::span<float> band_values(values_.data() + offset, count);
            generate(dist, offset, band_values);
            quantize_fp8_blocks(
                band, band_values, std::span<std::byte>(bytes_.data() + offset, count),
                std::span<float>(scales.data() + first_band * num_col_blocks,
                                 static_cast<std::size_t>(band.num_row_blocks() * num_col_blocks)));
          }));
    }
    for (auto& part : parts) part.get();
    pending_scales_[tensor_names::weight_scale_inv(spec.name)] = std::move(scales);
    return writer.append(bytes_);
  }

  // The scales emit_fp8 computed for the weight whose weight_scale_inv `spec` is, as F32.
  Status emit_fp8_scales(const TensorSpec& spec, SafetensorsWriter& writer) {
    const auto it = pending_scales_.find(spec.name);
    EEP_CHECK_MSG(it != pending_scales_.end(), spec.name << " before its weight");
    const std::vector<float> scales = std::move(it->second);
    pending_scales_.erase(it);
    return emit_values(scales, DType::kF32, writer);
  }

 private:
  static void convert(std::span<const float> values, DType dtype, std::byte* out) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (dtype == DType::kF32) {
        std::memcpy(out + 4 * i, &values[i], 4);
      } else {
        const uint16_t half =
            dtype == DType::kBF16 ? fp32_to_bf16(values[i]) : fp32_to_fp16(values[i]);
        std::memcpy(out + 2 * i, &half, 2);
      }
    }
  }

  std::vector<float> values_;
  std::vector<std::byte> bytes_;
  std::map<std::string, std::vector<float>> pending_scales_;  // scale tensor name -> scales
};

// Streams one tensor of the file. Fused expert tensors are assembled from the per-expert
// logical tensors so both layouts hold the same numbers.
Status emit_tensor(const TensorSpec& spec, int layer_idx, const ModelConfig& config,
                   const RandomCheckpointOptions& options, TensorStreamer& streamer,
                   SafetensorsWriter& writer) {
  if (spec.dtype == DType::kF8E4M3) {
    return streamer.emit_fp8(distribution_for(spec.name, spec.shape.back(), config, options), spec,
                             *config.quantization, writer);
  }
  if (spec.name.ends_with(".weight_scale_inv")) return streamer.emit_fp8_scales(spec, writer);
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.moe_intermediate_size;
  const auto matrix_elements = static_cast<uint64_t>(hidden * inter);
  if (layer_idx >= 0 && spec.name == tensor_names::fused_gate_up_proj(layer_idx)) {
    for (int e = 0; e < config.num_experts; ++e) {
      for (const auto& name : {tensor_names::expert_gate_proj(layer_idx, e),
                               tensor_names::expert_up_proj(layer_idx, e)}) {
        EEP_RETURN_IF_ERROR(streamer.emit(distribution_for(name, hidden, config, options),
                                          matrix_elements, spec.dtype, writer));
      }
    }
    return Status::ok();
  }
  if (layer_idx >= 0 && spec.name == tensor_names::fused_down_proj(layer_idx)) {
    for (int e = 0; e < config.num_experts; ++e) {
      const auto name = tensor_names::expert_down_proj(layer_idx, e);
      EEP_RETURN_IF_ERROR(streamer.emit(distribution_for(name, inter, config, options),
                                        matrix_elements, spec.dtype, writer));
    }
    return Status::ok();
  }
  uint64_t num_elements = 1;
  for (int64_t dim : spec.shape) num_elements *= static_cast<uint64_t>(dim);
  if (layer_idx >= 0 && options.router_skew > 0.0 && spec.name == tensor_names::router(layer_idx)) {
    // Skewed router: every token shares the embedding offset direction, so a row's random mean
    // would act as a random fixed preference; centre each row's random part so only the Zipf
    // bias prefers experts. Small ([E, H]), so built whole.
    Distribution random_part = distribution_for(spec.name, hidden, config, options);
    const float bias = random_part.row_bias;
    random_part.row_bias = 0.0f;
    std::vector<float> values(static_cast<std::size_t>(num_elements));
    generate(random_part, 0, values);
    for (int e = 0; e < config.num_experts; ++e) {
      const std::span<float> row(&values[static_cast<std::size_t>(e * hidden)],
                                 static_cast<std::size_t>(hidden));
      double mean = 0;
      for (float v : row) mean += v;
      mean /= static_cast<double>(hidden);
      for (float& v : row) v += static_cast<float>(bias / (e + 1) - mean);
    }
    return streamer.emit_values(values, spec.dtype, writer);
  }
  return streamer.emit(distribution_for(spec.name, spec.shape.back(), config, options),
                       num_elements, spec.dtype, writer);
}

// "model.layers.12.xxx" -> 12; -1 for tensors outside the layers.
int layer_of(const std::string& name) {
  constexpr std::string_view kPrefix = "model.layers.";
  if (name.rfind(kPrefix, 0) != 0) return -1;
  return std::atoi(name.c_str() + kPrefix.size());
}

Status write_text_file(const std::filesystem::path& path, const std::string& text) {
  auto temp = path;
  temp += ".tmp";
  {
    std::ofstream file(temp, std::ios::trunc);
    file << text;
    if (!file.flush()) return error(ErrorCode::kIoError, "cannot write " + temp.string());
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) return error(ErrorCode::kIoError, "cannot rename to " + path.string());
  return Status::ok();
}

std::string shard_name(std::size_t shard_idx, std::size_t num_shards) {
  char name[64];
  std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", shard_idx + 1, num_shards);
  return name;
}

}  // namespace

std::vector<std::string_view> model_preset_names() {
  return {"tiny", "small", "qwen3-30b-a3b"};
}

Result<ModelConfig> model_preset(std::string_view name) {
  ModelConfig config;
  config.norm_topk_prob = true;
  config.rms_norm_eps = 1e-6;
  config.rope_theta = 1e6;
  config.tie_word_embeddings = false;
  config.dtype = "bfloat16";
  if (name == "tiny") {
    config.vocab_size = 512;
    config.hidden_size = 128;
    config.num_hidden_layers = 4;
    config.num_attention_heads = 4;
    config.num_key_value_heads = 2;
    config.head_dim = 32;
    config.moe_intermediate_size = 64;
    config.num_experts = 16;
    config.num_experts_per_tok = 4;
    config.max_position_embeddings = 4096;
  } else if (name == "small") {
    config.vocab_size = 4096;
    config.hidden_size = 512;
    config.num_hidden_layers = 8;
    config.num_attention_heads = 8;
    config.num_key_value_heads = 4;
    config.head_dim = 64;
    config.moe_intermediate_size = 256;
    config.num_experts = 32;
    config.num_experts_per_tok = 4;
    config.max_position_embeddings = 8192;
  } else if (name == "qwen3-30b-a3b") {
    // Qwen/Qwen3-30B-A3B config.json.
    config.vocab_size = 151936;
    config.hidden_size = 2048;
    config.num_hidden_layers = 48;
    config.num_attention_heads = 32;
    config.num_key_value_heads = 4;
    config.head_dim = 128;
    config.moe_intermediate_size = 768;
    config.num_experts = 128;
    config.num_experts_per_tok = 8;
    config.max_position_embeddings = 40960;
    config.bos_token_id = 151643;
    config.eos_token_ids = {151645};
  } else {
    return error(ErrorCode::kInvalidArgument, "unknown model preset '" + std::string(name) +
                                                  "'; use tiny, small or qwen3-30b-a3b");
  }
  return config;
}

Status write_random_checkpoint(const ModelConfig& config, const RandomCheckpointOptions& options,
                               const std::filesystem::path& dir) {
  EEP_RETURN_IF_ERROR(config.validate());
  const bool fp8 = options.dtype == DType::kF8E4M3;
  if (!is_weight_dtype(options.dtype) && !fp8) {
    return error(ErrorCode::kInvalidArgument, "weights must be F32, BF16, F16 or F8_E4M3");
  }
  if (fp8 && options.expert_layout == ExpertLayout::kFused) {
    return error(ErrorCode::kInvalidArgument,
                 "FP8 checkpoints have per-expert tensors; the fused expert layout is not written "
                 "in F8_E4M3");
  }
  if (fp8 && (options.fp8_block_rows < 1 || options.fp8_block_cols < 1)) {
    return error(ErrorCode::kInvalidArgument, "the FP8 block size must be positive");
  }
  if (!(options.router_skew >= 0.0)) {
    return error(ErrorCode::kInvalidArgument, "router skew must be >= 0");
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return error(ErrorCode::kIoError, "cannot create " + dir.string() + ": " + ec.message());

  ModelConfig written = config;
  written.dtype = options.dtype == DType::kF32   ? "float32"
                  : options.dtype == DType::kF16 ? "float16"
                                                 : "bfloat16";  // also FP8's unquantized tensors
  written.quantization.reset();
  if (fp8) {
    Fp8BlockQuantization quantization;
    quantization.block_rows = options.fp8_block_rows;
    quantization.block_cols = options.fp8_block_cols;
    written.quantization = quantization;
  }
  EEP_RETURN_IF_ERROR(write_text_file(dir / kConfigFileName, written.to_json().dump(2) + "\n"));

  // Greedy sharding in tensor order; a tensor larger than the limit gets a shard of its own.
  const auto specs = checkpoint_tensor_specs(written, options.expert_layout, options.dtype);
  std::vector<std::vector<std::size_t>> shards(1);
  uint64_t shard_bytes = 0;
  uint64_t total_bytes = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const uint64_t bytes = specs[i].num_bytes();
    if (!shards.back().empty() && shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  // A directory holds one layout: drop what an earlier run may have left.
  std::filesystem::remove(dir / kSingleFileName, ec);
  std::filesystem::remove(dir / kIndexFileName, ec);

  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  TensorStreamer streamer;
  json weight_map = json::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    const std::string file_name =
        shards.size() == 1 ? std::string(kSingleFileName) : shard_name(s, shards.size());
    std::vector<TensorSpec> shard_specs;
    for (std::size_t i : shards[s]) {
      shard_specs.push_back(specs[i]);
      weight_map[specs[i].name] = file_name;
    }
    EEP_ASSIGN_OR_RETURN(auto writer,
                         SafetensorsWriter::create(dir / file_name, shard_specs, metadata));
    for (const auto& spec : shard_specs) {
      EEP_RETURN_IF_ERROR(
          emit_tensor(spec, layer_of(spec.name), written, options, streamer, writer));
    }
    EEP_RETURN_IF_ERROR(writer.finish());
  }
  if (shards.size() > 1) {
    const json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    EEP_RETURN_IF_ERROR(write_text_file(dir / kIndexFileName, index.dump(2) + "\n"));
  }
  return Status::ok();
}

}  // namespace eep::worker
