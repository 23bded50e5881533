// One rank of an expert-parallel model run, as a process (test_expert_parallel.cpp on the CPU,
// tests/gpu/test_model_cuda.cpp on GPUs): loads the checkpoint with this rank's expert slots,
// joins the EP group (Gloo or NCCL; rank 0 serves the store), runs its own batch of mixed-length
// sequences (prefill of every position, then decode steps) and writes every logit row to --out
// as safetensors ("logits" [rows, vocab]).
//
// --seqs-of R/N picks which sequences to run (those of rank R in an N-rank run), so an EP=1 run
// of the same sequences is the reference. --move-seed S (not 0) moves every layer's experts to a
// random placement drawn from S (the same on every rank) before decode step --move-before-step,
// so the steps after it run on moved weights (ModelExecutor::move_layer_experts).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>

#include "eep/common/config.h"
#include "eep/common/log.h"
#include "eep/worker/comm/kv_store.h"
#include "eep/worker/engine/backend.h"
#include "eep/worker/model/checkpoint.h"
#include "eep/worker/model/safetensors.h"

using namespace eep;
using namespace eep::worker;

namespace {

constexpr int kDecodeSteps = 3;

// The sequences of rank `owner` of `num_owners`: owner + 1 sequences of varied lengths, except
// that the last owner of 4 or more gets none (its rank takes dummy steps).
std::vector<std::vector<int32_t>> sequences_of(int owner, int num_owners, int vocab) {
  std::vector<std::vector<int32_t>> seqs;
  if (num_owners >= 4 && owner == num_owners - 1) return seqs;
  std::mt19937 rng(1000 + owner);
  std::uniform_int_distribution<int32_t> token(0, vocab - 1);
  for (int s = 0; s <= owner; ++s) {
    std::vector<int32_t> seq(3 + 7 * s + owner);
    for (auto& id : seq) id = token(rng);
    seqs.push_back(seq);
  }
  return seqs;
}

// A placement of `like`'s sizes drawn from `seed`: per layer every expert once, the surplus
// slots random replicas, shuffled.
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
  EEP_CHECK(placement.validate().is_ok());
  return placement;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, out_path, seqs_of = "0/1", store_host = "127.0.0.1";
  int rank = 0, size = 1, slots_per_rank = 0, store_port = 0, move_before_step = 1;
  uint32_t move_seed = 0;
  BackendOptions backend_options;
  backend_options.num_kv_blocks = 256;
  backend_options.block_size = 8;
  backend_options.gpu_memory_utilization = 0.3;
  CLI::App app{"eep_ep_peer: one rank of an expert-parallel forward, for tests"};
  app.add_option("--model", model_dir)->required();
  app.add_option("--out", out_path)->required();
  app.add_option("--rank", rank);
  app.add_option("--size", size);
  app.add_option("--slots-per-rank", slots_per_rank);
  app.add_option("--store-host", store_host);
  app.add_option("--store-port", store_port);
  app.add_option("--seqs-of", seqs_of);
  app.add_option("--device", backend_options.device)
      ->transform(CLI::CheckedTransformer(device_by_name()));
  app.add_flag("!--no-cuda-graphs", backend_options.cuda_graphs);
  app.add_option("--move-seed", move_seed, "0: no expert moves");
  app.add_option("--move-before-step", move_before_step)->check(CLI::Range(1, kDecodeSteps));
  if (auto code = parse_args(app, argc, argv)) return *code;
  set_log_speaker("ep_peer rank=" + std::to_string(rank) + "/" + std::to_string(size));
  const int owner = std::stoi(seqs_of.substr(0, seqs_of.find('/')));
  const int num_owners = std::stoi(seqs_of.substr(seqs_of.find('/') + 1));

  auto checkpoint = Checkpoint::open(model_dir);
  EEP_CHECK_MSG(checkpoint.is_ok(), checkpoint.status().to_string());
  const ModelConfig& config = checkpoint->config();
  if (slots_per_rank == 0) slots_per_rank = Placement::min_slots_per_rank(config.num_experts, size);
  auto placement =
      Placement::round_robin(config.num_hidden_layers, config.num_experts, size, slots_per_rank);
  EEP_CHECK_MSG(placement.is_ok(), placement.status().to_string());
  // Every rank's batch, to agree on each step's shape as the engine's lockstep does.
  std::vector<std::vector<std::vector<int32_t>>> every_owner;
  for (int o = 0; o < num_owners; ++o)
    every_owner.push_back(sequences_of(o, num_owners, config.vocab_size));
  int64_t max_prefill_tokens = 1, max_seqs = 1;
  for (const auto& owner_seqs : every_owner) {
    int64_t tokens = 0;
    for (const auto& seq : owner_seqs) tokens += static_cast<int64_t>(seq.size());
    max_prefill_tokens = std::max(max_prefill_tokens, tokens);
    max_seqs = std::max<int64_t>(max_seqs, static_cast<int64_t>(owner_seqs.size()));
  }
  backend_options.device_idx = rank;
  backend_options.max_num_seqs = static_cast<int>(max_seqs);
  backend_options.max_num_batched_tokens = static_cast<int>(max_prefill_tokens);
  auto backend = make_backend(backend_options, config);
  EEP_CHECK_MSG(backend.is_ok(), backend.status().to_string());

