#include "eep/worker/daemon/worker_daemon.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "eep/common/host.h"
#include "eep/common/log.h"
#include "eep/common/text.h"
#include "eep/common/token_file.h"
#include "eep/common/zmq_util.h"
#include "eep/kernels/gemm.h"

namespace eep::worker {
namespace {

// Registration is re-sent this often until the coordinator answers (it may start after us).
constexpr std::chrono::milliseconds kRegisterRetry{500};
// How often a worker checks whether the generation it builds on a helper thread is ready.
constexpr std::chrono::milliseconds kBuildPollInterval{5};
// Queued messages (the exit notice) may take this long to leave when we close.
constexpr int kExitLingerMs = 500;

using Clock = std::chrono::steady_clock;

}  // namespace

WorkerDaemon::WorkerDaemon(WorkerConfig config)
    : config_(std::move(config)), context_(1), socket_(context_, zmq::socket_type::dealer) {
  // Not gethostname(): a name need not resolve on the other hosts, nor to the address on the
  // fleet's network (docs/hosts.md).
  if (config_.host.empty()) {
    config_.host = local_address_towards(config_.coordinator_endpoint).value_or(host_name());
  }
  if (config_.worker_id.empty()) {
    config_.worker_id = config_.host + "-" + std::to_string(::getpid());
  }
}

void WorkerDaemon::update_log_speaker() {
  std::string speaker = "worker " + config_.worker_id;
  if (assignment_) {
    speaker += " rank=" + std::to_string(assignment_->rank) +
               " gen=" + std::to_string(assignment_->generation);
    notifier_.status("rank " + std::to_string(assignment_->rank) + " of " +
                     std::to_string(assignment_->world_size) + " in generation " +
                     std::to_string(assignment_->generation));
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
  if (!protocol::is_valid_worker_id(config_.worker_id)) {
    return error(ErrorCode::kInvalidArgument,
                 "--worker-id '" + printable(config_.worker_id) + "' must be 1 to " +
                     std::to_string(protocol::kMaxWorkerIdBytes) +
                     " characters of A-Z a-z 0-9 . _ - @ : (the coordinator refuses others)");
  }
  if (!config_.fleet_token_file.empty()) {
    EEP_ASSIGN_OR_RETURN(fleet_token_, read_token_file(config_.fleet_token_file, "fleet token"));
  }
  EEP_ASSIGN_OR_RETURN(curve_, load_client_keys(config_.keys, "worker"));
  set_common_options(socket_);
  if (curve_) set_curve_client(socket_, *curve_);
  socket_.set(zmq::sockopt::routing_id, config_.worker_id);
  monitor_ = std::make_unique<HandshakeMonitor>(context_, socket_);
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
  request.device = device_name(config_.engine.backend.device);
  request.device_idx = config_.engine.backend.device_idx;
  request.fleet_token = fleet_token_;
  const auto deadline = Clock::now() + std::chrono::milliseconds(config_.register_timeout_ms);
  while (Clock::now() < deadline) {
    // Not queued while there is no connection (a handshake the coordinator refused): tried
    // again at the next retry instead of blocking past the deadline.
    try_send_envelope(socket_,
                      protocol::make_envelope(request, next_seq_++, -1, config_.worker_id));
    const auto retry_at = Clock::now() + kRegisterRetry;
    while (Clock::now() < retry_at) {
      notifier_.feed_watchdog(Clock::now());  // waiting for a coordinator is not hanging
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
  return error(
      ErrorCode::kDeadlineExceeded,
      with_handshake_failure(monitor_.get(),
                             "no answer from the coordinator at " + config_.coordinator_endpoint +
                                 " within " + std::to_string(config_.register_timeout_ms) + " ms"));
}

void WorkerDaemon::handle(const protocol::Envelope& envelope) {
  switch (envelope.type) {
    case protocol::MsgType::kAssign: {
      auto assign = protocol::parse_body<protocol::Assign>(envelope);
      if (!assign.is_ok()) {
        EEP_LOG_WARN(assign.status().to_string());
        return;
      }
      if (assign->rank < 0) {
        // Not in the next generation (a scale-down): hand over the weights only this rank holds.
        if (!engine_) return;
        if (Status handover = engine_->begin_weight_handover(assign.value()); !handover.is_ok()) {
          // The staying ranks would wait for this rank: the coordinator rolls the scale back.
          EEP_LOG_ERROR(handover.to_string());
          send(protocol::AssignAck{.generation = assign->generation,
                                   .rank = assign->rank,
                                   .capacity = std::nullopt,
                                   .error = handover.to_string()});
          return;
        }
        if (idle_) request_wake();  // the ranks agree on the transfer in a step
        return;
      }
      EEP_LOG_INFO("assigned rank " << assign->rank << " of " << assign->world_size
                                    << " in generation " << assign->generation);
      if (assign->recovery && engine_ && engine_->serving() && !engine_->retired()) {
        // The coordinator lost a member of the generation this rank serves (this rank may not
        // have noticed: an idle fleet runs no collective).
        engine_->abandon_current_generation("the coordinator recovers the fleet in generation " +
                                            std::to_string(assign->generation));
        pending_ack_.reset();
        idle_ = false;
        wake_requested_ = false;
      }
      if (!engine_) {
        assignment_ = assign.value();
        update_log_speaker();
        send(protocol::AssignAck{.generation = assignment_->generation,
                                 .rank = assignment_->rank,
                                 .capacity = std::nullopt,
                                 .error = ""});
        return;
      }
      if (engine_->generation() == assign->generation) {  // re-told after a rollback
        engine_->abandon_next_generation();
        pending_ack_.reset();
        assignment_ = assign.value();
        send(protocol::AssignAck{.generation = assign->generation,
                                 .rank = assign->rank,
                                 .capacity = engine_->capacity(),
                                 .error = ""});
        return;
      }
      Status begun = engine_->begin_generation(assign.value());
      if (!begun.is_ok()) {
        EEP_LOG_ERROR("cannot build generation " << assign->generation << ": "
                                                 << begun.to_string());
        send(protocol::AssignAck{
            .generation = assign->generation,
            .rank = assign->rank,
            .capacity = std::nullopt,
            .error = begun.to_string()});  // the coordinator rolls the scale back
        return;
      }
      pending_ack_ = assign.value();
      return;
    }
    case protocol::MsgType::kSwitch: {
      auto order = protocol::parse_body<protocol::Switch>(envelope);
      if (!order.is_ok()) {
        EEP_LOG_WARN(order.status().to_string());
        return;
      }
      if (!engine_) return;  // a worker without a model has no generations to switch
      Status ordered = engine_->order_switch(order.value());
      if (!ordered.is_ok()) {
        EEP_LOG_ERROR(ordered.to_string());
        return;
      }
      EEP_LOG_INFO(
          (order->leave ? "leaving at the switch to generation " : "switching to generation ")
          << order->generation << " at the next step every rank agrees on");
      if (idle_) request_wake();  // the others must step to agree on the switch
      return;
    }
    case protocol::MsgType::kShutdown: {
      auto order = protocol::parse_body<protocol::Shutdown>(envelope);
      stop_reason_ = "ordered by the coordinator: " +
                     (order.is_ok() ? order->reason : std::string("(no reason)"));
      // A rank still stepping with others leaves at the switch, so their collectives never
      // wait for it; unless the whole fleet stops, when no switch will come (launcher none:
      // nobody else would stop the process).
      const bool whole_fleet = order.is_ok() && order->whole_fleet;
      if (order.is_ok() && order->register_again) {
        // Our rank is gone: nothing to leave at a switch, and no exit notice for a dead record.
        register_again_ = true;
        stop_ = true;
      } else if (!whole_fleet && engine_ && engine_->serving() && assignment_ &&
                 assignment_->world_size > 1 && !engine_->retired()) {
        leave_at_switch_ = true;
        EEP_LOG_INFO("leaving at the next generation switch");
        if (idle_) request_wake();
      } else {
        stop_ = true;
      }
      return;
    }
    case protocol::MsgType::kSubmitRequest: {
      auto request = protocol::parse_body<protocol::SubmitRequest>(envelope);
      if (!request.is_ok() || !engine_) {
        EEP_LOG_WARN("refused a request: " << (engine_ ? request.status().to_string()
                                                       : "this worker serves no model"));
        if (request.is_ok()) {
          send_outputs({{request->request_id, {}, true, "error", "this worker serves no model"}});
        }
        return;
      }
      if (auto refused = engine_->submit(request.value())) {
        send_outputs({*refused});
        return;
      }
      if (idle_) request_wake();
      return;
    }
    case protocol::MsgType::kCancelRequest: {
      auto request = protocol::parse_body<protocol::CancelRequest>(envelope);
      if (request.is_ok() && engine_) {
        if (auto cancelled = engine_->cancel(request->request_id)) send_outputs({*cancelled});
      }
      return;
    }
    case protocol::MsgType::kRebalance: {
      auto rebalance = protocol::parse_body<protocol::Rebalance>(envelope);
      if (!rebalance.is_ok()) {
        EEP_LOG_WARN(rebalance.status().to_string());
        return;
      }
      if (!engine_) {
        EEP_LOG_WARN("ignored rebalance plan " << rebalance->plan_id
                                               << ": this worker serves no model");
        return;
      }
      if (Status held = engine_->begin_rebalance(rebalance.value()); !held.is_ok()) {
        EEP_LOG_WARN("ignored " << held.message());
        return;
      }
      // The ranks agree on the plan in a step: an idle fleet steps again (the others may still
      // be about to receive it; the last to receive it wakes the fleet once more).
      if (idle_) request_wake();
      return;
    }
    case protocol::MsgType::kWake: {
      auto wake = protocol::parse_body<protocol::Wake>(envelope);
      if (!wake.is_ok()) return;
      wake_epoch_ = std::max(wake_epoch_, wake->epoch);
      if (idle_ && wake->epoch > idle_epoch_) {
        idle_ = false;
        wake_requested_ = false;
      }
      return;
    }
    default:
      EEP_LOG_WARN("unexpected " << protocol::to_string(envelope.type) << " from the coordinator");
  }
}

void WorkerDaemon::send_outputs(std::vector<protocol::RequestOutput> outputs) {
  if (outputs.empty()) return;
  protocol::TokenBatch batch;
  batch.step = ++num_batches_;
  batch.outputs = std::move(outputs);
  batch.load = engine_ ? engine_->load() : protocol::WorkerLoad{};
  send(batch);
}

void WorkerDaemon::request_wake() {
  // A one-rank fleet wakes itself; a larger one asks the coordinator to wake every rank.
  if (assignment_ && assignment_->world_size == 1) {
    idle_ = false;
    return;
  }
  if (!wake_requested_) send(protocol::NeedWake{});
  wake_requested_ = true;
}

void WorkerDaemon::serve_once() {
  if (pending_ack_) {
    auto built = engine_->next_generation_built();
    if (!built.is_ok()) {
      EEP_LOG_ERROR("building generation " << pending_ack_->generation
                                           << " failed: " << built.status().to_string());
      send(protocol::AssignAck{.generation = pending_ack_->generation,
                               .rank = pending_ack_->rank,
                               .capacity = std::nullopt,
                               .error = built.status().to_string()});
      pending_ack_.reset();
    } else if (built.value()) {
      protocol::AssignAck ack{.generation = pending_ack_->generation,
                              .rank = pending_ack_->rank,
                              .capacity = engine_->capacity(),
                              .error = ""};
      const BuildReport report = engine_->build_report();
      ack.weight_bytes_from_peers = report.bytes_from_peers;
      ack.weight_bytes_from_checkpoint = report.bytes_from_checkpoint;
      ack.weight_transfer_s = report.transfer_seconds;
      ack.build_stages = report.stages;
      send(ack);
      assignment_ = pending_ack_;
      pending_ack_.reset();
    }
  }
  // Ready to send weights to the next generation: the serving ranks agree on it in a step.
  if (engine_->take_transfer_wake() && idle_) request_wake();
  if (idle_ || !engine_->can_step()) return;
  auto step = engine_->step(wake_epoch_);
  if (!step.is_ok()) {
    if (step.status().code() == ErrorCode::kFailedPrecondition && !engine_->serving()) return;
    lose_generation("lockstep failed: " + step.status().to_string());
    return;
  }
  if (step->switched) update_log_speaker();
  send_outputs(std::move(step->outputs));
  // The load before the RebalanceDone: a report sent before it is over the old placement.
  if (step->expert_load) send(*step->expert_load);
  if (step->rebalance_done) send(*step->rebalance_done);
  if (engine_->retired()) {
    stop_ = true;
    stop_reason_ = "retired from generation " + std::to_string(engine_->generation());
    return;
  }
  if (step->idle) {
    idle_ = true;
    idle_epoch_ = step->idle_epoch;
    wake_requested_ = false;
    if (engine_->has_work() || leave_at_switch_) request_wake();
  }
}

void WorkerDaemon::lose_generation(const std::string& reason) {
  const int64_t lost = engine_->generation();
  EEP_LOG_ERROR("generation " << lost << " is lost: " << reason);
  if (leave_at_switch_) {  // told to go anyway: the fleet recovers without this rank
    stop_ = true;
    stop_reason_ = "leaving, and generation " + std::to_string(lost) + " broke: " + reason;
    return;
  }
  engine_->abandon_current_generation(reason);
  pending_ack_.reset();  // a next generation being built went with it
  idle_ = false;
  wake_requested_ = false;
  send(protocol::GenerationLost{lost, reason});
}

int WorkerDaemon::run(int signal_fd) {
  update_log_speaker();
  // The test hook of a crash loop (docs/fault_tolerance.md, "Test hooks"): with
  // EEP_TEST_CRASH_AT_START_FILE set to a path that exists, the worker exits at once, as one that
  // crashes at start every time.
  if (const char* crash = std::getenv("EEP_TEST_CRASH_AT_START_FILE");
      crash != nullptr && std::filesystem::exists(crash)) {
    EEP_LOG_ERROR("test hook: " << crash << " exists; exiting at start");
    return 1;
  }
  if (!config_.engine.model_dir.empty()) {
    notifier_.status("loading the model in " + config_.engine.model_dir);
    kernels::cpu::set_gemm_num_threads(config_.cpu_threads);
    EngineOptions options = config_.engine;
    options.bind_host = config_.host;
    auto engine = EngineCore::create(options);
    if (!engine.is_ok()) {
      EEP_LOG_ERROR("cannot serve the model: " << engine.status().to_string());
      return 1;
    }
    engine_ = std::move(engine).value();
  }
  notifier_.status("registering with " + config_.coordinator_endpoint);
  if (Status registered = connect_and_register(signal_fd); !registered.is_ok()) {
    EEP_LOG_ERROR("cannot join the fleet: " << registered.to_string());
    return 1;
  }
  HeartbeatSender::Options beats;
  beats.coordinator_endpoint = config_.coordinator_endpoint;
  beats.worker_id = config_.worker_id;
  beats.interval = heartbeat_interval_;
  beats.curve = curve_;
  // Longer than a collective may wait: a rank waiting on a stopped peer keeps beating.
  beats.stall_limit = 2 * config_.engine.backend.collective_timeout + heartbeat_interval_;
  heartbeat_ = std::make_unique<HeartbeatSender>(context_, beats);
  if (Status started = heartbeat_->start(); !started.is_ok()) {
    EEP_LOG_ERROR("cannot send heartbeats: " << started.to_string());
    return 1;
  }
  // Registered and beating: the coordinator counts this worker as a spare it can assign.
  notifier_.ready("registered with " + config_.coordinator_endpoint + " as " + config_.worker_id);
  while (!stop_) {
    // What the heartbeats carry, and the sign that this thread turns.
    const bool serving = engine_ && engine_->serving();
    heartbeat_->update(serving ? engine_->generation() : -1,
                       serving && assignment_ ? assignment_->rank : -1,
                       engine_ ? engine_->load() : protocol::WorkerLoad{});
    std::vector<zmq::pollitem_t> items = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
    if (signal_fd >= 0) items.push_back({nullptr, signal_fd, ZMQ_POLLIN, 0});
    auto wait = heartbeat_interval_;
    // A fleet that is stepping does not wait for messages between steps.
    const bool stepping = engine_ && !idle_ && engine_->serving();
    if (stepping) wait = std::chrono::milliseconds(0);
    // A generation being built is polled for now and then, not spun on.
    if (pending_ack_) wait = std::min(wait, kBuildPollInterval);
    const auto now = Clock::now();
    notifier_.feed_watchdog(now);
    if (auto ping = notifier_.until_next_ping(now)) wait = std::min(wait, *ping);
    try {
      zmq::poll(
          items.data(), items.size(),
          stepping ? std::chrono::milliseconds(0) : std::max(wait, std::chrono::milliseconds(1)));
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
    if (engine_ && !stop_) serve_once();
  }
  EEP_LOG_INFO((register_again_ ? "starting again: " : "exiting: ") << stop_reason_);
  if (!register_again_) {
    notifier_.stopping("exiting: " + stop_reason_);
    send(protocol::WorkerExiting{stop_reason_});
  }
  socket_.set(zmq::sockopt::linger, kExitLingerMs);
  return 0;
}

}  // namespace eep::worker
