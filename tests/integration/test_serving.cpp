// Serving end to end on the CPU backend, real processes: coordinator + 2 workers + the tiny
// model; eep-bench, curl and eepctl as clients.
#include <sstream>

#include <map>
#include <set>

#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

struct ServingFleet {
  TempDir dir;
  std::string model;
  std::unique_ptr<Fleet> fleet;

  explicit ServingFleet(int dp) {
    model = make_tiny_model(dir, 11);
    fleet = std::make_unique<Fleet>(std::vector<std::string>{
        "--dp", std::to_string(dp), "--model", model, "--worker-arg=--kv-blocks=256"});
    REQUIRE(eventually([&] { return http_status("GET", "/health") == 200; }, 30s));
  }

  // curl's status code for a request (body in *out).
  int http_status(const std::string& method, const std::string& path, const std::string& body = "",
                  std::string* out = nullptr) {
    return curl_status(dir, method, fleet->base_url() + path, body, out);
  }

  // The value of one Prometheus sample of /metrics.
  double metric(const std::string& name) {
    std::string text;
    REQUIRE(http_status("GET", "/metrics", "", &text) == 200);
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    FAIL("no sample " << name << " in /metrics:\n" << text);
    return 0;
  }
};

std::string join(const json& ids) {
  std::string text;
  for (const auto& id : ids) text += (text.empty() ? "" : ",") + std::to_string(id.get<int>());
  return text;
}

}  // namespace

TEST_CASE("200 mixed streaming requests at concurrency 64 all succeed and equal eep-generate",
          "[serving]") {
  ServingFleet serving(2);
  const std::string results = serving.dir.file("bench.json");
  CommandResult bench = run_command({bin("eep-bench"),
                                     "--base-url",
                                     serving.fleet->base_url(),
                                     "--num-prompts",
                                     "200",
                                     "--random-input-len",
                                     "24",
                                     "--random-output-len",
                                     "12",
                                     "--random-range-ratio",
                                     "0.75",
                                     "--max-concurrency",
                                     "64",
                                     "--mix-stream",
                                     "--seed",
                                     "3",
                                     "--save-tokens",
                                     "--no-progress",
                                     "--result-json",
                                     results},
                                    240s);
  INFO(bench.output);
  REQUIRE(bench.exit_code == 0);
  CHECK_THAT(bench.output, Catch::Contains("Successful requests:                     200"));
  json report = json::parse(read_file(results));
  CHECK(report["summary"]["completed"] == 200);
  CHECK(report["summary"]["failed"] == 0);

  // Greedy outputs equal eep-generate's on the same prompts, token for token: one eep-generate
  // process per output length.
  int64_t prompt_tokens = 0, output_tokens = 0;
  int num_streamed = 0;
  std::map<int, std::vector<json>> records_by_max_tokens;
  for (const json& record : report["requests"]) {
    REQUIRE(record["success"] == true);
    num_streamed += record["stream"].get<bool>();
    prompt_tokens += record["prompt_len"].get<int64_t>();
    output_tokens += record["output_len"].get<int64_t>();
    records_by_max_tokens[record["max_tokens"].get<int>()].push_back(record);
  }
  for (const auto& [max_tokens, records] : records_by_max_tokens) {
    std::vector<std::string> prompts;
    for (const json& record : records) prompts.push_back(join(record["prompt_ids"]));
    const std::vector<std::string> expected =
        eep_generate_outputs(serving.model, prompts, max_tokens);
    for (size_t i = 0; i < records.size(); ++i) {
      INFO("request " << records[i]["id"]);
      CHECK(join(records[i]["output_ids"]) == expected[i]);
    }
  }
  CHECK(num_streamed > 50);
  CHECK(num_streamed < 150);
  // Mixed lengths, so the ranks' loads differ from step to step.
  std::set<int64_t> prompt_lens, output_lens;
  for (const json& record : report["requests"]) {
    prompt_lens.insert(record["prompt_len"].get<int64_t>());
    output_lens.insert(record["output_len"].get<int64_t>());
  }
  CHECK(prompt_lens.size() > 10);
  CHECK(output_lens.size() > 5);

  // /metrics agrees with what the client counted.
  CHECK(serving.metric("eep_requests_finished_total") == 200);
  CHECK(serving.metric("eep_requests_failed_total") == 0);
  CHECK(serving.metric("eep_prompt_tokens_total") == prompt_tokens);
  CHECK(serving.metric("eep_generation_tokens_total") == output_tokens);
  CHECK(serving.metric("eep_fleet_size") == 2);
}

TEST_CASE("curl completes streaming and non-streaming requests", "[serving]") {
  ServingFleet serving(2);
  std::string body;
  REQUIRE(serving.http_status("POST", "/v1/completions",
                              R"({"model":"tiny","prompt":"Hello","max_tokens":5,"temperature":0,
                                  "ignore_eos":true})",
                              &body) == 200);
  json reply = json::parse(body);
  CHECK(reply["object"] == "text_completion");
  CHECK(reply["usage"]["prompt_tokens"] == 5);
  CHECK(reply["usage"]["completion_tokens"] == 5);
  CHECK(reply["choices"][0]["finish_reason"] == "length");

  write_file(serving.dir.file("stream.json"),
             R"({"model":"tiny","prompt":[1,2,3],"max_tokens":6,"stream":true,"ignore_eos":true})");
  CommandResult stream = run_command(
      {"curl", "-sN", serving.fleet->base_url() + "/v1/completions", "-H",
       "Content-Type: application/json", "--data-binary", "@" + serving.dir.file("stream.json")},
      30s);
  REQUIRE(stream.exit_code == 0);
  int num_chunks = 0;
  std::istringstream lines(stream.output);
  std::string line;
  while (std::getline(lines, line)) num_chunks += line.rfind("data: {", 0) == 0;
  CHECK(num_chunks >= 6);
  CHECK_THAT(stream.output, Catch::EndsWith("data: [DONE]\n\n"));
}

