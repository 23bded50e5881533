#include "status_watch.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

namespace eep::ctl {

namespace {

using Clock = std::chrono::steady_clock;

// Set by SIGINT, SIGTERM or SIGHUP (the ssh session went away); the loop polls it.
volatile sig_atomic_t g_stop = 0;

void on_stop_signal(int) {
  g_stop = 1;
}

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a sleep or a poll returns early
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(signal, &action, nullptr);
}

// How often the loop looks at the stop flag while it waits for the next refresh.
constexpr std::chrono::milliseconds kStopPollInterval{50};

std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", decimals, value);
  return text;
}

std::string local_time_now() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof(text), "%H:%M:%S", &local);
  return text;
}

// The scale line: what runs and since when its stage started, or the last outcome.
std::string scale_line(const protocol::ScaleInfo& scale) {
  const std::string what =
      scale.kind + " " + std::to_string(scale.from_dp) + " -> " + std::to_string(scale.to_dp);
  if (scale.state == "idle") return "no scale running";
  if (scale.state != "running") {
    std::string line = "no scale running; last: " + what + " " + scale.state + " in " +
                       fixed(scale.elapsed_s, 2) + " s";
    if (!scale.reason.empty()) line += ": " + scale.reason;
    return line;
  }
  double passed_s = 0;
  std::string stages;
  for (const protocol::StageDuration& stage : scale.timeline) {
    passed_s += stage.seconds;
    stages += (stages.empty() ? "" : ", ") + stage.stage + " " + fixed(stage.seconds, 2) + " s";
  }
  std::string line = what + " running: stage " + scale.stage + " for " +
                     fixed(std::max(0.0, scale.elapsed_s - passed_s), 2) + " s, " +
                     fixed(scale.elapsed_s, 2) + " s in all";
  if (!stages.empty()) line += " (after " + stages + ")";
  return line;
}

std::string pad(const std::string& text, size_t width) {
  return text.size() >= width ? text + " " : text + std::string(width - text.size(), ' ');
}

}  // namespace

std::string format_watch_frame(const protocol::StatusReply& status,
                               const protocol::StatusReply* previous, double elapsed_s,
                               const std::string& header) {
  std::ostringstream out;
  out << header << "\n";
  out << "generation " << status.generation << ", " << status.active_dp << " active ranks";
  if (status.health) out << " (target " << status.health->target_dp << ")";
  out << ", launcher " << status.launcher << ", device " << status.device << "\n";
  out << scale_line(status.scale) << "\n";

  // Tokens/s per worker: its relayed tokens since the last refresh (workers in both replies).
  std::map<std::string, int64_t> tokens_before;
  if (previous != nullptr) {
    for (const protocol::WorkerInfo& worker : previous->workers) {
      tokens_before[worker.id] = worker.generated_tokens;
    }
  }
  std::map<std::string, double> rates;
  double total_rate = 0;
  int64_t num_running = 0;
  int64_t num_waiting = 0;
  for (const protocol::WorkerInfo& worker : status.workers) {
    num_running += worker.load.num_running;
    num_waiting += worker.load.num_waiting;
    auto before = tokens_before.find(worker.id);
    if (before == tokens_before.end() || elapsed_s <= 0) continue;
    const double rate = std::max<int64_t>(0, worker.generated_tokens - before->second) / elapsed_s;
    rates[worker.id] = rate;
    total_rate += rate;
  }
  out << "tokens/s " << (previous != nullptr ? fixed(total_rate, 1) : std::string("-"))
      << ", requests running " << num_running << ", waiting " << num_waiting;
  if (status.health) {
    out << ", recoveries " << status.health->num_recoveries << ", workers lost "
        << status.health->num_failures;
    if (!status.health->gave_up.empty()) out << ", GAVE UP: " << status.health->gave_up;
  }
  out << "\n";
  if (status.eplb && status.eplb->balancedness) {
    out << "EPLB balancedness " << fixed(*status.eplb->balancedness, 3);
    if (status.eplb->in_progress) out << ", rebalance " << *status.eplb->in_progress << " running";
    out << "\n";
  }

  std::vector<const protocol::WorkerInfo*> workers;
  for (const protocol::WorkerInfo& worker : status.workers) workers.push_back(&worker);
  // Ranked workers in rank order, then the others (spares, joining, dead) by id.
  std::stable_sort(workers.begin(), workers.end(),
                   [](const protocol::WorkerInfo* a, const protocol::WorkerInfo* b) {
                     if ((a->rank < 0) != (b->rank < 0)) return a->rank >= 0;
                     if (a->rank != b->rank) return a->rank < b->rank;
                     return a->id < b->id;
                   });
  out << "\n"
      << pad("RANK", 6) << pad("ID", 10) << pad("STATE", 9) << pad("GEN", 5) << pad("RUNNING", 9)
      << pad("WAITING", 9) << pad("KV USE", 8) << pad("TOK/S", 10) << pad("HEARD(ms)", 11)
      << "REASON\n";
  for (const protocol::WorkerInfo* worker : workers) {
    const protocol::WorkerLoad& load = worker->load;
    const std::string kv_use =
        load.num_kv_blocks > 0
            ? fixed(100.0 * (load.num_kv_blocks - load.num_free_kv_blocks) / load.num_kv_blocks,
                    0) +
                  "%"
            : "-";
    auto rate = rates.find(worker->id);
    out << pad(worker->rank < 0 ? "-" : std::to_string(worker->rank), 6) << pad(worker->id, 10)
        << pad(worker->state, 9)
        << pad(worker->generation < 0 ? "-" : std::to_string(worker->generation), 5)
        << pad(std::to_string(load.num_running), 9) << pad(std::to_string(load.num_waiting), 9)
        << pad(kv_use, 8) << pad(rate == rates.end() ? "-" : fixed(rate->second, 1), 10)
        << pad(std::to_string(worker->last_heard_ms), 11) << worker->reason << "\n";
  }
  return out.str();
}

