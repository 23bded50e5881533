// The router without sockets: what it sends where (recorded), what the client sees (recorded),
// for routing, the drain of a scale-down (targets without the leaving ranks) and the migration of
// requests off a leaving rank that is still running and sending.
#include <catch2/catch.hpp>

#include "eep/coordinator/router.h"

using namespace eep;
using namespace eep::coordinator;

namespace {

struct Sent {
  std::string worker_id;
  protocol::SubmitRequest submit;
};

struct RouterFixture {
  std::vector<Sent> submitted;
  std::vector<std::pair<std::string, uint64_t>> cancelled;
  std::map<uint64_t, std::vector<int32_t>> client_tokens;  // what each client received
  std::map<uint64_t, CompletionEvent> finished;
  Router router{[this](const std::string& worker_id, const protocol::SubmitRequest& submit) {
                  submitted.push_back({worker_id, submit});
                },
                [this](const std::string& worker_id, uint64_t request_id) {
                  cancelled.emplace_back(worker_id, request_id);
                }};

  void route(uint64_t id, std::vector<int32_t> prompt, int max_tokens = 8) {
    CompletionRequest request;
    request.id = id;
    request.prompt_ids = std::move(prompt);
    request.max_tokens = max_tokens;
    request.temperature = 0;
    REQUIRE(router
                .route(request,
                       [this](const CompletionEvent& event) {
                         auto& tokens = client_tokens[event.request_id];
                         tokens.insert(tokens.end(), event.new_tokens.begin(),
                                       event.new_tokens.end());
                         if (event.finished) finished[event.request_id] = event;
                       })
                .is_ok());
  }

  std::string worker_of(uint64_t id) const {
    std::string worker;
    for (const Sent& sent : submitted) {
      if (sent.submit.request_id == id) worker = sent.worker_id;  // the last one
    }
    return worker;
  }
};

protocol::RequestOutput token(uint64_t id, int32_t value, bool last = false) {
  return {id, {value}, last, last ? "length" : "", ""};
}

}  // namespace

TEST_CASE("router: new requests go to the least loaded target, never to a drained rank",
          "[router]") {
  RouterFixture f;
  f.router.set_targets({"w0", "w1", "w2"});
  for (uint64_t id = 1; id <= 6; ++id) f.route(id, {1, 2});
  CHECK(f.router.num_on("w0") == 2);
  CHECK(f.router.num_on("w1") == 2);
  CHECK(f.router.num_on("w2") == 2);

  // A scale-down to 2 drains w2: it keeps what it has and takes nothing new.
  f.router.set_targets({"w0", "w1"});
  for (uint64_t id = 7; id <= 10; ++id) f.route(id, {1, 2});
  CHECK(f.router.num_on("w2") == 2);
  CHECK(f.router.num_on("w0") == 4);
  CHECK(f.router.num_on("w1") == 4);
  // Its requests finish there as usual.
  const uint64_t on_w2 = f.submitted[2].submit.request_id;
  REQUIRE(f.worker_of(on_w2) == "w2");
  f.router.on_outputs("w2", {token(on_w2, 5, true)});
  CHECK(f.finished.at(on_w2).finish_reason == "length");
  CHECK(f.router.num_on("w2") == 1);

  f.router.set_targets({});
  CompletionRequest request;
  request.id = 99;
  request.prompt_ids = {1};
  CHECK(f.router.route(request, [](const CompletionEvent&) {}).code() == ErrorCode::kUnavailable);
}

TEST_CASE("router: a migrated request continues from its tokens so far, none doubled or lost",
          "[router]") {
  RouterFixture f;
  f.router.set_targets({"w0", "w1"});
  f.route(1, {7, 8, 9}, 6);  // w0
  f.route(2, {4, 5}, 6);     // w1
  REQUIRE(f.worker_of(1) == "w0");
  REQUIRE(f.worker_of(2) == "w1");
  f.router.on_outputs("w1", {token(2, 10)});
  f.router.on_outputs("w1", {token(2, 11)});

  // Scale-down to 1: w1 drains, the deadline passes, its request migrates at the switch.
  f.router.set_targets({"w0"});
  CHECK(f.router.migrate("w1", "retired by scale to dp 1") == 1);
  CHECK(f.router.num_on("w1") == 0);
  CHECK(f.router.num_on("w0") == 2);
  CHECK(f.router.num_resubmitted() == 1);
  // w1 is told to stop it; w0 gets the prompt and the two tokens the client already has.
  REQUIRE(f.cancelled == std::vector<std::pair<std::string, uint64_t>>{{"w1", 2}});
  const Sent& moved = f.submitted.back();
  CHECK(moved.worker_id == "w0");
  CHECK(moved.submit.request_id == 2);
  CHECK(moved.submit.prompt_ids == std::vector<int32_t>{4, 5});
  CHECK(moved.submit.output_ids == std::vector<int32_t>{10, 11});
  CHECK(moved.submit.params.max_tokens == 6);

  // What w1 computed after the move is still on the socket: stale, dropped (its cancel
  // confirmation too). w0 computes the same tokens again; the client gets each once.
  f.router.on_outputs("w1", {token(2, 12), token(2, 13)});
  f.router.on_outputs("w1", {{2, {}, true, "cancelled", ""}});
  CHECK(f.client_tokens[2] == std::vector<int32_t>{10, 11});
  CHECK_FALSE(f.finished.count(2));
  for (int32_t value : {12, 13, 14}) f.router.on_outputs("w0", {token(2, value)});
  f.router.on_outputs("w0", {token(2, 15, true)});
  CHECK(f.client_tokens[2] == std::vector<int32_t>{10, 11, 12, 13, 14, 15});
  REQUIRE(f.finished.count(2));
  CHECK(f.finished.at(2).finish_reason == "length");
  CHECK(f.finished.at(2).completion_tokens == 6);
  CHECK(f.router.num_generated_tokens() == 6);  // the dropped ones are not counted
  CHECK(f.router.num_finished() == 1);
  CHECK(f.router.num_failed() == 0);

  // When the leaving worker exits later, there is nothing left to move.
  f.router.on_worker_gone("w1", "exiting: retired");
  CHECK(f.router.num_resubmitted() == 1);
}

