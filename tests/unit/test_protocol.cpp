#include <catch2/catch.hpp>

#include "eep/common/protocol.h"
#include "eep/common/text.h"

using namespace eep;
using namespace eep::protocol;
using nlohmann::json;

namespace {

// Encodes a message in its envelope, decodes it back and returns the body.
template <typename T>
T round_trip(const T& message) {
  Envelope envelope = make_envelope(message, 42, 7, "sender-1");
  Frames frames = encode(envelope);
  auto decoded = decode(frames.type, frames.json);
  REQUIRE(decoded.is_ok());
  CHECK(decoded->seq == 42);
  CHECK(decoded->generation == 7);
  CHECK(decoded->sender == "sender-1");
  CHECK(decoded->type == T::kType);
  CHECK(check_version(decoded.value()).is_ok());
  auto body = parse_body<T>(decoded.value());
  REQUIRE(body.is_ok());
  return body.value();
}

}  // namespace

TEST_CASE("every control message round-trips through its envelope", "[protocol]") {
  Register reg{"w3", "node-a", 1234, "cuda", 2, "secret"};
  Register reg2 = round_trip(reg);
  CHECK(reg2.worker_id == "w3");
  CHECK(reg2.host == "node-a");
  CHECK(reg2.pid == 1234);
  CHECK(reg2.device == "cuda");
  CHECK(reg2.device_idx == 2);
  CHECK(reg2.fleet_token == "secret");

  RegisterReply refused{false, ErrorBody{"unauthenticated", "wrong fleet token"}, 0, 0};
  RegisterReply refused2 = round_trip(refused);
  CHECK_FALSE(refused2.ok);
  REQUIRE(refused2.error);
  CHECK(refused2.error->code == "unauthenticated");
  CHECK(refused2.error->message == "wrong fleet token");
  RegisterReply accepted{true, std::nullopt, 1000, 3000};
  RegisterReply accepted2 = round_trip(accepted);
  CHECK(accepted2.ok);
  CHECK_FALSE(accepted2.error);
  CHECK(accepted2.heartbeat_interval_ms == 1000);
  CHECK(accepted2.heartbeat_timeout_ms == 3000);

  Heartbeat beat{5, 3, {}};
  Heartbeat beat2 = round_trip(beat);
  CHECK(beat2.generation == 5);
  CHECK(beat2.rank == 3);

  Assign assign{
      4,  1,           3, {"w0", "w1", "w2"}, {"node-a", 29500}, {"node-a", 29501}, std::nullopt,
      {}, std::nullopt};
  Assign assign2 = round_trip(assign);
  CHECK(assign2.previous_members.empty());
  CHECK_FALSE(assign2.previous_placement);
  assign.previous_members = {"w0", "w1"};
  assign.previous_placement = Placement::round_robin(2, 4, 2, 2).value();
  const Assign scaled = round_trip(assign);
  CHECK(scaled.previous_members == assign.previous_members);
  REQUIRE(scaled.previous_placement);
  CHECK(scaled.previous_placement->phy2log == assign.previous_placement->phy2log);
  CHECK(assign2.generation == 4);
  CHECK(assign2.rank == 1);
  CHECK(assign2.world_size == 3);
  CHECK(assign2.members == std::vector<std::string>{"w0", "w1", "w2"});
  CHECK(assign2.control_store.host == "node-a");
  CHECK(assign2.control_store.port == 29500);
  CHECK(assign2.ep_store.port == 29501);

  AssignAck ack{.generation = 4, .rank = 1, .capacity = std::nullopt, .error = ""};
  ack.weight_bytes_from_peers = 1000;
  ack.weight_transfer_s = 0.25;
  AssignAck ack2 = round_trip(ack);
  CHECK(ack2.weight_bytes_from_peers == 1000);
  CHECK(ack2.weight_bytes_from_checkpoint == 0);
  CHECK(ack2.weight_transfer_s == 0.25);
  CHECK(ack2.generation == 4);
  CHECK(ack2.rank == 1);

  CHECK(round_trip(Shutdown{"retired", false}).reason == "retired");
  CHECK_FALSE(round_trip(Shutdown{"retired", false}).whole_fleet);
  CHECK(round_trip(Shutdown{"coordinator shutdown", true}).whole_fleet);
  CHECK(round_trip(Shutdown{"declared dead", false, true}).register_again);
  CHECK_FALSE(round_trip(Shutdown{"retired", false}).register_again);
  CHECK(round_trip(WorkerExiting{"signal 15"}).reason == "signal 15");

  // Fault tolerance (docs/fault_tolerance.md).
  CHECK_FALSE(assign2.recovery);
  assign.recovery = true;
  CHECK(round_trip(assign).recovery);
  const GenerationLost lost = round_trip(GenerationLost{7, "all_to_all_v failed: reset"});
  CHECK(lost.generation == 7);
  CHECK(lost.reason == "all_to_all_v failed: reset");
}

