#include "eep/common/protocol.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "eep/common/text.h"

namespace eep::protocol {
namespace {

using nlohmann::json;

constexpr std::array<std::pair<MsgType, std::string_view>, 16> kMsgTypeNames = {{
    {MsgType::kRegister, "register"},
    {MsgType::kRegisterReply, "register_reply"},
    {MsgType::kHeartbeat, "heartbeat"},
    {MsgType::kAssign, "assign"},
    {MsgType::kAssignAck, "assign_ack"},
    {MsgType::kShutdown, "shutdown"},
    {MsgType::kWorkerExiting, "worker_exiting"},
    {MsgType::kSubmitRequest, "submit_request"},
    {MsgType::kCancelRequest, "cancel_request"},
    {MsgType::kTokenBatch, "token_batch"},
    {MsgType::kWake, "wake"},
    {MsgType::kNeedWake, "need_wake"},
    {MsgType::kExpertLoad, "expert_load"},
    {MsgType::kRebalance, "rebalance"},
    {MsgType::kRebalanceDone, "rebalance_done"},
    {MsgType::kSwitch, "switch"},
}};

constexpr std::array<std::pair<WorkerState, std::string_view>, 5> kWorkerStateNames = {{
    {WorkerState::kSpare, "SPARE"},
    {WorkerState::kJoining, "JOINING"},
    {WorkerState::kActive, "ACTIVE"},
    {WorkerState::kLeaving, "LEAVING"},
    {WorkerState::kDead, "DEAD"},
}};

constexpr std::array<std::pair<AdminCommand, std::string_view>, 4> kAdminCommandNames = {{
    {AdminCommand::kStatus, "status"},
    {AdminCommand::kScale, "scale"},
    {AdminCommand::kShutdown, "shutdown"},
    {AdminCommand::kEplbRebalance, "eplb_rebalance"},
}};

template <typename Enum, size_t N>
std::string_view name_of(const std::array<std::pair<Enum, std::string_view>, N>& table,
                         Enum value) {
  for (const auto& [entry, name] : table) {
    if (entry == value) return name;
  }
  return "unknown";
}

template <typename Enum, size_t N>
std::optional<Enum> value_of(const std::array<std::pair<Enum, std::string_view>, N>& table,
                             std::string_view name) {
  for (const auto& [entry, entry_name] : table) {
    if (entry_name == name) return entry;
  }
  return std::nullopt;
}

// A missing or mistyped field, named. Thrown inside from_json, caught where parsing starts.
struct FieldError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T>
struct IsVector : std::false_type {};
template <typename T>
struct IsVector<std::vector<T>> : std::true_type {};

// nlohmann converts any number to any arithmetic type with a static_cast: 4294967299 read as an
// int is 3, and 2.5 is 2. Integers are therefore read here, whole numbers only, and refused when
// out of the field's range; arrays element by element (token ids, placements).
template <typename T>
void read_value(const json& value, const char* key, T& out) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (!value.is_number_integer()) {
      throw FieldError("field \"" + std::string(key) + "\": must be an integer, got " +
                       (value.is_number() ? std::string("a fraction") : value.type_name()));
    }
    bool in_range = false;
    if (value.is_number_unsigned()) {
      const uint64_t number = value.get<uint64_t>();
      in_range = number <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    } else {
      const int64_t number = value.get<int64_t>();
      in_range = std::is_signed_v<T>
                     ? number >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                           number <= static_cast<int64_t>(std::numeric_limits<T>::max())
                     : number >= 0 && static_cast<uint64_t>(number) <=
                                          static_cast<uint64_t>(std::numeric_limits<T>::max());
    }
    if (!in_range) {
      throw FieldError("field \"" + std::string(key) + "\": " + value.dump() +
                       " is out of range [" + std::to_string(std::numeric_limits<T>::min()) + ", " +
                       std::to_string(std::numeric_limits<T>::max()) + "]");
    }
    out = value.get<T>();
  } else if constexpr (IsVector<T>::value && !std::is_same_v<T, std::vector<bool>>) {
    if (!value.is_array()) {
      throw FieldError("field \"" + std::string(key) + "\": must be an array, got " +
                       value.type_name());
    }
    out.clear();
    out.resize(value.size());
    for (size_t i = 0; i < value.size(); ++i) read_value(value[i], key, out[i]);
  } else {
    value.get_to(out);
  }
}

