// The CUDA model operations against their CPU implementations (eep::kernels::cpu) on random
// inputs rounded to bf16: embedding, rmsnorm, router top-k and qkv_prepare (which the CPU runs as
// rmsnorm + rope + write_kv_cache). Paged attention: test_attention_cuda.cpp; sampling:
// test_sampling_cuda.cpp. Outputs are poisoned (NaN / -1) before every run.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "eep/kernels/attention.h"
#include "eep/kernels/cuda/attention.h"
#include "eep/kernels/cuda/embedding.h"
#include "eep/kernels/cuda/rmsnorm.h"
#include "eep/kernels/cuda/router.h"
#include "eep/kernels/embedding.h"
#include "eep/kernels/rmsnorm.h"
#include "eep/kernels/rope.h"
#include "eep/kernels/router.h"
#include "gpu_test_util.h"
#include "kernel_check.h"

namespace eep::gpu_test {
namespace {

using kernels::cuda::bf16;

// ---------------------------------------------------------------------------------------------
// embedding

void run_embedding_case(int64_t vocab, int64_t hidden, int64_t num_tokens, uint64_t seed) {
  INFO("embedding vocab " << vocab << " hidden " << hidden << " num_tokens " << num_tokens
                          << " seed " << seed);
  const std::vector<float> table = round_bf16(random_floats(vocab * hidden, seed));
  std::mt19937_64 rng(seed + 1);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(num_tokens);
  for (int32_t& id : ids) id = pick(rng);
  // Padding (-1) and out-of-range ids give rows of zeros.
  if (num_tokens > 2) ids[1] = -1;
  if (num_tokens > 4) ids[num_tokens - 1] = static_cast<int32_t>(vocab);
  if (num_tokens > 5) ids[3] = -7;

  std::vector<float> expected(num_tokens * hidden, 0.0f);
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) continue;
    kernels::cpu::embedding(table.data(), vocab, &ids[t], 1, hidden, expected.data() + t * hidden);
  }
  DeviceBuffer<bf16> table_dev(to_bf16(table));
  DeviceBuffer<int32_t> ids_dev(ids);
  DeviceBuffer<float> out_dev(num_tokens * hidden);
  out_dev.poison();
  EEP_REQUIRE_CUDA(kernels::cuda::embedding(table_dev.data(), vocab, ids_dev.data(), num_tokens,
                                            hidden, out_dev.data(), nullptr));
  const std::vector<float> out = out_dev.download();
  // A copy: exact.
  int64_t first_diff = -1;
  for (int64_t i = 0; i < num_tokens * hidden; ++i) {
    if (!(out[i] == expected[i])) {
      first_diff = i;
      break;
    }
  }
  INFO("first difference at token " << (first_diff < 0 ? -1 : first_diff / hidden) << " col "
                                    << (first_diff < 0 ? -1 : first_diff % hidden));
  CHECK(first_diff == -1);
}

TEST_CASE("cuda embedding copies table rows and zeros padding ids", "[gpu][kernels]") {
  run_embedding_case(1000, 2048, 17, 1);  // Qwen3-30B-A3B hidden
  run_embedding_case(151936, 16, 33, 2);  // Qwen3 vocab
  run_embedding_case(50, 37, 3, 3);       // odd hidden: the scalar path
  run_embedding_case(7, 8, 1, 4);
  run_embedding_case(300, 2048, 300, 5);
}

// ---------------------------------------------------------------------------------------------
// rmsnorm

