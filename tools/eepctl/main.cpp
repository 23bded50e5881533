// eepctl: the operator's command line over the coordinator's admin socket.
//   eepctl [--admin ADDR] [--token-file F] [--json] status [--watch [SECONDS]] | scale --dp N |
//          eplb rebalance | shutdown
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include "eep/common/admin_client.h"
#include "eep/common/config.h"
#include "eep/common/token_file.h"
#include "status_watch.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  eep::AdminClientOptions admin{"tcp://127.0.0.1:5710", {}, {}};
  bool json_output = false;
  int timeout_ms = 5000;
  int dp = -1;
  int wait_s = 120;
  double watch_s = 0;  // status --watch: seconds between refreshes
};

void print_error(const eep::Status& status, bool json_output) {
  if (json_output) {
    std::cout << json{{"ok", false},
                      {"error",
                       {{"code", eep::to_string(status.code())}, {"message", status.message()}}}}
                     .dump()
              << "\n";
  } else {
    std::cerr << "eepctl: " << status.to_string() << "\n";
  }
}

// One line on expert load balancing, e.g.
//   EPLB on: balancedness 0.8123 over 1000 steps, rebalance 3 in progress; last: rebalance 2 ok,
//   0.6100 -> 0.9700, 12.6 MB in 1.20 s, longest step gap 35.0 ms
void print_eplb_line(const eep::protocol::EplbInfo& eplb) {
  std::cout << "EPLB " << (eplb.enabled ? "on" : "off") << ": ";
  if (eplb.balancedness) {
    std::cout << "balancedness " << std::fixed << std::setprecision(4) << *eplb.balancedness
              << " over " << eplb.window_steps << " steps";
  } else {
    std::cout << "no expert load in the window yet";
  }
  if (eplb.in_progress) std::cout << ", rebalance " << *eplb.in_progress << " in progress";
  if (const auto& last = eplb.last_rebalance) {
    std::cout << "; last: rebalance " << last->plan_id << " ";
    if (last->ok) {
      std::cout << "ok, " << std::fixed << std::setprecision(4) << last->before_balancedness
                << " -> " << last->after_balancedness << std::setprecision(1) << ", "
                << last->bytes_moved / 1e6 << " MB in " << std::setprecision(2) << last->seconds
                << " s";
      if (last->move_seconds > 0) {
        std::cout << " (" << std::setprecision(3) << last->move_seconds << " s moving, "
                  << std::setprecision(1) << last->bytes_moved / 1e9 / last->move_seconds
                  << " GB/s)";
      }
      std::cout << ", longest step gap " << std::setprecision(1) << last->longest_step_gap_ms
                << " ms";
    } else {
      std::cout << "FAILED: " << last->error;
    }
  }
  std::cout << "\n";
}

// "0-1,4": ranks in increasing order, runs joined.
std::string rank_runs(const std::vector<int>& ranks) {
  std::string text;
  for (size_t idx = 0; idx < ranks.size(); ++idx) {
    size_t end = idx;
    while (end + 1 < ranks.size() && ranks[end + 1] == ranks[end] + 1) ++end;
    text += (text.empty() ? "" : ",") + std::to_string(ranks[idx]);
    if (end > idx) text += "-" + std::to_string(ranks[end]);
    idx = end;
  }
  return text;
}

// "3 hosts: 10.77.0.2 ranks 0-1, 10.77.0.3 ranks 2-3, 10.77.0.4 2 spares": the hosts of the
// live workers (docs/hosts.md), those with ranks first in rank order.
void print_hosts_line(const eep::protocol::StatusReply& status) {
  struct HostWorkers {
    std::vector<int> ranks;
    int num_spares = 0;
  };
  std::vector<std::string> order;
  std::map<std::string, HostWorkers> hosts;
  for (const auto& worker : status.workers) {  // ranked workers first, in rank order
    if (worker.state == "DEAD") continue;
    if (!hosts.count(worker.host)) order.push_back(worker.host);
    HostWorkers& host = hosts[worker.host];
    if (worker.state == "ACTIVE" && worker.rank >= 0) host.ranks.push_back(worker.rank);
    if (worker.state == "SPARE") ++host.num_spares;
  }
  if (order.empty()) return;
  std::cout << order.size() << (order.size() == 1 ? " host: " : " hosts: ");
  for (size_t idx = 0; idx < order.size(); ++idx) {
    const HostWorkers& host = hosts[order[idx]];
    std::cout << (idx == 0 ? "" : ", ") << order[idx];
    if (!host.ranks.empty()) std::cout << " ranks " << rank_runs(host.ranks);
    if (host.num_spares > 0) {
      std::cout << " " << host.num_spares << (host.num_spares == 1 ? " spare" : " spares");
    }
  }
  std::cout << "\n";
}

