#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eep/worker/model/checkpoint.h"
#include "eep/worker/model/random_checkpoint.h"
#include "eep/worker/model/tensor_names.h"
#include "scratch_dir.h"

namespace {

using namespace eep::worker;
using eep::ErrorCode;
namespace fs = std::filesystem;
using nlohmann::json;

fs::path fresh_dir(const std::string& name) {
  return eep::testing::fresh_scratch_dir("eep_test_checkpoint", name);
}

ModelConfig tiny() {
  auto config = model_preset("tiny");
  REQUIRE(config.is_ok());
  return *config;
}

fs::path write_tiny(const std::string& name, RandomCheckpointOptions options,
                    std::optional<ModelConfig> config = {}) {
  const auto dir = fresh_dir(name);
  REQUIRE(write_random_checkpoint(config.value_or(tiny()), options, dir).is_ok());
  return dir;
}

std::string read_text(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

void edit_json(const fs::path& path, const std::function<void(json&)>& edit) {
  json value = json::parse(read_text(path));
  edit(value);
  std::ofstream(path, std::ios::trunc) << value.dump();
}

}  // namespace

TEST_CASE("checkpoint: a generated tiny model opens and reads as fp32", "[checkpoint]") {
  RandomCheckpointOptions options;
  options.seed = 7;
  options.dtype = DType::kF32;
  const auto dir = write_tiny("tiny_f32", options);
  auto checkpoint = Checkpoint::open(dir);
  REQUIRE(checkpoint.is_ok());
  const ModelConfig& config = checkpoint->config();
  CHECK(config.to_json() == [&] {
    auto expected = tiny();
    expected.dtype = "float32";
    return expected.to_json();
  }());
  CHECK(checkpoint->expert_layout() == ExpertLayout::kPerExpert);
  CHECK(checkpoint->num_files() == 1);

  const int64_t vocab = config.vocab_size;
  const int64_t hidden = config.hidden_size;
  auto embed = checkpoint->read_f32(tensor_names::embed_tokens(), {vocab, hidden});
  REQUIRE(embed.is_ok());
  REQUIRE(embed->size() == static_cast<std::size_t>(vocab * hidden));
  double sum_squares = 0;
  for (float v : *embed) sum_squares += double{v} * v;
  CHECK(std::sqrt(sum_squares / embed->size()) == Approx(1.0).epsilon(0.05));

  auto norm = checkpoint->read_f32(tensor_names::final_norm(), {hidden});
  REQUIRE(norm.is_ok());
  for (float v : *norm) REQUIRE(std::abs(v - 1.0f) < 0.05f);

  const auto wrong = checkpoint->read_f32(tensor_names::q_proj(2), {hidden, 64});
  CHECK(wrong.status().code() == ErrorCode::kInvalidArgument);
  CHECK(wrong.status().message().find("model.layers.2.self_attn.q_proj.weight") !=
        std::string::npos);
  CHECK(wrong.status().message().find("[128, 128]") != std::string::npos);  // found
  CHECK(wrong.status().message().find("[128, 64]") != std::string::npos);   // expected
  CHECK(checkpoint->read_f32("model.nothing", {1}).status().code() == ErrorCode::kNotFound);
  CHECK(checkpoint->read_expert(4, 0).status().code() == ErrorCode::kInvalidArgument);
  CHECK(checkpoint->read_expert(0, 16).status().code() == ErrorCode::kInvalidArgument);

  // Generation is deterministic in the seed.
  options.seed = 7;
  const auto again = write_tiny("tiny_f32_again", options);
  CHECK(read_text(dir / "model.safetensors") == read_text(again / "model.safetensors"));
  options.seed = 8;
  const auto other = write_tiny("tiny_f32_other", options);
  CHECK(read_text(dir / "model.safetensors") != read_text(other / "model.safetensors"));
}

TEST_CASE("checkpoint: per-expert and fused layouts give identical expert weights",
          "[checkpoint]") {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    RandomCheckpointOptions options;
    options.seed = 3;
    options.dtype = dtype;
    const auto per_expert_dir = write_tiny("per_expert", options);
    options.expert_layout = ExpertLayout::kFused;
    const auto fused_dir = write_tiny("fused", options);
    auto per_expert = Checkpoint::open(per_expert_dir);
    auto fused = Checkpoint::open(fused_dir);
    REQUIRE(per_expert.is_ok());
    REQUIRE(fused.is_ok());
    CHECK(per_expert->expert_layout() == ExpertLayout::kPerExpert);
    CHECK(fused->expert_layout() == ExpertLayout::kFused);
    CHECK(fused->find(tensor_names::fused_gate_up_proj(0))->shape ==
          std::vector<int64_t>{16, 128, 128});
    CHECK(fused->find(tensor_names::fused_down_proj(3))->shape ==
          std::vector<int64_t>{16, 128, 64});
    for (int layer = 0; layer < 4; ++layer) {
      for (int expert = 0; expert < 16; ++expert) {
        auto a = per_expert->read_expert(layer, expert);
        auto b = fused->read_expert(layer, expert);
        REQUIRE(a.is_ok());
        REQUIRE(b.is_ok());
        REQUIRE(a->gate_proj == b->gate_proj);
        REQUIRE(a->up_proj == b->up_proj);
        REQUIRE(a->down_proj == b->down_proj);
        REQUIRE(a->gate_proj != a->up_proj);
      }
    }
    // The per-expert tensors are the expert's slices, read directly.
    auto gate = per_expert->read_f32(tensor_names::expert_gate_proj(1, 5), {64, 128});
    REQUIRE(gate.is_ok());
    CHECK(*gate == fused->read_expert(1, 5)->gate_proj);
  }
}