template <typename T>
void read_field(const json& value, const char* key, T& out) {
  try {
    read_value(value, key, out);
  } catch (const FieldError&) {
    throw;
  } catch (const json::exception& e) {
    // e.what() is "[json.exception.type_error.302] type must be ..."; keep the readable part.
    std::string what = e.what();
    auto bracket = what.find("] ");
    throw FieldError("field \"" + std::string(key) +
                     "\": " + (bracket == std::string::npos ? what : what.substr(bracket + 2)));
  }
}

template <typename T>
void required(const json& j, const char* key, T& out) {
  if (!j.is_object()) throw FieldError("expected an object holding \"" + std::string(key) + "\"");
  auto it = j.find(key);
  if (it == j.end()) throw FieldError("missing field \"" + std::string(key) + "\"");
  read_field(*it, key, out);
}

// Keeps the default when missing or null, still refuses a wrong type.
template <typename T>
void optional_field(const json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it != j.end() && !it->is_null()) read_field(*it, key, out);
}

// Absent or null: nullopt; otherwise read (a wrong type still fails).
template <typename T>
void optional_value(const json& j, const char* key, std::optional<T>& out) {
  out.reset();
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  T value{};
  read_field(*it, key, value);
  out = std::move(value);
}

}  // namespace

std::string_view to_string(MsgType type) {
  return name_of(kMsgTypeNames, type);
}
std::optional<MsgType> msg_type_from_string(std::string_view name) {
  return value_of(kMsgTypeNames, name);
}
std::string_view to_string(WorkerState state) {
  return name_of(kWorkerStateNames, state);
}
std::optional<WorkerState> worker_state_from_string(std::string_view name) {
  return value_of(kWorkerStateNames, name);
}
std::string_view to_string(AdminCommand command) {
  return name_of(kAdminCommandNames, command);
}
std::optional<AdminCommand> admin_command_from_string(std::string_view name) {
  return value_of(kAdminCommandNames, name);
}

void to_json(json& j, const ErrorBody& m) {
  j = json{{"code", m.code}, {"message", m.message}};
}
void from_json(const json& j, ErrorBody& m) {
  required(j, "code", m.code);
  required(j, "message", m.message);
}

void to_json(json& j, const Register& m) {
  j = json{{"worker_id", m.worker_id},
           {"host", m.host},
           {"pid", m.pid},
           {"device", m.device},
           {"device_idx", m.device_idx},
           {"fleet_token", m.fleet_token}};
}
void from_json(const json& j, Register& m) {
  required(j, "worker_id", m.worker_id);
  required(j, "host", m.host);
  required(j, "pid", m.pid);
  required(j, "device", m.device);
  required(j, "device_idx", m.device_idx);
  optional_field(j, "fleet_token", m.fleet_token);
}

void to_json(json& j, const RegisterReply& m) {
  j = json{{"ok", m.ok},
           {"heartbeat_interval_ms", m.heartbeat_interval_ms},
           {"heartbeat_timeout_ms", m.heartbeat_timeout_ms}};
  if (m.error) j["error"] = *m.error;
}
void from_json(const json& j, RegisterReply& m) {
  required(j, "ok", m.ok);
  required(j, "heartbeat_interval_ms", m.heartbeat_interval_ms);
  required(j, "heartbeat_timeout_ms", m.heartbeat_timeout_ms);
  m.error.reset();
  if (auto it = j.find("error"); it != j.end() && !it->is_null()) m.error = it->get<ErrorBody>();
}

