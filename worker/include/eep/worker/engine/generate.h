// One sequence generated on one rank, start to end: the engine of eep-generate, the debugging
// and correctness tool (DESIGN.md section 1), and the reference the serving tests compare with.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "eep/common/status.h"
#include "eep/worker/cpu/model_runner_cpu.h"
#include "eep/worker/engine/backend.h"

namespace eep::worker {

struct GenerateOptions {
  int max_tokens = 16;
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;  // besides the model's EOS ids
  bool keep_logits = false;             // return the logits that chose each token
  int prefill_chunk = 0;                // 0: the whole prompt in one step
};

struct GenerateResult {
  std::vector<int32_t> token_ids;
  std::string finish_reason;  // "length" or "stop"
  std::vector<float> logits;  // [token_ids.size(), vocab] when keep_logits
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// Generates from `prompt` with a fresh sequence of `blocks` (released at the end), on either
// backend. Tokens are drawn on the host from the returned logits (kernels/sampling.h).
Result<GenerateResult> generate(ModelExecutor& executor, KvBlockManager& blocks,
                                const std::vector<int32_t>& prompt, const GenerateOptions& options);
// The same on the CPU ModelRunner.
Result<GenerateResult> generate(ModelRunner& runner, KvBlockManager& blocks, MoeDispatcher& moe,
                                const std::vector<int32_t>& prompt, const GenerateOptions& options);

}  // namespace eep::worker