TEST_CASE("a heartbeat socket's identity names its worker and no worker can take it",
          "[protocol]") {
  CHECK(heartbeat_identity("w0") == "w0/hb");
  CHECK(heartbeat_owner("w0/hb") == "w0");
  CHECK(heartbeat_owner("gpu-3.x@7/hb") == "gpu-3.x@7");
  CHECK_FALSE(heartbeat_owner("w0"));
  CHECK_FALSE(heartbeat_owner("/hb"));
  CHECK_FALSE(heartbeat_owner("w 0/hb"));  // the owner must be a valid worker id
  CHECK_FALSE(heartbeat_owner("w0/hb/hb"));
  CHECK_FALSE(is_valid_worker_id(heartbeat_identity("w0")));
}

TEST_CASE("every message type has a name that maps back", "[protocol]") {
  for (MsgType type : {MsgType::kRegister, MsgType::kRegisterReply, MsgType::kHeartbeat,
                       MsgType::kAssign, MsgType::kAssignAck, MsgType::kShutdown,
                       MsgType::kWorkerExiting, MsgType::kGenerationLost}) {
    auto name = to_string(type);
    CHECK(name != "unknown");
    CHECK(msg_type_from_string(name) == type);
  }
  for (WorkerState state : {WorkerState::kSpare, WorkerState::kJoining, WorkerState::kActive,
                            WorkerState::kLeaving, WorkerState::kDead}) {
    CHECK(worker_state_from_string(to_string(state)) == state);
  }
}

TEST_CASE("admin status reply round-trips", "[protocol]") {
  StatusReply status;
  status.generation = 3;
  status.active_dp = 2;
  status.launcher = "local";
  status.device = "cpu";
  status.workers.push_back({"w0", "ACTIVE", 0, "node", 11, 3, "cpu", 0, 120, "", {}});
  status.workers.push_back({"w5", "DEAD", -1, "node", 12, -1, "cpu", 5, 4000, "no heartbeat", {}});
  status.scale = {
      "scale", "failed", "FAILED", 2, 4, 4, "worker w3 lost", 1.5, {{"WAIT_WORKERS", 1.5}}};
  json j = status;
  auto back = json::parse(j.dump()).get<StatusReply>();
  CHECK(back.generation == 3);
  CHECK(back.active_dp == 2);
  REQUIRE(back.workers.size() == 2);
  CHECK(back.workers[1].reason == "no heartbeat");
  CHECK(back.workers[0].rank == 0);
  CHECK(back.scale.reason == "worker w3 lost");
  REQUIRE(back.scale.timeline.size() == 1);
  CHECK(back.scale.timeline[0].stage == "WAIT_WORKERS");
  CHECK_FALSE(back.eplb);                  // no model known: no "eplb" object
  CHECK_FALSE(back.num_store_ports_live);  // an older coordinator's reply has none
  status.num_store_ports_live = 2;
  CHECK(json::parse(json(status).dump()).get<StatusReply>().num_store_ports_live == 2);

  EplbInfo eplb;
  eplb.enabled = true;
  eplb.window_steps = 1000;
  eplb.balancedness = 0.75;
  eplb.per_layer = {0.5, 1.0};
  eplb.in_progress = 4;
  eplb.last_rebalance =
      EplbRebalanceInfo{3, 3, false, "rank 1: peer gone", 0.5, 0.9, 4096, 1.5, 0.75, 20.0};
  status.eplb = eplb;
  back = json::parse(json(status).dump()).get<StatusReply>();
  REQUIRE(back.eplb);
  CHECK(back.eplb->enabled);
  CHECK(back.eplb->window_steps == 1000);
  CHECK(back.eplb->balancedness == 0.75);
  CHECK(back.eplb->per_layer == eplb.per_layer);
  CHECK(back.eplb->in_progress == 4u);
  REQUIRE(back.eplb->last_rebalance);
  CHECK(back.eplb->last_rebalance->error == "rank 1: peer gone");
  CHECK(back.eplb->last_rebalance->bytes_moved == 4096);
  CHECK(back.eplb->last_rebalance->move_seconds == 0.75);
  CHECK(back.eplb->last_rebalance->longest_step_gap_ms == 20.0);

  // An empty window and nothing in flight travel as nulls.
  status.eplb = EplbInfo{};
  j = status;
  CHECK(j["eplb"]["balancedness"].is_null());
  back = json::parse(j.dump()).get<StatusReply>();
  REQUIRE(back.eplb);
  CHECK_FALSE(back.eplb->balancedness);
  CHECK_FALSE(back.eplb->in_progress);
  CHECK_FALSE(back.eplb->last_rebalance);
}