void to_json(json& j, const Heartbeat& m) {
  j = json{{"generation", m.generation}, {"rank", m.rank}, {"load", m.load}};
}
void from_json(const json& j, Heartbeat& m) {
  required(j, "generation", m.generation);
  required(j, "rank", m.rank);
  optional_field(j, "load", m.load);
}

void to_json(json& j, const StoreEndpoint& m) {
  j = json{{"host", m.host}, {"port", m.port}};
}
void from_json(const json& j, StoreEndpoint& m) {
  required(j, "host", m.host);
  required(j, "port", m.port);
}

void to_json(json& j, const Assign& m) {
  j = json{{"generation", m.generation},       {"rank", m.rank},
           {"world_size", m.world_size},       {"members", m.members},
           {"control_store", m.control_store}, {"ep_store", m.ep_store}};
  if (m.placement) j["placement"] = *m.placement;
  if (!m.previous_members.empty()) j["previous_members"] = m.previous_members;
  if (m.previous_placement) j["previous_placement"] = *m.previous_placement;
}
void from_json(const json& j, Assign& m) {
  required(j, "generation", m.generation);
  required(j, "rank", m.rank);
  required(j, "world_size", m.world_size);
  required(j, "members", m.members);
  required(j, "control_store", m.control_store);
  required(j, "ep_store", m.ep_store);
  m.placement.reset();
  if (auto it = j.find("placement"); it != j.end() && !it->is_null()) {
    m.placement = it->get<Placement>();
  }
  m.previous_members.clear();
  optional_field(j, "previous_members", m.previous_members);
  m.previous_placement.reset();
  if (auto it = j.find("previous_placement"); it != j.end() && !it->is_null()) {
    m.previous_placement = it->get<Placement>();
  }
}

void to_json(json& j, const ModelCapacity& m) {
  j = json{{"model", m.model},
           {"vocab_size", m.vocab_size},
           {"max_model_len", m.max_model_len},
           {"num_kv_blocks", m.num_kv_blocks},
           {"block_size", m.block_size}};
}
void from_json(const json& j, ModelCapacity& m) {
  required(j, "model", m.model);
  required(j, "vocab_size", m.vocab_size);
  required(j, "max_model_len", m.max_model_len);
  required(j, "num_kv_blocks", m.num_kv_blocks);
  required(j, "block_size", m.block_size);
}

void to_json(json& j, const AssignAck& m) {
  j = json{{"generation", m.generation}, {"rank", m.rank}};
  if (m.capacity) j["capacity"] = *m.capacity;
  if (!m.error.empty()) j["error"] = m.error;
  if (m.weight_bytes_from_peers != 0) j["weight_bytes_from_peers"] = m.weight_bytes_from_peers;
  if (m.weight_bytes_from_checkpoint != 0) {
    j["weight_bytes_from_checkpoint"] = m.weight_bytes_from_checkpoint;
  }
  if (m.weight_transfer_s != 0) j["weight_transfer_s"] = m.weight_transfer_s;
  if (!m.build_stages.empty()) j["build_stages"] = m.build_stages;
}
void from_json(const json& j, AssignAck& m) {
  required(j, "generation", m.generation);
  required(j, "rank", m.rank);
  m.capacity.reset();
  if (auto it = j.find("capacity"); it != j.end() && !it->is_null()) {
    m.capacity.emplace();
    from_json(*it, *m.capacity);
  }
  optional_field(j, "error", m.error);
  optional_field(j, "weight_bytes_from_peers", m.weight_bytes_from_peers);
  optional_field(j, "weight_bytes_from_checkpoint", m.weight_bytes_from_checkpoint);
  optional_field(j, "weight_transfer_s", m.weight_transfer_s);
  optional_field(j, "build_stages", m.build_stages);
}