void run_rmsnorm_case(int64_t num_x_rows, int64_t hidden, const std::vector<int32_t>* rows,
                      uint64_t seed) {
  const int64_t num_rows = rows != nullptr ? static_cast<int64_t>(rows->size()) : num_x_rows;
  INFO("rmsnorm x rows " << num_x_rows << " hidden " << hidden << " output rows " << num_rows
                         << (rows != nullptr ? " (selected)" : "") << " seed " << seed);
  // The residual stream is fp32 (not rounded); its scale varies from row to row.
  std::vector<float> x = random_floats(num_x_rows * hidden, seed, -2.0f, 2.0f);
  for (int64_t r = 0; r < num_x_rows; ++r) {
    const float row_scale = 0.01f + 10.0f * static_cast<float>(r % 7) / 7.0f;
    for (int64_t i = 0; i < hidden; ++i) x[r * hidden + i] *= row_scale;
  }
  const std::vector<float> weight = round_bf16(random_floats(hidden, seed + 1, 0.5f, 1.5f));
  const float eps = 1e-6f;
  std::vector<float> expected(num_rows * hidden, 0.0f);
  for (int64_t r = 0; r < num_rows; ++r) {
    const int64_t in = rows != nullptr ? (*rows)[r] : r;
    if (in < 0) continue;
    kernels::cpu::rmsnorm(x.data() + in * hidden, weight.data(), expected.data() + r * hidden, 1,
                          hidden, eps);
  }
  DeviceBuffer<float> x_dev(x);
  DeviceBuffer<bf16> weight_dev(to_bf16(weight));
  DeviceBuffer<int32_t> rows_dev(rows != nullptr ? *rows : std::vector<int32_t>{0});
  DeviceBuffer<bf16> out_dev(num_rows * hidden);
  out_dev.poison();
  EEP_REQUIRE_CUDA(kernels::cuda::rmsnorm(x_dev.data(), rows != nullptr ? rows_dev.data() : nullptr,
                                          weight_dev.data(), out_dev.data(), num_rows, hidden, eps,
                                          nullptr));
  // Rows have different scales: compare each row against its own maximum.
  const std::vector<float> out = to_float(out_dev.download());
  for (int64_t r = 0; r < num_rows; ++r) {
    const std::vector<float> got(out.begin() + r * hidden, out.begin() + (r + 1) * hidden);
    const std::vector<float> want(expected.begin() + r * hidden,
                                  expected.begin() + (r + 1) * hidden);
    INFO("output row " << r);
    check_close(got, want, hidden, "rmsnorm row");
  }
}

TEST_CASE("cuda rmsnorm matches the CPU", "[gpu][kernels]") {
  uint64_t seed = 10;
  for (int64_t num_rows : {1, 3, 17, 64}) run_rmsnorm_case(num_rows, 2048, nullptr, ++seed);
  run_rmsnorm_case(5, 37, nullptr, ++seed);
  run_rmsnorm_case(2, 4096, nullptr, ++seed);
  run_rmsnorm_case(9, 16, nullptr, ++seed);
  // The final norm: selected rows, repeated, out of order, and a negative one (zeros).
  const std::vector<int32_t> rows = {16, 0, 3, 3, 9, -1, 1};
  run_rmsnorm_case(17, 2048, &rows, ++seed);
  const std::vector<int32_t> one_row = {4};
  run_rmsnorm_case(5, 64, &one_row, ++seed);
}

// ---------------------------------------------------------------------------------------------
// router

enum class LogitKind { kFloat, kBf16Ties, kAllEqual };

void run_router_case(int64_t num_tokens, int64_t num_experts, int64_t k, bool norm,
                     int32_t num_valid, LogitKind kind, uint64_t seed) {
  INFO("router tokens " << num_tokens << " experts " << num_experts << " k " << k << " norm "
                        << norm << " num_valid " << num_valid << " kind " << static_cast<int>(kind)
                        << " seed " << seed);
  std::vector<float> logits = random_floats(num_tokens * num_experts, seed, -3.0f, 3.0f);
  if (kind == LogitKind::kBf16Ties) {
    // Coarse values: many exact ties, broken towards the lower expert on both sides.
    for (float& v : logits) v = std::round(v * 4.0f) / 4.0f;
  } else if (kind == LogitKind::kAllEqual) {
    std::fill(logits.begin(), logits.end(), 0.5f);
  }
  std::vector<int32_t> expected_ids(num_tokens * k);
  std::vector<float> expected_weights(num_tokens * k);
  kernels::cpu::router_topk(logits.data(), num_tokens, num_experts, k, norm, expected_ids.data(),
                            expected_weights.data());

  DeviceBuffer<float> logits_dev(logits);
  DeviceBuffer<int32_t> num_valid_dev(std::vector<int32_t>{num_valid});
  DeviceBuffer<int32_t> ids_dev(num_tokens * k);
  DeviceBuffer<float> weights_dev(num_tokens * k);
  ids_dev.poison();
  weights_dev.poison();
  const bool all_valid = num_valid < 0;
  EEP_REQUIRE_CUDA(kernels::cuda::router_topk(logits_dev.data(), num_tokens, num_experts, k, norm,
                                              all_valid ? nullptr : num_valid_dev.data(),
                                              ids_dev.data(), weights_dev.data(), nullptr));
  const std::vector<int32_t> ids = ids_dev.download();
  const std::vector<float> weights = weights_dev.download();

  // The CPU's probabilities, to judge near-ties: softmax as cpu::router_topk computes it.
  auto cpu_probs = [&](int64_t t) {
    const float* row = logits.data() + t * num_experts;
    const float max_logit = *std::max_element(row, row + num_experts);
    std::vector<float> p(num_experts);
    float sum = 0.0f;
    for (int64_t e = 0; e < num_experts; ++e) sum += (p[e] = std::exp(row[e] - max_logit));
    for (float& v : p) v /= sum;
    return p;
  };
  // Ids must be equal, except where the expert the GPU picked and the CPU's are within 1e-6 in
  // the CPU's probabilities (the softmax sums in a different order, so the last bit of a
  // probability may differ and flip the order of a near-tie; exact ties are broken the same way
  // on both sides). Such exemptions are counted and printed.
  int64_t exempt = 0;
  std::vector<float> got_weights, want_weights;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const bool valid = all_valid || t < num_valid;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t i = t * k + j;
      if (!valid) {
        INFO("padding token " << t << " slot " << j);
        CHECK(ids[i] == -1);
        CHECK(weights[i] == 0.0f);
        continue;
      }
      got_weights.push_back(weights[i]);
      want_weights.push_back(expected_weights[i]);
      if (ids[i] == expected_ids[i]) continue;
      const std::vector<float> p = cpu_probs(t);
      const bool in_range = ids[i] >= 0 && ids[i] < num_experts;
      const double gap = in_range ? std::fabs(p[ids[i]] - p[expected_ids[i]]) : INFINITY;
      INFO("token " << t << " slot " << j << ": GPU expert " << ids[i] << " CPU expert "
                    << expected_ids[i] << ", CPU probability gap " << gap);
      REQUIRE(gap <= 1e-6);
      ++exempt;
    }
  }
  if (exempt > 0) WARN("router: " << exempt << " near-tie id differences (gap <= 1e-6) exempted");
  check_close(got_weights, want_weights, k, "router weights");
}

