#include "eep/bench/scale_driver.h"

#include <algorithm>
#include <optional>

#include "eep/common/admin_client.h"

namespace eep::bench {

namespace {

// The coordinator answers admin commands from its event loop, within milliseconds; 5 s (eepctl's
// default) means it is gone or stuck.
constexpr std::chrono::milliseconds kReplyTimeout{5000};
// How often `status` is asked while a scale runs: fine enough for a scale of about a second,
// cheap for the coordinator. The outcome time does not depend on it (see follow()).
constexpr std::chrono::milliseconds kStatusPollInterval{100};
// Consecutive `status` calls without an answer before a scale's outcome is given up as unknown.
constexpr int kMaxStatusFailures = 3;

}  // namespace

ScaleDriver::ScaleDriver(AdminConnection admin, std::vector<ScaleTrigger> triggers,
                         BenchClock::time_point start)
    : admin_(std::move(admin)), thread_(start) {
  for (const ScaleTrigger& trigger : triggers) {
    ScaleRecord scale;
    scale.trigger = trigger;
    scales_.push_back(std::move(scale));
  }
  thread_.run([this] { run(); });
}

ScaleDriver::~ScaleDriver() {
  thread_.finish();
}

std::vector<ScaleRecord> ScaleDriver::finish() {
  thread_.finish();
  return std::move(scales_);
}

void ScaleDriver::run() {
  AdminClient client(admin_);
  std::optional<size_t> pending;  // the accepted scale whose outcome status has not shown yet
  int num_status_failures = 0;
  // The succeeded scale whose per-rank token shares are being measured, and the `workers` of
  // the status that saw its outcome.
  std::optional<size_t> sharing;
  nlohmann::json sharing_from;

  // Ends the shares window of the last succeeded scale with a fresh status.
  auto close_shares = [&] {
    if (!sharing) return;
    protocol::AdminRequest request;
    request.cmd = protocol::AdminCommand::kStatus;
    auto reply = client.call(request, kReplyTimeout);
    if (reply.is_ok()) {
      scales_[*sharing].rank_shares =
          rank_shares(sharing_from, reply->value("workers", nlohmann::json::array()));
    }
    sharing.reset();
  };

  auto give_up = [&](const std::string& reason) {
    scales_[*pending].reason = reason;  // the outcome stays kUnknown
    pending.reset();
  };

  // One `status`: does it show the outcome of the pending scale?
  auto follow = [&] {
    ScaleRecord& scale = scales_[*pending];
    protocol::AdminRequest request;
    request.cmd = protocol::AdminCommand::kStatus;
    auto reply = client.call(request, kReplyTimeout);
    const double now_s = thread_.seconds_now();
    if (!reply.is_ok()) {
      if (++num_status_failures >= kMaxStatusFailures) {
        give_up("status failed " + std::to_string(num_status_failures) +
                " times in a row: " + reply.status().to_string());
      }
      return;
    }
    num_status_failures = 0;
    protocol::ScaleInfo info;
    try {
      info = reply->at("scale").get<protocol::ScaleInfo>();
      // Its outcome among the recent ones, when a recovery (or another scale) followed it.
      for (const nlohmann::json& recent : reply->value("recent_scales", nlohmann::json::array())) {
        auto ended = recent.get<protocol::ScaleInfo>();
        if (ended.target_generation == scale.target_generation) info = ended;
      }
    } catch (const nlohmann::json::exception& e) {
      give_up(std::string("status has no readable scale object: ") + e.what());
      return;
    }
    if (info.target_generation > scale.target_generation) {
      give_up("another scale (generation " + std::to_string(info.target_generation) +
              ") replaced it before its outcome was seen");
      return;
    }
    if (info.target_generation != scale.target_generation || info.state == "running") {
      if (now_s - scale.command_s > std::chrono::duration<double>(kOutcomeWait).count()) {
        give_up("no outcome within " + std::to_string(kOutcomeWait.count()) + " s");
      }
      return;
    }
    scale.outcome = info.state == "succeeded" ? ScaleOutcome::kSucceeded : ScaleOutcome::kFailed;
    scale.reason = info.reason;
    scale.total_s = info.elapsed_s;
    scale.timeline = info.timeline;
    scale.weight_bytes_from_peers = info.weight_bytes_from_peers;
    scale.weight_bytes_from_checkpoint = info.weight_bytes_from_checkpoint;
    scale.weight_transfer_s = info.weight_transfer_s;
    scale.build_stages = info.build_stages;
    scale.from_dp = info.from_dp;
    // The coordinator started the scale before it answered, so it ended by accepted + elapsed:
    // sharper than when this poll saw it (up to kStatusPollInterval later).
    scale.outcome_s = std::min(now_s, scale.accepted_s + info.elapsed_s);
    if (scale.outcome == ScaleOutcome::kSucceeded) {
      sharing = pending;
      sharing_from = reply->value("workers", nlohmann::json::array());
    }
    pending.reset();
  };

  auto send = [&](ScaleRecord& scale) {
    close_shares();
    protocol::AdminRequest request;
    request.cmd = protocol::AdminCommand::kScale;
    request.dp = scale.trigger.dp;
    scale.command_s = thread_.seconds_now();
    auto reply = client.call(request, kReplyTimeout);
    if (!reply.is_ok()) {
      // Unavailable: no answer, so it is unknown whether the coordinator got the command.
      scale.outcome = reply.status().code() == ErrorCode::kUnavailable ? ScaleOutcome::kUnknown
                                                                       : ScaleOutcome::kRefused;
      scale.reason = reply.status().to_string();
      return;
    }
    if (!reply->value("changed", false)) {
      scale.outcome = ScaleOutcome::kUnchanged;
      scale.reason = reply->value("message", std::string());
      return;
    }
    scale.accepted_s = thread_.seconds_now();
    try {
      const auto info = reply->at("scale").get<protocol::ScaleInfo>();
      scale.target_generation = info.target_generation;
      scale.from_dp = info.from_dp;
    } catch (const nlohmann::json::exception& e) {
      scale.outcome = ScaleOutcome::kUnknown;
      scale.reason = std::string("the scale answer has no readable scale object: ") + e.what();
      return;
    }
    scale.outcome = ScaleOutcome::kUnknown;  // until status shows it
    pending = static_cast<size_t>(&scale - scales_.data());
    num_status_failures = 0;
  };

  auto due = [&](size_t idx) { return thread_.at(scales_[idx].trigger.at_s); };

  size_t next_idx = 0;
  while (pending || next_idx < scales_.size()) {
    BenchClock::time_point wake =
        pending ? BenchClock::now() + kStatusPollInterval : BenchClock::time_point::max();
    if (next_idx < scales_.size()) wake = std::min(wake, due(next_idx));
    if (thread_.wait_until_or_finished(wake)) {
      for (; next_idx < scales_.size(); ++next_idx) {
        scales_[next_idx].reason = "the requests ended before its time";
      }
      if (pending) std::this_thread::sleep_for(kStatusPollInterval);
    }
    // Before a send too: a scale that just ended is recorded before the next one replaces it.
    if (pending) follow();
    if (next_idx < scales_.size() && BenchClock::now() >= due(next_idx)) send(scales_[next_idx++]);
  }
  if (sharing) {  // its window runs to the end of the requests
    while (!thread_.wait_until_or_finished(BenchClock::now() + std::chrono::seconds(1))) {
    }
    close_shares();
  }
}

}  // namespace eep::bench
