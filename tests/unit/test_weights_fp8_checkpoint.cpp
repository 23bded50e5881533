// FP8 checkpoints end to end on the host: what eep-mkmodel --dtype fp8 writes, what Checkpoint
// accepts and refuses, and a generation on FP8 weights against the same weights dequantized and
// written as F32.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/worker/engine/backend.h"
#include "eep/worker/engine/generate.h"
#include "eep/worker/engine/kv_cache.h"
#include "eep/worker/model/block_fp8.h"
#include "eep/worker/model/checkpoint.h"
#include "eep/worker/model/random_checkpoint.h"
#include "eep/worker/model/safetensors.h"
#include "eep/worker/model/tensor_names.h"
#include "scratch_dir.h"

namespace test_weights_fp8_checkpoint {

using namespace eep::worker;
using eep::ErrorCode;
namespace fs = std::filesystem;
namespace tn = tensor_names;

fs::path fp8_fresh_dir(const std::string& name) {
  return eep::testing::fresh_scratch_dir("eep_test_fp8", name);
}

ModelConfig fp8_tiny_config() {
  auto config = model_preset("tiny");
  REQUIRE(config.is_ok());
  return *config;
}

// The tiny model in FP8 with 48 x 40 blocks: every projection has several blocks, partial ones
// at the right and bottom edges (hidden 128, intermediate 64, kv 64).
fs::path write_fp8_tiny(const std::string& name, DType dtype = DType::kF8E4M3) {
  const auto dir = fp8_fresh_dir(name);
  RandomCheckpointOptions options;
  options.seed = 3;
  options.dtype = dtype;
  options.fp8_block_rows = 48;
  options.fp8_block_cols = 40;
  REQUIRE(write_random_checkpoint(fp8_tiny_config(), options, dir).is_ok());
  return dir;
}

struct StoredTensor {
  TensorSpec spec;
  std::vector<std::byte> bytes;
};

// Every tensor of a single-file checkpoint, to rewrite it edited.
std::vector<StoredTensor> read_stored(const fs::path& dir) {
  auto file = SafetensorsFile::open(dir / kSingleFileName);
  REQUIRE(file.is_ok());
  std::vector<StoredTensor> tensors;
  for (const TensorInfo& info : file->tensors()) {
    const auto data = file->data(info);
    tensors.push_back({{info.name, info.dtype, info.shape}, {data.begin(), data.end()}});
  }
  return tensors;
}

void write_stored(const fs::path& dir, const std::vector<StoredTensor>& tensors) {
  std::vector<TensorData> data;
  for (const StoredTensor& tensor : tensors) data.push_back({tensor.spec, tensor.bytes});
  REQUIRE(write_safetensors(dir / kSingleFileName, data).is_ok());
}

StoredTensor& stored(std::vector<StoredTensor>& tensors, const std::string& name) {
  for (StoredTensor& tensor : tensors) {
    if (tensor.spec.name == name) return tensor;
  }
  FAIL("no tensor " << name);
  return tensors.front();
}

std::vector<std::byte> f32_bytes(const std::vector<float>& values) {
  std::vector<std::byte> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

void write_json(const fs::path& path, const nlohmann::json& value) {
  std::ofstream(path, std::ios::trunc) << value.dump(2);
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return nlohmann::json::parse(text.str());
}

// Writes every weight of `from` as Checkpoint reads it (fp32, FP8 dequantized) into `to` as an
// unquantized F32 checkpoint of the same shape.
void write_dequantized_f32(const Checkpoint& from, const fs::path& to) {
  ModelConfig config = from.config();
  config.quantization.reset();
  config.dtype = "float32";
  fs::create_directories(to);
  write_json(to / kConfigFileName, config.to_json());
  std::vector<StoredTensor> tensors;
  for (const TensorSpec& spec :
       checkpoint_tensor_specs(config, ExpertLayout::kPerExpert, DType::kF32)) {
    auto values = from.read_f32(spec.name, spec.shape);
    REQUIRE(values.is_ok());
    tensors.push_back({spec, f32_bytes(*values)});
  }
  write_stored(to, tensors);
}

GenerateResult generate_greedy(const fs::path& dir, const std::vector<int32_t>& prompt) {
  auto checkpoint = Checkpoint::open(dir);
  REQUIRE(checkpoint.is_ok());
  BackendOptions options;
  options.num_kv_blocks = 8;
  options.max_num_seqs = 1;
  auto backend = make_backend(options, checkpoint->config());
  REQUIRE(backend.is_ok());
  auto num_blocks = install_single_rank(**backend, *checkpoint, options.num_kv_blocks);
  REQUIRE(num_blocks.is_ok());
  KvBlockManager blocks(*num_blocks, options.block_size);
  GenerateOptions generate_options;
  generate_options.max_tokens = 12;
  generate_options.ignore_eos = true;
  generate_options.keep_logits = true;
  auto result = generate((*backend)->executor(), blocks, prompt, generate_options);
  REQUIRE(result.is_ok());
  return std::move(result).value();
}

// Opens `dir` expecting `code` and a message containing `says`.
void check_refused(const fs::path& dir, ErrorCode code, const std::string& says) {
  auto checkpoint = Checkpoint::open(dir);
  REQUIRE_FALSE(checkpoint.is_ok());
  INFO(checkpoint.status().to_string());
  CHECK(checkpoint.status().code() == code);
  CHECK_THAT(checkpoint.status().message(), Catch::Contains(says));
}

}  // namespace test_weights_fp8_checkpoint

using namespace test_weights_fp8_checkpoint;

TEST_CASE("fp8 checkpoint: the tensor list has a scale after each quantized projection",
          "[fp8][checkpoint]") {
  ModelConfig config = fp8_tiny_config();
  Fp8BlockQuantization quantization;
  quantization.block_rows = 48;
  quantization.block_cols = 40;
  config.quantization = quantization;
  const auto specs = checkpoint_tensor_specs(config, ExpertLayout::kPerExpert, DType::kF8E4M3);
  int num_scales = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& spec = specs[i];
    INFO(spec.name);
    if (spec.name.ends_with("weight_scale_inv")) {
      ++num_scales;
      REQUIRE(i > 0);
      const TensorSpec& weight = specs[i - 1];
      CHECK(weight.dtype == DType::kF8E4M3);
      CHECK(spec.name == tn::weight_scale_inv(weight.name));
      CHECK(spec.dtype == DType::kF32);
      CHECK(spec.shape == Fp8BlockGeometry{weight.shape[0], weight.shape[1], 48, 40}.scale_shape());
    } else {
      CHECK(spec.dtype == (tn::is_fp8_quantizable(spec.name) ? DType::kF8E4M3 : DType::kBF16));
    }
  }
  // Per layer: q/k/v/o and 16 experts x gate/up/down.
  CHECK(num_scales == 4 * (4 + 16 * 3));
  CHECK(tn::weight_scale_inv(tn::q_proj(3)) == "model.layers.3.self_attn.q_proj.weight_scale_inv");
  CHECK(tn::is_fp8_quantizable(tn::o_proj(0)));
  CHECK(tn::is_fp8_quantizable(tn::expert_down_proj(2, 15)));
  for (const std::string& name :
       {tn::embed_tokens(), tn::lm_head(), tn::final_norm(), tn::router(0), tn::q_norm(0),
        tn::input_layernorm(1), tn::fused_gate_up_proj(0), tn::fused_down_proj(0)}) {
    CHECK_FALSE(tn::is_fp8_quantizable(name));
  }
}