TEST_CASE("checkpoint: sharded checkpoints with an index", "[checkpoint]") {
  RandomCheckpointOptions options;
  options.seed = 11;
  const auto single_dir = write_tiny("single", options);
  options.max_shard_bytes = 256 << 10;
  const auto sharded_dir = write_tiny("sharded", options);
  REQUIRE(fs::exists(sharded_dir / kIndexFileName));
  REQUIRE_FALSE(fs::exists(sharded_dir / kSingleFileName));
  auto single = Checkpoint::open(single_dir);
  auto sharded = Checkpoint::open(sharded_dir);
  REQUIRE(single.is_ok());
  REQUIRE(sharded.is_ok());
  CHECK(sharded->num_files() > 5);
  CHECK(*single->read_f32(tensor_names::lm_head(), {512, 128}) ==
        *sharded->read_f32(tensor_names::lm_head(), {512, 128}));
  CHECK(single->read_expert(3, 15)->down_proj == sharded->read_expert(3, 15)->down_proj);

  const auto index_path = sharded_dir / kIndexFileName;
  const std::string original_index = read_text(index_path);
  const std::string victim = tensor_names::router(2);
  SECTION("a mapped shard is missing") {
    edit_json(index_path,
              [&](json& index) { index["weight_map"][victim] = "model-9.safetensors"; });
    CHECK(Checkpoint::open(sharded_dir).status().code() == ErrorCode::kNotFound);
  }
  SECTION("a tensor is mapped to a shard that does not hold it") {
    const std::string first_shard =
        json::parse(original_index)["weight_map"][tensor_names::embed_tokens()];
    edit_json(index_path, [&](json& index) {
      if (index["weight_map"][victim] == first_shard) {
        index["weight_map"][victim] = index["weight_map"][tensor_names::lm_head()];
      } else {
        index["weight_map"][victim] = first_shard;
      }
    });
    const auto status = Checkpoint::open(sharded_dir).status();
    CHECK(status.code() == ErrorCode::kDataLoss);
    CHECK(status.message().find(victim) != std::string::npos);
  }
  SECTION("a shard path that leaves the directory") {
    edit_json(index_path,
              [&](json& index) { index["weight_map"][victim] = "../single/model.safetensors"; });
    CHECK(Checkpoint::open(sharded_dir).status().code() == ErrorCode::kDataLoss);
  }
  SECTION("a tensor is missing from the index") {
    edit_json(index_path, [&](json& index) { index["weight_map"].erase(victim); });
    const auto status = Checkpoint::open(sharded_dir).status();
    CHECK(status.code() == ErrorCode::kDataLoss);
    CHECK(status.message().find(victim) != std::string::npos);
  }
  SECTION("the index is not an index") {
    std::ofstream(index_path, std::ios::trunc) << "{\"weight_map\": []}";
    CHECK(Checkpoint::open(sharded_dir).status().code() == ErrorCode::kDataLoss);
    std::ofstream(index_path, std::ios::trunc) << "{\"weight_map\":";
    CHECK(Checkpoint::open(sharded_dir).status().code() == ErrorCode::kDataLoss);
  }
  SECTION("a corrupt shard") {
    const std::string shard = json::parse(original_index)["weight_map"][victim];
    fs::resize_file(sharded_dir / shard, fs::file_size(sharded_dir / shard) - 1);
    const auto status = Checkpoint::open(sharded_dir).status();
    CHECK(status.code() == ErrorCode::kDataLoss);
    CHECK(status.message().find(shard) != std::string::npos);
  }
}

