// bench_model_step: one forward step of the whole model (every layer, LM head, sampling) as the
// engine runs it: a prefill of several prompts, and decode steps at several batch sizes (with
// CUDA graphs and, for comparison, eagerly). Run one process per rank: with --size N the ranks
// form an EP group (rank 0 serves the store) and run the same shapes in lockstep, as a fleet of
// N GPUs each serving its own batch. Rank 0 prints the table.
//   bench_model_step --model DIR --device cuda [--rank R --size N --store-port P]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "eep/common/config.h"
#include "eep/common/log.h"
#include "eep/worker/comm/kv_store.h"
#include "eep/worker/engine/backend.h"

using namespace eep;
using namespace eep::worker;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) values.push_back(std::stoi(item));
  return values;
}

struct Row {
  std::string what;
  int batch = 0;
  int64_t tokens = 0;
  double ms = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, store_host = "127.0.0.1", decode_text = "1,16,64,128,256";
  int rank = 0, size = 1, store_port = 0, prefill_seqs = 8, prefill_len = 256, context = 256,
      iters = 20;
  bool skip_eager = false;
  BackendOptions options;
  options.device = Device::kCuda;
  options.gpu_memory_utilization = 0.92;
  CLI::App app{"bench_model_step: time prefill and decode steps of the whole model"};
  app.add_option("--model", model_dir)->required();
  app.add_option("--device", options.device)
      ->transform(CLI::CheckedTransformer(device_by_name()))
      ->option_text("cpu|cuda (default cuda)");
  app.add_option("--rank", rank);
  app.add_option("--size", size);
  app.add_option("--store-host", store_host);
  app.add_option("--store-port", store_port);
  app.add_option("--prefill-seqs", prefill_seqs)->capture_default_str();
  app.add_option("--prefill-len", prefill_len)->capture_default_str();
  app.add_option("--decode-batches", decode_text)->capture_default_str();
  app.add_option("--context", context, "Context length of the decoding sequences")
      ->capture_default_str();
  app.add_option("--iters", iters)->capture_default_str();
  app.add_option("--gpu-memory-utilization", options.gpu_memory_utilization)->capture_default_str();
  app.add_flag("--skip-eager", skip_eager,
               "Only the graph pass (prefill and graph decode); no eager decode for comparison");
  if (auto code = parse_args(app, argc, argv)) return *code;
  set_log_speaker("bench rank=" + std::to_string(rank) + "/" + std::to_string(size));
  const std::vector<int> decode_batches = parse_list(decode_text);

  auto checkpoint = Checkpoint::open(model_dir);
  EEP_CHECK_MSG(checkpoint.is_ok(), checkpoint.status().to_string());
  const ModelConfig& config = checkpoint->config();
  const int max_batch = *std::max_element(decode_batches.begin(), decode_batches.end());
  options.device_idx = rank;
  options.block_size = 16;
  options.max_num_seqs = std::max(max_batch, prefill_seqs);
  options.max_num_batched_tokens = std::max(prefill_seqs * prefill_len, max_batch);
  auto placement = Placement::round_robin(config.num_hidden_layers, config.num_experts, size,
                                          Placement::min_slots_per_rank(config.num_experts, size));
  EEP_CHECK_MSG(placement.is_ok(), placement.status().to_string());

