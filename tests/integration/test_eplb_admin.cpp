// The coordinator's side of EPLB with real processes, independent of how the workers move
// experts: the start-up checks of the EPLB flags, the status "eplb" object, `eepctl status` and
// `eepctl eplb rebalance` refusals with their reasons.
#include "fleet.h"

using namespace eep;
using namespace eep::testing;

TEST_CASE("EPLB flags that cannot work stop the coordinator at start with the reason",
          "[eplb_admin]") {
  TempDir dir;
  CommandResult no_model =
      run_command({bin("eep-coordinator"), "--enable-eplb", "--dp", "0", "--http", "off", "--admin",
                   "tcp://127.0.0.1:*", "--control", "tcp://127.0.0.1:*"},
                  10s);
  CHECK(no_model.exit_code != 0);
  CHECK_THAT(no_model.output, Catch::Contains("--enable-eplb needs --model"));

  CommandResult no_config =
      run_command({bin("eep-coordinator"), "--model", dir.path(), "--dp", "0", "--http", "off",
                   "--admin", "tcp://127.0.0.1:*", "--control", "tcp://127.0.0.1:*"},
                  10s);
  CHECK(no_config.exit_code != 0);
  CHECK_THAT(no_config.output, Catch::Contains("config.json"));
}

TEST_CASE("status shows EPLB and eplb rebalance says why it cannot run", "[eplb_admin]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 3);

  SECTION("without --model there is no eplb object and no placement") {
    Fleet fleet({"--dp", "0"});
    CHECK_FALSE(fleet.status().contains("eplb"));
    CommandResult refused = fleet.eepctl({"eplb", "rebalance"});
    CHECK(refused.exit_code == 1);
    CHECK_THAT(refused.output, Catch::Contains("not enabled"));
  }
  SECTION("with --model but without --enable-eplb it measures only") {
    Fleet fleet({"--dp", "0", "--model", model});
    const json status = fleet.status();
    REQUIRE(status.contains("eplb"));
    CHECK(status["eplb"]["enabled"] == false);
    CHECK(status["eplb"]["window_steps"] == 0);
    CHECK(status["eplb"]["balancedness"].is_null());
    CommandResult refused = fleet.eepctl({"eplb", "rebalance", "--json"});
    CHECK(refused.exit_code == 1);
    const json reply = json::parse(refused.output);
    CHECK(reply["ok"] == false);
    CHECK(reply["error"]["code"] == "failed_precondition");
    CHECK_THAT(reply["error"]["message"].get<std::string>(), Catch::Contains("--enable-eplb"));
  }
  SECTION("enabled, before any load") {
    Fleet fleet({"--dp", "2", "--model", model, "--enable-eplb", "--num-redundant-experts", "2",
                 "--worker-arg=--kv-blocks=64"});
    REQUIRE(eventually([&] { return fleet.has_active(2); }, 30s));
    CommandResult table = fleet.eepctl({"status"});
    CHECK(table.exit_code == 0);
    CHECK_THAT(table.output, Catch::Contains("EPLB on: no expert load in the window yet"));
    CommandResult refused = fleet.eepctl({"eplb", "rebalance"});
    CHECK(refused.exit_code == 1);
    CHECK_THAT(refused.output, Catch::Contains("no expert load reported yet in generation 1"));
    CHECK_THAT(fleet.coordinator_log(), Catch::Contains("4 layers x 16 experts, 2 redundant"));
  }
}
