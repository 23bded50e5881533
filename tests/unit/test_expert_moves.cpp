// Expert moves on the CPU backend (CpuExecutor::move_layer_experts, through exchange_pieces): at
// one rank, moving every layer to a new placement leaves exactly the weights and the logits of
// loading that placement from the checkpoint; at 3 ranks (threads with Gloo groups over loopback)
// every rank's slots end as loaded for the new placement and the bytes it reports are what came
// from its peers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <thread>

#include "eep/worker/comm/kv_store.h"
#include "eep/worker/comm/process_group_gloo.h"
#include "eep/worker/cpu/model_runner_cpu.h"
#include "eep/worker/elastic/expert_moves.h"
#include "eep/worker/engine/backend.h"
#include "eep/worker/model/random_checkpoint.h"
#include "scratch_dir.h"

using namespace eep;
using namespace eep::worker;
using namespace std::chrono_literals;

namespace {

const Checkpoint& tiny_checkpoint() {
  static const Checkpoint checkpoint = [] {
    const auto dir = eep::testing::process_scratch_dir("eep_expert_moves") / "tiny";
    RandomCheckpointOptions options;
    options.seed = 3;
    options.dtype = DType::kF32;
    Status written = write_random_checkpoint(model_preset("tiny").value(), options, dir);
    EEP_CHECK_MSG(written.is_ok(), written.to_string());
    auto opened = Checkpoint::open(dir);
    EEP_CHECK_MSG(opened.is_ok(), opened.status().to_string());
    return std::move(opened).value();
  }();
  return checkpoint;
}

// A placement with the same sizes as `like`: per layer every expert once, the surplus slots
// random replicas, shuffled.
Placement random_placement(const Placement& like, uint32_t seed) {
  Placement placement = like;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> expert(0, like.num_logical_experts - 1);
  for (auto& row : placement.phy2log) {
    for (int slot = 0; slot < placement.num_slots(); ++slot) {
      row[slot] = slot < placement.num_logical_experts ? slot : expert(rng);
    }
    std::shuffle(row.begin(), row.end(), rng);
  }
  REQUIRE(placement.validate().is_ok());
  return placement;
}

// The index of the first slot whose weights differ, or -1.
int first_different_slot(const LayerWeights& got, const LayerWeights& expected) {
  for (size_t i = 0; i < got.slots.size(); ++i) {
    const ExpertWeights& a = got.slots[i];
    const ExpertWeights& b = expected.slots[i];
    if (a.gate_proj != b.gate_proj || a.up_proj != b.up_proj || a.down_proj != b.down_proj) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::vector<float> run_batch(CpuExecutor& executor, KvBlockManager& blocks) {
  std::vector<SequenceChunk> batch;
  for (uint64_t s = 0; s < 3; ++s) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 5 + 4 * static_cast<int>(s); ++i)
      tokens.push_back((37 * i + 101 * s) % 512);
    REQUIRE(blocks.reserve(s, static_cast<int64_t>(tokens.size())).is_ok());
    batch.push_back({s, 0, tokens, true});
  }
  auto output = executor.forward(batch, blocks, StepPlan{});
  REQUIRE(output.is_ok());
  for (uint64_t s = 0; s < 3; ++s) blocks.release(s);
  return output->logits;
}

}  // namespace

