#include "eep/coordinator/coordinator.h"

#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>

#include "eep/common/host.h"
#include "eep/common/log.h"
#include "eep/common/text.h"
#include "eep/common/token_file.h"
#include "eep/common/zmq_util.h"
#include "eep/coordinator/port_probe.h"

namespace eep::coordinator {
namespace {

using protocol::WorkerState;

// How often the loop wakes without traffic: heartbeat checks, deadlines, reaping.
constexpr std::chrono::milliseconds kTick{50};
// Workers are asked to heartbeat this many times per timeout, so one lost beat is not a death.
constexpr int kHeartbeatsPerTimeout = 3;
// DEAD records stay visible to operators this long.
constexpr std::chrono::minutes kDeadRetention{10};
// On shutdown, how long queued messages to workers may take to leave.
constexpr std::chrono::milliseconds kShutdownLinger{1000};

EplbOptions eplb_options(const CoordinatorConfig& config) {
  EplbOptions options;
  options.enabled = config.enable_eplb;
  options.window_size = static_cast<uint64_t>(config.eplb_window_size);
  options.step_interval = static_cast<uint64_t>(config.eplb_step_interval);
  options.layers_per_step = config.eplb_layers_per_step;
  options.min_improvement = config.eplb_min_gain;
  options.migration.balance_slack = config.eplb_balance_slack;
  options.migration.max_moved_fraction = config.eplb_max_moved_fraction;
  options.planner_threads = config.eplb_planner_threads;
  return options;
}

// The EPLB settings the constructor relies on (CLI11 checks them too; a config built in code
// may not have been through it).
Status validate_eplb_config(const CoordinatorConfig& config) {
  if (config.eplb_window_size < 1 || config.eplb_step_interval < 1 ||
      config.eplb_layers_per_step < 1 || config.num_redundant_experts < 0) {
    return error(ErrorCode::kInvalidArgument,
                 "--eplb-window-size, --eplb-step-interval and --eplb-layers-per-step must be at "
                 "least 1 and --num-redundant-experts at least 0");
  }
  if (config.model_dir.empty() && (config.enable_eplb || config.num_redundant_experts > 0)) {
    return error(ErrorCode::kInvalidArgument,
                 std::string(config.enable_eplb ? "--enable-eplb" : "--num-redundant-experts") +
                     " needs --model: the coordinator reads the model's layers and experts "
                     "from its config.json to place the experts");
  }
  if (!(config.eplb_balance_slack >= 0 && config.eplb_balance_slack <= 1) ||
      !(config.eplb_max_moved_fraction >= 0 && config.eplb_max_moved_fraction <= 1) ||
      !(config.eplb_min_gain >= 0 && config.eplb_min_gain <= 1) ||
      config.eplb_planner_threads < 0) {
    return error(ErrorCode::kInvalidArgument,
                 "--eplb-min-gain, --eplb-balance-slack and --eplb-max-moved-fraction must be "
                 "within [0, 1] and --eplb-planner-threads at least 0");
  }
  return Status::ok();
}

// Every HTTP connection is a file descriptor: the soft limit (often 1024) goes up to what
// --max-connections needs plus room for the sockets, workers and files of the coordinator
// itself, as far as the hard limit allows (a warning says when it does not).
constexpr rlim_t kDescriptorsBesideConnections = 1024;

void raise_open_file_limit(int max_connections) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t wanted = static_cast<rlim_t>(max_connections) + kDescriptorsBesideConnections;
  if (limit.rlim_cur >= wanted) return;
  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = before;
  if (limit.rlim_cur < wanted) {
    EEP_LOG_WARN("open files limited to " << limit.rlim_cur << " (hard limit " << limit.rlim_max
                                          << "): fewer than the " << wanted
                                          << " that --max-connections " << max_connections
                                          << " needs; raise LimitNOFILE or lower the flag");
  } else {
    EEP_LOG_INFO("open file limit raised from " << before << " to " << limit.rlim_cur);
  }
}

}  // namespace