void to_json(json& j, const SamplingParams& m) {
  j = json{{"max_tokens", m.max_tokens}, {"temperature", m.temperature},
           {"top_p", m.top_p},           {"seed", m.seed},
           {"ignore_eos", m.ignore_eos}, {"stop_token_ids", m.stop_token_ids}};
}
void from_json(const json& j, SamplingParams& m) {
  required(j, "max_tokens", m.max_tokens);
  required(j, "temperature", m.temperature);
  required(j, "top_p", m.top_p);
  required(j, "seed", m.seed);
  optional_field(j, "ignore_eos", m.ignore_eos);
  optional_field(j, "stop_token_ids", m.stop_token_ids);
}

void to_json(json& j, const SubmitRequest& m) {
  j = json{{"request_id", m.request_id},
           {"prompt_ids", m.prompt_ids},
           {"output_ids", m.output_ids},
           {"params", m.params}};
}
void from_json(const json& j, SubmitRequest& m) {
  required(j, "request_id", m.request_id);
  required(j, "prompt_ids", m.prompt_ids);
  optional_field(j, "output_ids", m.output_ids);
  required(j, "params", m.params);
}

void to_json(json& j, const CancelRequest& m) {
  j = json{{"request_id", m.request_id}};
}
void from_json(const json& j, CancelRequest& m) {
  required(j, "request_id", m.request_id);
}

void to_json(json& j, const RequestOutput& m) {
  j = json{{"request_id", m.request_id}, {"new_tokens", m.new_tokens}, {"finished", m.finished}};
  if (m.finished) j["finish_reason"] = m.finish_reason;
  if (!m.error.empty()) j["error"] = m.error;
}
void from_json(const json& j, RequestOutput& m) {
  required(j, "request_id", m.request_id);
  required(j, "new_tokens", m.new_tokens);
  required(j, "finished", m.finished);
  optional_field(j, "finish_reason", m.finish_reason);
  optional_field(j, "error", m.error);
}

void to_json(json& j, const WorkerLoad& m) {
  j = json{{"num_running", m.num_running},
           {"num_waiting", m.num_waiting},
           {"num_free_kv_blocks", m.num_free_kv_blocks},
           {"num_kv_blocks", m.num_kv_blocks}};
}
void from_json(const json& j, WorkerLoad& m) {
  required(j, "num_running", m.num_running);
  required(j, "num_waiting", m.num_waiting);
  required(j, "num_free_kv_blocks", m.num_free_kv_blocks);
  required(j, "num_kv_blocks", m.num_kv_blocks);
}

void to_json(json& j, const TokenBatch& m) {
  j = json{{"step", m.step}, {"outputs", m.outputs}, {"load", m.load}};
}
void from_json(const json& j, TokenBatch& m) {
  required(j, "step", m.step);
  required(j, "outputs", m.outputs);
  required(j, "load", m.load);
}

void to_json(json& j, const Switch& m) {
  j = json{{"generation", m.generation}, {"leave", m.leave}};
}
void from_json(const json& j, Switch& m) {
  required(j, "generation", m.generation);
  required(j, "leave", m.leave);
}

void to_json(json& j, const Wake& m) {
  j = json{{"epoch", m.epoch}};
}
void from_json(const json& j, Wake& m) {
  required(j, "epoch", m.epoch);
}
void to_json(json& j, const ExpertLoad& m) {
  j = json{{"generation", m.generation},
           {"rank", m.rank},
           {"num_steps", m.num_steps},
           {"counts", m.counts}};
}
void from_json(const json& j, ExpertLoad& m) {
  required(j, "generation", m.generation);
  required(j, "rank", m.rank);
  required(j, "num_steps", m.num_steps);
  required(j, "counts", m.counts);
}

void to_json(json& j, const Rebalance& m) {
  j = json{{"generation", m.generation},
           {"plan_id", m.plan_id},
           {"layers_per_step", m.layers_per_step},
           {"placement", m.placement}};
}
void from_json(const json& j, Rebalance& m) {
  required(j, "generation", m.generation);
  required(j, "plan_id", m.plan_id);
  required(j, "layers_per_step", m.layers_per_step);
  required(j, "placement", m.placement);
}