TEST_CASE("admin requests round-trip and bad ones are refused with a reason", "[protocol]") {
  AdminRequest scale;
  scale.cmd = AdminCommand::kScale;
  scale.seq = 9;
  scale.dp = 4;
  scale.token = "t";
  auto parsed = parse_admin_request(serialize(scale));
  REQUIRE(parsed.is_ok());
  CHECK(parsed->cmd == AdminCommand::kScale);
  CHECK(parsed->dp == 4);
  CHECK(parsed->seq == 9);
  CHECK(parsed->token == "t");

  struct Case {
    const char* input;
    ErrorCode code;
    const char* mentions;
  };
  const Case cases[] = {
      {"not json at all", ErrorCode::kInvalidArgument, "not JSON"},
      {"", ErrorCode::kInvalidArgument, "not JSON"},
      {"[1,2]", ErrorCode::kInvalidArgument, "object"},
      {R"({"cmd":"frobnicate"})", ErrorCode::kInvalidArgument, "unknown command"},
      {R"({"cmd":7})", ErrorCode::kInvalidArgument, "cmd"},
      {R"({"nocmd":true})", ErrorCode::kInvalidArgument, "cmd"},
      {R"({"cmd":"scale"})", ErrorCode::kInvalidArgument, "dp"},
      {R"({"cmd":"scale","dp":"4"})", ErrorCode::kInvalidArgument, "integer"},
      {R"({"cmd":"scale","dp":2.5})", ErrorCode::kInvalidArgument, "integer"},
      {R"({"cmd":"status","seq":"x"})", ErrorCode::kInvalidArgument, "seq"},
      {R"({"cmd":"status","v":99})", ErrorCode::kVersionMismatch, "version"},
      // Integers out of a field's range are refused, never wrapped (4294967299 was read as 3).
      {R"({"cmd":"scale","dp":4294967299})", ErrorCode::kInvalidArgument, "out of range"},
      {R"({"cmd":"scale","dp":2147483648})", ErrorCode::kInvalidArgument, "out of range"},
      {R"({"cmd":"scale","dp":-2147483649})", ErrorCode::kInvalidArgument, "out of range"},
      {R"({"cmd":"status","v":1099511627776})", ErrorCode::kInvalidArgument, "out of range"},
      {R"({"cmd":"status","seq":-1})", ErrorCode::kInvalidArgument, "out of range"},
      {R"({"cmd":"status","seq":1e3})", ErrorCode::kInvalidArgument, "integer"},
  };
  for (const Case& c : cases) {
    INFO(c.input);
    auto result = parse_admin_request(c.input);
    REQUIRE_FALSE(result.is_ok());
    CHECK(result.status().code() == c.code);
    CHECK_THAT(result.status().message(), Catch::Contains(c.mentions));
  }
}

TEST_CASE("an admin refusal knows the request's seq, and echoes only valid UTF-8", "[protocol]") {
  uint64_t seq = 0;
  // 63 bytes and an e-acute: cutting the echo at 64 bytes would split the character.
  const std::string frame = R"({"seq": 41, "cmd": ")" + std::string(63, 'a') + "\xc3\xa9\"}";
  auto result = parse_admin_request(frame, &seq);
  REQUIRE_FALSE(result.is_ok());
  CHECK(seq == 41);
  CHECK(eep::is_valid_utf8(result.status().message()));
  // The reply serialises (nlohmann's dump() threw type_error.316 on the cut character).
  CHECK_NOTHROW(to_wire(admin_error(seq, result.status())));
  CHECK_NOTHROW(to_wire(json{{"bad", std::string("\xff\xfe\x58")}}));
  CHECK(to_wire(json{{"bad", std::string("a\xff")}}) == "{\"bad\":\"a\xef\xbf\xbd\"}");
}

TEST_CASE("nested integers are range-checked too (token ids, placements)", "[protocol]") {
  TokenBatch batch;
  batch.outputs.push_back(RequestOutput{1, {5, 6}, false, "", ""});
  Envelope envelope = make_envelope(batch, 1, 0, "w0");
  REQUIRE(parse_body<TokenBatch>(envelope).is_ok());
  envelope.body["outputs"][0]["new_tokens"][1] = uint64_t{4294967301};  // 2^32 + 5
  auto body = parse_body<TokenBatch>(envelope);
  REQUIRE_FALSE(body.is_ok());
  CHECK_THAT(body.status().message(), Catch::Contains("out of range"));
}

