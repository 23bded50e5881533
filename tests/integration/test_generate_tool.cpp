// eep-generate, the oracle of the serving tests: several prompts in one process, bad input, and
// FP8 checkpoints from eep-mkmodel --dtype fp8.
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fleet.h"

using namespace eep::testing;

TEST_CASE("eep-generate: several prompts in one process give each prompt's tokens alone",
          "[generate_tool]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 5);
  const std::vector<std::string> prompts = {"1,2,3", "400,17", "9,9,9,9,9,9,9,9,9,9,9,9,9,9,9"};
  const std::vector<std::string> together = eep_generate_outputs(model, prompts, 10);
  for (size_t i = 0; i < prompts.size(); ++i) {
    INFO("prompt " << prompts[i]);
    const std::vector<std::string> alone = eep_generate_outputs(model, {prompts[i]}, 10);
    CHECK(together[i] == alone[0]);
    CHECK(std::count(together[i].begin(), together[i].end(), ',') == 9);  // 10 tokens
  }
  // Different prompts, different greedy continuations: the lines are not one line repeated.
  CHECK(together[0] != together[1]);
}

TEST_CASE("eep-generate refuses bad prompt ids and --dump-logits with several prompts",
          "[generate_tool]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 5);
  const CommandResult bad_ids = run_command(
      {bin("eep-generate"), "--model", model, "--prompt-ids", "1,2", "--prompt-ids", "3,x"});
  CHECK(bad_ids.exit_code == 2);
  CHECK_THAT(bad_ids.output, Catch::Contains("got '3,x'"));
  const CommandResult two_dumps =
      run_command({bin("eep-generate"), "--model", model, "--prompt-ids", "1,2", "--prompt-ids",
                   "3,4", "--dump-logits", dir.file("logits.safetensors")});
  CHECK(two_dumps.exit_code == 2);
  CHECK_THAT(two_dumps.output, Catch::Contains("--dump-logits takes one prompt, got 2"));
}

TEST_CASE("eep-generate serves an eep-mkmodel --dtype fp8 checkpoint and refuses broken ones",
          "[generate_tool][fp8]") {
  TempDir dir;
  const std::string model =
      make_tiny_model(dir, 5, {"--dtype", "fp8", "--fp8-block-size", "48", "40"}, "fp8");
  const nlohmann::json config = nlohmann::json::parse(read_file(model + "/config.json"));
  CHECK(config["quantization_config"]["quant_method"] == "fp8");
  CHECK(config["quantization_config"]["weight_block_size"] == nlohmann::json({48, 40}));
  const CommandResult listed = run_command({bin("eep-mkmodel"), "--preset", "tiny", "--dtype",
                                            "fp8", "--fp8-block-size", "48", "40", "--list"});
  CHECK(listed.exit_code == 0);
  CHECK_THAT(listed.output,
             Catch::Contains("model.layers.0.self_attn.q_proj.weight F8_E4M3 [128, 128]\n"
                             "model.layers.0.self_attn.q_proj.weight_scale_inv F32 [3, 4]\n"));
  CHECK_THAT(listed.output, Catch::Contains("model.layers.3.mlp.gate.weight BF16 [16, 128]"));

  const std::vector<std::string> outputs = eep_generate_outputs(model, {"1,2,3", "400,17"}, 10);
  REQUIRE(outputs.size() == 2);
  for (const std::string& output : outputs) {
    CHECK(std::count(output.begin(), output.end(), ',') == 9);  // 10 tokens
  }

  // The same weights without the quantization_config, then with static activation scales.
  auto generate_with = [&](const nlohmann::json& edited) {
    std::ofstream(model + "/config.json", std::ios::trunc) << edited.dump();
    return run_command({bin("eep-generate"), "--model", model, "--prompt-ids", "1,2"});
  };
  nlohmann::json unquantized = config;
  unquantized.erase("quantization_config");
  const CommandResult no_config = generate_with(unquantized);
  CHECK(no_config.exit_code == 1);
  CHECK_THAT(no_config.output,
             Catch::Contains("'model.layers.0.self_attn.q_proj.weight' is F8_E4M3 but config.json "
                             "has no quantization_config"));
  nlohmann::json static_scales = config;
  static_scales["quantization_config"]["activation_scheme"] = "static";
  const CommandResult static_activations = generate_with(static_scales);
  CHECK(static_activations.exit_code == 1);
  CHECK_THAT(static_activations.output,
             Catch::Contains("activation_scheme \"static\" is not supported"));

  const CommandResult fused = run_command({bin("eep-mkmodel"), "--preset", "tiny", "--dtype", "fp8",
                                           "--fused-experts", "--out", dir.file("fused")});
  CHECK(fused.exit_code == 2);
  CHECK_THAT(fused.output, Catch::Contains("per-expert tensors (no --fused-experts)"));
}