TEST_CASE("router: migration keeps a request without another target, ends a cancelled one",
          "[router]") {
  RouterFixture f;
  f.router.set_targets({"w0"});
  f.route(1, {1}, 4);
  f.route(2, {2}, 4);
  f.router.cancel(2);  // the client went away; w0 has not confirmed yet
  REQUIRE(f.cancelled == std::vector<std::pair<std::string, uint64_t>>{{"w0", 2}});

  CHECK(f.router.migrate("w0", "nowhere to go") == 0);
  CHECK(f.finished.at(2).finish_reason == "cancelled");
  CHECK(f.router.num_on("w0") == 1);  // request 1 stays and is still relayed
  f.router.on_outputs("w0", {token(1, 3, true)});
  CHECK(f.client_tokens[1] == std::vector<int32_t>{3});
  CHECK(f.finished.at(1).finish_reason == "length");

  // A worker that is gone with nowhere to go fails its requests.
  f.route(3, {3}, 4);
  f.router.set_targets({});
  f.router.on_worker_gone("w0", "killed");
  CHECK(f.finished.at(3).finish_reason == "error");
  CHECK(f.finished.at(3).status.code() == ErrorCode::kUnavailable);
  CHECK(f.router.num_failed() == 1);
}

TEST_CASE("router: held requests wait for the fleet to form and continue from their tokens",
          "[router]") {
  RouterFixture f;
  f.router.set_hold(true);
  f.router.set_targets({"w0"});
  f.route(1, {1, 2}, 4);
  f.router.on_outputs("w0", {token(1, 7)});
  // Every worker lost: request 1 waits with its token, new requests wait behind it.
  f.router.set_targets({});
  f.router.on_worker_gone("w0", "killed");
  f.route(2, {3}, 4);
  CHECK(f.finished.empty());
  CHECK(f.router.num_queued() == 2);
  CHECK(f.router.num_failed() == 0);
  // The fleet formed again: both go out in order, request 1 with its prompt and its token.
  const size_t sent_before = f.submitted.size();
  f.router.set_targets({"w5"});
  REQUIRE(f.submitted.size() == sent_before + 2);
  CHECK(f.submitted[sent_before].submit.request_id == 1);
  CHECK(f.submitted[sent_before].submit.output_ids == std::vector<int32_t>{7});
  CHECK(f.submitted[sent_before + 1].submit.request_id == 2);
  f.router.on_outputs("w5", {token(1, 8, true), token(2, 9, true)});
  CHECK(f.client_tokens[1] == std::vector<int32_t>{7, 8});
  CHECK(f.finished.at(2).finish_reason == "length");

  // A hold that ends without a worker fails what waits, with the reason; a cancelled one ends.
  f.router.set_targets({});
  f.route(3, {1}, 4);
  f.route(4, {1}, 4);
  f.router.cancel(4);
  CHECK(f.finished.at(4).finish_reason == "cancelled");
  CHECK(f.router.fail_queued("no worker within 30 s") == 1);
  CHECK(f.finished.at(3).finish_reason == "error");
  CHECK(f.finished.at(3).status.code() == ErrorCode::kUnavailable);
  CHECK(f.finished.at(3).status.message() == "no worker within 30 s");
  CHECK(f.router.num_queued() == 0);
  // Not held: a request with no target is refused at once.
  f.router.set_hold(false);
  CompletionRequest refused;
  refused.id = 5;
  refused.prompt_ids = {1};
  CHECK(f.router.route(refused, [](const CompletionEvent&) {}).code() == ErrorCode::kUnavailable);
}

