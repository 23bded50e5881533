// Hostile input on the admin and control sockets of a real coordinator (docs/security.md): the
// messages that once ended it, then thousands of random and mutated ones. After each, the
// coordinator still runs, answers every admin request with its seq, and serves a completion.
#include <random>

#include "eep/common/admin_client.h"
#include "eep/common/protocol.h"
#include "eep/common/zmq_util.h"
#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

struct HostileFleet {
  TempDir dir;
  std::string model;
  std::unique_ptr<Fleet> fleet;

  HostileFleet() {
    model = make_tiny_model(dir, 5);
    fleet = std::make_unique<Fleet>(std::vector<std::string>{
        "--dp", "1", "--max-workers", "4", "--model", model, "--worker-arg=--kv-blocks=128"});
    REQUIRE(eventually([&] { return fleet->has_active(1); }, 30s));
  }

  bool completes() {
    std::string body;
    const int code =
        curl_status(dir, "POST", fleet->base_url() + "/v1/completions",
                    R"({"model":"tiny","prompt":[1,2,3],"max_tokens":3,"temperature":0})", &body);
    INFO(body);
    return code == 200 && json::parse(body)["usage"]["completion_tokens"] == 3;
  }

  long rss_kib() {
    std::istringstream lines(
        read_file("/proc/" + std::to_string(fleet->coordinator().pid()) + "/status"));
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
  }
};

// A DEALER on the control socket with a routing id of our choosing, authenticated with the
// fleet's worker key (which may speak for any id): what a compromised worker host could send.
class ControlPeer {
 public:
  ControlPeer(zmq::context_t& context, const std::string& endpoint, const std::string& id)
      : socket_(context, zmq::socket_type::dealer) {
    set_curve_client(socket_, test_client_keys("worker"));
    socket_.set(zmq::sockopt::routing_id, id);
    socket_.set(zmq::sockopt::linger, 200);  // long enough for the message to leave
    socket_.connect(endpoint);
  }
  void send(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      socket_.send(zmq::buffer(frames[i]),
                   i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  // The frames of the next reply within `timeout`, or none.
  std::vector<std::string> receive(std::chrono::milliseconds timeout) {
    std::vector<std::string> frames;
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) <= 0) return frames;
    while (true) {
      zmq::message_t message;
      if (!socket_.recv(message, zmq::recv_flags::none)) break;
      frames.push_back(message.to_string());
      if (!message.more()) break;
    }
    return frames;
  }

 private:
  zmq::socket_t socket_;
};

