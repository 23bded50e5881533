// Sampling on the GPU draws exactly the tokens kernels::cpu::sample_token draws: greedy rows
// (ties to the lowest id) and sampled rows at several temperatures, top_p, seeds and steps, on
// peaked, flat, tied and masked logits, at the Qwen3 vocabulary and small odd ones; rows mixing
// greedy and sampled; a CUDA graph replay. The exponential the sampler uses is checked bit for
// bit against this host's std::exp first: if that fails, the host's libm is not the glibc expf
// the kernel replicates, and token differences follow from it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "eep/kernels/cuda/sampling.h"
#include "eep/kernels/sampling.h"
#include "gpu_test_util.h"

namespace eep::gpu_test {
namespace {

using kernels::cuda::DeviceSamplingParams;

uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

TEST_CASE("cuda sampling_exp is the host's expf bit for bit", "[gpu][kernels]") {
  // Every 13th float in [-104, 0] (the sampler's range: (logit - max) / temperature <= 0), a
  // sweep of positive ones, and the special values.
  std::vector<float> x;
  for (uint32_t u = 0x80000000u; u <= 0xc2d00000u; u += 13) {
    float v;
    std::memcpy(&v, &u, sizeof(v));
    x.push_back(v);
  }
  for (uint32_t u = 0; u <= 0x42b80000u; u += 997) {
    float v;
    std::memcpy(&v, &u, sizeof(v));
    x.push_back(v);
  }
  for (float v : {-INFINITY, INFINITY, NAN, -0.0f, 0.0f, -88.0f, -87.99f, -103.0f, -103.3f, -103.5f,
                  -103.9f, -104.0f, -150.0f, 88.7f, 88.8f, 1e-30f, -1e-30f}) {
    x.push_back(v);
  }
  DeviceBuffer<float> x_dev(x);
  DeviceBuffer<float> out_dev(x.size());
  out_dev.poison();
  EEP_REQUIRE_CUDA(kernels::cuda::sampling_exp(x_dev.data(), static_cast<int64_t>(x.size()),
                                               out_dev.data(), nullptr));
  const std::vector<float> out = out_dev.download();
  int64_t mismatches = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = std::exp(x[i]);
    if (std::isnan(want) && std::isnan(out[i])) continue;
    if (float_bits(out[i]) == float_bits(want)) continue;
    if (mismatches++ < 5) {
      UNSCOPED_INFO("exp(" << x[i] << " = 0x" << std::hex << float_bits(x[i]) << "): GPU 0x"
                           << float_bits(out[i]) << " host 0x" << float_bits(want) << std::dec);
    }
  }
  INFO(mismatches << " of " << x.size() << " inputs differ");
  CHECK(mismatches == 0);
}

enum class Logits {
  kPeaked,     // N(0, 3) plus a few large peaks: a real LM head's shape
  kFlat,       // uniform [-1, 1]: the nucleus spans much of the vocabulary
  kTied,       // coarse values: many exact ties in logits and probabilities
  kAllEqual,   // every id equally likely
  kMasked,     // peaked, with most ids at -inf
  kManyMaxima  // several ids share the maximum (greedy picks the lowest)
};

std::vector<float> make_logits(Logits kind, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(vocab);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  switch (kind) {
    case Logits::kPeaked:
    case Logits::kMasked:
      for (float& x : v) x = normal(rng);
      for (int i = 0; i < 5; ++i) v[pick(rng)] += 12.0f + 2.0f * static_cast<float>(i);
      if (kind == Logits::kMasked) {
        for (int64_t i = 0; i < vocab; ++i) {
          if (i % 3 != 0) v[i] = -INFINITY;
        }
        v[0] = 1.0f;  // at least one finite
      }
      break;
    case Logits::kFlat:
      v = random_floats(vocab, seed, -1.0f, 1.0f);
      break;
    case Logits::kTied:
      for (float& x : v) x = std::round(normal(rng) * 2.0f) / 2.0f;
      break;
    case Logits::kAllEqual:
      std::fill(v.begin(), v.end(), 0.25f);
      break;
    case Logits::kManyMaxima:
      for (float& x : v) x = normal(rng);
      for (int i = 0; i < 4; ++i) v[pick(rng)] = 30.0f;
      break;
  }
  return v;
}

struct Row {
  Logits kind;
  uint64_t logit_seed;
  DeviceSamplingParams params;
};

// Samples every row on the GPU (one call) and on the CPU; tokens must be equal.
void run_sampling_case(int64_t vocab, const std::vector<Row>& rows) {
  const int64_t num_rows = static_cast<int64_t>(rows.size());
  std::vector<float> logits(num_rows * vocab);
  std::vector<DeviceSamplingParams> params;
  for (int64_t r = 0; r < num_rows; ++r) {
    const std::vector<float> row = make_logits(rows[r].kind, vocab, rows[r].logit_seed);
    std::copy(row.begin(), row.end(), logits.begin() + r * vocab);
    params.push_back(rows[r].params);
  }
  std::vector<char> scratch(kernels::cpu::sampling_scratch_bytes(vocab));
  std::vector<int32_t> expected(num_rows);
  for (int64_t r = 0; r < num_rows; ++r) {
    const DeviceSamplingParams& p = params[r];
    expected[r] = kernels::cpu::sample_token(logits.data() + r * vocab, vocab, p.temperature,
                                             p.top_p, p.seed, p.step, scratch.data());
  }
  DeviceBuffer<float> logits_dev(logits);
  DeviceBuffer<DeviceSamplingParams> params_dev(params);
  const size_t workspace_bytes = kernels::cuda::sampling_workspace_bytes(num_rows, vocab);
  DeviceBuffer<char> workspace(workspace_bytes);
  DeviceBuffer<int32_t> out_dev(num_rows);
  out_dev.poison();
  EEP_REQUIRE_CUDA(kernels::cuda::sample_tokens(logits_dev.data(), num_rows, vocab,
                                                params_dev.data(), workspace.data(),
                                                workspace_bytes, out_dev.data(), nullptr));
  const std::vector<int32_t> tokens = out_dev.download();
  for (int64_t r = 0; r < num_rows; ++r) {
    if (tokens[r] == expected[r]) continue;
    const DeviceSamplingParams& p = params[r];
    const float* row = logits.data() + r * vocab;
    const bool in_range = tokens[r] >= 0 && tokens[r] < vocab;
    INFO("vocab " << vocab << " row " << r << " of " << num_rows << " (logits kind "
                  << static_cast<int>(rows[r].kind) << ", seed " << rows[r].logit_seed
                  << ") temperature " << p.temperature << " top_p " << p.top_p << " seed " << p.seed
                  << " step " << p.step << ": GPU token " << tokens[r] << " (logit "
                  << (in_range ? row[tokens[r]] : NAN) << ") CPU token " << expected[r]
                  << " (logit " << row[expected[r]] << "), u "
                  << kernels::cpu::sampling_uniform(p.seed, p.step));
    CHECK(tokens[r] == expected[r]);
  }
}

DeviceSamplingParams params_of(float temperature, float top_p, uint64_t seed, uint64_t step) {
  return DeviceSamplingParams{temperature, top_p, seed, step};
}

TEST_CASE("cuda sample_tokens greedy rows pick the lowest id among the maxima", "[gpu][kernels]") {
  for (int64_t vocab : {151936, 1000, 37, 1}) {
    std::vector<Row> rows;
    uint64_t seed = 10;
    for (Logits kind : {Logits::kPeaked, Logits::kFlat, Logits::kTied, Logits::kAllEqual,
                        Logits::kMasked, Logits::kManyMaxima}) {
      rows.push_back({kind, ++seed, params_of(0.0f, 1.0f, seed, 0)});
      rows.push_back({kind, ++seed, params_of(-1.0f, 0.5f, seed, 7)});  // any temperature <= 0
    }
    run_sampling_case(vocab, rows);
  }
}

TEST_CASE("cuda sample_tokens draws the CPU's tokens", "[gpu][kernels]") {
  for (int64_t vocab : {151936, 1000, 37}) {
    std::vector<Row> rows;
    uint64_t seed = 1000;
    for (Logits kind :
         {Logits::kPeaked, Logits::kFlat, Logits::kTied, Logits::kAllEqual, Logits::kMasked}) {
      for (float temperature : {0.5f, 1.0f, 1.3f}) {
        for (float top_p : {1.0f, 0.9f, 0.5f}) {
          ++seed;
          rows.push_back({kind, seed, params_of(temperature, top_p, seed * 7919, seed % 97)});
        }
      }
    }
    // Edge parameters: top_p 0 (the nucleus is the top id) and above 1, a tiny temperature.
    rows.push_back({Logits::kPeaked, 1, params_of(1.0f, 0.0f, 5, 3)});
    rows.push_back({Logits::kFlat, 2, params_of(0.7f, 1.5f, 6, 4)});
    rows.push_back({Logits::kFlat, 3, params_of(0.01f, 0.95f, 7, 5)});
    INFO("vocab " << vocab << " rows " << rows.size());
    run_sampling_case(vocab, rows);
  }
}

TEST_CASE("cuda sample_tokens: many steps of one sequence and mixed greedy rows",
          "[gpu][kernels]") {
  // The same logits at steps 0..63 (a new u each time), with greedy rows in between.
  std::vector<Row> rows;
  for (uint64_t step = 0; step < 64; ++step) {
    const float top_p = step % 3 == 0 ? 1.0f : (step % 3 == 1 ? 0.9f : 0.5f);
    if (step % 8 == 5) {
      rows.push_back({Logits::kPeaked, 42, params_of(0.0f, 1.0f, 99, step)});
    } else {
      rows.push_back({Logits::kPeaked, 42, params_of(1.0f, top_p, 99, step)});
    }
  }
  run_sampling_case(151936, rows);
  // Flat logits: the draw goes deep into the order (long double sums).
  rows.clear();
  for (uint64_t step = 0; step < 24; ++step) {
    rows.push_back({Logits::kFlat, 43, params_of(1.0f, step % 2 == 0 ? 1.0f : 0.9f, 123, step)});
  }
  run_sampling_case(151936, rows);
}

TEST_CASE("cuda sample_tokens replays in a CUDA graph with new parameters", "[gpu][kernels]") {
  const int64_t vocab = 151936;
  const int64_t num_rows = 4;
  std::vector<float> logits(num_rows * vocab);
  for (int64_t r = 0; r < num_rows; ++r) {
    const std::vector<float> row = make_logits(Logits::kPeaked, vocab, 77 + r);
    std::copy(row.begin(), row.end(), logits.begin() + r * vocab);
  }
  DeviceBuffer<float> logits_dev(logits);
  DeviceBuffer<DeviceSamplingParams> params_dev(num_rows);
  const size_t workspace_bytes = kernels::cuda::sampling_workspace_bytes(num_rows, vocab);
  DeviceBuffer<char> workspace(workspace_bytes);
  DeviceBuffer<int32_t> out_dev(num_rows);
  cudaStream_t stream;
  EEP_REQUIRE_CUDA(cudaStreamCreate(&stream));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  EEP_REQUIRE_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const cudaError_t launched =
      kernels::cuda::sample_tokens(logits_dev.data(), num_rows, vocab, params_dev.data(),
                                   workspace.data(), workspace_bytes, out_dev.data(), stream);
  EEP_REQUIRE_CUDA(cudaStreamEndCapture(stream, &graph));
  EEP_REQUIRE_CUDA(launched);
  EEP_REQUIRE_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  std::vector<char> scratch(kernels::cpu::sampling_scratch_bytes(vocab));
  for (uint64_t step = 0; step < 6; ++step) {
    std::vector<DeviceSamplingParams> params;
    for (int64_t r = 0; r < num_rows; ++r) {
      const float temperature = (step + r) % 3 == 0 ? 0.0f : 0.8f;
      params.push_back(params_of(temperature, r % 2 == 0 ? 0.9f : 1.0f, 1000 + r, step));
    }
    params_dev.upload(params);
    out_dev.poison();
    EEP_REQUIRE_CUDA(cudaGraphLaunch(exec, stream));
    EEP_REQUIRE_CUDA(cudaStreamSynchronize(stream));
    const std::vector<int32_t> tokens = out_dev.download();
    for (int64_t r = 0; r < num_rows; ++r) {
      const DeviceSamplingParams& p = params[r];
      const int32_t expected = kernels::cpu::sample_token(
          logits.data() + r * vocab, vocab, p.temperature, p.top_p, p.seed, p.step, scratch.data());
      INFO("replay " << step << " row " << r << " temperature " << p.temperature << " top_p "
                     << p.top_p);
      CHECK(tokens[r] == expected);
    }
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_CASE("cuda sample_tokens rejects a short workspace", "[gpu][kernels]") {
  const size_t needed = kernels::cuda::sampling_workspace_bytes(2, 1000);
  REQUIRE(needed > 16 * 2 * 1000);
  DeviceBuffer<char> workspace(needed);
  CHECK(kernels::cuda::sample_tokens(nullptr, 2, 1000, nullptr, workspace.data(), needed - 1,
                                     nullptr, nullptr) == cudaErrorInvalidValue);
}

}  // namespace
}  // namespace eep::gpu_test
