#include "eep/common/protocol.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

#include "eep/common/text.h"

namespace eep::protocol {
namespace {

using nlohmann::json;

constexpr std::array<std::pair<MsgType, std::string_view>, 17> kMsgTypeNames = {{
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
    {MsgType::kGenerationLost, "generation_lost"},
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

// ---- messages as data ----
//
// Each struct's JSON form is one list of its fields (EEP_MESSAGE, at the end of this file's
// helpers), from which to_json and from_json both derive. A field's wire name is its member's
// name; from_json reads the fields in the order listed, so the first bad one is the one named.
// - EEP_REQUIRED(name): always written; from_json throws a FieldError naming it when missing.
// - EEP_OPTIONAL(name[, write]): absent or null keeps the default (a std::optional: nullopt);
//   written as `write` says, Write::kDefault when not given.
// - EEP_OPTIONAL_IF(name, flag): as EEP_OPTIONAL, but written only when the bool member `flag`
//   is true.
// Every read goes through read_field (whole numbers within the field's range, arrays element by
// element). nlohmann's NLOHMANN_DEFINE_TYPE_* macros are not used: their reads wrap integers,
// their errors do not name the field, and they know no optional or omitted fields.

// How to_json writes an optional field.
enum class Write {
  kDefault,        // always; an empty std::optional is left out
  kUnlessEmpty,    // left out when empty: "", [], 0 (see CanBeEmpty), an empty std::optional
  kNullWhenEmpty,  // a std::optional: null when empty
};

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

// What Write::kUnlessEmpty can leave out: strings and arrays when empty, numbers when zero.
template <typename T>
concept CanBeEmpty = std::is_arithmetic_v<T> || requires(const T& value) {
  value.empty();
};

template <CanBeEmpty T>
bool is_empty(const T& value) {
  if constexpr (std::is_arithmetic_v<T>) {
    return value == T{};
  } else {
    return value.empty();
  }
}

template <typename Message, typename T>
struct RequiredField {
  const char* key;
  T Message::*member;

  void write(json& j, const Message& m) const { j[key] = m.*member; }
  void read(const json& j, Message& m) const { required(j, key, m.*member); }
};

template <typename Message, typename T>
struct OptionalField {
  const char* key;
  T Message::*member;
  Write when = Write::kDefault;
  bool Message::*written_if = nullptr;  // written only when this member is true; null: always

  void write(json& j, const Message& m) const {
    if (written_if != nullptr && !(m.*written_if)) return;
    const T& value = m.*member;
    if constexpr (IsOptional<T>::value) {
      if (value) {
        j[key] = *value;
      } else if (when == Write::kNullWhenEmpty) {
        j[key] = nullptr;
      }
    } else {
      if constexpr (CanBeEmpty<T>) {
        if (when == Write::kUnlessEmpty && is_empty(value)) return;
      }
      j[key] = value;
    }
  }
  void read(const json& j, Message& m) const {
    if constexpr (IsOptional<T>::value) {
      optional_value(j, key, m.*member);
    } else {
      optional_field(j, key, m.*member);
    }
  }
};

template <typename Message, typename... Fields>
void write_fields(json& j, const Message& m, const std::tuple<Fields...>& fields) {
  j = json::object();
  std::apply([&](const auto&... field) { (field.write(j, m), ...); }, fields);
}

template <typename Message, typename... Fields>
void read_fields(const json& j, Message& m, const std::tuple<Fields...>& fields) {
  std::apply([&](const auto&... field) { (field.read(j, m), ...); }, fields);
}

template <typename Message, typename T>
RequiredField<Message, T> required_member(const char* key, T Message::*member) {
  return {key, member};
}

template <typename Message, typename T>
OptionalField<Message, T> optional_member(const char* key, T Message::*member,
                                          Write when = Write::kDefault,
                                          bool Message::*written_if = nullptr) {
  return {key, member, when, written_if};
}

#define EEP_REQUIRED(name) required_member(#name, &Self::name)
#define EEP_OPTIONAL(name, ...) optional_member(#name, &Self::name __VA_OPT__(, ) __VA_ARGS__)
#define EEP_OPTIONAL_IF(name, flag) \
  optional_member(#name, &Self::name, Write::kDefault, &Self::flag)

// Defines to_json and from_json of Type (declared in protocol.h) from its list of fields.
#define EEP_MESSAGE(Type, ...)                        \
  void to_json(json& j, const Type& m) {              \
    using Self [[maybe_unused]] = Type;               \
    write_fields(j, m, std::make_tuple(__VA_ARGS__)); \
  }                                                   \
  void from_json(const json& j, Type& m) {            \
    using Self [[maybe_unused]] = Type;               \
    read_fields(j, m, std::make_tuple(__VA_ARGS__));  \
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

// ---- control messages ----

EEP_MESSAGE(ErrorBody, EEP_REQUIRED(code), EEP_REQUIRED(message))
EEP_MESSAGE(Register, EEP_REQUIRED(worker_id), EEP_REQUIRED(host), EEP_REQUIRED(pid),
            EEP_REQUIRED(device), EEP_REQUIRED(device_idx), EEP_OPTIONAL(fleet_token))
EEP_MESSAGE(RegisterReply, EEP_REQUIRED(ok), EEP_REQUIRED(heartbeat_interval_ms),
            EEP_REQUIRED(heartbeat_timeout_ms), EEP_OPTIONAL(error))
EEP_MESSAGE(WorkerLoad, EEP_REQUIRED(num_running), EEP_REQUIRED(num_waiting),
            EEP_REQUIRED(num_free_kv_blocks), EEP_REQUIRED(num_kv_blocks),
            EEP_OPTIONAL(num_steps, Write::kUnlessEmpty),
            EEP_OPTIONAL(step_wait_s, Write::kUnlessEmpty))
EEP_MESSAGE(Heartbeat, EEP_REQUIRED(generation), EEP_REQUIRED(rank), EEP_OPTIONAL(load))
EEP_MESSAGE(StoreEndpoint, EEP_REQUIRED(host), EEP_REQUIRED(port))
EEP_MESSAGE(Assign, EEP_REQUIRED(generation), EEP_REQUIRED(rank), EEP_REQUIRED(world_size),
            EEP_REQUIRED(members), EEP_REQUIRED(control_store), EEP_REQUIRED(ep_store),
            EEP_OPTIONAL(placement), EEP_OPTIONAL(previous_members, Write::kUnlessEmpty),
            EEP_OPTIONAL(previous_placement), EEP_OPTIONAL(recovery, Write::kUnlessEmpty))
EEP_MESSAGE(StageDuration, EEP_REQUIRED(stage), EEP_REQUIRED(seconds))
EEP_MESSAGE(ModelCapacity, EEP_REQUIRED(model), EEP_REQUIRED(vocab_size),
            EEP_REQUIRED(max_model_len), EEP_REQUIRED(num_kv_blocks), EEP_REQUIRED(block_size),
            EEP_OPTIONAL(max_num_seqs, Write::kUnlessEmpty))
EEP_MESSAGE(AssignAck, EEP_REQUIRED(generation), EEP_REQUIRED(rank), EEP_OPTIONAL(capacity),
            EEP_OPTIONAL(error, Write::kUnlessEmpty),
            EEP_OPTIONAL(weight_bytes_from_peers, Write::kUnlessEmpty),
            EEP_OPTIONAL(weight_bytes_from_checkpoint, Write::kUnlessEmpty),
            EEP_OPTIONAL(weight_transfer_s, Write::kUnlessEmpty),
            EEP_OPTIONAL(build_stages, Write::kUnlessEmpty))
EEP_MESSAGE(SamplingParams, EEP_REQUIRED(max_tokens), EEP_REQUIRED(temperature),
            EEP_REQUIRED(top_p), EEP_REQUIRED(seed), EEP_OPTIONAL(ignore_eos),
            EEP_OPTIONAL(stop_token_ids), EEP_OPTIONAL(top_k, Write::kUnlessEmpty),
            EEP_OPTIONAL(min_p, Write::kUnlessEmpty),
            EEP_OPTIONAL(presence_penalty, Write::kUnlessEmpty),
            EEP_OPTIONAL(frequency_penalty, Write::kUnlessEmpty), EEP_OPTIONAL(repetition_penalty),
            EEP_OPTIONAL(logprobs))
EEP_MESSAGE(SubmitRequest, EEP_REQUIRED(request_id), EEP_REQUIRED(prompt_ids),
            EEP_OPTIONAL(output_ids), EEP_REQUIRED(params))
EEP_MESSAGE(CancelRequest, EEP_REQUIRED(request_id))
EEP_MESSAGE(RequestOutput, EEP_REQUIRED(request_id), EEP_REQUIRED(new_tokens),
            EEP_REQUIRED(finished), EEP_OPTIONAL_IF(finish_reason, finished),
            EEP_OPTIONAL(error, Write::kUnlessEmpty), EEP_OPTIONAL(logprobs, Write::kUnlessEmpty))
EEP_MESSAGE(TokenLogprobs, EEP_REQUIRED(logprob), EEP_REQUIRED(top_ids), EEP_REQUIRED(top_logprobs))
EEP_MESSAGE(TokenBatch, EEP_REQUIRED(step), EEP_REQUIRED(outputs), EEP_REQUIRED(load))
EEP_MESSAGE(Wake, EEP_REQUIRED(epoch))
EEP_MESSAGE(Switch, EEP_REQUIRED(generation), EEP_REQUIRED(leave))
EEP_MESSAGE(NeedWake)
EEP_MESSAGE(ExpertLoad, EEP_REQUIRED(generation), EEP_REQUIRED(rank), EEP_REQUIRED(num_steps),
            EEP_REQUIRED(counts))
EEP_MESSAGE(Rebalance, EEP_REQUIRED(generation), EEP_REQUIRED(plan_id),
            EEP_REQUIRED(layers_per_step), EEP_REQUIRED(placement))
EEP_MESSAGE(RebalanceDone, EEP_REQUIRED(generation), EEP_REQUIRED(plan_id), EEP_REQUIRED(rank),
            EEP_REQUIRED(bytes_moved), EEP_REQUIRED(seconds), EEP_OPTIONAL(move_seconds),
            EEP_REQUIRED(longest_step_gap_ms), EEP_OPTIONAL(error, Write::kUnlessEmpty))
EEP_MESSAGE(Shutdown, EEP_REQUIRED(reason), EEP_OPTIONAL(whole_fleet, Write::kUnlessEmpty),
            EEP_OPTIONAL(register_again, Write::kUnlessEmpty))
EEP_MESSAGE(WorkerExiting, EEP_REQUIRED(reason))
EEP_MESSAGE(GenerationLost, EEP_REQUIRED(generation), EEP_REQUIRED(reason))

// ---- admin replies ----

EEP_MESSAGE(WorkerInfo, EEP_REQUIRED(id), EEP_REQUIRED(state), EEP_REQUIRED(rank),
            EEP_REQUIRED(host), EEP_REQUIRED(pid), EEP_REQUIRED(generation), EEP_OPTIONAL(device),
            EEP_OPTIONAL(device_idx), EEP_OPTIONAL(last_heard_ms), EEP_OPTIONAL(reason),
            EEP_OPTIONAL(load), EEP_OPTIONAL(generated_tokens))
EEP_MESSAGE(ScaleInfo, EEP_OPTIONAL(kind), EEP_REQUIRED(state), EEP_REQUIRED(from_dp),
            EEP_REQUIRED(to_dp), EEP_REQUIRED(target_generation), EEP_OPTIONAL(reason),
            EEP_OPTIONAL(elapsed_s), EEP_OPTIONAL(stage), EEP_OPTIONAL(timeline),
            EEP_OPTIONAL(weight_bytes_from_peers), EEP_OPTIONAL(weight_bytes_from_checkpoint),
            EEP_OPTIONAL(weight_transfer_s), EEP_OPTIONAL(build_stages))
EEP_MESSAGE(EplbRebalanceInfo, EEP_REQUIRED(plan_id), EEP_REQUIRED(generation), EEP_REQUIRED(ok),
            EEP_OPTIONAL(error, Write::kUnlessEmpty), EEP_OPTIONAL(before_balancedness),
            EEP_OPTIONAL(after_balancedness), EEP_OPTIONAL(bytes_moved), EEP_OPTIONAL(seconds),
            EEP_OPTIONAL(move_seconds), EEP_OPTIONAL(longest_step_gap_ms))
EEP_MESSAGE(EplbInfo, EEP_REQUIRED(enabled), EEP_OPTIONAL(window_steps), EEP_OPTIONAL(per_layer),
            EEP_OPTIONAL(balancedness, Write::kNullWhenEmpty),
            EEP_OPTIONAL(in_progress, Write::kNullWhenEmpty),
            EEP_OPTIONAL(last_rebalance, Write::kNullWhenEmpty))
EEP_MESSAGE(StatusReply, EEP_REQUIRED(generation), EEP_REQUIRED(active_dp), EEP_REQUIRED(workers),
            EEP_REQUIRED(scale), EEP_OPTIONAL(launcher), EEP_OPTIONAL(device), EEP_OPTIONAL(eplb),
            EEP_OPTIONAL(num_store_ports_live), EEP_OPTIONAL(health),
            EEP_OPTIONAL(recent_scales, Write::kUnlessEmpty))
EEP_MESSAGE(FleetHealth, EEP_REQUIRED(target_dp), EEP_REQUIRED(num_failures),
            EEP_REQUIRED(num_recoveries), EEP_REQUIRED(num_restarts), EEP_OPTIONAL(last_failure),
            EEP_OPTIONAL(last_failure_ago_s), EEP_OPTIONAL(last_recovery_s),
            EEP_OPTIONAL(gave_up, Write::kUnlessEmpty))

#undef EEP_MESSAGE
#undef EEP_OPTIONAL_IF
#undef EEP_OPTIONAL
#undef EEP_REQUIRED

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
    return error(ErrorCode::kInvalidArgument, "the envelope of a " + std::string(to_string(*type)) +
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

bool is_valid_worker_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxWorkerIdBytes) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '@' || c == ':';
  });
}

namespace {
constexpr std::string_view kHeartbeatSuffix = "/hb";
}  // namespace

std::string heartbeat_identity(std::string_view worker_id) {
  return std::string(worker_id) + std::string(kHeartbeatSuffix);
}

std::optional<std::string> heartbeat_owner(std::string_view identity) {
  if (identity.size() <= kHeartbeatSuffix.size() ||
      identity.substr(identity.size() - kHeartbeatSuffix.size()) != kHeartbeatSuffix) {
    return std::nullopt;
  }
  std::string_view owner = identity.substr(0, identity.size() - kHeartbeatSuffix.size());
  if (!is_valid_worker_id(owner)) return std::nullopt;
  return std::string(owner);
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