TEST_CASE("checkpoint: weights that disagree with config.json are refused", "[checkpoint]") {
  RandomCheckpointOptions options;
  const auto dir = write_tiny("mismatch", options);
  const auto config_path = dir / kConfigFileName;
  SECTION("a missing layer") {
    edit_json(config_path, [](json& config) { config["num_hidden_layers"] = 5; });
    const auto status = Checkpoint::open(dir).status();
    CHECK(status.code() == ErrorCode::kDataLoss);
    CHECK(status.message().find("model.layers.4.") != std::string::npos);
  }
  SECTION("a shape mismatch names tensor, found and expected shape") {
    edit_json(config_path, [](json& config) { config["moe_intermediate_size"] = 32; });
    const auto status = Checkpoint::open(dir).status();
    CHECK(status.code() == ErrorCode::kInvalidArgument);
    CHECK(status.message().find("model.layers.0.mlp.experts.0.gate_proj.weight") !=
          std::string::npos);
    CHECK(status.message().find("[64, 128]") != std::string::npos);
    CHECK(status.message().find("[32, 128]") != std::string::npos);
  }
  SECTION("no weights at all") {
    fs::remove(dir / kSingleFileName);
    CHECK(Checkpoint::open(dir).status().code() == ErrorCode::kNotFound);
  }
  SECTION("no config") {
    fs::remove(config_path);
    CHECK(Checkpoint::open(dir).status().code() == ErrorCode::kNotFound);
  }
  SECTION("tied embeddings need no lm_head") {
    edit_json(config_path, [](json& config) { config["tie_word_embeddings"] = true; });
    CHECK(Checkpoint::open(dir).is_ok());
  }
}

