// The request router (DESIGN.md sections 1 and 7): sends each request to the ACTIVE rank with
// the least load, keeps every request's prompt and the tokens generated so far (so that a
// request can be resubmitted elsewhere and continue the same sequence), relays tokens to the
// request's callback, and cancels on the worker when the client goes away. Only the
// coordinator's event loop uses it; the actual sending is a callback so that it is testable
// without sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "eep/common/protocol.h"
#include "eep/coordinator/serving.h"

namespace eep::coordinator {

class Router {
 public:
  using SubmitFn =
      std::function<void(const std::string& worker_id, const protocol::SubmitRequest&)>;
  using CancelFn = std::function<void(const std::string& worker_id, uint64_t request_id)>;
  Router(SubmitFn submit, CancelFn cancel);

  // The workers requests may go to, in rank order (ACTIVE ones that no scale-down drains).
  // Requests already on a worker that leaves this set stay there until they finish, are migrated
  // (migrate) or the worker is gone (on_worker_gone).
  void set_targets(const std::vector<std::string>& worker_ids);
  bool has_targets() const { return !targets_.empty(); }

  // Routes a new request. kUnavailable when there is no target.
  Status route(CompletionRequest request, CompletionCallback callback);
  void cancel(uint64_t request_id);
  // Relays a worker's outputs. Only outputs of requests routed to that worker count (others are
  // stale and dropped); each is checked first (output_check.h): an invalid one is never relayed,
  // it fails its request with an internal error and is reported through the suspect callback.
  void on_outputs(const std::string& worker_id,
                  const std::vector<protocol::RequestOutput>& outputs);
  // The model's vocabulary (from the workers' capacity), for the output check.
  void set_vocab_size(int vocab_size) { vocab_size_ = vocab_size; }
  // Called with the worker and the violation when a worker sends an invalid output.
  using SuspectFn = std::function<void(const std::string& worker_id, const Status& why)>;
  void set_on_suspect(SuspectFn on_suspect) { on_suspect_ = std::move(on_suspect); }
  // Resubmits (prompt + tokens so far) the requests of a worker that died or left to the least
  // loaded target; fails them when there is none.
  void on_worker_gone(const std::string& worker_id, const std::string& reason);
  // Moves the requests of a worker that is still alive (a leaving rank at the switch of a
  // scale-down) to the least loaded targets, as on_worker_gone does, and cancels them on it. From
  // then on an output of a moved request from that worker is stale and dropped (outputs count
  // only from the worker that has the request), so a token it computed after the move and the
  // new worker computes again reaches the client once. Requests stay where they are when there
  // is no other target. Returns how many moved.
  size_t migrate(const std::string& worker_id, const std::string& reason);

  size_t num_in_flight() const { return requests_.size(); }
  size_t num_on(const std::string& worker_id) const;
  // Totals since start.
  int64_t num_finished() const { return num_finished_; }
  int64_t num_failed() const { return num_failed_; }
  int64_t num_prompt_tokens() const { return num_prompt_tokens_; }
  int64_t num_generated_tokens() const { return num_generated_tokens_; }
  int64_t num_resubmitted() const { return num_resubmitted_; }

 private:
  struct InFlight {
    CompletionRequest request;
    CompletionCallback callback;
    std::string worker_id;
    std::vector<int32_t> output_ids;
    bool cancelled = false;
  };
  std::string least_loaded() const;
  void send(InFlight& in_flight);
  // Moves the requests of worker_id elsewhere (both on_worker_gone and migrate); `alive`: the
  // worker still runs them, so it is told to cancel them, and they stay when nobody can take them.
  size_t move_requests(const std::string& worker_id, const std::string& reason, bool alive);
  void finish(std::map<uint64_t, InFlight>::iterator it, const std::string& reason,
              const Status& status);

  SubmitFn submit_;
  CancelFn cancel_;
  SuspectFn on_suspect_;
  std::optional<int> vocab_size_;
  std::vector<std::string> targets_;
  std::map<uint64_t, InFlight> requests_;
  std::map<std::string, std::set<uint64_t>> by_worker_;
  int64_t num_finished_ = 0;
  int64_t num_failed_ = 0;
  int64_t num_prompt_tokens_ = 0;
  int64_t num_generated_tokens_ = 0;
  int64_t num_resubmitted_ = 0;
};

}  // namespace eep::coordinator
