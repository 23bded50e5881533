// What eep-bench sends and when: the random dataset of `vllm bench serve` (prompts of random
// token ids, a fixed number of tokens to generate with ignore_eos) and the arrival times. The
// text form of the dataset, for a model with a tokenizer, is in text_dataset.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eep/common/status.h"

namespace eep::bench {

enum class StreamMode { kStream, kNoStream, kMix };  // kMix: even request ids stream, odd do not

struct BenchRequest {
  int64_t request_idx = 0;
  // The prompt as ids (what /v1/completions is sent when prompt_text is empty) and, for a text
  // dataset (text_dataset.h), as text: then prompt_ids are the tokenizer's ids of that text.
  std::vector<int32_t> prompt_ids;
  std::string prompt_text;
  int max_tokens = 0;
  bool stream = true;
};

struct RandomDatasetOptions {
  int num_prompts = 0;
  int input_len = 0;
  int output_len = 0;
  // Lengths drawn uniformly from [len * (1 - ratio), len * (1 + ratio)], as vLLM; 0: fixed.
  double range_ratio = 0;
  int vocab_size = 0;  // ids drawn uniformly from [0, vocab_size)
  uint64_t seed = 0;
  StreamMode stream_mode = StreamMode::kStream;
};

// Deterministic for a given seed.
Result<std::vector<BenchRequest>> make_random_dataset(const RandomDatasetOptions& options);

// Seconds after the start at which each request arrives: all 0 for an infinite rate, else a
// Poisson process (exponential gaps with mean 1 / rate). Deterministic for a given seed.
std::vector<double> arrival_times(int num_requests, double request_rate, uint64_t seed);

}  // namespace eep::bench