void to_json(json& j, const RebalanceDone& m) {
  j = json{{"generation", m.generation},
           {"plan_id", m.plan_id},
           {"rank", m.rank},
           {"bytes_moved", m.bytes_moved},
           {"seconds", m.seconds},
           {"move_seconds", m.move_seconds},
           {"longest_step_gap_ms", m.longest_step_gap_ms}};
  if (!m.error.empty()) j["error"] = m.error;
}
void from_json(const json& j, RebalanceDone& m) {
  required(j, "generation", m.generation);
  required(j, "plan_id", m.plan_id);
  required(j, "rank", m.rank);
  required(j, "bytes_moved", m.bytes_moved);
  required(j, "seconds", m.seconds);
  optional_field(j, "move_seconds", m.move_seconds);
  required(j, "longest_step_gap_ms", m.longest_step_gap_ms);
  optional_field(j, "error", m.error);
}

void to_json(json& j, const NeedWake&) {
  j = json::object();
}
void from_json(const json&, NeedWake&) {}

void to_json(json& j, const Shutdown& m) {
  j = json{{"reason", m.reason}};
  if (m.whole_fleet) j["whole_fleet"] = true;
}
void from_json(const json& j, Shutdown& m) {
  required(j, "reason", m.reason);
  optional_field(j, "whole_fleet", m.whole_fleet);
}

void to_json(json& j, const WorkerExiting& m) {
  j = json{{"reason", m.reason}};
}
void from_json(const json& j, WorkerExiting& m) {
  required(j, "reason", m.reason);
}

Frames encode(const Envelope& envelope) {
  json j{{"v", envelope.v},           {"type", to_string(envelope.type)},
         {"seq", envelope.seq},       {"generation", envelope.generation},
         {"sender", envelope.sender}, {"body", envelope.body}};
  return Frames{std::string(to_string(envelope.type)), to_wire(j)};
}

Result<Envelope> decode(std::string_view type_frame, std::string_view json_frame) {
  auto type = msg_type_from_string(type_frame);
  if (!type) {
    return error(ErrorCode::kInvalidArgument,
                 "unknown message type '" + printable(type_frame) + "'");
  }
  json j = json::parse(json_frame, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return error(ErrorCode::kInvalidArgument,
                 "the envelope of a " + std::string(to_string(*type)) +
                     " message is not a JSON object");
  }
  Envelope envelope;
  try {
    required(j, "v", envelope.v);
    std::string type_name;
    required(j, "type", type_name);
    if (type_name != type_frame) {
      return error(ErrorCode::kInvalidArgument, "type frame '" + std::string(to_string(*type)) +
                                                    "' disagrees with envelope type '" +
                                                    printable(type_name) + "'");
    }
    envelope.type = *type;
    required(j, "seq", envelope.seq);
    required(j, "generation", envelope.generation);
    required(j, "sender", envelope.sender);
    envelope.body = j.at("body");
  } catch (const std::exception& e) {
    return error(ErrorCode::kInvalidArgument, "bad envelope: " + std::string(e.what()));
  }
  return envelope;
}

Status check_version(const Envelope& envelope) {
  if (envelope.v == kProtocolVersion) return Status::ok();
  return error(ErrorCode::kVersionMismatch,
               "protocol version " + std::to_string(envelope.v) + " from '" + envelope.sender +
                   "' but this coordinator speaks " + std::to_string(kProtocolVersion) +
                   "; run matching builds of eep-coordinator and eep-worker");
}