TEST_CASE("moving experts at one rank equals loading the new placement", "[moves]") {
  const Checkpoint& checkpoint = tiny_checkpoint();
  const ModelConfig& config = checkpoint.config();
  for (int slots : {config.num_experts, config.num_experts + 3}) {
    INFO(slots << " slots");
    const Placement from =
        Placement::round_robin(config.num_hidden_layers, config.num_experts, 1, slots).value();
    const Placement to = random_placement(from, 40 + slots);

    ModelRunner moved_runner(ModelWeights::load(checkpoint, from, 0).value(), 64, 4);
    MoeDispatcher moved_moe(from, 0, nullptr);
    CpuExecutor moved(moved_runner, moved_moe);
    ModelRunner loaded_runner(ModelWeights::load(checkpoint, to, 0).value(), 64, 4);
    MoeDispatcher loaded_moe(to, 0, nullptr);
    CpuExecutor loaded(loaded_runner, loaded_moe);
    KvBlockManager blocks(64, 4);

    // Refused before anything moves: a row that loses an expert, a layer out of range.
    std::vector<int> lossy = to.phy2log[0];
    std::replace(lossy.begin(), lossy.end(), 0, 1);
    auto refused = moved.move_layer_experts(0, lossy, nullptr);
    CHECK(refused.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(refused.status().message(), Catch::Contains("no replica of expert 0"));
    CHECK(moved.move_layer_experts(config.num_hidden_layers, to.phy2log[0], nullptr)
              .status()
              .code() == ErrorCode::kInvalidArgument);
    CHECK(moved_moe.placement().phy2log == from.phy2log);

    const std::vector<float> before = run_batch(moved, blocks);
    for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
      auto bytes = moved.move_layer_experts(layer, to.phy2log[layer], nullptr);
      INFO(bytes.status().to_string());
      REQUIRE(bytes.is_ok());
      CHECK(bytes.value() == 0);  // nothing came from another rank
      CHECK(moved_moe.placement().phy2log[layer] == to.phy2log[layer]);
      CHECK(first_different_slot(moved_runner.weights().layers[layer],
                                 loaded_runner.weights().layers[layer]) == -1);
    }
    // Moving to the placement it already has moves nothing.
    auto again = moved.move_layer_experts(1, to.phy2log[1], nullptr);
    REQUIRE(again.is_ok());
    CHECK(first_different_slot(moved_runner.weights().layers[1],
                               loaded_runner.weights().layers[1]) == -1);

    const std::vector<float> after = run_batch(moved, blocks);
    const std::vector<float> expected = run_batch(loaded, blocks);
    REQUIRE(after.size() == expected.size());
    CHECK(after == expected);   // bitwise: same weights in the same slots, same routing
    CHECK(before == expected);  // and placement never changes an EP=1 result
  }
}

TEST_CASE("moving experts over a Gloo group fills every rank's slots as loading would", "[moves]") {
  const Checkpoint& checkpoint = tiny_checkpoint();
  const ModelConfig& config = checkpoint.config();
  constexpr int kRanks = 3;
  const int slots = Placement::min_slots_per_rank(config.num_experts, kRanks) + 1;  // 7: replicas
  const Placement from =
      Placement::round_robin(config.num_hidden_layers, config.num_experts, kRanks, slots).value();
  const Placement to = random_placement(from, 77);
  auto server = StoreServer::start("127.0.0.1", 0);
  REQUIRE(server.is_ok());
  const size_t expert_bytes =
      3 * sizeof(float) * config.moe_intermediate_size * static_cast<size_t>(config.hidden_size);
  std::vector<std::string> failures(kRanks);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < kRanks; ++rank) {
    threads.emplace_back([&, rank] {
      auto fail = [&](const std::string& why) { failures[rank] = why; };
      GroupSpec spec;
      spec.generation = 1;
      spec.name = "ep";
      spec.rank = rank;
      spec.size = kRanks;
      spec.store_port = server.value()->port();
      spec.timeout = 30s;
      auto group = create_gloo_group(spec);
      if (!group.is_ok()) return fail(group.status().to_string());
      ModelRunner runner(ModelWeights::load(checkpoint, from, rank).value(), 8, 4);
      MoeDispatcher moe(from, rank, group->get());
      CpuExecutor executor(runner, moe);
      const ModelWeights expected = ModelWeights::load(checkpoint, to, rank).value();
      // The wrong group is refused on every rank alike, before any traffic.
      if (executor.move_layer_experts(0, to.phy2log[0], nullptr).is_ok()) {
        return fail("a move without the group was accepted");
      }
      for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
        auto bytes = executor.move_layer_experts(layer, to.phy2log[layer], group->get());
        if (!bytes.is_ok()) return fail(bytes.status().to_string());
        const int bad =
            first_different_slot(runner.weights().layers[layer], expected.layers[layer]);
        if (bad >= 0) {
          return fail("layer " + std::to_string(layer) + " local slot " + std::to_string(bad) +
                      " differs from the loaded placement");
        }
        size_t from_peers = 0;
        for (const ExpertMove& move :
             plan_expert_moves(from.phy2log[layer], to.phy2log[layer], slots)) {
          if (move.dst_slot / slots == rank && move.src_slot / slots != rank) {
            from_peers += expert_bytes;
          }
        }
        if (bytes.value() != from_peers) {
          return fail("layer " + std::to_string(layer) + ": " + std::to_string(bytes.value()) +
                      " bytes reported, " + std::to_string(from_peers) + " came from peers");
        }
      }
      if (moe.placement().phy2log != to.phy2log) return fail("the dispatcher kept old rows");
      (*group)->destroy();
    });
  }
  for (auto& thread : threads) thread.join();
  for (int rank = 0; rank < kRanks; ++rank) {
    INFO("rank " << rank);
    CHECK(failures[rank].empty());
    if (!failures[rank].empty()) WARN(failures[rank]);
  }
}