TEST_CASE("cuda router_topk matches the CPU", "[gpu][kernels]") {
  uint64_t seed = 100;
  for (LogitKind kind : {LogitKind::kFloat, LogitKind::kBf16Ties}) {
    for (bool norm : {true, false}) {
      run_router_case(1, 128, 8, norm, -1, kind, ++seed);  // Qwen3-30B-A3B
      run_router_case(3, 128, 8, norm, -1, kind, ++seed);
      run_router_case(17, 128, 8, norm, -1, kind, ++seed);
      run_router_case(1000, 128, 8, norm, -1, kind, ++seed);
      run_router_case(33, 512, 16, norm, -1, kind, ++seed);
      run_router_case(9, 60, 4, norm, -1, kind, ++seed);
      run_router_case(5, 7, 1, norm, -1, kind, ++seed);
      run_router_case(11, 33, 16, norm, -1, kind, ++seed);
      run_router_case(4, 16, 16, norm, -1, kind, ++seed);  // k == num_experts
    }
  }
  run_router_case(6, 64, 6, true, -1, LogitKind::kAllEqual, ++seed);
}

TEST_CASE("cuda router_topk pads rows beyond num_valid", "[gpu][kernels]") {
  run_router_case(64, 128, 8, true, 37, LogitKind::kFloat, 200);
  run_router_case(8, 128, 8, true, 0, LogitKind::kFloat, 201);
  run_router_case(8, 128, 8, false, 8, LogitKind::kFloat, 202);
}