TEST_CASE("fp8 checkpoint: a generated FP8 model opens and reads dequantized block by block",
          "[fp8][checkpoint]") {
  const auto fp8_dir = write_fp8_tiny("fp8");
  const auto f32_dir = write_fp8_tiny("f32", DType::kF32);  // same seed, unquantized
  auto fp8 = Checkpoint::open(fp8_dir);
  REQUIRE(fp8.is_ok());
  auto f32 = Checkpoint::open(f32_dir);
  REQUIRE(f32.is_ok());
  REQUIRE(fp8->config().quantization.has_value());
  CHECK(fp8->config().quantization->block_rows == 48);
  CHECK(fp8->config().quantization->block_cols == 40);
  CHECK(read_json(fp8_dir / kConfigFileName)["quantization_config"]["fmt"] == "e4m3");
  CHECK_FALSE(f32->config().quantization.has_value());

  CHECK(fp8->find(tn::router(0))->dtype == DType::kBF16);
  CHECK(fp8->find(tn::final_norm())->dtype == DType::kBF16);
  for (const auto& [name, shape] :
       {std::pair{tn::q_proj(1), std::vector<int64_t>{128, 128}},
        std::pair{tn::k_proj(1), std::vector<int64_t>{64, 128}},
        std::pair{tn::o_proj(1), std::vector<int64_t>{128, 128}},
        std::pair{tn::expert_gate_proj(2, 9), std::vector<int64_t>{64, 128}},
        std::pair{tn::expert_down_proj(2, 9), std::vector<int64_t>{128, 64}}}) {
    INFO(name);
    const TensorInfo* weight = fp8->find(name);
    const TensorInfo* scale = fp8->find(tn::weight_scale_inv(name));
    REQUIRE(weight != nullptr);
    REQUIRE(scale != nullptr);
    CHECK(weight->dtype == DType::kF8E4M3);
    CHECK(scale->dtype == DType::kF32);
    const Fp8BlockGeometry geometry{shape[0], shape[1], 48, 40};
    CHECK(scale->shape == geometry.scale_shape());

    // The reader's values are codes times their block's scale, by the definition...
    auto codes = fp8->raw_data(name);
    auto scales = fp8->read_f32(tn::weight_scale_inv(name), scale->shape);
    auto values = fp8->read_f32(name, shape);
    REQUIRE(codes.is_ok());
    REQUIRE(scales.is_ok());
    REQUIRE(values.is_ok());
    // ...and within e4m3's rounding of the unquantized weights of the same seed.
    auto exact = f32->read_f32(name, shape);
    REQUIRE(exact.is_ok());
    int num_wrong = 0;
    int num_out_of_bound = 0;
    for (int64_t row = 0; row < shape[0]; ++row) {
      for (int64_t col = 0; col < shape[1]; ++col) {
        const auto idx = static_cast<std::size_t>(row * shape[1] + col);
        const float block_scale =
            (*scales)[static_cast<std::size_t>((row / 48) * geometry.num_col_blocks() + col / 40)];
        const float expected = fp8_e4m3_to_fp32(static_cast<uint8_t>((*codes)[idx])) * block_scale;
        if ((*values)[idx] != expected) ++num_wrong;
        const float bound =
            std::max(std::fabs((*exact)[idx]) / 16, block_scale * std::ldexp(1.0f, -10)) * 1.0001f;
        if (std::fabs((*values)[idx] - (*exact)[idx]) > bound) ++num_out_of_bound;
      }
    }
    CHECK(num_wrong == 0);
    CHECK(num_out_of_bound == 0);
    CHECK(*values != *exact);  // quantized indeed

    // A range read (what the CUDA upload does) is a slice of the whole.
    std::vector<float> part(1000);
    REQUIRE(fp8->read_f32_elements(name, 37, part).is_ok());
    CHECK(std::equal(part.begin(), part.end(), values->begin() + 37));
  }
  auto expert = fp8->read_expert(2, 9);
  REQUIRE(expert.is_ok());
  CHECK(expert->down_proj == *fp8->read_f32(tn::expert_down_proj(2, 9), {128, 64}));
  std::vector<float> past_end(10);
  CHECK(fp8->read_f32_elements(tn::k_proj(0), 64 * 128 - 5, past_end).code() ==
        ErrorCode::kInvalidArgument);
}