TEST_CASE("router: an invalid worker output never reaches the client, the request fails",
          "[router]") {
  struct Case {
    const char* what;
    protocol::RequestOutput output;
  };
  const std::vector<Case> cases = {
      {"negative id", {1, {-5}, false, "", ""}},
      {"id past the vocabulary", {1, {2147483647}, false, "", ""}},
      {"more tokens than max_tokens", {1, {3, 4, 5, 6, 7, 8, 9, 10, 11}, false, "", ""}},
      {"unknown finish_reason", {1, {3}, true, "</script>\"<b>", ""}},
      {"a reason on an output that does not finish", {1, {3}, false, "stop", ""}},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    RouterFixture f;
    std::vector<std::pair<std::string, std::string>> suspects;
    f.router.set_on_suspect([&](const std::string& worker_id, const Status& why) {
      suspects.emplace_back(worker_id, why.message());
    });
    f.router.set_vocab_size(512);
    f.router.set_targets({"w0"});
    f.route(1, {1, 2}, 8);
    f.router.on_outputs("w0", {token(1, 7)});  // a good one first: relayed
    f.router.on_outputs("w0", {c.output});
    CHECK(f.client_tokens[1] == std::vector<int32_t>{7});  // nothing of the bad output
    REQUIRE(f.finished.count(1) == 1);
    CHECK(f.finished[1].finish_reason == "error");
    CHECK_FALSE(f.finished[1].status.is_ok());
    REQUIRE(suspects.size() == 1);
    CHECK(suspects[0].first == "w0");
    CHECK(f.router.num_failed() == 1);
    CHECK(f.router.num_in_flight() == 0);
  }
}

TEST_CASE("router: outputs at the limits are valid", "[router]") {
  RouterFixture f;
  f.router.set_vocab_size(512);
  f.router.set_targets({"w0"});
  f.route(1, {1, 2}, 3);
  f.router.on_outputs("w0", {{1, {0, 511}, false, "", ""}});
  f.router.on_outputs("w0", {{1, {5}, true, "length", ""}});  // exactly max_tokens
  CHECK(f.client_tokens[1] == std::vector<int32_t>{0, 511, 5});
  REQUIRE(f.finished.count(1) == 1);
  CHECK(f.finished[1].status.is_ok());
}

TEST_CASE("router: requests wait in the coordinator until a rank has room, oldest first",
          "[router]") {
  RouterFixture f;
  f.router.set_targets({"w0", "w1"});
  f.router.set_max_num_seqs("w0", 2);  // holds 2 + 2 (the queue depth's minimum)
  f.router.set_max_num_seqs("w1", 2);
  for (uint64_t id = 1; id <= 10; ++id) f.route(id, {1, 2}, 4);
  CHECK(f.router.num_on("w0") == 4);
  CHECK(f.router.num_on("w1") == 4);
  CHECK(f.router.num_queued() == 2);
  CHECK(f.submitted.size() == 8);

  // A request that finishes makes room for the oldest queued one, on the rank that has room.
  const uint64_t on_w1 = f.submitted[1].submit.request_id;
  REQUIRE(f.worker_of(on_w1) == "w1");
  f.router.on_outputs("w1", {token(on_w1, 5, true)});
  REQUIRE(f.submitted.size() == 9);
  CHECK(f.submitted.back().submit.request_id == 9);
  CHECK(f.submitted.back().worker_id == "w1");

  // A queued request that is cancelled ends at once, and no worker hears of it.
  f.router.cancel(10);
  REQUIRE(f.finished.count(10));
  CHECK(f.finished.at(10).finish_reason == "cancelled");
  CHECK(f.router.num_queued() == 0);
  CHECK(f.cancelled.empty());
}

TEST_CASE("router: new ranks take the queue at once, then running requests when it pays",
          "[router]") {
  RouterFixture f;
  f.router.set_targets({"w0"});
  f.router.set_max_num_seqs("w0", 4);  // holds 4 + 2
  for (uint64_t id = 1; id <= 8; ++id) f.route(id, {1, 2}, 100);
  CHECK(f.router.num_on("w0") == 6);
  CHECK(f.router.num_queued() == 2);

  // w1 joins: the two queued requests go to it at the switch, then two of w0's move to it (the
  // ranks are even, 4 and 4), cancelled on w0 and sent with their tokens so far.
  f.router.on_outputs("w0", {token(1, 7)});
  f.router.set_max_num_seqs("w1", 4);
  f.router.set_targets({"w0", "w1"});
  CHECK(f.router.num_queued() == 0);
  CHECK(f.router.num_on("w0") == 4);
  CHECK(f.router.num_on("w1") == 4);
  CHECK(f.router.num_moved_running() == 2);
  REQUIRE(f.cancelled.size() == 2);
  for (const auto& [worker, id] : f.cancelled) CHECK(worker == "w0");
  // w2 joins with nothing queued: each fuller rank gives one (3, 3, 2), none goes below the mean.
  f.router.set_max_num_seqs("w2", 4);
  f.router.set_targets({"w0", "w1", "w2"});
  CHECK(f.router.num_on("w0") == 3);
  CHECK(f.router.num_on("w1") == 3);
  CHECK(f.router.num_on("w2") == 2);
  CHECK(f.router.num_moved_running() == 4);
  // The client still sees each token once: w0's later output of a moved request is stale.
  const uint64_t moved = f.cancelled[0].second;
  f.router.on_outputs("w0", {token(moved, 9)});
  CHECK(f.router.num_generated_on("w0") == 1);
}
