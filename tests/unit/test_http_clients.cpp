// Clients nobody here wrote, against a real server on 127.0.0.1:0 with a fake frontend: curl
// (streaming and not, a large body, a kill mid-stream) and the openai npm package
// (tests/clients/openai_client.mjs, installed with npm into a temporary folder on first use).
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eep/common/subprocess.h"
#include "eep/coordinator/http_api.h"
#include "http_test_support.h"
#include "node_tools.h"

using namespace eep;
using namespace eep::coordinator;
using namespace eep::coordinator::testing;
using nlohmann::json;
namespace fs = std::filesystem;
namespace node = eep::testing::node;

namespace {

const fs::path kClientsDir = fs::path(EEP_TEST_DATA_DIR).parent_path() / "clients";

using ProcessOutput = node::Output;
using node::read_file;

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("eep-http-" + std::to_string(::getpid()) + "-" + name);
}

ProcessOutput run(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  const fs::path log = temp_path("process.log");
  ProcessOutput result = node::run(argv, log, timeout);
  fs::remove(log);
  return result;
}

std::string curl() {
  auto path = find_in_path("curl");
  if (!path) FAIL("curl is not installed (scripts/install-deps.sh installs it)");
  return *path;
}

std::string url(const HttpApi& api, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(api.port()) + path;
}

}  // namespace

TEST_CASE("curl completes requests, streaming and not", "[http]") {
  FakeFrontend frontend;
  HttpApi api("127.0.0.1:0", frontend, {});
  REQUIRE(api.start().is_ok());

  ProcessOutput plain = run(
      {curl(), "-sS", "-H", "Content-Type: application/json", "-d",
       R"({"model":"fake-model","prompt":"curl!","max_tokens":5})", url(api, "/v1/completions")},
      std::chrono::seconds(10));
  REQUIRE(plain.exit_code == 0);
  json reply = json::parse(plain.output, nullptr, false);
  CHECK(reply["choices"][0]["text"] == "curl!");
  CHECK(reply["usage"]["total_tokens"] == 10);

  ProcessOutput streamed =
      run({curl(), "-sS", "-N", "-d", R"({"prompt":"abc","max_tokens":4,"stream":true})",
           url(api, "/v1/completions")},
          std::chrono::seconds(10));
  REQUIRE(streamed.exit_code == 0);
  SseEvents events = parse_sse(streamed.output);
  CHECK(events.done);
  std::string text;
  for (const json& chunk : events.chunks) text += chunk["choices"][0]["text"];
  CHECK(text == "abca");

  // An error status with its body, and then the models list.
  ProcessOutput refused =
      run({curl(), "-sS", "-w", "\n%{http_code}", "-d", "{oops", url(api, "/v1/completions")},
          std::chrono::seconds(10));
  CHECK_THAT(refused.output, Catch::EndsWith("\n400"));
  CHECK_THAT(refused.output, Catch::Contains("invalid_json"));
  ProcessOutput models = run({curl(), "-sS", url(api, "/v1/models")}, std::chrono::seconds(10));
  CHECK_THAT(models.output, Catch::Contains("fake-model"));
}

TEST_CASE("curl with a body over the limit gets 413 at once", "[http]") {
  FakeFrontend frontend;
  HttpApi api("127.0.0.1:0", frontend, {});  // the default limit, 1 MiB
  REQUIRE(api.start().is_ok());
  fs::path body = temp_path("big.json");
  {
    std::ofstream out(body);
    out << R"({"prompt":")" << std::string(2 << 20, 'x') << R"("})";
  }
  auto started = std::chrono::steady_clock::now();
  // curl sends "Expect: 100-continue" for a body this large and waits 20 s for the answer before
  // it sends the body anyway: the 413 answers it at once, so the reply comes long before.
  ProcessOutput result = run({curl(), "-sS", "-w", "\n%{http_code}", "--expect100-timeout", "20",
                              "--data-binary", "@" + body.string(), url(api, "/v1/completions")},
                             std::chrono::seconds(30));
  fs::remove(body);
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
  CHECK_THAT(result.output, Catch::EndsWith("\n413"));
  CHECK_THAT(result.output, Catch::Contains("request_too_large"));
}

TEST_CASE("killing curl mid-stream cancels its request within a second", "[http]") {
  FakeFrontend::Options options;
  options.token_interval = std::chrono::milliseconds(20);
  FakeFrontend frontend(options);
  HttpApi api("127.0.0.1:0", frontend, {});
  REQUIRE(api.start().is_ok());

  fs::path log = temp_path("curl-stream.log");
  auto child = ChildProcess::spawn(
      {curl(), "-sS", "-N", "-d", R"({"prompt":"long","max_tokens":200,"stream":true})",
       url(api, "/v1/completions")},
      {{}, log.string(), true});
  REQUIRE(child.is_ok());
  REQUIRE(eventually([&] { return !frontend.submitted().empty(); }));
  uint64_t id = frontend.submitted().front().id;
  REQUIRE(eventually([&] { return frontend.num_emitted(id) >= 5; }));
  child->signal(SIGKILL);
  REQUIRE(child->wait_for(std::chrono::seconds(2)));
  auto killed = std::chrono::steady_clock::now();
  CHECK_THAT(read_file(log), Catch::Contains("data: {"));  // it was streaming
  fs::remove(log);

  REQUIRE(
      eventually([&] { return frontend.cancel_time(id).has_value(); }, std::chrono::seconds(2)));
  CHECK(*frontend.cancel_time(id) - killed < std::chrono::seconds(1));
  CHECK(eventually([&] { return frontend.num_active() == 0; }));
}

TEST_CASE("the openai npm package completes requests", "[http]") {
  // One install per machine, reused: the folder holds the package.json and the script.
  const node::Packages client = node::install_packages(
      kClientsDir, "eep-openai-client", {"package.json", "openai_client.mjs"}, {"openai"},
      "the openai npm package",
      std::chrono::seconds(100));  // within ctest's 120 s
  const fs::path& dir = client.dir;

  FakeFrontend frontend;
  HttpApiOptions options;
  options.api_key = "test-key";
  HttpApi api("127.0.0.1:0", frontend, options);
  REQUIRE(api.start().is_ok());
  ProcessOutput result = run({client.node, (dir / "openai_client.mjs").string(), url(api, "/v1"),
                              "fake-model", "test-key"},
                             std::chrono::seconds(60));
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  json seen = json::parse(result.output.substr(result.output.find("{\"models\"")), nullptr, false);
  REQUIRE(seen.is_object());
  CHECK(seen["models"] == json::array({"fake-model"}));
  CHECK(seen["text"] == "hello wo");
  CHECK(seen["finish_reason"] == "length");
  CHECK(seen["usage"]["completion_tokens"] == 8);
  CHECK(seen["stream_text"] == "stream");
  CHECK(seen["stream_finish"] == "length");
  CHECK(seen["stream_usage"]["total_tokens"] == 15);
  CHECK(seen["num_chunks"].get<int>() >= 7);  // six tokens, then the usage chunk
  CHECK(seen["unknown_model"]["status"] == 404);
  CHECK(seen["unknown_model"]["code"] == "model_not_found");
  REQUIRE(frontend.submitted().size() == 2);
  CHECK(frontend.submitted()[0].temperature == 0.0f);
  CHECK(frontend.submitted()[0].seed == 1u);
}