TEST_CASE("worker ids are short names of safe characters", "[protocol]") {
  CHECK(is_valid_worker_id("w0"));
  CHECK(is_valid_worker_id("gpu-host-3.example_1:eep-worker@7"));
  CHECK_FALSE(is_valid_worker_id(""));
  CHECK_FALSE(is_valid_worker_id("\xff\xfe\x58"));
  CHECK_FALSE(is_valid_worker_id("w 0"));
  CHECK_FALSE(is_valid_worker_id("w0\n[coord] forged line"));
  CHECK(is_valid_worker_id(std::string(kMaxWorkerIdBytes, 'w')));  // the limit is inclusive
  CHECK_FALSE(is_valid_worker_id(std::string(kMaxWorkerIdBytes + 1, 'w')));
}

TEST_CASE("malformed control frames are errors, not crashes", "[protocol]") {
  CHECK_FALSE(decode("bogus", "{}").is_ok());
  CHECK_FALSE(decode("heartbeat", "not json").is_ok());
  CHECK_FALSE(decode("heartbeat",
                     R"({"v":1,"type":"assign","seq":1,"generation":0,"sender":"x","body":{}})")
                  .is_ok());
  CHECK_FALSE(
      decode("heartbeat",
             R"({"v":1,"type":"heartbeat","seq":"one","generation":0,"sender":"x","body":{}})")
          .is_ok());
  auto envelope = decode(
      "heartbeat",
      R"({"v":1,"type":"heartbeat","seq":1,"generation":0,"sender":"x","body":{"generation":"zero","rank":0}})");
  REQUIRE(envelope.is_ok());
  auto body = parse_body<Heartbeat>(envelope.value());
  REQUIRE_FALSE(body.is_ok());
  CHECK(body.status().code() == ErrorCode::kInvalidArgument);
  CHECK_FALSE(parse_body<Assign>(envelope.value()).is_ok());

  auto old = decode("register",
                    R"({"v":0,"type":"register","seq":1,"generation":-1,"sender":"w9","body":{}})");
  REQUIRE(old.is_ok());
  Status version = check_version(old.value());
  CHECK(version.code() == ErrorCode::kVersionMismatch);
  CHECK_THAT(version.message(), Catch::Contains("w9"));
}

TEST_CASE("admin replies carry ok or an error with code and message", "[protocol]") {
  json ok = admin_ok(3, {{"message", "fine"}});
  CHECK(ok["ok"] == true);
  CHECK(ok["seq"] == 3);
  CHECK(admin_reply_status(ok).is_ok());
  json bad = admin_error(4, error(ErrorCode::kResourceExhausted, "no ports"));
  CHECK(bad["ok"] == false);
  CHECK(bad["error"]["code"] == "resource_exhausted");
  CHECK(bad["error"]["message"] == "no ports");
  Status status = admin_reply_status(bad);
  CHECK(status.code() == ErrorCode::kResourceExhausted);
  CHECK(status.message() == "no ports");
}