  std::unique_ptr<StoreServer> store;
  std::unique_ptr<ProcessGroup> group;
  std::vector<Row> rows;
  for (bool graphs : {true, false}) {
    if (!graphs && skip_eager) break;
    options.cuda_graphs = graphs;
    auto backend = make_backend(options, config);
    EEP_CHECK_MSG(backend.is_ok(), backend.status().to_string());
    if (size > 1) {
      if (rank == 0 && !store) {
        auto server = StoreServer::start(store_host, store_port);
        EEP_CHECK_MSG(server.is_ok(), server.status().to_string());
        store = std::move(server).value();
      }
      GroupSpec spec;
      spec.generation = graphs ? 1 : 2;
      spec.name = "ep";
      spec.rank = rank;
      spec.size = size;
      spec.store_host = store_host;
      spec.store_port = store_port;
      auto created = (*backend)->create_ep_group(spec);
      EEP_CHECK_MSG(created.is_ok(), created.status().to_string());
      group = std::move(created).value();
    }
    const auto load_start = Clock::now();
    auto state = (*backend)->build(checkpoint.value(), placement.value(), rank, group.get());
    EEP_CHECK_MSG(state.is_ok(), state.status().to_string());
    const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();
    auto num_blocks = (*backend)->plan_kv_blocks();
    EEP_CHECK_MSG(num_blocks.is_ok(), num_blocks.status().to_string());
    // The prefill's sequences are released before the decode batches reserve theirs, and a
    // decode step does not advance its sequences (each stays at `context`).
    const int blocks_needed =
        std::max(prefill_seqs * ((prefill_len + 15) / 16), max_batch * ((context + 1 + 15) / 16));
    EEP_CHECK_MSG(num_blocks.value() >= blocks_needed,
                  "KV cache too small: " << num_blocks.value() << " < " << blocks_needed);
    EEP_CHECK((*backend)->install(std::move(state).value(), blocks_needed).is_ok());
    KvBlockManager blocks(blocks_needed, 16);
    ModelExecutor& executor = (*backend)->executor();
    if (rank == 0)
      std::printf("weights loaded in %.2f s (graphs %s)\n", load_s, graphs ? "on" : "off");

    auto time_steps = [&](const std::vector<SequenceChunk>& batch, const StepPlan& plan, int n) {
      std::vector<std::optional<SamplingSpec>> sampling(batch.size(), SamplingSpec{});
      for (int warm = 0; warm < 2; ++warm) {
        auto out = executor.forward_sample(batch, sampling, blocks, plan);
        EEP_CHECK_MSG(out.is_ok(), out.status().to_string());
      }
      if (group) EEP_CHECK(group->barrier().is_ok());
      const auto start = Clock::now();
      for (int i = 0; i < n; ++i) {
        auto out = executor.forward_sample(batch, sampling, blocks, plan);
        EEP_CHECK_MSG(out.is_ok(), out.status().to_string());
      }
      return std::chrono::duration<double, std::milli>(Clock::now() - start).count() / n;
    };

    if (graphs) {  // the prefill runs eagerly either way
      std::vector<SequenceChunk> prefill;
      for (int s = 0; s < prefill_seqs; ++s) {
        const uint64_t seq = 100000 + s;
        EEP_CHECK(blocks.reserve(seq, prefill_len).is_ok());
        std::vector<int32_t> ids(prefill_len);
        for (int i = 0; i < prefill_len; ++i) ids[i] = (i * 7919 + s * 104729) % config.vocab_size;
        prefill.push_back({seq, 0, ids, false});
      }
      const int64_t tokens = int64_t{prefill_seqs} * prefill_len;
      rows.push_back({"prefill", prefill_seqs, tokens,
                      time_steps(prefill, StepPlan{tokens, false}, std::max(iters / 4, 3))});
      for (int s = 0; s < prefill_seqs; ++s) blocks.release(100000 + s);
    }
    for (int batch_size : decode_batches) {
      std::vector<SequenceChunk> batch;
      for (int s = 0; s < batch_size; ++s) {
        EEP_CHECK(blocks.reserve(s, context + 1).is_ok());
        batch.push_back({static_cast<uint64_t>(s), context, {(s * 31) % config.vocab_size}, false});
      }
      rows.push_back({graphs ? "decode (graph)" : "decode (eager)", batch_size, batch_size,
                      time_steps(batch, StepPlan{batch_size, true}, iters)});
      for (int s = 0; s < batch_size; ++s) blocks.release(s);
    }
    backend->reset();  // its captured graphs hold the NCCL communicator's work
    if (group) {
      group->destroy();
      group.reset();
    }
  }
  if (rank == 0) {
    std::printf("\n%d rank(s), %s, %d layers, %d experts (top-%d), context %d for decode\n", size,
                model_dir.c_str(), config.num_hidden_layers, config.num_experts,
                config.num_experts_per_tok, context);
    std::printf("%-16s %6s %10s %10s %14s %16s\n", "step", "batch", "tokens", "ms", "tok/s/rank",
                "tok/s all ranks");
    for (const Row& row : rows) {
      const double per_rank = row.tokens / (row.ms / 1000.0);
      std::printf("%-16s %6d %10lld %10.3f %14.0f %16.0f\n", row.what.c_str(), row.batch,
                  static_cast<long long>(row.tokens), row.ms, per_rank, per_rank * size);
    }
  }
  return 0;
}