void print_status_table(const eep::protocol::StatusReply& status) {
  std::cout << "generation " << status.generation << ", " << status.active_dp
            << " active ranks, launcher " << status.launcher << ", device " << status.device
            << "\n";
  if (status.health) {
    const auto& health = *status.health;
    std::cout << "target dp " << health.target_dp << ", " << health.num_failures
              << " workers lost, " << health.num_recoveries << " recoveries (last " << std::fixed
              << std::setprecision(2) << health.last_recovery_s << " s), " << health.num_restarts
              << " restarts\n";
    if (!health.last_failure.empty()) {
      std::cout << "last failure (" << std::setprecision(1) << health.last_failure_ago_s
                << " s ago): " << health.last_failure << "\n";
    }
    if (!health.gave_up.empty()) std::cout << "GAVE UP: " << health.gave_up << "\n";
  }
  const auto& scale = status.scale;
  if (scale.state != "idle") {
    std::cout << "last " << scale.kind << ": " << scale.from_dp << " -> " << scale.to_dp << " "
              << scale.state << " (" << scale.stage << ", " << std::fixed << std::setprecision(2)
              << scale.elapsed_s << " s)";
    if (!scale.reason.empty()) std::cout << ": " << scale.reason;
    std::cout << "\n";
  }
  if (status.eplb) print_eplb_line(*status.eplb);
  print_hosts_line(status);
  std::cout << "\n"
            << std::left << std::setw(10) << "ID" << std::setw(9) << "STATE" << std::setw(6)
            << "RANK" << std::setw(5) << "GEN" << std::setw(18) << "HOST" << std::setw(9) << "PID"
            << std::setw(8) << "DEVICE" << std::setw(11) << "HEARD(ms)"
            << "REASON\n";
  for (const auto& worker : status.workers) {
    std::cout << std::left << std::setw(10) << worker.id << std::setw(9) << worker.state
              << std::setw(6) << (worker.rank < 0 ? "-" : std::to_string(worker.rank))
              << std::setw(5) << (worker.generation < 0 ? "-" : std::to_string(worker.generation))
              << std::setw(18) << worker.host.substr(0, 17) << std::setw(9) << worker.pid
              << std::setw(8) << (worker.device + ":" + std::to_string(worker.device_idx))
              << std::setw(11) << worker.last_heard_ms << worker.reason << "\n";
  }
}

void print_timeline(const eep::protocol::ScaleInfo& scale) {
  for (const auto& stage : scale.timeline) {
    std::cout << "  " << std::left << std::setw(16) << stage.stage << std::right << std::fixed
              << std::setprecision(3) << std::setw(8) << stage.seconds << " s\n";
    if (stage.stage != "WAIT_ACKS") continue;
    // Inside WAIT_ACKS: how the new generation was built, each step the slowest rank's.
    for (const auto& step : scale.build_stages) {
      std::cout << "    " << std::left << std::setw(14) << step.stage << std::right << std::setw(8)
                << step.seconds << " s (slowest rank)\n";
    }
  }
  if (scale.weight_bytes_from_peers > 0 || scale.weight_bytes_from_checkpoint > 0) {
    std::cout << "  weights: " << std::setprecision(1) << scale.weight_bytes_from_peers / 1e6
              << " MB from peers";
    if (scale.weight_transfer_s > 0) {
      std::cout << " in " << std::setprecision(3) << scale.weight_transfer_s << " s";
    }
    std::cout << ", " << std::setprecision(1) << scale.weight_bytes_from_checkpoint / 1e6
              << " MB from the checkpoint\n";
  }
}

int run_scale(eep::AdminClient& client, const Options& options) {
  eep::protocol::AdminRequest request;
  request.cmd = eep::protocol::AdminCommand::kScale;
  request.dp = options.dp;
  auto reply = client.call(request, std::chrono::milliseconds(options.timeout_ms));
  if (!reply.is_ok()) {
    print_error(reply.status(), options.json_output);
    return 1;
  }
  if (!reply->value("changed", false)) {
    if (options.json_output) {
      std::cout << reply->dump() << "\n";
    } else {
      std::cout << reply->value("message", std::string("nothing to do")) << "\n";
    }
    return 0;
  }
  const int64_t target = reply->at("scale").at("target_generation").get<int64_t>();
  const auto deadline = Clock::now() + std::chrono::seconds(options.wait_s);
  while (Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    eep::protocol::AdminRequest status_request;
    status_request.cmd = eep::protocol::AdminCommand::kStatus;
    auto status = client.call(status_request, std::chrono::milliseconds(options.timeout_ms));
    if (!status.is_ok()) {
      print_error(status.status(), options.json_output);
      return 1;
    }
    auto parsed = status->get<eep::protocol::StatusReply>();
    // The scale itself, or its outcome among the recent ones (a recovery may have followed it).
    std::optional<eep::protocol::ScaleInfo> ended;
    if (parsed.scale.target_generation == target && parsed.scale.state != "running") {
      ended = parsed.scale;
    }
    for (const auto& recent : parsed.recent_scales) {
      if (recent.target_generation == target && recent.kind == "scale") ended = recent;
    }
    if (!ended) continue;
    const auto& scale = *ended;
    if (options.json_output) {
      std::cout << json{{"ok", scale.state == "succeeded"}, {"scale", scale}}.dump() << "\n";
    } else if (scale.state == "succeeded") {
      std::cout << "scaled " << scale.from_dp << " -> " << scale.to_dp << " in " << std::fixed
                << std::setprecision(2) << scale.elapsed_s << " s (generation "
                << scale.target_generation << ")\n";
      print_timeline(scale);
    } else {
      std::cout << "scale " << scale.from_dp << " -> " << scale.to_dp << " FAILED after "
                << std::fixed << std::setprecision(2) << scale.elapsed_s << " s: " << scale.reason
                << "\n";
      print_timeline(scale);
    }
    return scale.state == "succeeded" ? 0 : 1;
  }
  print_error(eep::error(eep::ErrorCode::kDeadlineExceeded, "the scale did not finish within " +
                                                                std::to_string(options.wait_s) +
                                                                " s; see `eepctl status`"),
              options.json_output);
  return 1;
}