TEST_CASE("a client that disconnects mid-stream frees its request and KV blocks", "[serving]") {
  ServingFleet serving(2);
  write_file(
      serving.dir.file("long.json"),
      R"({"model":"tiny","prompt":[5,6,7],"max_tokens":3000,"stream":true,"ignore_eos":true})");
  SpawnOptions options;
  options.log_path = serving.dir.file("long.out");
  auto curl = ChildProcess::spawn(
      {"curl", "-sN", serving.fleet->base_url() + "/v1/completions", "-H",
       "Content-Type: application/json", "--data-binary", "@" + serving.dir.file("long.json")},
      options);
  REQUIRE(curl.is_ok());
  REQUIRE(eventually([&] { return read_file(serving.dir.file("long.out")).size() > 2000; }, 20s));
  auto busy = [&] {
    int running = 0;
    for (const json& worker : serving.fleet->workers_in("ACTIVE")) {
      running += worker["load"]["num_running"].get<int>();
    }
    return running;
  };
  CHECK(busy() == 1);
  curl->signal(SIGKILL);
  REQUIRE(curl->wait_for(5s));
  // Load arrives with token batches and heartbeats (every timeout / 3 = 1 s).
  CHECK(eventually(
      [&] {
        for (const json& worker : serving.fleet->workers_in("ACTIVE")) {
          const json& load = worker["load"];
          if (load["num_running"] != 0 || load["num_waiting"] != 0 ||
              load["num_free_kv_blocks"] != load["num_kv_blocks"]) {
            return false;
          }
        }
        return true;
      },
      5s));
  CHECK(serving.metric("eep_requests_running") == 0);
  // The fleet still serves.
  CHECK(serving.http_status("POST", "/v1/completions",
                            R"({"model":"tiny","prompt":[1],"max_tokens":2})") == 200);
}

TEST_CASE("bad requests get 4xx with an OpenAI error body, then a good one is served",
          "[serving]") {
  ServingFleet serving(2);
  struct Case {
    std::string body;
    int status;
  };
  std::string ids = "1";
  for (int i = 0; i < 4200; ++i) ids += ",1";
  const std::vector<Case> cases = {
      {"{not json", 400},
      {R"({"model":"tiny","prompt":[1,2],"max_tokens":"many"})", 400},
      {R"({"model":"nope","prompt":[1,2]})", 404},
      {R"({"model":"tiny","prompt":[1,2],"max_tokens":0})", 400},
      {R"({"model":"tiny","prompt":[1,2],"max_tokens":100000})", 400},
      {R"({"model":"tiny","prompt":[)" + ids + R"(]})", 400},  // longer than max_model_len
      {R"({"model":"tiny","prompt":"x","temperature":-1})", 400},
      {R"({"model":"tiny","prompt":[1,2],"seed":"s"})", 400},
      // Over the 1 MiB body limit.
      {R"({"model":"tiny","prompt":")" + std::string(1300000, 'x') + R"("})", 413},
  };
  for (const Case& c : cases) {
    std::string body;
    INFO(c.body.substr(0, 80));
    CHECK(serving.http_status("POST", "/v1/completions", c.body, &body) == c.status);
    json error = json::parse(body, nullptr, false);
    REQUIRE(error.is_object());
    CHECK(error["error"]["message"].is_string());
    CHECK(error["error"].contains("type"));
    CHECK(serving.http_status("POST", "/v1/completions",
                              R"({"model":"tiny","prompt":[1,2],"max_tokens":2})") == 200);
  }
  CHECK(serving.fleet->coordinator().running());
}

// The real coordinator's --max-in-flight (every HTTP test of the 429 uses a fake frontend).
TEST_CASE("beyond --max-in-flight the real coordinator answers 429, and serves again after",
          "[serving]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 11);
  Fleet fleet(
      {"--dp", "1", "--model", model, "--worker-arg=--kv-blocks=256", "--max-in-flight", "1"});
  REQUIRE(eventually([&] { return fleet.has_active(1); }, 30s));
  // One long stream holds the only slot.
  write_file(dir.file("long.json"),
             R"({"model":"tiny","prompt":[1,2,3],"max_tokens":4000,"temperature":0,)"
             R"("ignore_eos":true,"stream":true})");
  SpawnOptions options;
  options.log_path = dir.file("long.out");
  auto stream = ChildProcess::spawn(
      {"curl", "-sN", fleet.base_url() + "/v1/completions", "-H", "Content-Type: application/json",
       "--data-binary", "@" + dir.file("long.json")},
      options);
  REQUIRE(stream.is_ok());
  REQUIRE(eventually([&] { return read_file(options.log_path).find("data:") != std::string::npos; },
                     20s));
  std::string body;
  const std::string request = R"({"model":"tiny","prompt":[4,5],"max_tokens":2})";
  CHECK(curl_status(dir, "POST", fleet.base_url() + "/v1/completions", request, &body) == 429);
  INFO(body);
  CHECK(json::parse(body)["error"]["code"] == "rate_limit_exceeded");
  // The client goes away: its request is cancelled and the slot is free again.
  stream->signal(SIGKILL);
  REQUIRE(stream->wait_for(5s));
  CHECK(eventually(
      [&] {
        return curl_status(dir, "POST", fleet.base_url() + "/v1/completions", request) == 200;
      },
      20s));
}
