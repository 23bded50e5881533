// The random dataset as text, for a model with a tokenizer (as `vllm bench serve --dataset-name
// random --tokenizer ...`): each prompt's random ids, drawn from the vocabulary without its
// special tokens, are decoded to text, the text encoded again and cut to the prompt's length,
// and that decoded once more, so that the server sees text whose ids are (nearly) the prompt's
// length. Needed by /v1/chat/completions, whose messages are text.
#pragma once

#include <vector>

#include "eep/bench/workload.h"
#include "eep/common/status.h"
#include "eep/coordinator/text/hf_tokenizer.h"

namespace eep::bench {

// Deterministic for a given seed and tokenizer. Errors: those of make_random_dataset, a
// tokenizer with no ordinary token, an encode failure.
Result<std::vector<BenchRequest>> make_random_text_dataset(
    const RandomDatasetOptions& options, const coordinator::text::HfTokenizer& tokenizer);

}  // namespace eep::bench