Result<AdminRequest> parse_admin_request(std::string_view frame, uint64_t* seq) {
  json j = json::parse(frame, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return error(ErrorCode::kInvalidArgument,
                 "request is not JSON; send one object such as {\"cmd\":\"status\"}");
  }
  if (!j.is_object()) {
    return error(ErrorCode::kInvalidArgument,
                 "request must be a JSON object, got " + std::string(j.type_name()));
  }
  AdminRequest request;
  try {
    optional_field(j, "seq", request.seq);
    if (seq != nullptr) *seq = request.seq;
    optional_field(j, "v", request.v);
    optional_field(j, "token", request.token);
    std::string cmd;
    required(j, "cmd", cmd);
    auto command = admin_command_from_string(cmd);
    if (!command) {
      return error(ErrorCode::kInvalidArgument,
                   "unknown command '" + printable(cmd) +
                       "'; known: status, scale, shutdown, eplb_rebalance");
    }
    request.cmd = *command;
    if (request.cmd == AdminCommand::kScale) {
      if (!j.contains("dp")) {
        return error(ErrorCode::kInvalidArgument, "scale needs \"dp\": the new number of ranks");
      }
      int dp = 0;
      required(j, "dp", dp);  // an int, never wrapped: 4294967299 is refused, not read as 3
      request.dp = dp;
    }
  } catch (const std::exception& e) {
    return error(ErrorCode::kInvalidArgument, "bad request: " + std::string(e.what()));
  }
  if (request.v != kProtocolVersion) {
    return error(ErrorCode::kVersionMismatch,
                 "request speaks protocol version " + std::to_string(request.v) +
                     " but this coordinator speaks " + std::to_string(kProtocolVersion));
  }
  return request;
}

std::string serialize(const AdminRequest& request) {
  json j{{"v", request.v}, {"cmd", to_string(request.cmd)}, {"seq", request.seq}};
  if (!request.token.empty()) j["token"] = request.token;
  if (request.dp) j["dp"] = *request.dp;
  return to_wire(j);
}

void to_json(json& j, const WorkerInfo& m) {
  j = json{{"load", m.load},
           {"id", m.id},
           {"state", m.state},
           {"rank", m.rank},
           {"host", m.host},
           {"pid", m.pid},
           {"generation", m.generation},
           {"device", m.device},
           {"device_idx", m.device_idx},
           {"last_heard_ms", m.last_heard_ms},
           {"reason", m.reason}};
}
void from_json(const json& j, WorkerInfo& m) {
  required(j, "id", m.id);
  required(j, "state", m.state);
  required(j, "rank", m.rank);
  required(j, "host", m.host);
  required(j, "pid", m.pid);
  required(j, "generation", m.generation);
  optional_field(j, "device", m.device);
  optional_field(j, "device_idx", m.device_idx);
  optional_field(j, "last_heard_ms", m.last_heard_ms);
  optional_field(j, "reason", m.reason);
  optional_field(j, "load", m.load);
}

void to_json(json& j, const StageDuration& m) {
  j = json{{"stage", m.stage}, {"seconds", m.seconds}};
}
void from_json(const json& j, StageDuration& m) {
  required(j, "stage", m.stage);
  required(j, "seconds", m.seconds);
}

void to_json(json& j, const ScaleInfo& m) {
  j = json{{"state", m.state},
           {"stage", m.stage},
           {"from_dp", m.from_dp},
           {"timeline", m.timeline},
           {"to_dp", m.to_dp},
           {"target_generation", m.target_generation},
           {"reason", m.reason},
           {"elapsed_s", m.elapsed_s},
           {"weight_bytes_from_peers", m.weight_bytes_from_peers},
           {"weight_bytes_from_checkpoint", m.weight_bytes_from_checkpoint},
           {"weight_transfer_s", m.weight_transfer_s},
           {"build_stages", m.build_stages}};
}
void from_json(const json& j, ScaleInfo& m) {
  required(j, "state", m.state);
  required(j, "from_dp", m.from_dp);
  required(j, "to_dp", m.to_dp);
  required(j, "target_generation", m.target_generation);
  optional_field(j, "reason", m.reason);
  optional_field(j, "elapsed_s", m.elapsed_s);
  optional_field(j, "stage", m.stage);
  optional_field(j, "timeline", m.timeline);
  optional_field(j, "weight_bytes_from_peers", m.weight_bytes_from_peers);
  optional_field(j, "weight_bytes_from_checkpoint", m.weight_bytes_from_checkpoint);
  optional_field(j, "weight_transfer_s", m.weight_transfer_s);
  optional_field(j, "build_stages", m.build_stages);
}

