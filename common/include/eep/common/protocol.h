// The wire protocol between the coordinator, the workers and operators: every message, in one
// place.
//
// Control socket (coordinator ROUTER, worker DEALER with identity = worker id). Each message is a
// ZeroMQ multipart [type][envelope-json] (binary frames may follow for bulk payloads), where the
// envelope is {"v", "type", "seq", "generation", "sender", "body"} and body is one of the structs
// below. Admin socket (coordinator ROUTER): one JSON frame per request, {"v", "cmd", "seq",
// "token", ...arguments}, answered by one JSON frame {"ok": true, "seq", ...} or
// {"ok": false, "seq", "error": {"code", "message"}}; a REQ client's empty delimiter frame is
// echoed. docs/protocol.md describes both with examples.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/placement.h"
#include "eep/common/status.h"

namespace eep::protocol {

// Bumped on any incompatible change of a message below. A registration with another version is
// refused.
inline constexpr int kProtocolVersion = 1;

enum class MsgType {
  kRegister,        // worker -> coordinator: here I am
  kRegisterReply,   // coordinator -> worker: accepted (with timing) or refused (with reason)
  kHeartbeat,       // worker -> coordinator, every heartbeat interval
  kAssign,          // coordinator -> worker: your role in a generation
  kAssignAck,       // worker -> coordinator: I hold that role now
  kShutdown,        // coordinator -> worker: exit now
  kWorkerExiting,   // worker -> coordinator: I am exiting (SIGTERM, order, fatal error)
  kSubmitRequest,   // coordinator -> worker: generate for this request
  kCancelRequest,   // coordinator -> worker: stop this request, free its KV blocks
  kTokenBatch,      // worker -> coordinator: one step's tokens of every request that advanced
  kWake,            // coordinator -> worker: the idle fleet steps again (DESIGN.md section 5)
  kNeedWake,        // worker -> coordinator: I got work while the fleet is idle
  kExpertLoad,      // worker -> coordinator: tokens this rank routed to each expert slot (EPLB)
  kRebalance,       // coordinator -> worker: move to this expert placement, a few layers a step
  kRebalanceDone,   // worker -> coordinator: every layer of a rebalance moved
  kSwitch,          // coordinator -> worker: generation g+1 is committed, switch to it (or leave)
  kGenerationLost,  // worker -> coordinator: a collective of my generation failed; I wait
};

std::string_view to_string(MsgType type);
std::optional<MsgType> msg_type_from_string(std::string_view name);

// Membership state of a worker; see DESIGN.md section 4 and docs/membership.md.
enum class WorkerState { kSpare, kJoining, kActive, kLeaving, kDead };
std::string_view to_string(WorkerState state);
std::optional<WorkerState> worker_state_from_string(std::string_view name);

struct ErrorBody {
  std::string code;
  std::string message;
};

struct Register {
  static constexpr MsgType kType = MsgType::kRegister;
  std::string worker_id;
  std::string host;  // where the worker runs; selects the port range for stores it serves
  int64_t pid = 0;
  std::string device;  // "cpu" or "cuda"
  int device_idx = 0;
  std::string fleet_token;  // empty when the fleet has none
};

struct RegisterReply {
  static constexpr MsgType kType = MsgType::kRegisterReply;
  bool ok = false;
  std::optional<ErrorBody> error;
  int64_t heartbeat_interval_ms = 0;
  int64_t heartbeat_timeout_ms = 0;
};

// A worker's load after a step: what the router balances on and what status reports.
struct WorkerLoad {
  int num_running = 0;
  int num_waiting = 0;
  int num_free_kv_blocks = 0;
  int num_kv_blocks = 0;
  // Since the worker started: forward steps taken, and the time they waited in the step's
  // agreement (the lockstep all-reduce) for the slowest rank of the generation.
  uint64_t num_steps = 0;
  double step_wait_s = 0;
};

struct Heartbeat {
  static constexpr MsgType kType = MsgType::kHeartbeat;
  int64_t generation = -1;  // the generation the worker serves in, -1 while spare
  int rank = -1;
  WorkerLoad load;
};

// A key-value store endpoint through which one group of one generation rendezvouses.
struct StoreEndpoint {
  std::string host;
  int port = 0;
};

struct Assign {
  static constexpr MsgType kType = MsgType::kAssign;
  int64_t generation = 0;
  int rank = 0;
  int world_size = 0;
  std::vector<std::string> members;  // worker ids, index = rank
  StoreEndpoint control_store;       // the generation's control (Gloo) group
  StoreEndpoint ep_store;            // the generation's expert-parallel group
  // The generation's expert placement (its num_ranks == world_size). Absent: every rank computes
  // Placement::round_robin with its own --slots-per-rank (workers of older coordinators).
  std::optional<Placement> placement;
  // The generation it replaces (a scale): its members (worker ids, index = rank) and the placement
  // they serve. A member of both takes its weights from the previous generation's ranks instead
  // of the checkpoint (docs/weight_transfer.md). Empty / absent: the first generation, or workers
  // of older coordinators; every rank then loads from the checkpoint.
  std::vector<std::string> previous_members;
  std::optional<Placement> previous_placement;
  // A recovery (docs/fault_tolerance.md): the generation this rank serves lost a member and is
  // abandoned now, its groups destroyed, its requests and KV cache kept. previous_members then
  // names the broken generation (the lost members included): the survivors send what they kept
  // over the new generation's group, and what only lost members held comes from the checkpoint.
  bool recovery = false;
};

// A named stage and how long it took (a scale's timeline, a rank's build of a generation).
struct StageDuration {
  std::string stage;
  double seconds = 0;
};

// What a serving worker can take, reported when it acknowledges an assignment.
struct ModelCapacity {
  std::string model;  // the checkpoint directory's name
  int vocab_size = 0;
  int max_model_len = 0;  // prompt + generated tokens one request may reach
  int num_kv_blocks = 0;
  int block_size = 0;
  int max_num_seqs = 0;  // requests it runs at once (0: not said, from an older worker)
};

struct AssignAck {
  static constexpr MsgType kType = MsgType::kAssignAck;
  int64_t generation = 0;
  int rank = 0;
  std::optional<ModelCapacity> capacity;  // absent when the worker serves no model
  std::string error;  // set when the worker could not build the generation (nothing else holds)
  // Where this rank's weights of the generation came from (docs/weight_transfer.md).
  uint64_t weight_bytes_from_peers = 0;       // received from other ranks
  uint64_t weight_bytes_from_checkpoint = 0;  // read from the checkpoint
  double weight_transfer_s = 0;               // first to last transfer chunk on this rank
  // How long this rank's build took, by step, in the order run: "groups", "weights" (buffers,
  // checkpoint reads and the wait for every member), "transfer" (its chunks, waits between them
  // included), "kv_agree", "ep_warm_up" (after a transfer); docs/scaling.md describes each.
  std::vector<StageDuration> build_stages{};
};

// Sampling and stopping parameters, as the API gave them (seed always set by the coordinator).
struct SamplingParams {
  int max_tokens = 16;
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  int top_k = 0;       // 0: every token
  float min_p = 0.0f;  // tokens below min_p times the top token's probability are dropped
  float presence_penalty = 0.0f;    // OpenAI's, on tokens generated so far
  float frequency_penalty = 0.0f;   // OpenAI's, times each token's count so far
  float repetition_penalty = 1.0f;  // transformers', on prompt and generated tokens
  int logprobs = -1;  // -1: none; k >= 0: the chosen token's log-probability and the top k
};

struct SubmitRequest {
  static constexpr MsgType kType = MsgType::kSubmitRequest;
  uint64_t request_id = 0;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;  // generated before (a migrated request continues from here)
  SamplingParams params;
};

struct CancelRequest {
  static constexpr MsgType kType = MsgType::kCancelRequest;
  uint64_t request_id = 0;
};

// The log-probabilities of one generated token (SamplingParams.logprobs >= 0): the chosen
// token's and the top k of the distribution it was drawn from, most likely first.
struct TokenLogprobs {
  float logprob = 0.0f;
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
};

struct RequestOutput {
  uint64_t request_id = 0;
  std::vector<int32_t> new_tokens;
  bool finished = false;
  std::string finish_reason;                 // "length", "stop", "cancelled", "error"
  std::string error;                         // when finish_reason is "error"
  std::vector<TokenLogprobs> logprobs = {};  // one per new token when asked for, else empty
};

struct TokenBatch {
  static constexpr MsgType kType = MsgType::kTokenBatch;
  uint64_t step = 0;
  std::vector<RequestOutput> outputs;
  WorkerLoad load;
};

struct Wake {
  static constexpr MsgType kType = MsgType::kWake;
  uint64_t epoch = 0;  // increases with every wake; an idle fleet resumes on one above its own
};

// Sent to every member of the committed generation g+1 and every rank of g leaving it, once all
// members acknowledged g+1 (DESIGN.md section 6, SWITCH). The ranks of g switch (or, `leave`,
// retire) at the first step at which all of them hold this order; new ranks start stepping in g+1
// on it. Before it, a scale can still roll back: ranks then drop what they built for g+1.
struct Switch {
  static constexpr MsgType kType = MsgType::kSwitch;
  int64_t generation = 0;
  bool leave = false;  // this rank is not in the generation: retire at the switch
};

struct NeedWake {
  static constexpr MsgType kType = MsgType::kNeedWake;
};

// EPLB (DESIGN.md section 8). Every rank counts the tokens it routes to each physical slot and
// reports them every few steps; counts[layer][slot] over the generation's placement.
struct ExpertLoad {
  static constexpr MsgType kType = MsgType::kExpertLoad;
  int64_t generation = 0;
  int rank = 0;
  uint64_t num_steps = 0;  // forward steps these counts cover (since the previous report)
  std::vector<std::vector<int64_t>> counts;
};
// Move the generation to `placement` (same ranks and slots per rank): `layers_per_step` layers
// per step boundary, every rank at the same steps; a layer's new placement is used once its
// experts have moved on every rank. plan_id increases with every rebalance of a generation.
struct Rebalance {
  static constexpr MsgType kType = MsgType::kRebalance;
  int64_t generation = 0;
  uint64_t plan_id = 0;
  int layers_per_step = 1;
  Placement placement;
};
struct RebalanceDone {
  static constexpr MsgType kType = MsgType::kRebalanceDone;
  int64_t generation = 0;
  uint64_t plan_id = 0;
  int rank = 0;
  uint64_t bytes_moved = 0;        // expert weight bytes this rank received
  double seconds = 0;              // from the first moved layer to the last
  double move_seconds = 0;         // of those, the time spent moving (exchange included)
  double longest_step_gap_ms = 0;  // the longest gap between two steps while moving
  std::string error;               // set when the move failed (the old placement stays)
};

struct Shutdown {
  static constexpr MsgType kType = MsgType::kShutdown;
  std::string reason;
  // The coordinator stops the whole fleet: every rank exits now (its peers do too), instead of
  // leaving at the next generation switch, which will not come.
  bool whole_fleet = false;
  // Not an exit for good: start afresh and register again as a spare. Sent to a worker that was
  // declared DEAD and speaks again (its host was cut off, docs/hosts.md): its old rank and
  // generation are gone, so it comes back as a new process with nothing of them.
  bool register_again = false;
};

struct WorkerExiting {
  static constexpr MsgType kType = MsgType::kWorkerExiting;
  std::string reason;
};

// A collective of `generation` failed or timed out on this rank (a peer is gone or hung): the
// rank abandoned the generation's groups, keeps its weights, requests and KV cache, and waits for
// the coordinator's next assignment (docs/fault_tolerance.md).
struct GenerationLost {
  static constexpr MsgType kType = MsgType::kGenerationLost;
  int64_t generation = 0;
  std::string reason;
};

// The JSON form of each struct above: to_json and from_json, found by nlohmann through
// argument-dependent lookup. protocol.cpp defines both from one list of the struct's fields.
#define EEP_PROTOCOL_JSON(Type)                   \
  void to_json(nlohmann::json& j, const Type& m); \
  void from_json(const nlohmann::json& j, Type& m)
EEP_PROTOCOL_JSON(ErrorBody);
EEP_PROTOCOL_JSON(Register);
EEP_PROTOCOL_JSON(RegisterReply);
EEP_PROTOCOL_JSON(Heartbeat);
EEP_PROTOCOL_JSON(StoreEndpoint);
EEP_PROTOCOL_JSON(Assign);
EEP_PROTOCOL_JSON(ModelCapacity);
EEP_PROTOCOL_JSON(SamplingParams);
EEP_PROTOCOL_JSON(SubmitRequest);
EEP_PROTOCOL_JSON(CancelRequest);
EEP_PROTOCOL_JSON(TokenLogprobs);
EEP_PROTOCOL_JSON(RequestOutput);
EEP_PROTOCOL_JSON(WorkerLoad);
EEP_PROTOCOL_JSON(TokenBatch);
EEP_PROTOCOL_JSON(Wake);
EEP_PROTOCOL_JSON(Switch);
EEP_PROTOCOL_JSON(NeedWake);
EEP_PROTOCOL_JSON(AssignAck);
EEP_PROTOCOL_JSON(ExpertLoad);
EEP_PROTOCOL_JSON(Rebalance);
EEP_PROTOCOL_JSON(RebalanceDone);
EEP_PROTOCOL_JSON(Shutdown);
EEP_PROTOCOL_JSON(WorkerExiting);
EEP_PROTOCOL_JSON(GenerationLost);

// The envelope of every control message.
struct Envelope {
  int v = kProtocolVersion;
  MsgType type = MsgType::kHeartbeat;
  uint64_t seq = 0;
  int64_t generation = -1;
  std::string sender;
  nlohmann::json body;
};

// The two frames of a control message: [type name][envelope json].
struct Frames {
  std::string type;
  std::string json;
};

template <typename T>
Envelope make_envelope(const T& message, uint64_t seq, int64_t generation, std::string sender) {
  Envelope envelope;
  envelope.type = T::kType;
  envelope.seq = seq;
  envelope.generation = generation;
  envelope.sender = std::move(sender);
  envelope.body = message;
  return envelope;
}

Frames encode(const Envelope& envelope);
// Fails with kInvalidArgument on malformed frames, an unknown type, or a type frame that
// disagrees with the envelope. A different version is not an error here (see check_version).
Result<Envelope> decode(std::string_view type_frame, std::string_view json_frame);
Status check_version(const Envelope& envelope);

// Reads the body as T; kInvalidArgument naming the type and the field on a missing or mistyped
// field.
template <typename T>
Result<T> parse_body(const Envelope& envelope) {
  if (envelope.type != T::kType) {
    return error(ErrorCode::kInvalidArgument, "expected a " + std::string(to_string(T::kType)) +
                                                  " message, got " +
                                                  std::string(to_string(envelope.type)));
  }
  try {
    return envelope.body.get<T>();
  } catch (const std::exception& e) {  // nlohmann's, or a FieldError naming the field
    return error(ErrorCode::kInvalidArgument,
                 "bad " + std::string(to_string(T::kType)) + " body: " + e.what());
  }
}

// Worker ids travel as ZeroMQ routing ids and appear in logs, unit names and file names: 1 to
// kMaxWorkerIdBytes characters of [A-Za-z0-9._@:-].
inline constexpr size_t kMaxWorkerIdBytes = 128;
bool is_valid_worker_id(std::string_view id);
// The routing id of a worker's heartbeat socket (worker/daemon/heartbeat_sender.h): the worker id
// and "/hb" ('/' is no worker id's character, so no worker can take it as its own id), and the
// worker id back from one (nullopt for any other identity).
std::string heartbeat_identity(std::string_view worker_id);
std::optional<std::string> heartbeat_owner(std::string_view identity);

// ---- admin socket ----

enum class AdminCommand { kStatus, kScale, kShutdown, kEplbRebalance };
std::string_view to_string(AdminCommand command);
std::optional<AdminCommand> admin_command_from_string(std::string_view name);

struct AdminRequest {
  int v = kProtocolVersion;
  AdminCommand cmd = AdminCommand::kStatus;
  uint64_t seq = 0;
  std::string token;      // required when the admin socket is not loopback-only
  std::optional<int> dp;  // scale
};

// Parses one admin request frame; every malformed input is a kInvalidArgument with a message
// that names the problem (not JSON, unknown command, a field of the wrong type or out of its
// range, a missing field), and a well-formed request of another protocol version a
// kVersionMismatch. `seq`, when given, receives the request's seq as soon as it is read, so that
// a refusal can carry it.
Result<AdminRequest> parse_admin_request(std::string_view frame, uint64_t* seq = nullptr);
std::string serialize(const AdminRequest& request);

struct WorkerInfo {
  std::string id;
  std::string state;  // to_string(WorkerState)
  int rank = -1;
  std::string host;
  int64_t pid = 0;
  int64_t generation = -1;
  std::string device;
  int device_idx = 0;
  int64_t last_heard_ms = 0;     // milliseconds since the coordinator last heard from it
  std::string reason;            // why it is DEAD or LEAVING, empty otherwise
  WorkerLoad load;               // as of its last token batch or heartbeat
  int64_t generated_tokens = 0;  // tokens the coordinator relayed from it since it started
};

struct ScaleInfo {
  std::string kind = "scale";  // "scale" (asked for), "recover" (after a lost member)
  std::string state;           // "idle", "running", "succeeded", "failed"
  std::string stage;           // the scaling state machine's stage (docs/scaling.md)
  int from_dp = 0;
  int to_dp = 0;
  int64_t target_generation = -1;
  std::string reason;  // why it failed
  double elapsed_s = 0;
  std::vector<StageDuration> timeline;  // stages passed, in order, with their durations
  // Where the ranks of the new generation took their weights (docs/weight_transfer.md), summed
  // over the ranks that acknowledged it; transfer_s is the slowest rank's.
  uint64_t weight_bytes_from_peers = 0;
  uint64_t weight_bytes_from_checkpoint = 0;
  double weight_transfer_s = 0;
  // The new generation's build by step, each the slowest rank's (AssignAck::build_stages).
  std::vector<StageDuration> build_stages{};
};

// The last rebalance of the expert placement (EPLB) that ended, well or not.
struct EplbRebalanceInfo {
  uint64_t plan_id = 0;
  int64_t generation = 0;
  bool ok = false;
  std::string error;               // why it failed (the old placement stayed)
  double before_balancedness = 0;  // measured over the window it was planned on
  double after_balancedness = 0;   // predicted for the new placement on that window
  uint64_t bytes_moved = 0;        // expert weight bytes received, summed over ranks
  double seconds = 0;              // the slowest rank's move
  double move_seconds = 0;         // the slowest rank's time spent moving (steps in between not)
  double longest_step_gap_ms = 0;  // the longest gap between two steps on any rank
};

// Expert load balancing as the coordinator sees it (docs/eplb.md).
struct EplbInfo {
  bool enabled = false;
  uint64_t window_steps = 0;  // steps the load window covers (0: no load reported yet)
  // Mean over max tokens per rank of the window on the current placement: overall (the mean
  // over layers) and per layer. Absent while the window is empty.
  std::optional<double> balancedness;
  std::vector<double> per_layer;
  std::optional<uint64_t> in_progress;  // the plan id being moved to
  std::optional<EplbRebalanceInfo> last_rebalance;
};

// How the fleet keeps its size (docs/fault_tolerance.md): the size it returns to after a loss,
// and what it lost and recovered since the coordinator started.
struct FleetHealth {
  int target_dp = 0;          // --dp, then the last accepted scale
  uint64_t num_failures = 0;  // members of a live generation lost
  uint64_t num_recoveries = 0;
  uint64_t num_restarts = 0;       // scales started to return to target_dp (not the first)
  std::string last_failure;        // the last lost member and why
  double last_failure_ago_s = -1;  // -1: none yet
  double last_recovery_s = 0;      // from the loss to the recovered generation serving
  // Set when returning to target_dp failed too often (--max-restarts in --restart-window-s):
  // the coordinator stopped trying; a scale command tries again.
  std::string gave_up;
};

struct StatusReply {
  int64_t generation = 0;
  int active_dp = 0;
  std::vector<WorkerInfo> workers;
  ScaleInfo scale;
  std::string launcher;
  std::string device;
  std::optional<EplbInfo> eplb;  // absent when the coordinator knows no model (no --model)
  // Store ports the coordinator holds for live generations (two per generation: control and
  // EP groups); back to 2 after every finished scale. Absent in replies of older coordinators.
  std::optional<int> num_store_ports_live;
  std::optional<FleetHealth> health;  // absent in replies of older coordinators
  // The last scales and recoveries that ended, oldest first (at most 8): a scale's outcome stays
  // readable after a recovery replaced it in `scale`.
  std::vector<ScaleInfo> recent_scales;
};

EEP_PROTOCOL_JSON(WorkerInfo);
EEP_PROTOCOL_JSON(StageDuration);
EEP_PROTOCOL_JSON(ScaleInfo);
EEP_PROTOCOL_JSON(FleetHealth);
EEP_PROTOCOL_JSON(EplbRebalanceInfo);
EEP_PROTOCOL_JSON(EplbInfo);
EEP_PROTOCOL_JSON(StatusReply);

// JSON text for a socket: never throws (nlohmann's dump() does on invalid UTF-8; here such bytes
// become U+FFFD), so no reply or message built from a peer's input can end an event loop.
std::string to_wire(const nlohmann::json& value);
// {"ok": true, "seq": seq, ...fields of payload}
nlohmann::json admin_ok(uint64_t seq, const nlohmann::json& payload = nlohmann::json::object());
// {"ok": false, "seq": seq, "error": {"code", "message"}}
nlohmann::json admin_error(uint64_t seq, const Status& status);
// The Status an admin reply carries (ok, or its error); kInternal for a malformed reply or an
// error code this build does not know.
Status admin_reply_status(const nlohmann::json& reply);

}  // namespace eep::protocol