TEST_CASE("checkpoint: the qwen3-30b-a3b preset has the real model's tensors", "[checkpoint]") {
  auto config = model_preset("qwen3-30b-a3b");
  REQUIRE(config.is_ok());
  const auto specs = checkpoint_tensor_specs(*config, ExpertLayout::kPerExpert, DType::kBF16);
  CHECK(specs.size() == 18867);  // entries in the published model.safetensors.index.json
  uint64_t total_bytes = 0;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& spec : specs) {
    total_bytes += spec.num_bytes();
    shapes[spec.name] = spec.shape;
  }
  CHECK(shapes.size() == specs.size());
  CHECK(total_bytes == 61064245248ull);  // 30.5B parameters in bf16
  using V = std::vector<int64_t>;
  CHECK(shapes.at("model.embed_tokens.weight") == V{151936, 2048});
  CHECK(shapes.at("lm_head.weight") == V{151936, 2048});
  CHECK(shapes.at("model.norm.weight") == V{2048});
  CHECK(shapes.at("model.layers.47.input_layernorm.weight") == V{2048});
  CHECK(shapes.at("model.layers.0.self_attn.q_proj.weight") == V{4096, 2048});
  CHECK(shapes.at("model.layers.0.self_attn.k_proj.weight") == V{512, 2048});
  CHECK(shapes.at("model.layers.0.self_attn.v_proj.weight") == V{512, 2048});
  CHECK(shapes.at("model.layers.0.self_attn.o_proj.weight") == V{2048, 4096});
  CHECK(shapes.at("model.layers.0.self_attn.q_norm.weight") == V{128});
  CHECK(shapes.at("model.layers.0.self_attn.k_norm.weight") == V{128});
  CHECK(shapes.at("model.layers.0.post_attention_layernorm.weight") == V{2048});
  CHECK(shapes.at("model.layers.0.mlp.gate.weight") == V{128, 2048});
  CHECK(shapes.at("model.layers.47.mlp.experts.127.gate_proj.weight") == V{768, 2048});
  CHECK(shapes.at("model.layers.47.mlp.experts.127.up_proj.weight") == V{768, 2048});
  CHECK(shapes.at("model.layers.47.mlp.experts.127.down_proj.weight") == V{2048, 768});

  const auto fused = checkpoint_tensor_specs(*config, ExpertLayout::kFused, DType::kBF16);
  CHECK(fused.size() == 3 + 48 * 11);
  uint64_t fused_bytes = 0;
  for (const auto& spec : fused) fused_bytes += spec.num_bytes();
  CHECK(fused_bytes == total_bytes);
}

TEST_CASE("checkpoint: router skew makes a few experts take most tokens", "[checkpoint]") {
  // Layer 0's router applied to the normalised embeddings of every token (the residual stream
  // before attention adds to it): top-k counts per expert.
  auto top_k_counts = [](double skew) {
    RandomCheckpointOptions options;
    options.seed = 5;
    options.dtype = DType::kF32;
    options.router_skew = skew;
    auto checkpoint = Checkpoint::open(write_tiny("skew", options));
    REQUIRE(checkpoint.is_ok());
    const auto& config = checkpoint->config();
    const int64_t hidden = config.hidden_size;
    const int64_t experts = config.num_experts;
    const auto embed =
        *checkpoint->read_f32(tensor_names::embed_tokens(), {config.vocab_size, hidden});
    const auto norm = *checkpoint->read_f32(tensor_names::post_attention_layernorm(0), {hidden});
    const auto router = *checkpoint->read_f32(tensor_names::router(0), {experts, hidden});
    std::vector<int> counts(static_cast<std::size_t>(experts));
    for (int64_t t = 0; t < config.vocab_size; ++t) {
      const float* x = &embed[static_cast<std::size_t>(t * hidden)];
      double mean_square = 0;
      for (int64_t j = 0; j < hidden; ++j) mean_square += double{x[j]} * x[j];
      const double inv_rms = 1.0 / std::sqrt(mean_square / hidden + config.rms_norm_eps);
      std::vector<std::pair<double, int>> logits;
      for (int64_t e = 0; e < experts; ++e) {
        double logit = 0;
        for (int64_t j = 0; j < hidden; ++j) {
          logit += router[static_cast<std::size_t>(e * hidden + j)] * x[j] * inv_rms * norm[j];
        }
        logits.emplace_back(logit, static_cast<int>(e));
      }
      std::partial_sort(logits.begin(), logits.begin() + config.num_experts_per_tok, logits.end(),
                        std::greater<>());
      for (int k = 0; k < config.num_experts_per_tok; ++k) ++counts[logits[k].second];
    }
    return counts;
  };
  const int num_tokens = 512;
  const auto uniform = top_k_counts(0.0);
  const auto skewed = top_k_counts(4.0);
  for (int e = 0; e < 16; ++e)
    UNSCOPED_INFO("expert " << e << ": " << uniform[e] << " -> " << skewed[e]);
  CHECK(*std::max_element(uniform.begin(), uniform.end()) < num_tokens / 2);
  CHECK(skewed[0] > num_tokens * 9 / 10);
  CHECK(skewed[1] > num_tokens * 6 / 10);
  CHECK(skewed[15] < num_tokens / 8);
}

