// The rendezvous store and Gloo process groups, with every rank a thread of this process.
// Catch2 assertions are not thread-safe, so rank threads report failures as strings and the
// test thread checks them.
#include <dirent.h>

#include <atomic>
#include <cmath>
#include <functional>
#include <numeric>
#include <sstream>
#include <thread>
#include <vector>

#include <gloo/common/error.h>
#include <catch2/catch.hpp>

#include "../helpers/pending_process_group.h"
#include "eep/worker/comm/kv_store.h"
#include "eep/worker/comm/process_group.h"
#include "eep/worker/comm/process_group_gloo.h"

using eep::ErrorCode;
using eep::Status;
using namespace eep::worker;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

std::unique_ptr<StoreServer> start_server() {
  auto server = StoreServer::start("127.0.0.1", 0);
  REQUIRE(server.is_ok());
  return std::move(server).value();
}

std::unique_ptr<StoreClient> connect_client(const StoreServer& server) {
  auto client = StoreClient::connect(server.endpoint());
  REQUIRE(client.is_ok());
  return std::move(client).value();
}

GroupSpec make_spec(const StoreServer& server, uint64_t generation, int rank, int size,
                    std::chrono::milliseconds timeout = 10s) {
  GroupSpec spec;
  spec.generation = generation;
  spec.name = "ep";
  spec.rank = rank;
  spec.size = size;
  spec.store_host = "127.0.0.1";
  spec.store_port = server.port();
  spec.timeout = timeout;
  spec.collective_timeout = timeout;
  return spec;
}

// Runs body(rank) on `size` threads; returns every failure, prefixed by its rank.
std::vector<std::string> run_ranks(int size, const std::function<std::string(int)>& body) {
  std::vector<std::string> results(size);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] { results[rank] = body(rank); });
  }
  for (auto& thread : threads) thread.join();
  std::vector<std::string> failures;
  for (int rank = 0; rank < size; ++rank) {
    if (!results[rank].empty())
      failures.push_back("rank " + std::to_string(rank) + ": " + results[rank]);
  }
  return failures;
}

#define RANK_EXPECT(cond, what)                                       \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::ostringstream os_;                                         \
      os_ << #cond << " failed at line " << __LINE__ << ": " << what; \
      return os_.str();                                               \
    }                                                                 \
  } while (0)