TEST_CASE("cuda router_topk rejects unsupported shapes", "[gpu][kernels]") {
  using kernels::cuda::router_topk;
  CHECK(router_topk(nullptr, 1, 513, 8, true, nullptr, nullptr, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(router_topk(nullptr, 1, 128, 17, true, nullptr, nullptr, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(router_topk(nullptr, 1, 4, 5, true, nullptr, nullptr, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(router_topk(nullptr, 0, 128, 8, true, nullptr, nullptr, nullptr, nullptr) == cudaSuccess);
}

// ---------------------------------------------------------------------------------------------
// qkv_prepare

struct QkvCase {
  int64_t num_tokens, num_heads, num_kv_heads, head_dim, block_size;
  int32_t max_position;
  int64_t num_padding;
};

void run_qkv_case(const QkvCase& c, uint64_t seed) {
  const int64_t T = c.num_tokens, H = c.num_heads, KV = c.num_kv_heads, D = c.head_dim;
  INFO("qkv_prepare tokens " << T << " heads " << H << " kv heads " << KV << " head_dim " << D
                             << " block_size " << c.block_size << " max_position " << c.max_position
                             << " padding " << c.num_padding << " seed " << seed);
  const int64_t row = (H + 2 * KV) * D;
  const std::vector<float> qkv = round_bf16(random_floats(T * row, seed, -2.0f, 2.0f));
  const std::vector<float> q_norm = round_bf16(random_floats(D, seed + 1, 0.5f, 1.5f));
  const std::vector<float> k_norm = round_bf16(random_floats(D, seed + 2, 0.5f, 1.5f));
  const float eps = 1e-6f;
  const float theta = 1000000.0f;  // Qwen3

  // Cache slots: a random injective map (blocks in shuffled order); padding tokens get -1.
  std::mt19937_64 rng(seed + 3);
  const int64_t num_blocks = (T + c.block_size - 1) / c.block_size + 3;
  const int64_t num_slots = num_blocks * c.block_size;
  std::vector<int64_t> all_slots(num_slots);
  std::iota(all_slots.begin(), all_slots.end(), 0);
  std::shuffle(all_slots.begin(), all_slots.end(), rng);
  std::vector<int64_t> slots(all_slots.begin(), all_slots.begin() + T);
  std::vector<int32_t> positions(T);
  std::uniform_int_distribution<int32_t> pick_pos(0, c.max_position);
  for (int32_t& p : positions) p = pick_pos(rng);
  std::vector<int64_t> padding_idx(T);
  std::iota(padding_idx.begin(), padding_idx.end(), 0);
  std::shuffle(padding_idx.begin(), padding_idx.end(), rng);
  for (int64_t i = 0; i < c.num_padding; ++i) slots[padding_idx[i]] = -1;

  // CPU: split, per-head rmsnorm, rope, write the cache (valid tokens only).
  std::vector<float> q(T * H * D), k(T * KV * D), v(T * KV * D);
  for (int64_t t = 0; t < T; ++t) {
    const float* src = qkv.data() + t * row;
    std::copy(src, src + H * D, q.data() + t * H * D);
    std::copy(src + H * D, src + (H + KV) * D, k.data() + t * KV * D);
    std::copy(src + (H + KV) * D, src + row, v.data() + t * KV * D);
  }
  kernels::cpu::rmsnorm(q.data(), q_norm.data(), q.data(), T * H, D, eps);
  kernels::cpu::rmsnorm(k.data(), k_norm.data(), k.data(), T * KV, D, eps);
  kernels::cpu::rope(q.data(), positions.data(), T, H, D, theta);
  kernels::cpu::rope(k.data(), positions.data(), T, KV, D, theta);
  std::vector<float> k_cache(num_slots * KV * D, 0.0f), v_cache(num_slots * KV * D, 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    if (slots[t] < 0) continue;
    kernels::cpu::write_kv_cache(k.data() + t * KV * D, v.data() + t * KV * D, &slots[t], 1, KV, D,
                                 k_cache.data(), v_cache.data());
  }

  DeviceBuffer<bf16> qkv_dev(to_bf16(qkv));
  DeviceBuffer<bf16> q_norm_dev(to_bf16(q_norm));
  DeviceBuffer<bf16> k_norm_dev(to_bf16(k_norm));
  DeviceBuffer<int32_t> positions_dev(positions);
  DeviceBuffer<int64_t> slots_dev(slots);
  DeviceBuffer<bf16> q_out_dev(T * H * D);
  DeviceBuffer<bf16> k_cache_dev(num_slots * KV * D);
  DeviceBuffer<bf16> v_cache_dev(num_slots * KV * D);
  q_out_dev.poison();
  k_cache_dev.poison();
  v_cache_dev.poison();
  kernels::cuda::QkvPrepareArgs args;
  args.qkv = qkv_dev.data();
  args.q_norm = q_norm_dev.data();
  args.k_norm = k_norm_dev.data();
  args.positions = positions_dev.data();
  args.slot_mapping = slots_dev.data();
  args.num_tokens = T;
  args.num_heads = H;
  args.num_kv_heads = KV;
  args.head_dim = D;
  args.eps = eps;
  args.theta = theta;
  args.q_out = q_out_dev.data();
  args.k_cache = k_cache_dev.data();
  args.v_cache = v_cache_dev.data();
  EEP_REQUIRE_CUDA(kernels::cuda::qkv_prepare(args, nullptr));
  const std::vector<float> q_out = to_float(q_out_dev.download());
  const std::vector<bf16> k_cache_raw = k_cache_dev.download();
  const std::vector<bf16> v_cache_raw = v_cache_dev.download();

  // q: valid tokens against the CPU, padding tokens zeros.
  std::vector<float> got_q, want_q;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < H * D; ++i) {
      if (slots[t] >= 0) {
        got_q.push_back(q_out[t * H * D + i]);
        want_q.push_back(q[t * H * D + i]);
      } else if (q_out[t * H * D + i] != 0.0f) {
        INFO("padding token " << t << " q element " << i << " = " << q_out[t * H * D + i]);
        CHECK(q_out[t * H * D + i] == 0.0f);
        break;
      }
    }
  }
  check_close(got_q, want_q, D, "q_out (valid tokens, rows = heads)");
  // Cache: written slots against the CPU (v exactly), every other slot still poisoned.
  std::vector<float> got_k, want_k;
  std::vector<bool> written(num_slots, false);
  for (int64_t t = 0; t < T; ++t) {
    if (slots[t] < 0) continue;
    written[slots[t]] = true;
    for (int64_t i = 0; i < KV * D; ++i) {
      const int64_t at = slots[t] * KV * D + i;
      got_k.push_back(__bfloat162float(k_cache_raw[at]));
      want_k.push_back(k_cache[at]);
      if (__bfloat162float(v_cache_raw[at]) != v_cache[at]) {
        INFO("v of token " << t << " (slot " << slots[t] << ") element " << i << ": got "
                           << __bfloat162float(v_cache_raw[at]) << " expected " << v_cache[at]);
        CHECK(__bfloat162float(v_cache_raw[at]) == v_cache[at]);
        break;
      }
    }
  }
  check_close(got_k, want_k, D, "k_cache (written slots, rows = kv heads)");
  for (int64_t s = 0; s < num_slots; ++s) {
    if (written[s]) continue;
    for (int64_t i = 0; i < KV * D; ++i) {
      const int64_t at = s * KV * D + i;
      if (bf16_bits(k_cache_raw[at]) != 0xFFFF || bf16_bits(v_cache_raw[at]) != 0xFFFF) {
        INFO("slot " << s << " (no token maps to it) was written at element " << i);
        CHECK(false);
        return;
      }
    }
  }
}

TEST_CASE("cuda qkv_prepare matches CPU rmsnorm + rope + write_kv_cache", "[gpu][kernels]") {
  const QkvCase cases[] = {
      {17, 32, 4, 128, 16, 40000, 3},  // Qwen3-30B-A3B
      {1, 32, 4, 128, 16, 5000, 0},    {3, 32, 4, 128, 16, 100, 1},
      {256, 32, 4, 128, 16, 4096, 10}, {3, 4, 2, 16, 4, 300, 0},   // tiny test models
      {17, 8, 2, 32, 16, 2000, 2},     {5, 6, 2, 24, 5, 1000, 1},  // odd sizes
      {9, 4, 4, 8, 3, 77, 2},          {4, 16, 4, 256, 8, 30000, 1},
      {2, 3, 1, 64, 16, 10, 2},  // every token padding
  };
  uint64_t seed = 300;
  for (const QkvCase& c : cases) run_qkv_case(c, ++seed);
}

TEST_CASE("cuda qkv_prepare and paged_attention reject unsupported shapes", "[gpu][kernels]") {
  kernels::cuda::QkvPrepareArgs prep{};
  prep.num_tokens = 1;
  prep.num_heads = 4;
  prep.num_kv_heads = 2;
  prep.head_dim = 12;  // not a multiple of 8
  CHECK(kernels::cuda::qkv_prepare(prep, nullptr) == cudaErrorInvalidValue);
  prep.head_dim = 264;
  CHECK(kernels::cuda::qkv_prepare(prep, nullptr) == cudaErrorInvalidValue);
  kernels::cuda::PagedAttentionArgs attn{};
  attn.num_tokens = 1;
  attn.num_heads = 6;
  attn.num_kv_heads = 4;  // not a divisor
  attn.head_dim = 64;
  attn.block_size = 16;
  attn.max_blocks_per_seq = 1;
  CHECK(kernels::cuda::paged_attention(attn, nullptr) == cudaErrorInvalidValue);
  attn.num_kv_heads = 2;
  attn.head_dim = 20;
  CHECK(kernels::cuda::paged_attention(attn, nullptr) == cudaErrorInvalidValue);
}

}  // namespace
}  // namespace eep::gpu_test