TEST_CASE("fp8 checkpoint: weights of a million values, quantized by threads in bands, are right",
          "[fp8][checkpoint]") {
  ModelConfig config = fp8_tiny_config();
  config.num_hidden_layers = 1;
  config.hidden_size = 1024;
  config.moe_intermediate_size = 1024;  // each expert matrix: 2^20 values, written in bands
  config.num_experts = 2;
  config.num_experts_per_tok = 1;
  RandomCheckpointOptions options;
  options.seed = 11;
  const auto f32_dir = fp8_fresh_dir("big_f32");
  options.dtype = DType::kF32;
  REQUIRE(write_random_checkpoint(config, options, f32_dir).is_ok());
  const auto fp8_dir = fp8_fresh_dir("big_fp8");
  options.dtype = DType::kF8E4M3;
  options.fp8_block_rows = 96;  // 11 bands, the last one partial
  REQUIRE(write_random_checkpoint(config, options, fp8_dir).is_ok());
  auto f32 = Checkpoint::open(f32_dir);
  auto fp8 = Checkpoint::open(fp8_dir);
  REQUIRE(f32.is_ok());
  REQUIRE(fp8.is_ok());
  const std::string name = tn::expert_down_proj(0, 1);
  auto exact = f32->read_f32(name, {1024, 1024});
  auto values = fp8->read_f32(name, {1024, 1024});
  auto scales = fp8->read_f32(tn::weight_scale_inv(name), {11, 8});
  REQUIRE(exact.is_ok());
  REQUIRE(values.is_ok());
  REQUIRE(scales.is_ok());
  // Each scale is its block's largest magnitude / 448.
  for (int64_t row_block = 0; row_block < 11; ++row_block) {
    for (int64_t col_block = 0; col_block < 8; ++col_block) {
      float absmax = 0;
      for (int64_t r = row_block * 96; r < std::min<int64_t>(1024, row_block * 96 + 96); ++r) {
        for (int64_t c = col_block * 128; c < col_block * 128 + 128; ++c) {
          absmax = std::max(absmax, std::fabs((*exact)[static_cast<std::size_t>(r * 1024 + c)]));
        }
      }
      CHECK((*scales)[static_cast<std::size_t>(row_block * 8 + col_block)] == absmax / 448.0f);
    }
  }
  int num_out_of_bound = 0;
  for (int64_t row = 0; row < 1024; ++row) {
    for (int64_t col = 0; col < 1024; ++col) {
      const auto idx = static_cast<std::size_t>(row * 1024 + col);
      const float scale = (*scales)[static_cast<std::size_t>((row / 96) * 8 + col / 128)];
      const float bound =
          std::max(std::fabs((*exact)[idx]) / 16, scale * std::ldexp(1.0f, -10)) * 1.0001f;
      if (std::fabs((*values)[idx] - (*exact)[idx]) > bound) ++num_out_of_bound;
    }
  }
  CHECK(num_out_of_bound == 0);
}