#define RANK_OK(expr)                                                             \
  do {                                                                            \
    Status status_ = (expr);                                                      \
    if (!status_.is_ok()) return std::string(#expr) + ": " + status_.to_string(); \
  } while (0)

// Bytes rank `from` sends rank `to` in the uneven all-to-all: zero for some pairs.
size_t pattern_bytes(int from, int to) {
  return static_cast<size_t>((from * 7 + to * 3) % 5) * 3;
}
char pattern_byte(int from, int to, size_t idx) {
  return static_cast<char>(from * 31 + to * 17 + static_cast<int>(idx));
}

// One round of every operation on a built group; "" when all results are right.
std::string exercise(ProcessGroup& group, int round) {
  const int rank = group.rank();
  const int size = group.size();

  std::vector<float> floats{static_cast<float>(rank + 1), static_cast<float>(-rank)};
  RANK_OK(group.all_reduce(floats.data(), floats.size(), ReduceOp::kSum));
  RANK_EXPECT(floats[0] == size * (size + 1) / 2.0f, floats[0]);
  RANK_EXPECT(floats[1] == -size * (size - 1) / 2.0f, floats[1]);
  float float_max = static_cast<float>(rank) + 0.5f;
  RANK_OK(group.all_reduce(&float_max, 1, ReduceOp::kMax));
  RANK_EXPECT(float_max == size - 0.5f, float_max);

  std::vector<int64_t> ints{rank + round, 100 - rank};
  RANK_OK(group.all_reduce(ints.data(), ints.size(), ReduceOp::kMax));
  RANK_EXPECT(ints[0] == size - 1 + round, ints[0]);
  RANK_EXPECT(ints[1] == 100, ints[1]);
  int64_t int_min = 100 - rank;
  RANK_OK(group.all_reduce(&int_min, 1, ReduceOp::kMin));
  RANK_EXPECT(int_min == 100 - (size - 1), int_min);
  int64_t int_sum = 1LL << 40;
  RANK_OK(group.all_reduce(&int_sum, 1, ReduceOp::kSum));
  RANK_EXPECT(int_sum == size * (1LL << 40), int_sum);

  // Uneven all-to-all with empty blocks.
  std::vector<size_t> send_bytes(size), recv_bytes(size);
  for (int peer = 0; peer < size; ++peer) {
    send_bytes[peer] = pattern_bytes(rank, peer);
    recv_bytes[peer] = pattern_bytes(peer, rank);
  }
  std::vector<char> send(std::accumulate(send_bytes.begin(), send_bytes.end(), size_t{0}));
  std::vector<char> recv(std::accumulate(recv_bytes.begin(), recv_bytes.end(), size_t{0}), 'x');
  for (int peer = 0, offset = 0; peer < size; offset += send_bytes[peer], ++peer) {
    for (size_t idx = 0; idx < send_bytes[peer]; ++idx) {
      send[offset + idx] = pattern_byte(rank, peer, idx);
    }
  }
  RANK_OK(group.all_to_all_v(send.data(), send_bytes.data(), recv.data(), recv_bytes.data()));
  for (int peer = 0, offset = 0; peer < size; offset += recv_bytes[peer], ++peer) {
    for (size_t idx = 0; idx < recv_bytes[peer]; ++idx) {
      RANK_EXPECT(recv[offset + idx] == pattern_byte(peer, rank, idx),
                  "from " << peer << " byte " << idx);
    }
  }
  // All-zero all-to-all: nothing travels, nothing hangs.
  std::vector<size_t> zeros(size, 0);
  RANK_OK(group.all_to_all_v(nullptr, zeros.data(), nullptr, zeros.data()));

  // Ring of send/recv: even ranks send first so the blocking calls cannot deadlock.
  if (size > 1) {
    const int next = (rank + 1) % size;
    const int prev = (rank + size - 1) % size;
    std::vector<int32_t> out(64, rank * 1000 + round), in(64, -1);
    if (rank % 2 == 0) {
      RANK_OK(group.send(out.data(), out.size() * 4, next, 7));
      RANK_OK(group.recv(in.data(), in.size() * 4, prev, 7));
    } else {
      RANK_OK(group.recv(in.data(), in.size() * 4, prev, 7));
      RANK_OK(group.send(out.data(), out.size() * 4, next, 7));
    }
    RANK_EXPECT(in[0] == prev * 1000 + round && in[63] == prev * 1000 + round, in[0]);
  }

  const int root = size - 1;
  std::vector<int64_t> blob(5, rank == root ? 4242 + round : 0);
  RANK_OK(group.broadcast(blob.data(), blob.size() * sizeof(int64_t), root));
  RANK_EXPECT(blob[0] == 4242 + round && blob[4] == 4242 + round, blob[0]);

  std::vector<int32_t> mine{rank, rank * 10, round};
  std::vector<int32_t> gathered(3 * size, -1);
  RANK_OK(group.all_gather(mine.data(), mine.size() * 4, gathered.data()));
  for (int peer = 0; peer < size; ++peer) {
    RANK_EXPECT(gathered[3 * peer] == peer && gathered[3 * peer + 1] == peer * 10 &&
                    gathered[3 * peer + 2] == round,
                "block " << peer);
  }
  // In place: this rank's block already in the output.
  std::vector<int32_t> in_place(size, -1);
  in_place[rank] = rank + 5;
  RANK_OK(group.all_gather(&in_place[rank], 4, in_place.data()));
  for (int peer = 0; peer < size; ++peer) RANK_EXPECT(in_place[peer] == peer + 5, peer);

  RANK_OK(group.barrier());
  return "";
}

size_t count_entries(const char* path) {
  size_t count = 0;
  DIR* dir = opendir(path);
  REQUIRE(dir != nullptr);
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - (std::string(path) == "/proc/self/fd" ? 1 : 0);  // opendir's own descriptor
}

}  // namespace

