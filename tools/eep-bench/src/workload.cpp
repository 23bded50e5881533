#include "eep/bench/workload.h"

#include <cmath>
#include <random>
#include <string>

namespace eep::bench {

namespace {

// Seeds of the independent random streams, so that lengths do not change when ids do.
constexpr uint64_t kLengthStream = 0x6c656e67;
constexpr uint64_t kArrivalStream = 0x61727276;

int draw_len(std::mt19937_64& rng, int len, double ratio, int min_len) {
  const int low = std::max(min_len, static_cast<int>(std::floor(len * (1.0 - ratio))));
  const int high = std::max(low, static_cast<int>(std::ceil(len * (1.0 + ratio))));
  return std::uniform_int_distribution<int>(low, high)(rng);
}

}  // namespace

Result<std::vector<BenchRequest>> make_random_dataset(const RandomDatasetOptions& options) {
  if (options.num_prompts < 1) {
    return error(ErrorCode::kInvalidArgument, "--num-prompts must be at least 1");
  }
  if (options.input_len < 1 || options.output_len < 1) {
    return error(ErrorCode::kInvalidArgument,
                 "--random-input-len and --random-output-len must be at least 1");
  }
  if (!(options.range_ratio >= 0 && options.range_ratio < 1)) {
    return error(ErrorCode::kInvalidArgument, "--random-range-ratio must be in [0, 1)");
  }
  if (options.vocab_size < 1) {
    return error(ErrorCode::kInvalidArgument, "--vocab-size must be at least 1");
  }
  std::mt19937_64 length_rng(options.seed ^ kLengthStream);
  std::mt19937_64 id_rng(options.seed);
  std::uniform_int_distribution<int32_t> id_dist(0, options.vocab_size - 1);
  std::vector<BenchRequest> requests(options.num_prompts);
  for (int idx = 0; idx < options.num_prompts; ++idx) {
    BenchRequest& request = requests[idx];
    request.request_idx = idx;
    const int input_len = draw_len(length_rng, options.input_len, options.range_ratio, 1);
    request.max_tokens = draw_len(length_rng, options.output_len, options.range_ratio, 1);
    request.prompt_ids.resize(input_len);
    for (int32_t& id : request.prompt_ids) id = id_dist(id_rng);
    switch (options.stream_mode) {
      case StreamMode::kStream:
        request.stream = true;
        break;
      case StreamMode::kNoStream:
        request.stream = false;
        break;
      case StreamMode::kMix:
        request.stream = idx % 2 == 0;
        break;
    }
  }
  return requests;
}

std::vector<double> arrival_times(int num_requests, double request_rate, uint64_t seed) {
  std::vector<double> times(std::max(0, num_requests), 0.0);
  if (std::isinf(request_rate)) return times;
  std::mt19937_64 rng(seed ^ kArrivalStream);
  std::exponential_distribution<double> gap(request_rate);
  double time_s = 0;
  for (double& arrival : times) {
    arrival = time_s;
    time_s += gap(rng);
  }
  return times;
}

}  // namespace eep::bench