int run_eplb_rebalance(eep::AdminClient& client, const Options& options) {
  eep::protocol::AdminRequest request;
  request.cmd = eep::protocol::AdminCommand::kEplbRebalance;
  auto reply = client.call(request, std::chrono::milliseconds(options.timeout_ms));
  if (!reply.is_ok()) {
    print_error(reply.status(), options.json_output);
    return 1;
  }
  if (options.json_output) {
    std::cout << reply->dump() << "\n";
  } else {
    // The plan is computed off the coordinator's loop and sent once ready (docs/eplb.md).
    const json& current = (*reply)["current_balancedness"];
    std::cout << "rebalance planning on " << reply->value("window_steps", uint64_t{0})
              << " steps of load (balancedness "
              << (current.is_number() ? std::to_string(current.get<double>()) : std::string("n/a"))
              << "); it is sent once planned, `eepctl status` shows it\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"eepctl: operate an elastic-ep fleet through the coordinator's admin socket"};
  eep::add_config_option(app);
  eep::add_admin_client_options(app, options.admin, "Coordinator admin endpoint")
      ->capture_default_str();
  app.add_flag("--json", options.json_output, "Print JSON for scripts");
  app.add_option("--timeout-ms", options.timeout_ms, "How long to wait for each reply")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  app.require_subcommand(1);
  app.fallthrough();  // --json and --admin may follow the subcommand too
  CLI::App* status = app.add_subcommand("status", "Workers, ranks, generation and the last scale");
  CLI::Option* watch =
      status
          ->add_option("--watch", options.watch_s,
                       "Refresh every SECONDS (default 1) until Ctrl-C: ranks, states, the "
                       "scale's stage and its time, tokens/s")
          ->expected(0, 1)
          ->default_str("1")
          ->check(CLI::Range(0.1, 3600.0));
  CLI::App* scale = app.add_subcommand("scale", "Change the number of active ranks and wait");
  scale->add_option("--dp", options.dp, "New number of data/expert-parallel ranks")->required();
  scale->add_option("--wait-s", options.wait_s, "How long to wait for the outcome")
      ->capture_default_str();
  CLI::App* eplb = app.add_subcommand("eplb", "Expert load balancing");
  eplb->require_subcommand(1);
  eplb->add_subcommand("rebalance",
                       "Plan a new expert placement from the measured load and move to it now");
  app.add_subcommand("shutdown", "Stop the workers and the coordinator");
  if (auto exit_code = eep::parse_args(app, argc, argv)) return *exit_code;

  auto connection = eep::resolve_admin_connection(options.admin);
  if (!connection.is_ok()) {
    print_error(connection.status(), options.json_output);
    return 2;
  }
  eep::AdminClient client(std::move(connection).value());
  const std::string command = app.get_subcommands().front()->get_name();
  if (command == "scale") return run_scale(client, options);
  if (command == "eplb") return run_eplb_rebalance(client, options);
  if (command == "status" && watch->count() > 0) {
    eep::ctl::WatchOptions watch_options;
    watch_options.interval =
        std::chrono::milliseconds(static_cast<int64_t>(options.watch_s * 1000));
    watch_options.reply_timeout = std::chrono::milliseconds(options.timeout_ms);
    watch_options.json_output = options.json_output;
    return eep::ctl::run_status_watch(client, watch_options);
  }

  eep::protocol::AdminRequest request;
  request.cmd = command == "status" ? eep::protocol::AdminCommand::kStatus
                                    : eep::protocol::AdminCommand::kShutdown;
  auto reply = client.call(request, std::chrono::milliseconds(options.timeout_ms));
  if (!reply.is_ok()) {
    print_error(reply.status(), options.json_output);
    return 1;
  }
  if (options.json_output) {
    std::cout << reply->dump() << "\n";
  } else if (command == "status") {
    print_status_table(reply->get<eep::protocol::StatusReply>());
  } else {
    std::cout << reply->value("message", std::string("ok")) << "\n";
  }
  return 0;
}