TEST_CASE("store: set, get, check, add, delete_prefix", "[pg]") {
  auto server = start_server();
  CHECK(server->port() > 0);
  CHECK(server->endpoint() == "tcp://127.0.0.1:" + std::to_string(server->port()));
  auto client = connect_client(*server);

  CHECK(client->get_value("g1/ep/a").status().code() == ErrorCode::kNotFound);
  REQUIRE(client->set_value("g1/ep/a", std::string("x\0y", 3)).is_ok());
  auto value = client->get_value("g1/ep/a");
  REQUIRE(value.is_ok());
  CHECK(*value == std::string("x\0y", 3));  // binary-safe
  CHECK(*client->check({"g1/ep/a"}));
  CHECK_FALSE(*client->check({"g1/ep/a", "g1/ep/b"}));

  CHECK(*client->add("g1/ep/count", 3) == 3);
  CHECK(*client->add("g1/ep/count", -1) == 2);
  CHECK(client->add("g1/ep/a", 1).status().code() == ErrorCode::kInternal);  // not a number

  REQUIRE(client->set_value("g2/ep/a", "keep").is_ok());
  CHECK(*client->delete_prefix(store_prefix(1, "ep")) == 2);
  CHECK(client->get_value("g1/ep/a").status().code() == ErrorCode::kNotFound);
  CHECK(*client->get_value("g2/ep/a") == "keep");
  CHECK(store_prefix(3, "ep") == "g3/ep/");
}

TEST_CASE("store: wait sees a key set later and times out on one never set", "[pg]") {
  auto server = start_server();
  auto waiter = connect_client(*server);
  auto setter = connect_client(*server);

  std::thread late([&] {
    std::this_thread::sleep_for(150ms);
    (void)setter->set_value("k1", "v1");
    std::this_thread::sleep_for(700ms);  // past one wait slice
    (void)setter->set_value("k2", "v2");
  });
  const auto started = Clock::now();
  REQUIRE(waiter->wait_keys({"k1", "k2"}, 5s).is_ok());
  CHECK(Clock::now() - started >= 800ms);
  auto value = waiter->wait_value("k1", 1s);
  REQUIRE(value.is_ok());
  CHECK(*value == "v1");
  late.join();

  const auto wait_started = Clock::now();
  Status timed_out = waiter->wait_keys({"k1", "never"}, 300ms);
  CHECK(timed_out.code() == ErrorCode::kDeadlineExceeded);
  CHECK(timed_out.message().find("never") != std::string::npos);
  CHECK(timed_out.message().find("k1") == std::string::npos);
  CHECK(Clock::now() - wait_started < 1500ms);

  // Through the Gloo interface: failures are gloo::IoException.
  gloo::rendezvous::Store& gloo_store = *waiter;
  gloo_store.set("gk", {'a', 'b'});
  CHECK(gloo_store.get("gk") == std::vector<char>{'a', 'b'});
  CHECK_THROWS_AS(gloo_store.wait({"absent"}, 100ms), gloo::IoException);
}