Coordinator::Coordinator(const CoordinatorConfig& config, PortAllocator ports)
    : config_(config),
      context_(1),
      admin_socket_(context_, zmq::socket_type::router),
      control_socket_(context_, zmq::socket_type::router),
      ports_(std::move(ports)),
      inbox_(config.max_in_flight),
      router_(
          [this](const std::string& worker_id, const protocol::SubmitRequest& request) {
            send_to_worker(worker_id, request);
          },
          [this](const std::string& worker_id, uint64_t request_id) {
            send_to_worker(worker_id, protocol::CancelRequest{request_id});
          },
          DispatchOptions{config.worker_queue_depth, config.move_running,
                          config.move_min_remaining}),
      eplb_(eplb_options(config)),
      keeper_(KeeperOptions{config.max_restarts,
                            std::chrono::milliseconds(int64_t{config.restart_window_s} * 1000)}) {}

Coordinator::~Coordinator() {
  if (launcher_) launcher_->stop_all();
}

Result<std::unique_ptr<Coordinator>> Coordinator::create(const CoordinatorConfig& config,
                                                         const std::string& argv0) {
  std::vector<PortRange> ranges;
  for (const std::string& text : config.port_ranges) {
    auto range = parse_port_range(text);
    if (!range.is_ok()) return range.status();
    ranges.push_back(range.value());
  }
  auto ports = PortAllocator::create(ranges);
  if (!ports.is_ok()) return ports.status();
  // Another fleet on this host, or any listener, may hold a port of the range: skipped.
  ports->set_probe([](const std::string& host, int port) {
    return is_this_host(host) && port_held_locally(port);
  });
  EEP_RETURN_IF_ERROR(validate_eplb_config(config));
  raise_open_file_limit(config.max_connections);
  std::optional<ExpertLayout> experts;
  if (!config.model_dir.empty()) {
    EEP_ASSIGN_OR_RETURN(experts,
                         read_expert_layout(config.model_dir, config.num_redundant_experts));
  }

  if (experts && experts->num_experts % config.eplb_num_groups != 0) {
    return error(ErrorCode::kInvalidArgument,
                 "--eplb-num-groups " + std::to_string(config.eplb_num_groups) +
                     " does not divide the model's " + std::to_string(experts->num_experts) +
                     " experts into groups of consecutive ids");
  }

  // The checkpoint's text: a malformed tokenizer or chat template stops the start here.
  ModelText model_text;
  if (!config.model_dir.empty()) {
    EEP_ASSIGN_OR_RETURN(model_text, load_model_text(config.model_dir));
  }

  std::shared_ptr<const EplbTestLoad> eplb_test_load;
  if (!config.eplb_test_load.empty()) {
    EEP_ASSIGN_OR_RETURN(EplbTestLoad test, read_eplb_test_load(config.eplb_test_load));
    eplb_test_load = std::make_shared<const EplbTestLoad>(std::move(test));
  }

  std::unique_ptr<Coordinator> coordinator(new Coordinator(config, std::move(ports).value()));
  coordinator->eplb_test_load_ = std::move(eplb_test_load);
  coordinator->model_text_ = std::move(model_text);
  if (!config.admin_token_file.empty()) {
    EEP_ASSIGN_OR_RETURN(coordinator->admin_token_,
                         read_token_file(config.admin_token_file, "admin token"));
  }
  if (!config.fleet_token_file.empty()) {
    EEP_ASSIGN_OR_RETURN(coordinator->fleet_token_,
                         read_token_file(config.fleet_token_file, "fleet token"));
  }
  set_common_options(coordinator->admin_socket_);
  set_common_options(coordinator->control_socket_);
  EEP_RETURN_IF_ERROR(coordinator->secure_sockets());
  // No handover: a connection that presents the identity of a connected worker is refused by
  // ZeroMQ, so nobody can take over a live worker's route (its requests and prompts) or speak
  // for it (a forged worker_exiting). A restarted worker gets the identity back once the old
  // connection is gone (at once when its process died on this host or its TCP connection closed).
  coordinator->control_socket_.set(zmq::sockopt::router_handover, 0);
  EEP_ASSIGN_OR_RETURN(coordinator->admin_endpoint_,
                       bind_socket(coordinator->admin_socket_, config.admin_endpoint));
  EEP_ASSIGN_OR_RETURN(coordinator->control_endpoint_,
                       bind_socket(coordinator->control_socket_, config.control_endpoint));
  EEP_ASSIGN_OR_RETURN(coordinator->launcher_,
                       make_launcher(config, coordinator->control_endpoint_, argv0));
  ScaleLimits limits;
  limits.can_launch = coordinator->launcher_->max_workers() > 0;
  limits.max_workers = coordinator->launcher_->max_workers();
  // Workers launched here register with --host 127.0.0.1 (launcher_local.cpp).
  limits.local_host = config.launcher == "local" ? "127.0.0.1" : host_name();
  limits.stage_timeout = std::chrono::milliseconds(config.scale_timeout_ms);
  limits.drain_timeout = std::chrono::milliseconds(config.scale_drain_timeout_ms);
  limits.weights_from_peers = config.scale_weights_from == "peers";
  limits.experts = experts;
  coordinator->knows_experts_ = experts.has_value();
  coordinator->scale_ =
      std::make_unique<ScaleFsm>(coordinator->membership_, coordinator->ports_, limits);
  coordinator->update_log_speaker();
  // A worker whose output breaks the rules (wrong ids, too many tokens, an unknown reason) is
  // a bug or an impostor: its output never reaches a client, and operators see it in status.
  coordinator->router_.set_on_suspect(
      [c = coordinator.get()](const std::string& worker_id, const Status& why) {
        EEP_LOG_ERROR("worker " << worker_id << " is suspect: " << why.message());
        if (WorkerRecord* worker = c->membership_.find(worker_id)) {
          worker->reason = "suspect: " + why.message();
        }
      });
  if (config.http_address != "off") {
    HttpApiOptions http_options;
    if (!config.api_key.empty()) http_options.api_key = config.api_key;
    http_options.max_connections = config.max_connections;
    coordinator->http_ =
        std::make_unique<HttpApi>(config.http_address, coordinator->inbox_, http_options);
    EEP_RETURN_IF_ERROR(coordinator->http_->start());
    coordinator->scale_metrics_ = std::make_unique<ScaleMetrics>(coordinator->http_->metrics());
    coordinator->rank_metrics_ = std::make_unique<RankMetrics>(coordinator->http_->metrics());
    if (experts) {
      coordinator->eplb_metrics_ = std::make_unique<EplbMetrics>(coordinator->http_->metrics());
    }
  }
  if (experts) {
    EEP_LOG_INFO("model " << config.model_dir << ": " << experts->num_layers << " layers x "
                          << experts->num_experts << " experts, " << experts->num_redundant_experts
                          << " redundant slots asked; EPLB "
                          << (config.enable_eplb ? "on" : "off (measuring only)") << ", window "
                          << config.eplb_window_size << " steps, every "
                          << config.eplb_step_interval << " steps, " << config.eplb_layers_per_step
                          << " layers per step");
  }
  if (coordinator->model_text_.tokenizer) {
    EEP_LOG_INFO("model text: tokenizer hf ("
                 << config.model_dir << "/tokenizer.json, "
                 << coordinator->model_text_.tokenizer->vocab_size() << " ids), chat template "
                 << (coordinator->model_text_.chat_template ? "yes" : "none"));
  } else {
    EEP_LOG_INFO("model text: no tokenizer.json"
                 << (config.model_dir.empty() ? "" : " in " + config.model_dir)
                 << ": tokenizer byte for a generated model's vocabulary, else token ids only");
  }
  if (!config.ready_file.empty()) {
    // Written to a temporary name and renamed, so a reader never sees half a file.
    const std::string tmp = config.ready_file + ".tmp";
    std::ofstream out(tmp);
    nlohmann::json ready{{"admin", coordinator->admin_endpoint_},
                         {"control", coordinator->control_endpoint_},
                         {"pid", ::getpid()}};
    if (coordinator->http_) ready["http_port"] = coordinator->http_->port();
    out << ready.dump() << "\n";
    out.close();
    if (!out || std::rename(tmp.c_str(), config.ready_file.c_str()) != 0) {
      return error(ErrorCode::kIoError, "cannot write the ready file " + config.ready_file);
    }
  }
  EEP_LOG_INFO("admin on " << coordinator->admin_endpoint_ << ", control on "
                           << coordinator->control_endpoint_ << ", http on "
                           << (coordinator->http_ ? std::to_string(coordinator->http_->port())
                                                  : std::string("(off)"))
                           << ", launcher " << coordinator->launcher_->name() << ", device "
                           << config.device
                           << (coordinator->fleet_token_.empty() ? "" : ", fleet token required")
                           << (coordinator->admin_token_.empty() ? "" : ", admin token required"));
  return coordinator;
}

