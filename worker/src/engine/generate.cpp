#include "eep/worker/engine/generate.h"

#include <algorithm>
#include <chrono>

#include "eep/kernels/sampling.h"

namespace eep::worker {
namespace {

// The sequence id generate() uses in its KV block manager.
constexpr uint64_t kSequenceId = 0;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

Result<GenerateResult> generate(ModelRunner& runner, KvBlockManager& blocks, MoeDispatcher& moe,
                                const std::vector<int32_t>& prompt,
                                const GenerateOptions& options) {
  CpuExecutor executor(runner, moe);
  return generate(executor, blocks, prompt, options);
}

Result<GenerateResult> generate(ModelExecutor& executor, KvBlockManager& blocks,
                                const std::vector<int32_t>& prompt,
                                const GenerateOptions& options) {
  const ModelConfig& config = executor.config();
  if (prompt.empty()) return error(ErrorCode::kInvalidArgument, "the prompt is empty");
  if (options.max_tokens < 1) {
    return error(ErrorCode::kInvalidArgument, "max_tokens must be at least 1");
  }
  const int64_t total = static_cast<int64_t>(prompt.size()) + options.max_tokens;
  if (total > config.max_position_embeddings) {
    return error(ErrorCode::kInvalidArgument,
                 "prompt (" + std::to_string(prompt.size()) + ") + max_tokens (" +
                     std::to_string(options.max_tokens) + ") exceeds the model's " +
                     std::to_string(config.max_position_embeddings) + " positions");
  }
  EEP_RETURN_IF_ERROR(blocks.reserve(kSequenceId, total));
  struct Release {
    KvBlockManager& blocks;
    ~Release() { blocks.release(kSequenceId); }
  } release{blocks};

  GenerateResult result;
  std::vector<std::byte> scratch(kernels::cpu::sampling_scratch_bytes(config.vocab_size));
  auto choose = [&](const float* logits) {
    const uint64_t step = result.token_ids.size();
    const int32_t token =
        kernels::cpu::sample_token(logits, config.vocab_size, options.temperature, options.top_p,
                                   options.seed, step, scratch.data());
    if (options.keep_logits)
      result.logits.insert(result.logits.end(), logits, logits + config.vocab_size);
    result.token_ids.push_back(token);
    const bool is_eos = std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(),
                                  token) != config.eos_token_ids.end();
    const bool is_stop = std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(),
                                   token) != options.stop_token_ids.end();
    return (is_eos && !options.ignore_eos) || is_stop;
  };

  // Prefill, in chunks when asked (the last chunk's last row chooses the first token).
  auto start = Clock::now();
  const int64_t chunk =
      options.prefill_chunk > 0 ? options.prefill_chunk : static_cast<int64_t>(prompt.size());
  ForwardOutput output;
  for (int64_t begin = 0; begin < static_cast<int64_t>(prompt.size()); begin += chunk) {
    const int64_t end = std::min<int64_t>(begin + chunk, prompt.size());
    SequenceChunk step{kSequenceId, begin,
                       std::vector<int32_t>(prompt.begin() + begin, prompt.begin() + end), false};
    auto forward = executor.forward({step}, blocks, StepPlan{end - begin, end - begin == 1});
    if (!forward.is_ok()) return forward.status();
    output = std::move(forward).value();
  }
  result.prefill_seconds = seconds_since(start);
  bool stopped = choose(output.row(0));

  start = Clock::now();
  while (!stopped && static_cast<int>(result.token_ids.size()) < options.max_tokens) {
    const int64_t pos = static_cast<int64_t>(prompt.size() + result.token_ids.size()) - 1;
    auto forward = executor.forward({{kSequenceId, pos, {result.token_ids.back()}, false}}, blocks,
                                    StepPlan{1, true});
    if (!forward.is_ok()) return forward.status();
    stopped = choose(forward->row(0));
  }
  result.decode_seconds = seconds_since(start);
  result.finish_reason = stopped ? "stop" : "length";
  return result;
}

}  // namespace eep::worker
