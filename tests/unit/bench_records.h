// Synthetic eep-bench request records for the unit tests of its windows and timelines
// (test_bench_scaling.cpp, test_bench_timeline.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "eep/bench/stats.h"

namespace eep::bench::testing {

// A streamed request whose token chunks (one token each) arrived at `token_times_s`.
inline RequestRecord streamed_at(int64_t idx, double start_s, std::vector<double> token_times_s,
                                 double end_s, bool success = true) {
  RequestRecord record;
  record.request_idx = idx;
  record.stream = true;
  record.start_s = start_s;
  record.ttft_s = token_times_s.front() - start_s;
  for (size_t idx = 1; idx < token_times_s.size(); ++idx) {
    record.itl_s.push_back(token_times_s[idx] - token_times_s[idx - 1]);
  }
  record.chunk_tokens.assign(token_times_s.size(), 1);
  record.output_len = static_cast<int>(token_times_s.size());
  record.latency_s = end_s - start_s;
  record.success = success;
  if (!success) record.error = "stream ended before data: [DONE]";
  return record;
}

// A non-streamed reply of `num_tokens` that arrived whole at `end_s`.
inline RequestRecord whole_reply(int64_t idx, double start_s, double end_s, int num_tokens) {
  RequestRecord record;
  record.request_idx = idx;
  record.stream = false;
  record.start_s = start_s;
  record.latency_s = end_s - start_s;
  record.ttft_s = record.latency_s;
  record.chunk_tokens = {num_tokens};
  record.output_len = num_tokens;
  record.success = true;
  return record;
}

}  // namespace eep::bench::testing