std::string envelope(const std::string& type, const json& body, const json& v = 1) {
  return json{{"v", v},          {"type", type},  {"seq", 1},
              {"generation", 0}, {"sender", "x"}, {"body", body}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

TEST_CASE("the admin and control messages that once ended the coordinator are refused",
          "[hostile]") {
  HostileFleet hostile;
  Fleet& fleet = *hostile.fleet;
  AdminClient admin(admin_connection(fleet.admin()));
  auto call = [&](const std::string& request) {
    auto reply = admin.call_raw(request, 10s);
    REQUIRE(reply.is_ok());
    return json::parse(reply.value());
  };

  SECTION("an unknown command whose echo would split a UTF-8 character") {
    const json reply = call("{\"seq\": 41, \"cmd\": \"" + std::string(63, 'a') + "\xc3\xa9\"}");
    CHECK(reply["ok"] == false);
    CHECK(reply["seq"] == 41);
    CHECK(reply["error"]["code"] == "invalid_argument");
  }
  SECTION("a register from a routing id that is not UTF-8") {
    zmq::context_t context;
    ControlPeer peer(context, fleet.control(), "\xff\xfe\x58");
    protocol::Register request;
    request.worker_id = "\xff\xfe\x58";
    json body = request;  // the id is not UTF-8 either: sent with U+FFFD in its place
    peer.send({"register", envelope("register", body)});
    const auto refusal = peer.receive(10s);
    REQUIRE(refusal.size() == 2);
    CHECK(refusal[0] == "register_reply");
    CHECK(json::parse(refusal[1])["body"]["ok"] == false);
  }
  SECTION("a connection under a live worker's id cannot take its route or end it") {
    zmq::context_t context;
    ControlPeer impostor(context, fleet.control(), "w0");
    impostor.send({"worker_exiting", envelope("worker_exiting", {{"reason", "forged"}})});
    protocol::Register request;
    request.worker_id = "w0";
    impostor.send({"register", envelope("register", json(request))});
    // Its messages were never accepted: nothing comes back, w0 serves on, and no request for
    // w0 reaches the impostor.
    CHECK(impostor.receive(1s).empty());
    CHECK(hostile.completes());
    CHECK(impostor.receive(500ms).empty());
    const auto active = fleet.workers_in("ACTIVE");
    REQUIRE(active.size() == 1);
    CHECK(active[0]["id"] == "w0");
  }
  SECTION("sizes far above --max-workers are refused at once, with memory unchanged") {
    const long rss_before = hostile.rss_kib();
    const auto started = std::chrono::steady_clock::now();
    const json reply = call(R"({"seq": 7, "cmd": "scale", "dp": 1000000000})");
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    std::printf("scale --dp 1000000000 refused in %.2f ms (round trip), RSS %ld -> %ld KiB\n", ms,
                rss_before, hostile.rss_kib());
    CHECK(reply["ok"] == false);
    CHECK(reply["seq"] == 7);
    CHECK(reply["error"]["code"] == "resource_exhausted");
    CHECK(hostile.rss_kib() < rss_before + 16 * 1024);
  }
  SECTION("integers that would wrap are refused, not wrapped") {
    json reply = call(R"({"seq": 8, "cmd": "scale", "dp": 4294967299})");  // 2^32 + 3
    CHECK(reply["error"]["code"] == "invalid_argument");
    CHECK(reply["seq"] == 8);
    reply = call(R"({"seq": 9, "cmd": "scale", "dp": 2147483648})");
    CHECK(reply["error"]["code"] == "invalid_argument");
    reply = call(R"({"seq": 10, "cmd": "status", "v": 1099511627776})");  // 2^40
    CHECK(reply["error"]["code"] == "invalid_argument");
    CHECK(reply["seq"] == 10);
    CHECK(fleet.has_active(1));  // and nothing scaled
  }
  CHECK(fleet.coordinator().running());
  CHECK(call(R"({"seq": 99, "cmd": "status"})")["ok"] == true);
  CHECK(hostile.completes());
}

TEST_CASE("fuzz: thousands of random admin and control messages, and the coordinator serves",
          "[hostile]") {
  HostileFleet hostile;
  Fleet& fleet = *hostile.fleet;
  AdminClient admin(admin_connection(fleet.admin()));
  zmq::context_t context;
  std::mt19937_64 rng(20261205);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::vector<std::string> strange_bytes = {
      "\xff", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", std::string("\0", 1), "\x1b[2J", "\n",
      "\"",   "\\",   "\xe2\x82",     "\xc0\xaf"};
  const std::vector<std::string> strange_numbers = {"-1",
                                                    "0",
                                                    "4294967299",
                                                    "2147483648",
                                                    "-2147483649",
                                                    "18446744073709551615",
                                                    "18446744073709551616",
                                                    "1e308",
                                                    "-0",
                                                    "2.5",
                                                    "1099511627776",
                                                    "99999999999999999999999"};
  const std::vector<std::string> admin_corpus = {
      R"({"seq": 1, "cmd": "status"})",
      R"({"seq": 2, "cmd": "scale", "dp": 1})",
      R"({"seq": 3, "cmd": "eplb_rebalance"})",
      R"({"seq": 4, "cmd": "scale", "dp": 3, "v": 1, "token": "x"})",
  };
  auto mutate = [&](std::string text) {
    const int num_edits = 1 + static_cast<int>(pick(4));
    for (int e = 0; e < num_edits && !text.empty(); ++e) {
      const size_t at = pick(text.size());
      switch (pick(6)) {
        case 0:
          text[at] = static_cast<char>(rng());
          break;
        case 1:
          text.insert(at, strange_bytes[pick(strange_bytes.size())]);
          break;
        case 2:
          text.resize(at);
          break;
        case 3:
          text.insert(at, strange_numbers[pick(strange_numbers.size())]);
          break;
        case 4:
          text.insert(at, std::string(pick(3000), 'a'));
          break;
        default:
          text.erase(at, pick(8));
          break;
      }
    }
    return text;
  };
  auto random_value = [&]() -> std::string {
    switch (pick(5)) {
      case 0:
        return strange_numbers[pick(strange_numbers.size())];
      case 1:
        return "\"" + strange_bytes[pick(strange_bytes.size())] + "\"";
      case 2:
        return "[" + strange_numbers[pick(strange_numbers.size())] + "]";
      case 3:
        return "{}";
      default:
        return "null";
    }
  };
  const std::vector<std::string> types = {
      "register",  "heartbeat",   "assign_ack",     "token_batch", "worker_exiting",
      "need_wake", "expert_load", "rebalance_done", "switch",      "bogus"};
  const std::vector<std::string> fields = {"worker_id",  "outputs",   "load",   "generation",
                                           "request_id", "token_ids", "reason", "error",
                                           "per_layer",  "plan_id",   "rank"};

  constexpr int kNumBatches = 10;
  constexpr int kMessagesPerBatch = 500;
  int num_admin = 0;
  int num_control = 0;
  for (int batch = 0; batch < kNumBatches; ++batch) {
    for (int i = 0; i < kMessagesPerBatch; ++i) {
      if (pick(2) == 0) {  // admin
        const std::string request = mutate(admin_corpus[pick(admin_corpus.size())]);
        INFO(
            "admin request: " << json(request).dump(-1, ' ', true, json::error_handler_t::replace));
        auto reply = admin.call_raw(request, 10s);
        REQUIRE(reply.is_ok());
        const json parsed = json::parse(reply.value(), nullptr, false);
        REQUIRE(parsed.is_object());
        REQUIRE(parsed["ok"].is_boolean());
        if (parsed["ok"] == false) CHECK(parsed["error"]["message"].is_string());
        // When the request was an object with a seq we can read, the reply carries it.
        const json sent = json::parse(request, nullptr, false);
        if (sent.is_object() && sent.contains("seq") && sent["seq"].is_number_unsigned()) {
          CHECK(parsed["seq"] == sent["seq"]);
        }
        ++num_admin;
      } else {  // control, from a random routing id
        std::string id = "fz" + std::to_string(rng() % 1000);
        if (pick(2) == 0) {
          id.clear();
          for (size_t n = 1 + pick(12); n > 0; --n) id += static_cast<char>(1 + rng() % 255);
        }
        ControlPeer peer(context, fleet.control(), id);
        const std::string type = types[pick(types.size())];
        std::string body = "{";
        for (size_t n = pick(4); n > 0; --n) {
          body += (body.size() > 1 ? "," : "") + std::string("\"") + fields[pick(fields.size())] +
                  "\":" + random_value();
        }
        body += "}";
        std::string text = R"({"v":1,"type":")" + type +
                           R"(","seq":1,"generation":0,"sender":"x","body":)" + body + "}";
        if (pick(3) == 0) text = mutate(text);
        std::vector<std::string> frames = {pick(8) == 0 ? mutate(type) : type, text};
        if (pick(10) == 0) frames.resize(pick(2));  // truncated
        if (pick(10) == 0) frames.push_back(std::string(pick(100), '\xff'));
        if (!frames.empty()) peer.send(frames);
        ++num_control;
      }
    }
    INFO("after batch " << batch << ": " << num_admin << " admin, " << num_control
                        << " control messages");
    REQUIRE(fleet.coordinator().running());
    REQUIRE(hostile.completes());
  }
  std::printf("fuzz: %d admin and %d control messages; the coordinator answered and served\n",
              num_admin, num_control);
  // A mutated request may still be a valid scale: the size may have changed, the service not.
  CHECK(fleet.status()["active_dp"].get<int>() >= 1);
}

