// eep-generate, the oracle of the serving tests: several prompts in one process, and bad input.
#include <algorithm>
#include <string>
#include <vector>

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