TEST_CASE("a rank's share of the moves pairs with its peers' shares", "[moves]") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const int num_ranks = 1 + static_cast<int>(rng() % 4);
    const int slots_per_rank = 1 + static_cast<int>(rng() % 5);
    const int num_slots = num_ranks * slots_per_rank;
    const int num_experts = 1 + static_cast<int>(rng() % num_slots);
    Placement like = Placement::round_robin(1, num_experts, num_ranks, slots_per_rank).value();
    const Placement from = random_placement(like, rng());
    const Placement to = random_placement(like, rng());
    const auto moves = plan_expert_moves(from.phy2log[0], to.phy2log[0], slots_per_rank);
    const int layer = static_cast<int>(rng() % 7);
    const std::vector<PieceCopy> copies = expert_move_copies(moves, layer, slots_per_rank, 10);
    REQUIRE(copies.size() == moves.size());
    for (size_t i = 0; i < moves.size(); ++i) {
      const PieceCopy& copy = copies[i];
      CHECK(copy.src_rank * slots_per_rank + copy.src.index == moves[i].src_slot);
      CHECK(copy.dst_rank * slots_per_rank + copy.dst.index == moves[i].dst_slot);
      CHECK((copy.src.layer == layer && copy.dst.layer == layer && copy.bytes == 10));
    }
    std::vector<ChunkSchedule> schedules;
    size_t num_scheduled = 0;
    for (int rank = 0; rank < num_ranks; ++rank) {
      schedules.push_back(schedule_chunk(copies, rank, num_ranks));
      num_scheduled += schedules.back().sends.size() + schedules.back().local.size();
      CHECK(schedules.back().send_bytes[rank] == 0);
      CHECK(schedules.back().recv_bytes[rank] == 0);
    }
    CHECK(num_scheduled == moves.size());
    // What r sends p, in order, is what p receives from r.
    for (int r = 0; r < num_ranks; ++r) {
      for (int p = 0; p < num_ranks; ++p) {
        if (r == p) continue;
        std::vector<WeightPiece> sent, received;
        for (const PieceCopy& c : schedules[r].sends) {
          if (c.dst_rank == p) sent.push_back(c.dst);
        }
        for (const PieceCopy& c : schedules[p].recvs) {
          if (c.src_rank == r) received.push_back(c.dst);
        }
        CHECK(sent == received);
        CHECK(schedules[r].send_bytes[p] == 10 * sent.size());
        CHECK(schedules[p].recv_bytes[r] == 10 * received.size());
      }
    }
  }
}