namespace {

// Writes a NaN (or +infinity) over element `element_idx` of `tensor` in the single-file
// checkpoint of `dir`, in the tensor's own dtype.
void poison(const fs::path& dir, const std::string& tensor, size_t element_idx, bool infinity) {
  const fs::path file = dir / std::string(kSingleFileName);
  auto opened = SafetensorsFile::open(file);
  REQUIRE(opened.is_ok());
  std::ifstream in(file, std::ios::binary);
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  const TensorInfo* info = opened->find(tensor);
  REQUIRE(info != nullptr);
  const size_t size = dtype_size_bytes(info->dtype);
  const uint64_t offset = 8 + header_len + info->data_begin + element_idx * size;
  std::vector<char> bytes(size);
  if (info->dtype == DType::kF32) {
    const float value = infinity ? INFINITY : NAN;
    std::memcpy(bytes.data(), &value, 4);
  } else {
    const uint16_t value =
        info->dtype == DType::kBF16 ? (infinity ? 0x7f80 : 0x7fc0) : (infinity ? 0x7c00 : 0x7e00);
    std::memcpy(bytes.data(), &value, 2);
  }
  std::fstream out(file, std::ios::binary | std::ios::in | std::ios::out);
  out.seekp(static_cast<std::streamoff>(offset));
  out.write(bytes.data(), static_cast<std::streamsize>(size));
}

}  // namespace

TEST_CASE("checkpoint: a weight that is NaN or infinite is refused, naming the tensor",
          "[checkpoint]") {
  struct Case {
    DType dtype;
    ExpertLayout layout;
    bool infinity;
  };
  for (const Case c : {Case{DType::kF32, ExpertLayout::kPerExpert, false},
                       Case{DType::kBF16, ExpertLayout::kPerExpert, true},
                       Case{DType::kF16, ExpertLayout::kPerExpert, false},
                       Case{DType::kBF16, ExpertLayout::kFused, false}}) {
    INFO("dtype " << to_string(c.dtype) << (c.layout == ExpertLayout::kFused ? ", fused" : "")
                  << (c.infinity ? ", infinity" : ", NaN"));
    RandomCheckpointOptions options;
    options.seed = 5;
    options.dtype = c.dtype;
    options.expert_layout = c.layout;
    const auto dir = write_tiny("poisoned", options);
    const std::string norm = tensor_names::final_norm();
    const std::string expert = c.layout == ExpertLayout::kFused
                                   ? tensor_names::fused_down_proj(2)
                                   : tensor_names::expert_down_proj(2, 7);
    poison(dir, norm, 17, c.infinity);
    // 7 * 128 * 64 + 3: inside expert 7 of the fused tensor, element 3 of the per-expert one.
    poison(dir, expert, c.layout == ExpertLayout::kFused ? 7 * 128 * 64 + 3 : 3, c.infinity);
    auto checkpoint = Checkpoint::open(dir);
    REQUIRE(checkpoint.is_ok());  // the header is fine; the values are checked where read

    auto read = checkpoint->read_f32(norm, {128});
    REQUIRE_FALSE(read.is_ok());
    CHECK(read.status().code() == ErrorCode::kDataLoss);
    CHECK_THAT(read.status().message(), Catch::Contains("'" + norm + "'"));
    CHECK_THAT(read.status().message(), Catch::Contains("element 17"));
    auto raw = checkpoint->raw_data(norm);
    REQUIRE_FALSE(raw.is_ok());
    CHECK(raw.status().code() == ErrorCode::kDataLoss);

    auto poisoned_expert = checkpoint->read_expert(2, 7);
    REQUIRE_FALSE(poisoned_expert.is_ok());
    CHECK(poisoned_expert.status().code() == ErrorCode::kDataLoss);
    CHECK_THAT(poisoned_expert.status().message(), Catch::Contains("NaN or an infinity"));
    CHECK(checkpoint->read_expert(2, 6).is_ok());  // the others still read
  }
}