TEST_CASE("20000 idle HTTP connections: completions and eepctl status are still answered",
          "[hostile]") {
  // Two client processes of 10,000 connections each (one process's open-file limit may not hold
  // 20,000); the coordinator raises its own limit for --max-connections (default 10000) and
  // closes the oldest idle connections to make room.
  constexpr int kNumProcesses = 2;
  constexpr int kPerProcess = 10000;
  HostileFleet hostile;
  Fleet& fleet = *hostile.fleet;
  const auto started = std::chrono::steady_clock::now();
  std::vector<ChildProcess> holders;
  for (int p = 0; p < kNumProcesses; ++p) {
    SpawnOptions options;
    options.log_path = hostile.dir.file("holder" + std::to_string(p) + ".log");
    auto holder = ChildProcess::spawn(
        {"python3", std::string(EEP_SOURCE_DIR) + "/tests/helpers/hold_connections.py", "127.0.0.1",
         std::to_string(fleet.http_port()), std::to_string(kPerProcess)},
        options);
    REQUIRE(holder.is_ok());
    holders.push_back(std::move(holder).value());
  }
  for (int p = 0; p < kNumProcesses; ++p) {
    const std::string log = hostile.dir.file("holder" + std::to_string(p) + ".log");
    const bool held = eventually(
        [&] { return read_file(log).find("held") != std::string::npos || !holders[p].running(); },
        120s);
    INFO(read_file(log));
    REQUIRE(held);
    REQUIRE(read_file(log).find("held " + std::to_string(kPerProcess)) != std::string::npos);
  }
  std::printf("%d idle HTTP connections opened in %.1f s\n", kNumProcesses * kPerProcess,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  CHECK(hostile.completes());
  CHECK(fleet.status()["active_dp"] == 1);
  CHECK(fleet.coordinator().running());
  for (ChildProcess& holder : holders) holder.stop(1s);
}