TEST_CASE("fp8 checkpoint: generation equals generation on the dequantized weights as F32",
          "[fp8][checkpoint]") {
  const auto fp8_dir = write_fp8_tiny("fp8_generate");
  auto fp8 = Checkpoint::open(fp8_dir);
  REQUIRE(fp8.is_ok());
  const auto f32_dir = fp8_fresh_dir("fp8_dequantized");
  write_dequantized_f32(*fp8, f32_dir);
  auto f32 = Checkpoint::open(f32_dir);
  REQUIRE(f32.is_ok());
  CHECK_FALSE(f32->config().quantization.has_value());
  CHECK(f32->find(tn::q_proj(0))->dtype == DType::kF32);

  const std::vector<int32_t> prompt = {5, 77, 300, 12, 511, 3, 3, 90};
  const GenerateResult on_fp8 = generate_greedy(fp8_dir, prompt);
  const GenerateResult on_f32 = generate_greedy(f32_dir, prompt);
  CHECK(on_fp8.token_ids.size() == 12);
  CHECK(on_fp8.token_ids == on_f32.token_ids);
  // Bit for bit: the dequantized values are what the CPU backend loaded.
  CHECK(on_fp8.logits == on_f32.logits);
  // And the FP8 model is not the unquantized one: its logits moved.
  const GenerateResult on_bf16 = generate_greedy(write_fp8_tiny("bf16", DType::kBF16), prompt);
  CHECK(on_fp8.logits != on_bf16.logits);
}

