// Weights from peers on the CUDA backend (docs/weight_transfer.md): ranks as threads on one GPU,
// a loopback group standing in for NCCL. After a scale-up, a scale-down and a recovery (a lost
// rank, the survivors sending what they kept) every piece of every rank's new generation holds
// the bits that loading it from the checkpoint gives.
#include <catch2/catch.hpp>

#include <numeric>
#include <random>
#include <thread>

#include "../integration/fleet.h"
#include "eep/worker/cuda/model_weights_cuda.h"
#include "eep/worker/engine/backend.h"
#include "eep/worker/model/random_checkpoint.h"
#include "gpu_test_util.h"
#include "loopback_group.h"

using namespace eep;
using namespace eep::worker;
using eep::gpu_test::LoopbackGroup;
using eep::gpu_test::LoopbackHub;

namespace {

constexpr int kKvBlocks = 64;

struct Rank {
  std::string id{};
  std::unique_ptr<Backend> backend{};
  std::optional<WeightTransferPlan> plan{};
  std::unique_ptr<GenerationState> next{};    // null on a leaving rank
  std::unique_ptr<LoopbackGroup> group{};     // the transfer's
  std::unique_ptr<LoopbackGroup> ep_group{};  // the next generation's (its dispatcher keeps it)
  uint64_t bytes_received = 0;
  std::string failure{};
};

std::unique_ptr<Backend> cuda_backend(const ModelConfig& config) {
  BackendOptions options;
  options.device = Device::kCuda;
  options.block_size = 4;
  options.max_num_seqs = 4;
  options.max_num_batched_tokens = 64;
  options.gpu_memory_utilization = 0.2;
  options.cuda_graphs = false;
  auto backend = make_backend(options, config);
  INFO(backend.status().to_string());
  REQUIRE(backend.is_ok());
  return std::move(backend).value();
}

// A placement of `num_ranks` ranks whose every layer is a random permutation of the round-robin
// slots (so that experts do move between and within ranks).
Placement shuffled_placement(const ModelConfig& config, int num_ranks, int slots_per_rank,
                             uint64_t seed) {
  auto placement = Placement::round_robin(config.num_hidden_layers, config.num_experts, num_ranks,
                                          slots_per_rank);
  REQUIRE(placement.is_ok());
  std::mt19937_64 rng(seed);
  for (auto& row : placement->phy2log) std::shuffle(row.begin(), row.end(), rng);
  return std::move(placement).value();
}

protocol::Assign assign_of(int64_t generation, const std::vector<std::string>& members,
                           const Placement& placement,
                           const std::vector<std::string>& previous_members,
                           const Placement& previous_placement) {
  protocol::Assign assign;
  assign.generation = generation;
  assign.world_size = static_cast<int>(members.size());
  assign.members = members;
  assign.placement = placement;
  assign.previous_members = previous_members;
  assign.previous_placement = previous_placement;
  return assign;
}

std::vector<std::byte> download(const void* device, size_t bytes) {
  std::vector<std::byte> host(bytes);
  EEP_REQUIRE_CUDA(cudaMemcpy(host.data(), device, bytes, cudaMemcpyDeviceToHost));
  return host;
}

// Every piece of `rank`'s installed weights equals the same piece loaded from the checkpoint
// for `placement`.
void check_installed(Rank& rank, const Checkpoint& checkpoint, const Placement& placement,
                     int rank_in_placement) {
  auto reference = DeviceWeights::load(checkpoint, placement, rank_in_placement, 0);
  INFO(reference.status().to_string());
  REQUIRE(reference.is_ok());
  std::vector<WeightPiece> pieces;
  const int num_dense =
      static_cast<int>(DeviceWeights::dense_piece_bytes(checkpoint.config()).size());
  for (int i = 0; i < num_dense; ++i) pieces.push_back({-1, i});
  for (int layer = 0; layer < placement.num_layers; ++layer) {
    for (int slot = 0; slot < placement.slots_per_rank; ++slot) pieces.push_back({layer, slot});
  }
  int differing = 0;
  for (const WeightPiece& piece : pieces) {
    std::vector<std::byte> expected;
    for (const DeviceSpan& span : (*reference)->piece(piece)) {
      const std::vector<std::byte> part = download(span.data, span.bytes);
      expected.insert(expected.end(), part.begin(), part.end());
    }
    auto staging = rank.backend->transfer_staging(expected.size());
    REQUIRE(staging.is_ok());
    REQUIRE(rank.backend->pack_installed_piece(piece, staging.value()).is_ok());
    REQUIRE(rank.backend->finish_transfer_chunk().is_ok());
    if (download(staging.value(), expected.size()) != expected) {
      UNSCOPED_INFO(rank.id << ": piece (layer " << piece.layer << ", index " << piece.index
                            << ") differs from the checkpoint's");
      ++differing;
    }
  }
  CHECK(differing == 0);
}

// Runs every rank's chunks on a thread of its own over a loopback group of the plan's size.
void run_chunks(std::vector<Rank*> ranks) {
  const int group_size = ranks.front()->plan->num_ranks;
  auto hub = std::make_shared<LoopbackHub>(group_size);
  for (Rank* rank : ranks) {
    REQUIRE(rank->plan->num_ranks == group_size);
    REQUIRE(rank->plan->chunks.size() == ranks.front()->plan->chunks.size());
    rank->group = std::make_unique<LoopbackGroup>(hub, rank->plan->rank, nullptr);
  }
  std::vector<std::thread> threads;
  for (Rank* rank : ranks) {
    threads.emplace_back([rank, group_size, &hub] {
      EEP_CHECK(cudaSetDevice(0) == cudaSuccess);
      for (const auto& chunk : rank->plan->chunks) {
        const ChunkSchedule schedule = schedule_chunk(chunk, rank->plan->rank, group_size);
        auto received = run_transfer_chunk(*rank->backend, rank->next.get(), schedule,
                                           group_size > 1 ? rank->group.get() : nullptr);
        if (!received.is_ok()) {
          rank->failure = received.status().to_string();
          hub->abort();
          return;
        }
        rank->bytes_received += received.value();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (Rank* rank : ranks) {
    INFO(rank->id << ": " << rank->failure);
    CHECK(rank->failure.empty());
  }
}

// The tiny preset in bf16, written under `dir`.
Checkpoint tiny_bf16_checkpoint(testing::TempDir& dir) {
  auto config = model_preset("tiny");
  REQUIRE(config.is_ok());
  RandomCheckpointOptions options;
  options.seed = 11;
  options.dtype = DType::kBF16;
  REQUIRE(write_random_checkpoint(config.value(), options, dir.file("tiny")).is_ok());
  auto checkpoint = Checkpoint::open(dir.file("tiny"));
  REQUIRE(checkpoint.is_ok());
  return std::move(checkpoint).value();
}

}  // namespace

TEST_CASE("weights from peers on CUDA: 1 -> 2 -> 1 ranks give the checkpoint's bits",
          "[gpu][weight_transfer]") {
  testing::TempDir dir;
  const Checkpoint checkpoint = tiny_bf16_checkpoint(dir);
  const ModelConfig& c = checkpoint.config();
  const size_t chunk_bytes = 256 << 10;  // many chunks, some pieces larger than one

  Rank a{.id = "a", .backend = cuda_backend(c)};
  Rank b{.id = "b", .backend = cuda_backend(c)};
  REQUIRE(install_single_rank(*a.backend, checkpoint, kKvBlocks).is_ok());
  const Placement one =
      Placement::round_robin(c.num_hidden_layers, c.num_experts, 1, c.num_experts).value();

  // Scale-up: {a} -> {a, b}, a redundant slot per rank, experts shuffled.
  const Placement two = shuffled_placement(c, 2, c.num_experts / 2 + 1, 3);
  const protocol::Assign up = assign_of(2, {"a", "b"}, two, {"a"}, one);
  auto serving_hub = std::make_shared<LoopbackHub>(2);
  int rank_in_two = 0;
  for (Rank* rank : {&a, &b}) {
    rank->ep_group = std::make_unique<LoopbackGroup>(serving_hub, rank_in_two, nullptr);
    auto plan = plan_weight_transfer(up, rank->id, two, rank->backend->dense_piece_bytes(),
                                     rank->backend->expert_piece_bytes(), chunk_bytes);
    INFO(plan.status().to_string());
    REQUIRE(plan.is_ok());
    REQUIRE(plan->has_value());
    rank->plan = std::move(plan).value();
    CHECK(rank->plan->from_checkpoint.empty());  // a holds every expert
    auto next = rank->backend->build_for_transfer(
        checkpoint, two, rank_in_two++, rank->ep_group.get(), rank->plan->from_checkpoint);
    INFO(next.status().to_string());
    REQUIRE(next.is_ok());
    rank->next = std::move(next).value();
  }
  REQUIRE(a.plan->chunks.size() > 3);
  run_chunks({&a, &b});
  CHECK(a.bytes_received == 0);  // a copies its own pieces
  CHECK(b.bytes_received > 0);
  for (Rank* rank : {&a, &b}) {
    REQUIRE(rank->backend->install(std::move(rank->next), kKvBlocks).is_ok());
  }
  check_installed(a, checkpoint, two, 0);
  check_installed(b, checkpoint, two, 1);

  // Scale-down: {a, b} -> {a}, over the two ranks' group; b hands over what only it holds.
  const Placement back = shuffled_placement(c, 1, c.num_experts, 4);
  const protocol::Assign down = assign_of(3, {"a"}, back, {"a", "b"}, two);
  for (Rank* rank : {&a, &b}) {
    auto plan = plan_weight_transfer(down, rank->id, back, rank->backend->dense_piece_bytes(),
                                     rank->backend->expert_piece_bytes(), chunk_bytes);
    REQUIRE(plan.is_ok());
    REQUIRE(plan->has_value());
    rank->plan = std::move(plan).value();
    CHECK(rank->plan->over_previous_group);
    CHECK(rank->plan->from_checkpoint.empty());
    rank->bytes_received = 0;
  }
  REQUIRE(b.plan->is_leaving_rank());
  auto next = a.backend->build_for_transfer(checkpoint, back, 0, nullptr, a.plan->from_checkpoint);
  REQUIRE(next.is_ok());
  a.next = std::move(next).value();
  run_chunks({&a, &b});
  CHECK(a.bytes_received > 0);  // the experts only b held
  CHECK(b.bytes_received == 0);
  REQUIRE(a.backend->install(std::move(a.next), kKvBlocks).is_ok());
  check_installed(a, checkpoint, back, 0);
}

TEST_CASE("a recovery on CUDA: the survivors' kept weights and the checkpoint give its bits",
          "[gpu][weight_transfer][recovery]") {
  testing::TempDir dir;
  const Checkpoint checkpoint = tiny_bf16_checkpoint(dir);
  const ModelConfig& c = checkpoint.config();
  const size_t chunk_bytes = 256 << 10;

  // Generation 2 serves on a, b and c; b is lost.
  std::vector<Rank> ranks(3);
  const std::vector<std::string> ids = {"a", "b", "c"};
  const Placement three = shuffled_placement(c, 3, (c.num_experts + 2) / 3, 5);
  auto serving_hub = std::make_shared<LoopbackHub>(3);
  for (int r = 0; r < 3; ++r) {
    Rank& rank = ranks[r];
    rank.id = ids[r];
    rank.backend = cuda_backend(c);
    rank.ep_group = std::make_unique<LoopbackGroup>(serving_hub, r, nullptr);
    auto state = rank.backend->build(checkpoint, three, r, rank.ep_group.get());
    INFO(state.status().to_string());
    REQUIRE(state.is_ok());
    REQUIRE(rank.backend->install(std::move(state).value(), kKvBlocks).is_ok());
  }
  // The recovery: a and c over a new group of two, what only b held from the checkpoint.
  const Placement two = shuffled_placement(c, 2, c.num_experts / 2 + 1, 6);
  protocol::Assign recovery = assign_of(3, {"a", "c"}, two, ids, three);
  recovery.recovery = true;
  auto recovery_hub = std::make_shared<LoopbackHub>(2);
  size_t num_from_checkpoint = 0;
  for (int r = 0; r < 2; ++r) {
    Rank& rank = ranks[r == 0 ? 0 : 2];
    rank.ep_group = std::make_unique<LoopbackGroup>(recovery_hub, r, nullptr);
    auto plan = plan_weight_transfer(recovery, rank.id, two, rank.backend->dense_piece_bytes(),
                                     rank.backend->expert_piece_bytes(), chunk_bytes);
    INFO(plan.status().to_string());
    REQUIRE(plan.is_ok());
    REQUIRE(plan->has_value());
    rank.plan = std::move(plan).value();
    CHECK_FALSE(rank.plan->over_previous_group);
    CHECK_FALSE(rank.plan->sends_between_steps());
    num_from_checkpoint += rank.plan->from_checkpoint.size();
    auto next = rank.backend->build_for_transfer(checkpoint, two, r, rank.ep_group.get(),
                                                 rank.plan->from_checkpoint);
    INFO(next.status().to_string());
    REQUIRE(next.is_ok());
    rank.next = std::move(next).value();
  }
  std::printf("recovery 3 -> 2 on CUDA: %zu expert slots from the checkpoint\n",
              num_from_checkpoint);
  run_chunks({&ranks[0], &ranks[2]});
  for (int r = 0; r < 2; ++r) {
    Rank& rank = ranks[r == 0 ? 0 : 2];
    REQUIRE(rank.backend->install(std::move(rank.next), kKvBlocks).is_ok());
    check_installed(rank, checkpoint, two, r);
  }
}