  std::unique_ptr<StoreServer> store;
  std::unique_ptr<ProcessGroup> group;
  if (size > 1) {
    if (rank == 0) {
      auto server = StoreServer::start(store_host, store_port);
      EEP_CHECK_MSG(server.is_ok(), server.status().to_string());
      store = std::move(server).value();
    }
    GroupSpec spec;
    spec.generation = 1;
    spec.name = "ep";
    spec.rank = rank;
    spec.size = size;
    spec.store_host = store_host;
    spec.store_port = store_port;
    auto created = (*backend)->create_ep_group(spec);
    EEP_CHECK_MSG(created.is_ok(), created.status().to_string());
    group = std::move(created).value();
  }
  auto state = (*backend)->build(checkpoint.value(), placement.value(), rank, group.get());
  EEP_CHECK_MSG(state.is_ok(), state.status().to_string());
  auto num_kv_blocks = (*backend)->plan_kv_blocks();
  EEP_CHECK_MSG(num_kv_blocks.is_ok(), num_kv_blocks.status().to_string());
  EEP_CHECK(
      (*backend)->install(std::move(state).value(), std::min(num_kv_blocks.value(), 4096)).is_ok());
  KvBlockManager blocks(std::min(num_kv_blocks.value(), 4096), backend_options.block_size);
  ModelExecutor& executor = (*backend)->executor();

  const auto seqs = sequences_of(owner, num_owners, config.vocab_size);
  std::vector<float> all_logits;
  std::vector<SequenceChunk> batch;
  for (size_t s = 0; s < seqs.size(); ++s) {
    EEP_CHECK(blocks.reserve(s, seqs[s].size() + kDecodeSteps).is_ok());
    batch.push_back({s, 0, seqs[s], true});
  }
  // Prefill of everyone, then decode steps feeding each sequence's greedy token.
  for (int step = 0; step <= kDecodeSteps; ++step) {
    if (move_seed != 0 && step == move_before_step) {
      // Every rank the same layers in the same order, as the engine's lockstep does.
      const Placement target = random_placement(placement.value(), move_seed);
      const auto started = std::chrono::steady_clock::now();
      uint64_t num_bytes = 0;
      for (int layer = 0; layer < target.num_layers; ++layer) {
        auto moved = executor.move_layer_experts(layer, target.phy2log[layer], group.get());
        EEP_CHECK_MSG(moved.is_ok(), moved.status().to_string());
        num_bytes += moved.value();
      }
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
              .count();
      EEP_LOG_INFO("moved every layer's experts before step "
                   << step << ": " << num_bytes << " bytes from peers in " << ms << " ms");
    }
    const StepPlan plan{step == 0 ? max_prefill_tokens : max_seqs, step > 0};
    auto output = executor.forward(batch, blocks, plan);
    EEP_CHECK_MSG(output.is_ok(), output.status().to_string());
    all_logits.insert(all_logits.end(), output->logits.begin(), output->logits.end());
    for (size_t s = 0; s < batch.size(); ++s) {
      const float* row = output->row(s);
      const int32_t next =
          static_cast<int32_t>(std::max_element(row, row + config.vocab_size) - row);
      batch[s] = {
          s, batch[s].start_pos + static_cast<int64_t>(batch[s].token_ids.size()), {next}, false};
    }
  }
  const int64_t num_rows = static_cast<int64_t>(all_logits.size()) / config.vocab_size;
  TensorData logits;
  logits.spec = {"logits", DType::kF32, {num_rows, config.vocab_size}};
  logits.bytes = std::as_bytes(std::span(all_logits));
  Status written = write_safetensors(out_path, std::span(&logits, 1));
  EEP_CHECK_MSG(written.is_ok(), written.to_string());
  // The backend first: its captured graphs hold the NCCL communicator's work.
  backend->reset();
  if (group) group->destroy();
  EEP_LOG_INFO("wrote " << num_rows << " logit rows for " << seqs.size() << " sequences");
  return 0;
}