TEST_CASE("store: a dead server is a clear error within the timeout, never a hang", "[pg]") {
  auto server = start_server();
  auto client = connect_client(*server);
  REQUIRE(client->set_value("a", "1").is_ok());
  server.reset();  // rank 0 died

  auto started = Clock::now();
  auto value = client->get_value("a");
  CHECK(value.status().code() == ErrorCode::kUnavailable);
  CHECK(value.status().message().find("did not answer") != std::string::npos);
  CHECK(Clock::now() - started < StoreClient::kRequestTimeout + 1s);

  // A long wait notices the dead server within about one slice plus one request timeout.
  started = Clock::now();
  Status waited = client->wait_keys({"b"}, 20s);
  CHECK(waited.code() == ErrorCode::kUnavailable);
  CHECK(Clock::now() - started < StoreClient::kWaitSlice + StoreClient::kRequestTimeout + 1s);

  CHECK_THROWS_AS(static_cast<gloo::rendezvous::Store&>(*client).set("c", {'1'}),
                  gloo::IoException);
  CHECK(StoreServer::start("127.0.0.1", 70000).status().code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("gloo group: every operation on groups of 1, 2 and 4", "[pg]") {
  for (int size : {1, 2, 4}) {
    INFO("size " << size);
    auto server = start_server();
    auto failures = run_ranks(size, [&](int rank) -> std::string {
      auto group = create_gloo_group(make_spec(*server, 1, rank, size));
      if (!group.is_ok()) return group.status().to_string();
      RANK_EXPECT((*group)->rank() == rank && (*group)->size() == size, "identity");
      RANK_EXPECT((*group)->generation() == 1 && (*group)->name() == "ep", "identity");
      for (int round = 0; round < 3; ++round) {
        std::string failure = exercise(**group, round);
        if (!failure.empty()) return failure;
      }
      return "";
    });
    CHECK(failures == std::vector<std::string>{});
  }
}

TEST_CASE("gloo group: g+1 is built in the background while g carries traffic", "[pg]") {
  constexpr int kSize = 4;
  auto server = start_server();
  std::atomic<int> max_rounds_on_old{0};
  auto failures = run_ranks(kSize, [&](int rank) -> std::string {
    auto old_group = create_gloo_group(make_spec(*server, 3, rank, kSize));
    if (!old_group.is_ok()) return old_group.status().to_string();
    ProcessGroup& old_pg = **old_group;

    PendingProcessGroup pending = build_in_background(
        [spec = make_spec(*server, 4, rank, kSize)] { return create_gloo_group(spec); });
    // The engine's loop: traffic on g, and one agreement per step on whether everyone's g+1
    // is ready (the ranks must leave the loop at the same step).
    int rounds = 0;
    while (true) {
      std::string failure = exercise(old_pg, rounds);
      if (!failure.empty()) return "on g: " + failure;
      ++rounds;
      int64_t all_ready = pending.ready() ? 1 : 0;
      RANK_OK(old_pg.all_reduce(&all_ready, 1, ReduceOp::kMin));
      if (all_ready == 1 && rounds >= 3) break;
    }
    max_rounds_on_old = std::max(max_rounds_on_old.load(), rounds);
    auto new_group = pending.wait();
    if (!new_group.is_ok()) return new_group.status().to_string();
    RANK_EXPECT((*new_group)->generation() == 4, "generation");

    // Switch: drop g; g+1 carries on.
    RANK_OK(old_pg.barrier());
    old_pg.destroy();
    RANK_EXPECT(!old_pg.usable(), "destroyed group still usable");
    for (int round = 0; round < 3; ++round) {
      std::string failure = exercise(**new_group, round);
      if (!failure.empty()) return "on g+1: " + failure;
    }
    return "";
  });
  CHECK(failures == std::vector<std::string>{});
  CHECK(max_rounds_on_old >= 3);
}

TEST_CASE("gloo group: the transport binds to a named interface", "[pg]") {
  auto server = start_server();
  auto failures = run_ranks(2, [&](int rank) -> std::string {
    GroupSpec spec = make_spec(*server, 1, rank, 2);
    spec.bind_interface = "lo";
    auto group = create_gloo_group(spec);
    if (!group.is_ok()) return group.status().to_string();
    return exercise(**group, 0);
  });
  CHECK(failures == std::vector<std::string>{});
}

TEST_CASE("gloo group: use after destroy is a clear error", "[pg]") {
  auto server = start_server();
  auto failures = run_ranks(2, [&](int rank) -> std::string {
    auto group = create_gloo_group(make_spec(*server, 1, rank, 2));
    if (!group.is_ok()) return group.status().to_string();
    RANK_OK((*group)->barrier());
    (*group)->destroy();
    (*group)->destroy();  // idempotent
    float value = 1.0f;
    Status status = (*group)->all_reduce(&value, 1, ReduceOp::kSum);
    RANK_EXPECT(status.code() == ErrorCode::kFailedPrecondition, status.to_string());
    RANK_EXPECT(status.message().find("destroy") != std::string::npos, status.to_string());
    status = (*group)->send(&value, 4, 1 - rank, 0);
    RANK_EXPECT(status.code() == ErrorCode::kFailedPrecondition, status.to_string());
    return "";
  });
  CHECK(failures == std::vector<std::string>{});
}

TEST_CASE("gloo group: a peer that leaves gives an error within the timeout", "[pg]") {
  auto server = start_server();
  auto failures = run_ranks(2, [&](int rank) -> std::string {
    auto group = create_gloo_group(make_spec(*server, 1, rank, 2, 1500ms));
    if (!group.is_ok()) return group.status().to_string();
    if (rank == 1) {
      (*group)->destroy();  // this rank is gone
      return "";
    }
    const auto started = Clock::now();
    std::vector<float> values(4, 1.0f);
    Status status = (*group)->recv(values.data(), 16, 1, 0);
    RANK_EXPECT(
        status.code() == ErrorCode::kUnavailable || status.code() == ErrorCode::kDeadlineExceeded,
        status.to_string());
    RANK_EXPECT(Clock::now() - started < 3s, "took too long");
    RANK_EXPECT(!(*group)->usable(), "a failed group must be broken");
    status = (*group)->all_reduce(values.data(), values.size(), ReduceOp::kSum);
    RANK_EXPECT(status.code() == ErrorCode::kFailedPrecondition, status.to_string());
    return "";
  });
  CHECK(failures == std::vector<std::string>{});
}

TEST_CASE("gloo group: a peer that hangs fails a collective after the collective timeout", "[pg]") {
  // The group may take 20 s to form; once formed a collective waits 400 ms for a peer that
  // does not come (a stopped process, a hung engine), then fails (docs/fault_tolerance.md).
  auto server = start_server();
  std::atomic<bool> rank0_done{false};
  auto failures = run_ranks(2, [&](int rank) -> std::string {
    GroupSpec spec = make_spec(*server, 1, rank, 2, 20s);
    spec.collective_timeout = 400ms;
    auto group = create_gloo_group(spec);
    if (!group.is_ok()) return group.status().to_string();
    if (rank == 1) {  // alive but never joins the collective, until rank 0 gave up
      while (!rank0_done) std::this_thread::sleep_for(5ms);
      return "";
    }
    const auto started = Clock::now();
    int64_t value = 1;
    Status status = (*group)->all_reduce(&value, 1, ReduceOp::kMax);
    const auto waited = Clock::now() - started;
    rank0_done = true;
    RANK_EXPECT(!status.is_ok(), "the collective succeeded without its peer");
    RANK_EXPECT(waited >= 350ms, "gave up before the collective timeout");
    RANK_EXPECT(waited < 10s, "waited for the group timeout, not the collective timeout");
    return "";
  });
  CHECK(failures == std::vector<std::string>{});
}

TEST_CASE("gloo group: a rank that never arrives fails the build within the timeout", "[pg]") {
  auto server = start_server();
  const auto started = Clock::now();
  auto group = create_gloo_group(make_spec(*server, 1, 0, 2, 1s));
  REQUIRE_FALSE(group.is_ok());
  CHECK(group.status().code() == ErrorCode::kDeadlineExceeded);
  CHECK(group.status().message().find("g1/ep/1") != std::string::npos);
  CHECK(Clock::now() - started < 4s);

  CHECK(create_gloo_group(make_spec(*server, 1, 2, 2)).status().code() ==
        ErrorCode::kInvalidArgument);
}

TEST_CASE("gloo group: repeated create and destroy leaks no threads or descriptors", "[pg]") {
  auto cycle = [](int num_cycles) {
    for (int idx = 0; idx < num_cycles; ++idx) {
      auto server = start_server();
      auto failures = run_ranks(2, [&](int rank) -> std::string {
        auto group = create_gloo_group(make_spec(*server, idx, rank, 2));
        if (!group.is_ok()) return group.status().to_string();
        int64_t value = 1;
        RANK_OK((*group)->all_reduce(&value, 1, ReduceOp::kSum));
        RANK_EXPECT(value == 2, value);
        (*group)->destroy();
        return "";
      });
      REQUIRE(failures == std::vector<std::string>{});
    }
  };
  cycle(1);  // warm up whatever the libraries set up once per process
  const size_t fds_before = count_entries("/proc/self/fd");
  const size_t threads_before = count_entries("/proc/self/task");
  cycle(20);
  // A joined thread may linger in /proc for a moment after join returns.
  size_t fds_after = 0;
  size_t threads_after = 0;
  for (int attempt = 0; attempt < 50; ++attempt) {
    fds_after = count_entries("/proc/self/fd");
    threads_after = count_entries("/proc/self/task");
    if (fds_after <= fds_before && threads_after <= threads_before) break;
    std::this_thread::sleep_for(20ms);
  }
  CHECK(fds_after == fds_before);
  CHECK(threads_after == threads_before);
}