int run_status_watch(AdminClient& client, const WatchOptions& options) {
  install_stop_handlers();
  const bool terminal = !options.json_output && ::isatty(STDOUT_FILENO) == 1;
  if (terminal) std::cout << "\033[?25l\033[H\033[2J";  // hide the cursor, clear the screen
  std::optional<protocol::StatusReply> previous;
  Clock::time_point previous_time;
  const std::string command =
      "eepctl status --watch " + fixed(options.interval.count() / 1000.0, 1) + " s";
  while (g_stop == 0) {
    const Clock::time_point asked = Clock::now();
    protocol::AdminRequest request;
    request.cmd = protocol::AdminCommand::kStatus;
    auto reply = client.call(request, options.reply_timeout);
    if (g_stop != 0) break;
    std::string frame;
    if (options.json_output) {
      frame = reply.is_ok() ? reply->dump() + "\n"
                            : nlohmann::json{{"ok", false},
                                             {"error",
                                              {{"code", to_string(reply.status().code())},
                                               {"message", reply.status().message()}}}}
                                      .dump() +
                                  "\n";
    } else {
      const std::string header = command + ", " + local_time_now() + " (Ctrl-C to quit)";
      if (!reply.is_ok()) {
        frame = header + "\nstatus failed: " + reply.status().to_string() + "\n";
      } else {
        try {
          auto status = reply->get<protocol::StatusReply>();
          const double elapsed_s =
              previous ? std::chrono::duration<double>(asked - previous_time).count() : 0;
          frame = format_watch_frame(status, previous ? &*previous : nullptr, elapsed_s, header);
          previous = std::move(status);
          previous_time = asked;
        } catch (const nlohmann::json::exception& e) {
          frame = header + "\nunreadable status reply: " + e.what() + "\n";
        }
      }
    }
    if (terminal) {
      // Home, then each line erased to its end, then everything below the frame.
      std::string drawn = "\033[H";
      std::istringstream lines(frame);
      for (std::string line; std::getline(lines, line);) drawn += line + "\033[K\n";
      std::cout << drawn << "\033[J";
    } else {
      std::cout << frame << (options.json_output ? "" : "\n");
    }
    std::cout << std::flush;
    const Clock::time_point next = asked + options.interval;
    while (g_stop == 0 && Clock::now() < next) {
      std::this_thread::sleep_for(
          std::min<Clock::duration>(kStopPollInterval, next - Clock::now()));
    }
  }
  if (terminal) std::cout << "\033[?25h";  // the cursor back
  std::cout << std::flush;
  return 0;
}

}  // namespace eep::ctl
