// The expert-parallel exchange against a direct computation: EP=1, 2 and 4 (ranks are threads
// with Gloo groups over loopback), with and without redundant replicas, with ranks that have no
// tokens (dummy steps).
#include <catch2/catch.hpp>

#include <random>
#include <thread>

#include "eep/worker/comm/kv_store.h"
#include "eep/worker/comm/process_group_gloo.h"
#include "eep/worker/cpu/moe_dispatcher_cpu.h"

using namespace eep;
using namespace eep::worker;
using namespace std::chrono_literals;

namespace {

constexpr int kHidden = 8;
constexpr int kTopK = 3;
constexpr int kExperts = 6;
constexpr int kLayers = 2;

// A stand-in expert whose output depends on the logical expert, the layer and the row.
void fake_expert(int layer, int logical, const float* x, int64_t n, float* y) {
  for (int64_t r = 0; r < n; ++r) {
    for (int h = 0; h < kHidden; ++h) {
      y[r * kHidden + h] = x[r * kHidden + h] * (logical + 1) + 0.25f * layer - 0.1f * h;
    }
  }
}

struct RankInput {
  std::vector<float> x;
  std::vector<int32_t> ids;
  std::vector<float> weights;
  int64_t num_tokens = 0;
};

RankInput make_input(int64_t num_tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  RankInput in;
  in.num_tokens = num_tokens;
  in.x.resize(num_tokens * kHidden);
  for (float& v : in.x) v = value(rng);
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::vector<int> experts(kExperts);
    std::iota(experts.begin(), experts.end(), 0);
    std::shuffle(experts.begin(), experts.end(), rng);
    for (int j = 0; j < kTopK; ++j) {
      in.ids.push_back(experts[j]);
      in.weights.push_back(0.2f + 0.3f * j + 0.01f * (value(rng) + 1));
    }
  }
  return in;
}

std::vector<float> expected_output(int layer, const RankInput& in) {
  std::vector<float> out(in.num_tokens * kHidden, 0.0f), y(kHidden);
  for (int64_t t = 0; t < in.num_tokens; ++t) {
    for (int j = 0; j < kTopK; ++j) {
      fake_expert(layer, in.ids[t * kTopK + j], in.x.data() + t * kHidden, 1, y.data());
      for (int h = 0; h < kHidden; ++h) out[t * kHidden + h] += in.weights[t * kTopK + j] * y[h];
    }
  }
  return out;
}

// Runs one MoE forward per layer on every rank; returns the worst absolute error.
double run_ep(int num_ranks, int slots_per_rank, const std::vector<int64_t>& tokens_per_rank) {
  auto placement = Placement::round_robin(kLayers, kExperts, num_ranks, slots_per_rank);
  REQUIRE(placement.is_ok());
  auto server = StoreServer::start("127.0.0.1", 0);
  REQUIRE(server.is_ok());
  std::vector<double> worst(num_ranks, 0.0);
  std::vector<std::string> failures(num_ranks);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < num_ranks; ++rank) {
    threads.emplace_back([&, rank] {
      std::unique_ptr<ProcessGroup> group;
      if (num_ranks > 1) {
        GroupSpec spec;
        spec.generation = 1;
        spec.name = "ep";
        spec.rank = rank;
        spec.size = num_ranks;
        spec.store_port = server.value()->port();
        spec.timeout = 20s;
        auto created = create_gloo_group(spec);
        if (!created.is_ok()) {
          failures[rank] = created.status().to_string();
          return;
        }
        group = std::move(created).value();
      }
      MoeDispatcher moe(placement.value(), rank, group.get());
      const RankInput in = make_input(tokens_per_rank[rank], 100 + rank);
      ExpertFn compute = [&](int layer, int local, const float* x, int64_t n, float* y) {
        const int slot = rank * slots_per_rank + local;
        fake_expert(layer, placement->logical_of(layer, slot), x, n, y);
      };
      for (int layer = 0; layer < kLayers; ++layer) {
        std::vector<float> out(in.num_tokens * kHidden, std::nanf(""));
        Status status = moe.forward(layer, in.x.data(), in.ids.data(), in.weights.data(),
                                    in.num_tokens, kTopK, kHidden, compute, out.data());
        if (!status.is_ok()) {
          failures[rank] = status.to_string();
          return;
        }
        std::vector<float> expected = expected_output(layer, in);
        for (size_t i = 0; i < out.size(); ++i) {
          worst[rank] =
              std::max(worst[rank], std::isnan(out[i]) ? 1e9 : std::abs(out[i] - expected[i]));
        }
      }
      auto counts = moe.take_slot_counts();
      int64_t total = 0;
      for (int64_t c : counts[0]) total += c;
      if (total != in.num_tokens * kTopK) failures[rank] = "slot counts do not add up";
    });
  }
  for (auto& thread : threads) thread.join();
  for (int rank = 0; rank < num_ranks; ++rank) {
    INFO("rank " << rank);
    CHECK(failures[rank].empty());
  }
  return *std::max_element(worst.begin(), worst.end());
}

}  // namespace

TEST_CASE("MoE dispatch and combine equal the direct computation", "[moe]") {
  CHECK(run_ep(1, kExperts, {13}) < 1e-5);
  CHECK(run_ep(1, kExperts + 2, {13}) < 1e-5);  // two redundant replicas on one rank
  CHECK(run_ep(2, 3, {7, 11}) < 1e-5);
  CHECK(run_ep(2, 4, {7, 11}) < 1e-5);       // redundant replicas
  CHECK(run_ep(4, 2, {5, 0, 9, 1}) < 1e-5);  // rank 1 has no tokens: a dummy step
  CHECK(run_ep(4, 3, {0, 0, 0, 0}) < 1e-5);  // nobody has tokens
}