void Coordinator::update_log_speaker() {
  set_log_speaker("coord gen=" + std::to_string(membership_.generation()));
}

int Coordinator::run(int signal_fd) {
  // The initial fleet is the first return to the target size (with launcher none it forms once
  // enough workers registered by themselves).
  if (config_.initial_dp > 0) keeper_.set_target(config_.initial_dp);
  keep_fleet(Clock::now());
  hold_requests(Clock::now());
  // Every socket is bound and the HTTP API listens: systemd may start what comes after us
  // (eep-worker@N units are ordered After= this one).
  notifier_.ready("serving: admin " + admin_endpoint_ + ", control " + control_endpoint_ +
                  ", launcher " + std::string(launcher_->name()));

  while (true) {
    std::vector<zmq::pollitem_t> items = {
        {admin_socket_.handle(), 0, ZMQ_POLLIN, 0},
        {control_socket_.handle(), 0, ZMQ_POLLIN, 0},
    };
    if (signal_fd >= 0) items.push_back({nullptr, signal_fd, ZMQ_POLLIN, 0});
    items.push_back({nullptr, inbox_.wake_fd(), ZMQ_POLLIN, 0});
    for (int fd : launcher_->watch_fds()) items.push_back({nullptr, fd, ZMQ_POLLIN, 0});
    try {
      zmq::poll(items.data(), items.size(), kTick);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    const auto iteration_start = Clock::now();  // the time spent after poll: what a peer waits
    if (signal_fd >= 0 && (items[2].revents & ZMQ_POLLIN)) {
      signalfd_siginfo info{};
      if (::read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
        if (info.ssi_signo == SIGHUP) {
          reload_authorized_keys();
        } else if (!shutting_down_) {
          begin_shutdown("signal " + std::to_string(info.ssi_signo));
        }
      }
    }
    for (int i = 0; i < 256; ++i) {  // bounded, so one busy socket cannot starve the other
      auto frames = recv_frames(admin_socket_, std::chrono::milliseconds(0));
      if (!frames) break;
      handle_admin(*frames);  // answers even its own failures
    }
    for (int i = 0; i < 1024; ++i) {
      auto frames = recv_frames(control_socket_, std::chrono::milliseconds(0));
      if (!frames) break;
      try {
        handle_control(*frames);
      } catch (const std::exception& e) {
        // The last resort: nothing a peer sends may end the loop that serves every client.
        EEP_LOG_ERROR(
            "a control message from '"
            << (frames->empty() ? std::string() : printable(frames->front().to_string_view()))
            << "' failed: " << printable(e.what(), 200));
      }
    }
    drain_inbox();
    reap_launched();
    check_heartbeats();
    // Read after the messages: their handlers stamp stages with their own (later) clock reads,
    // and a tick must never see a time before them.
    const auto now = Clock::now();
    advance_drain(now);
    apply(scale_->on_tick(now));
    check_lost_reports(now);
    keep_fleet(now);
    advance_eplb(now);
    membership_.prune_dead(now, kDeadRetention);
    publish_serving_state();
    hold_requests(now);
    if (scale_metrics_ && now >= next_scale_metrics_) {
      scale_metrics_->update_from(scale_->info(now));
      scale_metrics_->update_from(keeper_.health(now));
      std::vector<protocol::WorkerInfo> active;
      for (const WorkerRecord* worker : membership_.active_by_rank()) {
        active.push_back(worker_info(*worker, now));
      }
      rank_metrics_->update_from(active);
      next_scale_metrics_ = now + std::chrono::milliseconds(100);
    }
    if (now >= next_throughput_log_) {
      if (auto line = throughput_logger_.line(inbox_.stats(), now)) EEP_LOG_INFO(*line);
      next_throughput_log_ = now + std::chrono::milliseconds(config_.stats_log_interval_ms);
    }
    note_loop_iteration(Clock::now() - iteration_start);
    notifier_.feed_watchdog(Clock::now());
    if (shutting_down_) {
      if (launcher_->live_workers().empty() || now > shutdown_deadline_) break;
    }
  }
  if (http_) http_->stop();  // cancels what is in flight; before the router goes away
  EEP_LOG_INFO("coordinator stopped");
  launcher_->stop_all();
  control_socket_.set(zmq::sockopt::linger, static_cast<int>(kShutdownLinger.count()));
  return 0;
}

void Coordinator::begin_shutdown(const std::string& why) {
  EEP_LOG_INFO("shutting down (" << why << "): stopping " << membership_.all().size()
                                 << " workers");
  shutting_down_ = true;
  notifier_.stopping("shutting down: " + why);
  shutdown_deadline_ = Clock::now() + std::chrono::seconds(10);
  const auto now = Clock::now();
  for (const WorkerRecord* worker : membership_.all()) {
    if (worker->state == WorkerState::kDead) continue;
    if (worker->state != WorkerState::kLeaving) {
      EEP_CHECK(
          membership_.transition(worker->id, WorkerState::kLeaving, "coordinator shutdown", now)
              .is_ok());
    }
    send_to_worker(worker->id, protocol::Shutdown{"coordinator shutdown: " + why, true});
  }
  for (const std::string& id : launcher_->live_workers()) launcher_->stop(id, false);
}

void Coordinator::apply(const std::vector<ScaleAction>& actions) {
  for (const ScaleAction& action : actions) {
    if (const auto* launch = std::get_if<LaunchWorker>(&action)) {
      Status status = launcher_->launch(launch->worker_id, launch->device_idx);
      if (!status.is_ok()) {
        EEP_LOG_ERROR("launch of " << launch->worker_id << " failed: " << status.to_string());
        apply(scale_->on_worker_gone(launch->worker_id, status.message(), Clock::now()));
      }
    } else if (const auto* assign = std::get_if<SendAssign>(&action)) {
      send_to_worker(assign->worker_id, assign->assign);
    } else if (const auto* shutdown = std::get_if<SendShutdown>(&action)) {
      send_to_worker(shutdown->worker_id, protocol::Shutdown{shutdown->reason, false});
    } else if (const auto* order = std::get_if<SendSwitch>(&action)) {
      send_to_worker(order->worker_id, order->order);
    } else if (const auto* stop = std::get_if<StopWorker>(&action)) {
      launcher_->stop(stop->worker_id, stop->force);
    } else if (const auto* migrate = std::get_if<MigrateRequests>(&action)) {
      router_.set_targets(serving_targets());  // the switch just committed g+1
      const size_t num_moved = router_.migrate(migrate->worker_id, migrate->reason);
      if (num_moved > 0) {
        EEP_LOG_INFO(num_moved << " requests migrated from leaving worker " << migrate->worker_id);
      }
    }
  }
  // A scale accepted, switched or rolled back changes where new requests may go: at once, so
  // that no request routed later in this loop turn lands on a rank that drains.
  router_.set_targets(serving_targets());
  update_log_speaker();
}

void Coordinator::advance_drain(Clock::time_point now) {
  if (scale_->stage() != ScaleStage::kDrainLeaving) return;
  for (const std::string& id : scale_->draining()) {
    if (router_.num_on(id) > 0) return;
  }
  apply(scale_->on_leaving_drained(now));
}

void Coordinator::handle_control(std::vector<zmq::message_t>& frames) {
  if (frames.size() < 3) {
    EEP_LOG_WARN("dropped a control message of " << frames.size() << " frames");
    return;
  }
  const std::string identity = frames[0].to_string();
  const std::string who = printable(identity);  // logged and echoed instead of the raw bytes
  auto envelope = protocol::decode(frames[1].to_string_view(), frames[2].to_string_view());
  if (!envelope.is_ok()) {
    EEP_LOG_WARN("dropped a control message from '" << who
                                                    << "': " << envelope.status().to_string());
    return;
  }
  const auto owner = protocol::heartbeat_owner(identity);
  if (!sender_authorized(frames, owner ? *owner : identity)) return;
  const auto now = Clock::now();
  if (owner) {
    // A worker's heartbeat socket: heartbeats only, never answered.
    if (envelope->type != protocol::MsgType::kHeartbeat ||
        !protocol::check_version(envelope.value()).is_ok()) {
      EEP_LOG_WARN("dropped a " << protocol::to_string(envelope->type) << " from '" << who
                                << "': a heartbeat socket sends current heartbeats only");
      return;
    }
    on_heartbeat(*owner, envelope.value());
    return;
  }
  if (envelope->type == protocol::MsgType::kRegister) {
    on_register(identity, envelope.value());
    return;
  }
  if (Status version = protocol::check_version(envelope.value()); !version.is_ok()) {
    EEP_LOG_WARN("dropped a message from '" << who << "': " << version.message());
    return;
  }
  const WorkerRecord* worker = membership_.find(identity);
  if (worker != nullptr && worker->state == WorkerState::kDead) {
    // Declared dead (its host was cut off, a stopped process resumed): a spare again.
    tell_dead_worker_to_register_again(*worker, now);
    return;
  }
  if (worker == nullptr) {
    // Unknown (the coordinator restarted).
    EEP_LOG_WARN("message from unknown worker '" << who << "'; telling it to exit");
    send_to_worker(identity, protocol::Shutdown{"this coordinator does not count you as a live "
                                                "worker; exit and register again",
                                                false});
    return;
  }
  membership_.heard_from(identity, now);
  switch (envelope->type) {
    case protocol::MsgType::kHeartbeat: {
      auto beat = protocol::parse_body<protocol::Heartbeat>(envelope.value());
      if (beat.is_ok()) membership_.find(identity)->load = beat->load;
      break;
    }
    case protocol::MsgType::kTokenBatch: {
      auto batch = protocol::parse_body<protocol::TokenBatch>(envelope.value());
      if (!batch.is_ok()) {
        EEP_LOG_WARN("from " << identity << ": " << batch.status().to_string());
        break;
      }
      membership_.find(identity)->load = batch->load;
      router_.on_outputs(identity, batch->outputs);
      break;
    }
    case protocol::MsgType::kNeedWake:
      on_need_wake();
      break;
    case protocol::MsgType::kExpertLoad:
      on_expert_load(identity, envelope.value());
      break;
    case protocol::MsgType::kRebalanceDone:
      on_rebalance_done(identity, envelope.value());
      break;
    case protocol::MsgType::kAssignAck: {
      auto ack = protocol::parse_body<protocol::AssignAck>(envelope.value());
      if (!ack.is_ok()) {
        EEP_LOG_WARN("from " << identity << ": " << ack.status().to_string());
        break;
      }
      if (!ack->error.empty()) {
        EEP_LOG_ERROR("worker " << identity << " cannot join generation " << ack->generation << ": "
                                << ack->error);
        apply(scale_->on_assign_failed(identity, ack->generation, ack->error, now));
        break;
      }
      if (ack->capacity) router_.set_max_num_seqs(identity, ack->capacity->max_num_seqs);
      // The newest generation's ranks agreed on their KV size (each ack carries it).
      if (ack->capacity &&
          (!capacity_ || capacity_->max_model_len != ack->capacity->max_model_len)) {
        capacity_ = ack->capacity;
        router_.set_vocab_size(capacity_->vocab_size);
        EEP_LOG_INFO("serving model '" << capacity_->model << "' (vocab " << capacity_->vocab_size
                                       << ", max model len " << capacity_->max_model_len << ")");
      }
      scale_->record_build_report(ack.value());
      apply(scale_->on_assign_ack(identity, ack->generation, now));
      break;
    }
    case protocol::MsgType::kGenerationLost:
      on_generation_lost(identity, envelope.value());
      break;
    case protocol::MsgType::kWorkerExiting: {
      auto exiting = protocol::parse_body<protocol::WorkerExiting>(envelope.value());
      on_worker_gone(identity,
                     exiting.is_ok() ? "exiting: " + printable(exiting->reason, 200) : "exiting",
                     true);
      break;
    }
    default:
      EEP_LOG_WARN("unexpected " << protocol::to_string(envelope->type) << " from " << identity);
  }
}

void Coordinator::on_register(const std::string& identity, const protocol::Envelope& envelope) {
  const std::string who = printable(identity);
  auto refuse = [&](const Status& why) {
    EEP_LOG_WARN("refused registration of '" << who << "' (" << printable(envelope.sender)
                                             << "): " << why.to_string());
    protocol::RegisterReply reply;
    reply.ok = false;
    reply.error = protocol::ErrorBody{std::string(to_string(why.code())), why.message()};
    send_to_worker(identity, reply);
  };
  if (Status version = protocol::check_version(envelope); !version.is_ok()) return refuse(version);
  if (shutting_down_) return refuse(error(ErrorCode::kUnavailable, "the coordinator is stopping"));
  auto request = protocol::parse_body<protocol::Register>(envelope);
  if (!request.is_ok()) return refuse(request.status());
  if (request->worker_id != identity) {
    return refuse(error(ErrorCode::kInvalidArgument, "worker id '" + printable(request->worker_id) +
                                                         "' differs from its socket identity '" +
                                                         who + "'"));
  }
  if (!fleet_token_.empty() && request->fleet_token != fleet_token_) {
    return refuse(error(ErrorCode::kUnauthenticated,
                        request->fleet_token.empty()
                            ? "this fleet needs a token; start the worker with --fleet-token-file"
                            : "wrong fleet token"));
  }
  WorkerRecord record;
  record.id = request->worker_id;
  record.host = request->host;
  record.pid = request->pid;
  record.device = request->device;
  record.device_idx = request->device_idx;
  const auto now = Clock::now();
  if (Status added = membership_.add(record, now); !added.is_ok()) return refuse(added);
  register_again_sent_.erase(record.id);

  protocol::RegisterReply reply;
  reply.ok = true;
  reply.heartbeat_timeout_ms = config_.heartbeat_timeout_ms;
  reply.heartbeat_interval_ms = config_.heartbeat_timeout_ms / kHeartbeatsPerTimeout;
  send_to_worker(identity, reply);
  EEP_LOG_INFO("worker " << record.id << " registered (pid " << record.pid << " on " << record.host
                         << ", " << record.device << ":" << record.device_idx << ")");
  apply(scale_->on_registered(record.id, now));
  keeper_.on_spare_registered();

  // A launched worker that no scale claims (its scale rolled back before it came up) goes away.
  const WorkerRecord* worker = membership_.find(record.id);
  const auto live = launcher_->live_workers();
  if (worker->state == WorkerState::kSpare &&
      std::find(live.begin(), live.end(), record.id) != live.end() && !scale_->running()) {
    EEP_CHECK(membership_
                  .transition(record.id, WorkerState::kLeaving,
                              "launched for a scale "
                              "that ended",
                              now)
                  .is_ok());
    send_to_worker(record.id, protocol::Shutdown{"the scale it was launched for has ended", false});
    launcher_->stop(record.id, false);
  }
}

void Coordinator::on_worker_gone(const std::string& worker_id, const std::string& reason,
                                 bool clean) {
  const auto now = Clock::now();
  WorkerRecord* worker = membership_.find(worker_id);
  std::optional<std::string> lost_member;  // an ACTIVE member: who and why
  if (worker != nullptr && worker->state == WorkerState::kLeaving) {
    EEP_LOG_INFO("worker " << worker_id << " left (" << reason << ")");
    membership_.remove(worker_id);
    // The launcher forgets it too (systemctl stop of a unit whose process exited is harmless).
    launcher_->stop(worker_id, false);
  } else if (worker != nullptr && worker->state != WorkerState::kDead) {
    const bool was_active = worker->state == WorkerState::kActive;
    const int rank = worker->rank;
    EEP_CHECK(membership_.transition(worker_id, WorkerState::kDead, reason, now).is_ok());
    if (was_active) {
      EEP_LOG_ERROR("worker " << worker_id << " (rank " << rank << " of generation "
                              << membership_.generation() << ") is DEAD: " << reason);
      lost_member = "worker " + worker_id + " (rank " + std::to_string(rank) + " of generation " +
                    std::to_string(membership_.generation()) + "): " + reason;
    } else {
      EEP_LOG_WARN("worker " << worker_id << " is DEAD: " << reason);
    }
    if (!clean) launcher_->stop(worker_id, true);
  }
  apply(scale_->on_worker_gone(worker_id, reason, now));
  if (lost_member) on_member_lost(*lost_member, now);
  // Its requests continue elsewhere (prompt + tokens so far), or fail if nobody can take them.
  router_.set_targets(serving_targets());
  router_.on_worker_gone(worker_id, reason);
}

void Coordinator::reap_launched() {
  for (const LaunchedExit& exit : launcher_->reap()) {
    on_worker_gone(exit.worker_id,
                   exit.launch_failed ? exit.description : "process " + exit.description,
                   exit.clean);
  }
}

void Coordinator::check_heartbeats() {
  const auto now = Clock::now();
  for (const std::string& id :
       membership_.silent_workers(now, std::chrono::milliseconds(config_.heartbeat_timeout_ms))) {
    on_worker_gone(id, "no heartbeat for " + std::to_string(config_.heartbeat_timeout_ms) + " ms",
                   false);
  }
}

}  // namespace eep::coordinator
