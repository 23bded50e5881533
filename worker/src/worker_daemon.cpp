#include "eep/worker/worker_daemon.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include "eep/common/host.h"
#include "eep/common/log.h"
#include "eep/common/token_file.h"
#include "eep/common/zmq_util.h"

namespace eep::worker {
namespace {

// Registration is re-sent this often until the coordinator answers (it may start after us).
constexpr std::chrono::milliseconds kRegisterRetry{500};
// Queued messages (the exit notice) may take this long to leave when we close.
constexpr int kExitLingerMs = 500;

using Clock = std::chrono::steady_clock;

}  // namespace

WorkerDaemon::WorkerDaemon(WorkerConfig config)
    : config_(std::move(config)), context_(1), socket_(context_, zmq::socket_type::dealer) {
  if (config_.host.empty()) config_.host = host_name();
  if (config_.worker_id.empty()) {
    config_.worker_id = config_.host + "-" + std::to_string(::getpid());
  }
}

void WorkerDaemon::update_log_speaker() {
  std::string speaker = "worker " + config_.worker_id;
  if (assignment_) {
    speaker += " rank=" + std::to_string(assignment_->rank) +
               " gen=" + std::to_string(assignment_->generation);
  }
  set_log_speaker(speaker);
}

template <typename T>
void WorkerDaemon::send(const T& message) {
  const int64_t generation = assignment_ ? assignment_->generation : -1;
  send_envelope(socket_, std::nullopt,
                protocol::make_envelope(message, next_seq_++, generation, config_.worker_id));
}

Status WorkerDaemon::connect_and_register(int signal_fd) {
  if (!config_.fleet_token_file.empty()) {
    EEP_ASSIGN_OR_RETURN(fleet_token_, read_token_file(config_.fleet_token_file, "fleet token"));
  }
  set_common_options(socket_);
  socket_.set(zmq::sockopt::routing_id, config_.worker_id);
  EEP_RETURN_IF_ERROR(connect_socket(socket_, config_.coordinator_endpoint));

  if (config_.test_register_delay_ms > 0) {
    EEP_LOG_INFO("test hook: registering in " << config_.test_register_delay_ms << " ms");
    std::vector<zmq::pollitem_t> items;
    if (signal_fd >= 0) items.push_back({nullptr, signal_fd, ZMQ_POLLIN, 0});
    zmq::poll(items.data(), items.size(),
              std::chrono::milliseconds(config_.test_register_delay_ms));
    if (!items.empty() && (items[0].revents & ZMQ_POLLIN)) {
      return error(ErrorCode::kUnavailable, "interrupted by a signal before registering");
    }
  }
  protocol::Register request;
  request.worker_id = config_.worker_id;
  request.host = config_.host;
  request.pid = ::getpid();
  request.device = config_.device;
  request.device_idx = config_.device_idx;
  request.fleet_token = fleet_token_;
  const auto deadline = Clock::now() + std::chrono::milliseconds(config_.register_timeout_ms);
  while (Clock::now() < deadline) {
    send(request);
    const auto retry_at = Clock::now() + kRegisterRetry;
    while (Clock::now() < retry_at) {
      std::vector<zmq::pollitem_t> items = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
      if (signal_fd >= 0) items.push_back({nullptr, signal_fd, ZMQ_POLLIN, 0});
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(50));
      if (items.size() > 1 && (items[1].revents & ZMQ_POLLIN)) {
        return error(ErrorCode::kUnavailable, "interrupted by a signal while registering");
      }
      auto frames = recv_frames(socket_, std::chrono::milliseconds(0));
      if (!frames || frames->size() < 2) continue;
      auto envelope =
          protocol::decode((*frames)[0].to_string_view(), (*frames)[1].to_string_view());
      if (!envelope.is_ok()) continue;
      auto reply = protocol::parse_body<protocol::RegisterReply>(envelope.value());
      if (!reply.is_ok()) continue;  // a late message of an earlier life; keep waiting
      if (!reply->ok) {
        const std::string code = reply->error ? reply->error->code : "unknown";
        const std::string message = reply->error ? reply->error->message : "(no reason given)";
        return error(error_code_from_string(code).value_or(ErrorCode::kInternal),
                     "the coordinator refused this worker: " + message);
      }
      heartbeat_interval_ = std::chrono::milliseconds(reply->heartbeat_interval_ms);
      EEP_LOG_INFO("registered with " << config_.coordinator_endpoint << " (heartbeat every "
                                      << heartbeat_interval_.count() << " ms)");
      return Status::ok();
    }
  }
  return error(ErrorCode::kDeadlineExceeded,
               "no answer from the coordinator at " + config_.coordinator_endpoint + " within " +
                   std::to_string(config_.register_timeout_ms) + " ms");
}

void WorkerDaemon::handle(const protocol::Envelope& envelope) {
  switch (envelope.type) {
    case protocol::MsgType::kAssign: {
      auto assign = protocol::parse_body<protocol::Assign>(envelope);
      if (!assign.is_ok()) {
        EEP_LOG_WARN(assign.status().to_string());
        return;
      }
      assignment_ = assign.value();
      update_log_speaker();
      EEP_LOG_INFO("assigned rank " << assignment_->rank << " of " << assignment_->world_size
                                    << " in generation " << assignment_->generation);
      send(protocol::AssignAck{assignment_->generation, assignment_->rank});
      return;
    }
    case protocol::MsgType::kShutdown: {
      auto order = protocol::parse_body<protocol::Shutdown>(envelope);
      stop_ = true;
      stop_reason_ = "ordered by the coordinator: " +
                     (order.is_ok() ? order->reason : std::string("(no reason)"));
      return;
    }
    default:
      EEP_LOG_WARN("unexpected " << protocol::to_string(envelope.type) << " from the coordinator");
  }
}

int WorkerDaemon::run(int signal_fd) {
  update_log_speaker();
  if (Status registered = connect_and_register(signal_fd); !registered.is_ok()) {
    EEP_LOG_ERROR("cannot join the fleet: " << registered.to_string());
    return 1;
  }
  auto next_heartbeat = Clock::now();
  while (!stop_) {
    const auto now = Clock::now();
    if (now >= next_heartbeat) {
      send(protocol::Heartbeat{assignment_ ? assignment_->generation : -1,
                               assignment_ ? assignment_->rank : -1});
      next_heartbeat = now + heartbeat_interval_;
    }
    std::vector<zmq::pollitem_t> items = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
    if (signal_fd >= 0) items.push_back({nullptr, signal_fd, ZMQ_POLLIN, 0});
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_heartbeat - now);
    try {
      zmq::poll(items.data(), items.size(), std::max(wait, std::chrono::milliseconds(1)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    if (items.size() > 1 && (items[1].revents & ZMQ_POLLIN)) {
      signalfd_siginfo info{};
      if (::read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
        stop_ = true;
        stop_reason_ = "signal " + std::to_string(info.ssi_signo);
      }
    }
    while (auto frames = recv_frames(socket_, std::chrono::milliseconds(0))) {
      if (frames->size() < 2) continue;
      auto envelope =
          protocol::decode((*frames)[0].to_string_view(), (*frames)[1].to_string_view());
      if (!envelope.is_ok()) {
        EEP_LOG_WARN("bad message from the coordinator: " << envelope.status().to_string());
        continue;
      }
      handle(envelope.value());
    }
  }
  EEP_LOG_INFO("exiting: " << stop_reason_);
  send(protocol::WorkerExiting{stop_reason_});
  socket_.set(zmq::sockopt::linger, kExitLingerMs);
  return 0;
}

}  // namespace eep::worker