TEST_CASE("fp8 checkpoint: hostile FP8 checkpoints are refused with a clear error",
          "[fp8][checkpoint]") {
  const auto good = write_fp8_tiny("fp8_good");
  REQUIRE(Checkpoint::open(good).is_ok());
  // A copy of the good checkpoint with its tensors edited.
  auto edited = [&](const std::string& name,
                    const std::function<void(std::vector<StoredTensor>&)>& edit) {
    const auto dir = fp8_fresh_dir(name);
    fs::copy_file(good / kConfigFileName, dir / kConfigFileName);
    auto tensors = read_stored(good);
    edit(tensors);
    write_stored(dir, tensors);
    return dir;
  };
  auto scale_values = [](StoredTensor& scale) {
    std::vector<float> values(scale.bytes.size() / 4);
    std::memcpy(values.data(), scale.bytes.data(), scale.bytes.size());
    return values;
  };

  SECTION("a quantized weight without its scales") {
    const auto dir = edited("no_scale", [](std::vector<StoredTensor>& tensors) {
      std::erase_if(tensors, [](const StoredTensor& t) {
        return t.spec.name == tn::weight_scale_inv(tn::k_proj(2));
      });
    });
    check_refused(dir, ErrorCode::kDataLoss,
                  "'" + tn::weight_scale_inv(tn::k_proj(2)) + "' are missing");
  }
  SECTION("scales of the wrong shape") {
    const auto dir = edited("scale_shape", [](std::vector<StoredTensor>& tensors) {
      StoredTensor& scale = stored(tensors, tn::weight_scale_inv(tn::o_proj(1)));
      scale.spec.shape = {4, 3};  // transposed: 12 values, as many as [3, 4] holds
    });
    check_refused(dir, ErrorCode::kInvalidArgument,
                  "have shape [4, 3]; weight_block_size [48, 40] over [128, 128] implies [3, 4]");
  }
  SECTION("scales that are not floating point") {
    const auto dir = edited("scale_dtype", [](std::vector<StoredTensor>& tensors) {
      stored(tensors, tn::weight_scale_inv(tn::expert_up_proj(0, 4))).spec.dtype = DType::kI32;
    });
    check_refused(dir, ErrorCode::kInvalidArgument, "are I32; they must be F32, BF16 or F16");
  }
  SECTION("a scale that is NaN, infinite, zero or negative") {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                      std::numeric_limits<float>::infinity(), 0.0f, -0.5f}) {
      INFO("scale " << bad);
      const auto dir = edited("scale_value", [&](std::vector<StoredTensor>& tensors) {
        StoredTensor& scale = stored(tensors, tn::weight_scale_inv(tn::expert_down_proj(3, 15)));
        std::vector<float> values = scale_values(scale);
        values[4] = bad;
        scale.bytes = f32_bytes(values);
      });
      check_refused(dir, ErrorCode::kDataLoss, "at element 4; a block scale must be finite and");
    }
  }
  SECTION("F8_E4M3 on a tensor FP8 checkpoints do not quantize") {
    for (const std::string& name : {tn::input_layernorm(0), tn::router(1), tn::lm_head()}) {
      INFO(name);
      const auto dir = edited("f8_norm", [&](std::vector<StoredTensor>& tensors) {
        StoredTensor& tensor = stored(tensors, name);
        tensor.spec.dtype = DType::kF8E4M3;
        tensor.bytes.resize(tensor.bytes.size() / 2, std::byte{0x38});  // 1.0
        const Fp8BlockGeometry geometry{
            tensor.spec.shape[0], tensor.spec.shape.size() > 1 ? tensor.spec.shape[1] : 1, 48, 40};
        std::vector<float> ones(
            static_cast<std::size_t>(geometry.num_row_blocks() * geometry.num_col_blocks()), 1.0f);
        tensors.push_back(
            {{tn::weight_scale_inv(name), DType::kF32, geometry.scale_shape()}, f32_bytes(ones)});
      });
      check_refused(dir, ErrorCode::kInvalidArgument,
                    "'" + name + "' is F8_E4M3, but only the attention projections");
    }
  }
  SECTION("F8_E4M3 weights without a quantization_config") {
    const auto dir = edited("no_quantization_config", [](std::vector<StoredTensor>&) {});
    nlohmann::json config = read_json(dir / kConfigFileName);
    config.erase("quantization_config");
    write_json(dir / kConfigFileName, config);
    check_refused(dir, ErrorCode::kInvalidArgument,
                  "'" + tn::q_proj(0) + "' is F8_E4M3 but config.json has no quantization_config");
  }
  SECTION("fused expert tensors in F8_E4M3") {
    const auto dir = edited("fused", [](std::vector<StoredTensor>& tensors) {
      for (const auto& [name, shape] :
           {std::pair{tn::fused_gate_up_proj(0), std::vector<int64_t>{16, 128, 128}},
            std::pair{tn::fused_down_proj(0), std::vector<int64_t>{16, 128, 64}}}) {
        tensors.push_back(
            {{name, DType::kF8E4M3, shape},
             std::vector<std::byte>(static_cast<std::size_t>(shape[0] * shape[1] * shape[2]))});
      }
    });
    check_refused(dir, ErrorCode::kInvalidArgument, "FP8 fused expert tensors are not supported");
  }
  SECTION("a NaN code in a quantized weight is refused where it is read") {
    const auto dir = edited("nan_code", [](std::vector<StoredTensor>& tensors) {
      stored(tensors, tn::v_proj(3)).bytes[70] = std::byte{0xff};
    });
    auto checkpoint = Checkpoint::open(dir);
    REQUIRE(checkpoint.is_ok());
    auto read = checkpoint->read_f32(tn::v_proj(3), {64, 128});
    REQUIRE_FALSE(read.is_ok());
    CHECK(read.status().code() == ErrorCode::kDataLoss);
    CHECK_THAT(read.status().message(), Catch::Contains("NaN or an infinity (element 70)"));
    CHECK(checkpoint->raw_data(tn::v_proj(3)).status().code() == ErrorCode::kDataLoss);
    CHECK(checkpoint->read_f32(tn::v_proj(2), {64, 128}).is_ok());
  }
  SECTION("BF16 scales, as some checkpoints store them, read like F32 ones") {
    const auto dir = edited("bf16_scales", [&](std::vector<StoredTensor>& tensors) {
      StoredTensor& scale = stored(tensors, tn::weight_scale_inv(tn::q_proj(0)));
      const std::vector<float> values = scale_values(scale);
      scale.spec.dtype = DType::kBF16;
      scale.bytes.resize(values.size() * 2);
      for (std::size_t i = 0; i < values.size(); ++i) {
        const uint16_t bits = fp32_to_bf16(values[i]);
        std::memcpy(scale.bytes.data() + 2 * i, &bits, 2);
      }
    });
    auto checkpoint = Checkpoint::open(dir);
    REQUIRE(checkpoint.is_ok());
    auto values = checkpoint->read_f32(tn::q_proj(0), {128, 128});
    auto codes = checkpoint->raw_data(tn::q_proj(0));
    auto scales = checkpoint->read_f32(tn::weight_scale_inv(tn::q_proj(0)), {3, 4});
    REQUIRE(values.is_ok());
    REQUIRE(codes.is_ok());
    REQUIRE(scales.is_ok());
    // Row 50, column 90: block (1, 2).
    CHECK((*values)[50 * 128 + 90] ==
          fp8_e4m3_to_fp32(static_cast<uint8_t>((*codes)[50 * 128 + 90])) * (*scales)[1 * 4 + 2]);
  }
  SECTION("an F8_E4M3 tensor beside the model's is not read without checked scales") {
    const auto dir = edited("extra_f8", [](std::vector<StoredTensor>& tensors) {
      tensors.push_back({{"extra.weight", DType::kF8E4M3, {4}}, std::vector<std::byte>(4)});
      tensors.push_back({{"extra.weight_scale_inv", DType::kF32, {1, 1}}, f32_bytes({1.0f})});
    });
    auto checkpoint = Checkpoint::open(dir);
    REQUIRE(checkpoint.is_ok());  // tensors the model does not use are ignored
    std::vector<float> out(4);
    const auto read = checkpoint->read_f32_elements("extra.weight", 0, out);
    CHECK(read.code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(read.message(), Catch::Contains("not one of the model's quantized weights"));
  }
  SECTION("a truncated FP8 file") {
    const auto dir = edited("truncated", [](std::vector<StoredTensor>&) {});
    fs::resize_file(dir / kSingleFileName, fs::file_size(dir / kSingleFileName) - 100);
    check_refused(dir, ErrorCode::kDataLoss, kSingleFileName.data());
  }
}