void to_json(json& j, const EplbRebalanceInfo& m) {
  j = json{{"plan_id", m.plan_id},
           {"generation", m.generation},
           {"ok", m.ok},
           {"before_balancedness", m.before_balancedness},
           {"after_balancedness", m.after_balancedness},
           {"bytes_moved", m.bytes_moved},
           {"seconds", m.seconds},
           {"move_seconds", m.move_seconds},
           {"longest_step_gap_ms", m.longest_step_gap_ms}};
  if (!m.error.empty()) j["error"] = m.error;
}
void from_json(const json& j, EplbRebalanceInfo& m) {
  required(j, "plan_id", m.plan_id);
  required(j, "generation", m.generation);
  required(j, "ok", m.ok);
  optional_field(j, "error", m.error);
  optional_field(j, "before_balancedness", m.before_balancedness);
  optional_field(j, "after_balancedness", m.after_balancedness);
  optional_field(j, "bytes_moved", m.bytes_moved);
  optional_field(j, "seconds", m.seconds);
  optional_field(j, "move_seconds", m.move_seconds);
  optional_field(j, "longest_step_gap_ms", m.longest_step_gap_ms);
}

void to_json(json& j, const EplbInfo& m) {
  j = json{{"enabled", m.enabled}, {"window_steps", m.window_steps}, {"per_layer", m.per_layer}};
  j["balancedness"] = m.balancedness ? json(*m.balancedness) : json(nullptr);
  j["in_progress"] = m.in_progress ? json(*m.in_progress) : json(nullptr);
  j["last_rebalance"] = m.last_rebalance ? json(*m.last_rebalance) : json(nullptr);
}
void from_json(const json& j, EplbInfo& m) {
  required(j, "enabled", m.enabled);
  optional_field(j, "window_steps", m.window_steps);
  optional_field(j, "per_layer", m.per_layer);
  optional_value(j, "balancedness", m.balancedness);
  optional_value(j, "in_progress", m.in_progress);
  optional_value(j, "last_rebalance", m.last_rebalance);
}

void to_json(json& j, const StatusReply& m) {
  j = json{{"generation", m.generation}, {"active_dp", m.active_dp}, {"workers", m.workers},
           {"scale", m.scale},           {"launcher", m.launcher},   {"device", m.device}};
  if (m.eplb) j["eplb"] = *m.eplb;
  if (m.num_store_ports_live) j["num_store_ports_live"] = *m.num_store_ports_live;
}
void from_json(const json& j, StatusReply& m) {
  required(j, "generation", m.generation);
  required(j, "active_dp", m.active_dp);
  required(j, "workers", m.workers);
  required(j, "scale", m.scale);
  optional_field(j, "launcher", m.launcher);
  optional_field(j, "device", m.device);
  optional_value(j, "eplb", m.eplb);
  optional_value(j, "num_store_ports_live", m.num_store_ports_live);
}

bool is_valid_worker_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxWorkerIdBytes) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || c == '@' || c == ':';
  });
}

std::string to_wire(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json admin_ok(uint64_t seq, const json& payload) {
  json reply = payload.is_object() ? payload : json::object();
  reply["ok"] = true;
  reply["seq"] = seq;
  return reply;
}

json admin_error(uint64_t seq, const Status& status) {
  return json{{"ok", false},
              {"seq", seq},
              {"error", {{"code", to_string(status.code())}, {"message", status.message()}}}};
}

Status admin_reply_status(const json& reply) {
  if (!reply.is_object() || !reply.contains("ok") || !reply["ok"].is_boolean()) {
    return error(ErrorCode::kInternal, "malformed admin reply: " + printable(to_wire(reply), 200));
  }
  if (reply["ok"].get<bool>()) return Status::ok();
  const json& err = reply.value("error", json::object());
  std::string code = err.value("code", "internal");
  return error(error_code_from_string(code).value_or(ErrorCode::kInternal),
               err.value("message", std::string("(no message)")));
}

}  // namespace eep::protocol