TEST_CASE("serving messages round-trip through their envelope", "[protocol]") {
  SubmitRequest submit;
  submit.request_id = 77;
  submit.prompt_ids = {1, 2, 3};
  submit.output_ids = {9};
  submit.params = {32, 0.7f, 0.9f, 1234, true, {5, 6}};
  SubmitRequest submit2 = round_trip(submit);
  CHECK(submit2.request_id == 77);
  CHECK(submit2.prompt_ids == std::vector<int32_t>{1, 2, 3});
  CHECK(submit2.output_ids == std::vector<int32_t>{9});
  CHECK(submit2.params.max_tokens == 32);
  CHECK(submit2.params.temperature == Approx(0.7f));
  CHECK(submit2.params.top_p == Approx(0.9f));
  CHECK(submit2.params.seed == 1234);
  CHECK(submit2.params.ignore_eos);
  CHECK(submit2.params.stop_token_ids == std::vector<int32_t>{5, 6});

  CHECK(round_trip(CancelRequest{77}).request_id == 77);

  TokenBatch batch;
  batch.step = 12;
  batch.outputs.push_back({77, {4, 5}, false, "", ""});
  batch.outputs.push_back({78, {}, true, "error", "KV cache full"});
  batch.load = {3, 1, 40, 64};
  TokenBatch batch2 = round_trip(batch);
  CHECK(batch2.step == 12);
  REQUIRE(batch2.outputs.size() == 2);
  CHECK(batch2.outputs[0].new_tokens == std::vector<int32_t>{4, 5});
  CHECK_FALSE(batch2.outputs[0].finished);
  CHECK(batch2.outputs[1].finished);
  CHECK(batch2.outputs[1].finish_reason == "error");
  CHECK(batch2.outputs[1].error == "KV cache full");
  CHECK(batch2.load.num_running == 3);
  CHECK(batch2.load.num_free_kv_blocks == 40);

  CHECK(round_trip(Wake{5}).epoch == 5);
  round_trip(NeedWake{});

  AssignAck ack{.generation = 2,
                .rank = 1,
                .capacity = ModelCapacity{"tiny", 512, 4096, 256, 16},
                .error = ""};
  AssignAck ack2 = round_trip(ack);
  REQUIRE(ack2.capacity);
  CHECK(ack2.capacity->model == "tiny");
  CHECK(ack2.capacity->max_model_len == 4096);
  CHECK_FALSE(
      round_trip(AssignAck{.generation = 2, .rank = 1, .capacity = std::nullopt, .error = ""})
          .capacity);
  CHECK(round_trip(
            AssignAck{.generation = 2, .rank = 1, .capacity = std::nullopt, .error = "cannot bind"})
            .error == "cannot bind");

  Heartbeat beat{3, 0, {1, 2, 3, 4}};
  CHECK(round_trip(beat).load.num_kv_blocks == 4);
}

TEST_CASE("EPLB messages round-trip, and Assign carries an optional placement", "[protocol]") {
  for (MsgType type : {MsgType::kExpertLoad, MsgType::kRebalance, MsgType::kRebalanceDone}) {
    CHECK(msg_type_from_string(to_string(type)) == type);
  }
  ExpertLoad load{3, 1, 16, {{1, 2, 3, 4}, {5, 6, 7, 8}}};
  ExpertLoad load2 = round_trip(load);
  CHECK(load2.generation == 3);
  CHECK(load2.rank == 1);
  CHECK(load2.num_steps == 16);
  CHECK(load2.counts == load.counts);

  auto placement = Placement::round_robin(2, 3, 2, 2);
  REQUIRE(placement.is_ok());
  Rebalance rebalance{3, 7, 2, placement.value()};
  Rebalance rebalance2 = round_trip(rebalance);
  CHECK(rebalance2.plan_id == 7);
  CHECK(rebalance2.layers_per_step == 2);
  CHECK(rebalance2.placement.phy2log == placement->phy2log);

  RebalanceDone done{3, 7, 1, 1 << 20, 0.25, 0.125, 4.5, ""};
  RebalanceDone done2 = round_trip(done);
  CHECK(done2.bytes_moved == (1u << 20));
  CHECK(done2.move_seconds == 0.125);
  CHECK(done2.longest_step_gap_ms == 4.5);
  CHECK(done2.error.empty());

  Assign assign{4, 1, 2, {"w0", "w1"}, {"h", 1}, {"h", 2}, placement.value(), {}, std::nullopt};
  Assign assign2 = round_trip(assign);
  REQUIRE(assign2.placement);
  CHECK(assign2.placement->phy2log == placement->phy2log);
  Assign bare{4, 1, 2, {"w0", "w1"}, {"h", 1}, {"h", 2}, std::nullopt, {}, std::nullopt};
  CHECK_FALSE(round_trip(bare).placement);

  auto admin = parse_admin_request(R"({"v": 1, "cmd": "eplb_rebalance", "seq": 3})");
  REQUIRE(admin.is_ok());
  CHECK(admin->cmd == AdminCommand::kEplbRebalance);
}

TEST_CASE("a placement's integers are range-checked, not wrapped", "[protocol]") {
  Assign assign;
  assign.generation = 2;
  assign.rank = 0;
  assign.world_size = 1;
  assign.members = {"w0"};
  assign.placement = Placement::round_robin(2, 4, 1, 4).value();
  Envelope envelope = make_envelope(assign, 1, 1, "coordinator");
  REQUIRE(parse_body<Assign>(envelope).is_ok());
  envelope.body["placement"]["phy2log"][1][2] = uint64_t{4294967299};  // 2^32 + 3
  auto wrapped = parse_body<Assign>(envelope);
  REQUIRE_FALSE(wrapped.is_ok());
  CHECK_THAT(wrapped.status().message(), Catch::Contains("out of range"));
  envelope.body["placement"]["phy2log"][1][2] = 2.5;
  CHECK_FALSE(parse_body<Assign>(envelope).is_ok());
}
