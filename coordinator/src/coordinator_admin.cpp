// The admin socket: one JSON request, one JSON reply (protocol.h). Every malformed request gets
// an error reply with a code and a message; nothing an operator sends can stop the loop.
#include <algorithm>

#include "eep/common/log.h"
#include "eep/common/text.h"
#include "eep/coordinator/coordinator.h"

namespace eep::coordinator {

using nlohmann::json;
using protocol::WorkerState;

void Coordinator::handle_admin(std::vector<zmq::message_t>& frames) {
  // [identity][json] from a DEALER, [identity][""][json] from a REQ socket.
  if (frames.size() < 2) return;
  const bool has_delimiter = frames.size() >= 3 && frames[1].size() == 0;
  const zmq::message_t& body = frames[has_delimiter ? 2 : 1];
  uint64_t seq = 0;
  json reply;
  try {
    reply = admin_reply(body.to_string_view(), &seq);
  } catch (const std::exception& e) {
    // The last resort: a bug, not an input we know; the request fails, the loop goes on.
    EEP_LOG_ERROR("admin request " << seq << " failed: " << printable(e.what(), 200));
    reply = protocol::admin_error(
        seq, error(ErrorCode::kInternal,
                   "the coordinator failed on this request: " + printable(e.what(), 200)));
  }
  const std::string text = protocol::to_wire(reply);
  admin_socket_.send(frames[0], zmq::send_flags::sndmore);
  if (has_delimiter) admin_socket_.send(zmq::message_t(), zmq::send_flags::sndmore);
  admin_socket_.send(zmq::buffer(text), zmq::send_flags::none);
}

json Coordinator::admin_reply(std::string_view body, uint64_t* seq) {
  auto request = protocol::parse_admin_request(body, seq);
  if (!request.is_ok()) {
    EEP_LOG_WARN("admin request refused: " << request.status().to_string());
    return protocol::admin_error(*seq, request.status());
  }
  if (!admin_token_.empty() && request->token != admin_token_) {
    EEP_LOG_WARN("admin request without a valid token refused");
    return protocol::admin_error(
        request->seq,
        error(ErrorCode::kUnauthenticated,
              "this admin socket needs the token of --admin-token-file in \"token\""));
  }
  switch (request->cmd) {
    case protocol::AdminCommand::kStatus:
      return admin_status(request->seq);
    case protocol::AdminCommand::kScale:
      return admin_scale(request.value());
    case protocol::AdminCommand::kShutdown:
      if (!shutting_down_) begin_shutdown("admin request");
      return protocol::admin_ok(request->seq, {{"message", "shutting down"}});
    case protocol::AdminCommand::kEplbRebalance:
      return admin_eplb_rebalance(request.value());
  }
  return protocol::admin_error(request->seq, error(ErrorCode::kInternal, "unhandled command"));
}

protocol::WorkerInfo Coordinator::worker_info(const WorkerRecord& worker,
                                              Clock::time_point now) const {
  protocol::WorkerInfo info;
  info.id = worker.id;
  info.state = std::string(protocol::to_string(worker.state));
  info.rank = worker.rank;
  info.host = worker.host;
  info.pid = worker.pid;
  info.generation = worker.generation;
  info.device = worker.device;
  info.device_idx = worker.device_idx;
  info.last_heard_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now - worker.last_heard).count();
  info.reason = worker.reason;
  info.load = worker.load;
  info.generated_tokens = router_.num_generated_on(worker.id);
  return info;
}

protocol::StatusReply Coordinator::status_reply() const {
  const auto now = Clock::now();
  protocol::StatusReply status;
  status.generation = membership_.generation();
  status.active_dp = static_cast<int>(membership_.in_state(WorkerState::kActive).size());
  status.launcher = std::string(launcher_->name());
  status.device = config_.device;
  status.scale = scale_->info(now);
  if (knows_experts_) status.eplb = eplb_.info();
  status.num_store_ports_live = static_cast<int>(ports_.num_live());
  status.health = keeper_.health(now);
  status.recent_scales.assign(scale_->recent().begin(), scale_->recent().end());
  std::vector<const WorkerRecord*> workers = membership_.all();
  // Ranked workers first in rank order, then the rest by id.
  std::stable_sort(workers.begin(), workers.end(),
                   [](const WorkerRecord* a, const WorkerRecord* b) {
                     const int ra = a->rank < 0 ? INT32_MAX : a->rank;
                     const int rb = b->rank < 0 ? INT32_MAX : b->rank;
                     return ra < rb;
                   });
  for (const WorkerRecord* worker : workers) status.workers.push_back(worker_info(*worker, now));
  return status;
}

json Coordinator::admin_status(uint64_t seq) {
  sync_eplb_generation();  // a switch in this loop turn: report the new generation's window
  json payload = status_reply();
  return protocol::admin_ok(seq, payload);
}

json Coordinator::admin_scale(const protocol::AdminRequest& request) {
  if (shutting_down_) {
    return protocol::admin_error(request.seq,
                                 error(ErrorCode::kUnavailable, "the coordinator is stopping"));
  }
  const int dp = request.dp.value_or(0);
  if (keeper_.broken()) {
    return protocol::admin_error(
        request.seq, error(ErrorCode::kUnavailable,
                           "generation " + std::to_string(membership_.generation()) +
                               " lost a member and the fleet recovers first; scale again once "
                               "status shows the recovery done"));
  }
  auto actions = scale_->start(dp, launcher_->live_workers(), Clock::now());
  if (!actions.is_ok()) {
    EEP_LOG_WARN("scale to dp " << dp << " refused: " << actions.status().to_string());
    return protocol::admin_error(request.seq, actions.status());
  }
  const int active = static_cast<int>(membership_.active_by_rank().size());
  if (!scale_->running() && active == dp) {
    keeper_.set_target(dp);  // the size to keep from now on (docs/fault_tolerance.md)
    return protocol::admin_ok(request.seq, {{"changed", false},
                                            {"message", "already at dp " + std::to_string(dp)},
                                            {"generation", membership_.generation()}});
  }
  apply(actions.value());
  json payload = {{"changed", true},
                  {"message", "scaling to dp " + std::to_string(dp)},
                  {"scale", scale_->info(Clock::now())}};
  return protocol::admin_ok(request.seq, payload);
}

}  // namespace eep::coordinator
