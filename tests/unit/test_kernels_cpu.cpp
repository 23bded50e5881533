// The CPU kernels (eep_kernels, kernels/src/cpu) against naive references written here, in
// double where it helps, on random inputs of shapes that are not multiples of any blocking.
// Outputs are poisoned with NaN before each call so an element the kernel forgot shows up.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "eep/kernels/attention.h"
#include "eep/kernels/embedding.h"
#include "eep/kernels/expert_ffn.h"
#include "eep/kernels/gemm.h"
#include "eep/kernels/rmsnorm.h"
#include "eep/kernels/rope.h"
#include "eep/kernels/router.h"
#include "eep/kernels/sampling.h"

namespace cpu = eep::kernels::cpu;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> random_floats(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = value(rng);
  return v;
}

std::vector<float> poisoned(int64_t n) {
  return std::vector<float>(n, kNaN);
}

// Restores the GEMM thread count a test changed.
struct GemmThreadsGuard {
  int saved = cpu::gemm_num_threads();
  ~GemmThreadsGuard() { cpu::set_gemm_num_threads(saved); }
};

// The summation order gemm.h documents, written out with std::fma.
float documented_dot(const float* x, const float* y, int64_t k) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t p = 0; p < k; ++p) lane[p % 8] = std::fma(x[p], y[p], lane[p % 8]);
  const float q0 = lane[0] + lane[4], q1 = lane[1] + lane[5], q2 = lane[2] + lane[6],
              q3 = lane[3] + lane[7];
  return (q0 + q2) + (q1 + q3);
}

// c = a b^T in double, and sum |a_p b_p| per element for the error bound.
void reference_matmul_nt(const std::vector<float>& a, const std::vector<float>& b, int64_t m,
                         int64_t n, int64_t k, std::vector<double>& c,
                         std::vector<double>& magnitude) {
  c.assign(m * n, 0.0);
  magnitude.assign(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0, abs_sum = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double term = static_cast<double>(a[i * k + p]) * b[j * k + p];
        sum += term;
        abs_sum += std::fabs(term);
      }
      c[i * n + j] = sum;
      magnitude[i * n + j] = abs_sum;
    }
  }
}

// Forward error bound of an fp32 sum of k products in 8 lanes plus a 3-level tree, with slack:
// (k / 8 + 4) unit roundoffs (2^-24) times sum |a_p b_p|, doubled.
double gemm_tolerance(int64_t k, double magnitude) {
  return 2.0 * (static_cast<double>(k) / 8.0 + 4.0) * std::ldexp(1.0, -24) * magnitude + 1e-30;
}

double silu(double g) {
  return g / (1.0 + std::exp(-g));
}

// sample_token as sampling.h words it: sort everything, scan.
int32_t reference_sample(const std::vector<float>& logits, float temperature, float top_p,
                         uint64_t seed, uint64_t step) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  const float m = *std::max_element(logits.begin(), logits.end());
  std::vector<float> e(vocab), p(vocab);
  double s = 0.0;
  for (int64_t i = 0; i < vocab; ++i) s += (e[i] = std::exp((logits[i] - m) / temperature));
  for (int64_t i = 0; i < vocab; ++i) p[i] = static_cast<float>(e[i] / s);
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  int64_t nucleus = 0;
  double mass = 0.0;
  do {
    mass += p[order[nucleus++]];
  } while (nucleus < vocab && mass < top_p);
  const double target = cpu::sampling_uniform(seed, step) * mass;
  double running = 0.0;
  for (int64_t i = 0; i < nucleus; ++i) {
    running += p[order[i]];
    if (running > target) return order[i];
  }
  return order[nucleus - 1];
}

}  // namespace

TEST_CASE("embedding copies the rows of the ids", "[kernels]") {
  const int64_t vocab = 13, hidden = 7, num_tokens = 9;
  const std::vector<float> table = random_floats(vocab * hidden, 1);
  const std::vector<int32_t> ids = {0, 12, 5, 5, 3, 12, 1, 0, 7};
  std::vector<float> out = poisoned(num_tokens * hidden);
  cpu::embedding(table.data(), vocab, ids.data(), num_tokens, hidden, out.data());
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t i = 0; i < hidden; ++i) CHECK(out[t * hidden + i] == table[ids[t] * hidden + i]);
  }
}

TEST_CASE("matmul_nt matches a double reference within the fp32 error bound", "[kernels]") {
  GemmThreadsGuard guard;
  struct Shape {
    int64_t m, n, k;
  };
  // Odd sizes around the 8-lane, 4-row and 3/4/6-column tiles; the last two are large enough to
  // be split over threads.
  const Shape shapes[] = {{1, 1, 1},      {1, 7, 3},      {3, 5, 8},     {5, 13, 17},
                          {4, 6, 16},     {2, 9, 9},      {7, 25, 100},  {1, 300, 2048},
                          {37, 101, 515}, {64, 257, 129}, {9, 1003, 131}};
  for (const int threads : {1, 2, 3}) {
    cpu::set_gemm_num_threads(threads);
    for (const Shape& s : shapes) {
      CAPTURE(threads, s.m, s.n, s.k);
      const std::vector<float> a = random_floats(s.m * s.k, 10 + static_cast<uint32_t>(s.k));
      const std::vector<float> b = random_floats(s.n * s.k, 20 + static_cast<uint32_t>(s.n));
      std::vector<float> c = poisoned(s.m * s.n);
      cpu::matmul_nt(a.data(), b.data(), c.data(), s.m, s.n, s.k);
      std::vector<double> expected, magnitude;
      reference_matmul_nt(a, b, s.m, s.n, s.k, expected, magnitude);
      int64_t num_bad = 0;
      for (int64_t e = 0; e < s.m * s.n; ++e) {
        if (!(std::fabs(c[e] - expected[e]) <= gemm_tolerance(s.k, magnitude[e]))) ++num_bad;
      }
      CHECK(num_bad == 0);
    }
  }
}

TEST_CASE("matmul_nt follows the documented summation order, whatever the batch", "[kernels]") {
  GemmThreadsGuard guard;
  const int64_t m = 23, n = 531, k = 301;
  const std::vector<float> a = random_floats(m * k, 3);
  const std::vector<float> b = random_floats(n * k, 4);
  for (const int threads : {1, 2}) {
    cpu::set_gemm_num_threads(threads);
    std::vector<float> c = poisoned(m * n);
    cpu::matmul_nt(a.data(), b.data(), c.data(), m, n, k);
    int64_t num_different = 0;
    for (int64_t i = 0; i < m; ++i) {
      // The same row alone (a decode step) and through dot() give the same bits.
      std::vector<float> row = poisoned(n);
      cpu::matmul_nt(a.data() + i * k, b.data(), row.data(), 1, n, k);
      for (int64_t j = 0; j < n; ++j) {
        const float expected = documented_dot(a.data() + i * k, b.data() + j * k, k);
        num_different += c[i * n + j] != expected;
        num_different += row[j] != expected;
        num_different += cpu::dot(a.data() + i * k, b.data() + j * k, k) != expected;
      }
    }
    CHECK(num_different == 0);
  }
  std::vector<float> c(1, kNaN);
  cpu::matmul_nt(a.data(), b.data(), c.data(), 1, 1, 0);
  CHECK(c[0] == 0.0f);  // an empty sum
}

// RMSNorm in fp64: x / sqrt(mean(x^2) + eps) * w, row by row.
static std::vector<double> expected_rmsnorm(const std::vector<float>& x,
                                            const std::vector<float>& w, int64_t num_rows,
                                            int64_t hidden, float eps) {
  std::vector<double> expected(x.size());
  for (int64_t r = 0; r < num_rows; ++r) {
    double mean_square = 0.0;
    for (int64_t i = 0; i < hidden; ++i)
      mean_square += double{x[r * hidden + i]} * x[r * hidden + i];
    mean_square /= static_cast<double>(hidden);
    for (int64_t i = 0; i < hidden; ++i) {
      expected[r * hidden + i] = x[r * hidden + i] / std::sqrt(mean_square + double{eps}) * w[i];
    }
  }
  return expected;
}

TEST_CASE("rmsnorm over rows and per head", "[kernels]") {
  const float eps = 1e-6f;
  for (const int64_t hidden : {int64_t{1}, int64_t{7}, int64_t{64}, int64_t{129}}) {
    const int64_t num_rows = 11;
    const std::vector<float> x = random_floats(num_rows * hidden, 5, -3.0f, 3.0f);
    const std::vector<float> w = random_floats(hidden, 6, 0.5f, 1.5f);
    std::vector<float> out = poisoned(num_rows * hidden);
    cpu::rmsnorm(x.data(), w.data(), out.data(), num_rows, hidden, eps);
    std::vector<float> in_place = x;
    cpu::rmsnorm(in_place.data(), w.data(), in_place.data(), num_rows, hidden, eps);
    const std::vector<double> expected = expected_rmsnorm(x, w, num_rows, hidden, eps);
    for (int64_t i = 0; i < num_rows * hidden; ++i) {
      CHECK(std::fabs(out[i] - expected[i]) <= 1e-6 * (1.0 + std::fabs(expected[i])));
      CHECK(in_place[i] == out[i]);
    }
  }
}

// Where the mean square is near eps, eps decides the scale: 1e-5 instead of 1e-6 changes the
// output by a factor of about 1.8 here, far beyond the fp32 error of the formula (~1e-7).
TEST_CASE("rmsnorm adds eps to the mean square, visible where the row is near zero", "[kernels]") {
  const int64_t num_rows = 4, hidden = 64;
  for (const float eps : {1e-6f, 1e-5f}) {
    CAPTURE(eps);
    // Rows of root mean square about 1e-3, 3e-4, 1e-4 and 1e-2: mean squares 1e-6 to 1e-4.
    std::vector<float> x = random_floats(num_rows * hidden, 17);
    const float row_scale[num_rows] = {1e-3f, 3e-4f, 1e-4f, 1e-2f};
    for (int64_t r = 0; r < num_rows; ++r) {
      for (int64_t i = 0; i < hidden; ++i) x[r * hidden + i] *= row_scale[r] * 1.7f;
    }
    const std::vector<float> w = random_floats(hidden, 18, 0.5f, 1.5f);
    std::vector<float> out = poisoned(num_rows * hidden);
    cpu::rmsnorm(x.data(), w.data(), out.data(), num_rows, hidden, eps);
    const std::vector<double> expected = expected_rmsnorm(x, w, num_rows, hidden, eps);
    for (int64_t i = 0; i < num_rows * hidden; ++i) {
      // A few fp32 roundings of a value below ~2: relative 1e-6 is ten times their bound.
      CHECK(std::fabs(out[i] - expected[i]) <= 1e-6 * (1e-3 + std::fabs(expected[i])));
    }
  }
}

TEST_CASE("rope rotates halves as transformers does", "[kernels]") {
  const float theta = 1e6f;
  const int64_t num_tokens = 5, num_heads = 3;
  const std::vector<int32_t> positions = {0, 1, 17, 1000, 32767};
  for (const int64_t head_dim : {int64_t{2}, int64_t{8}, int64_t{128}}) {
    CAPTURE(head_dim);
    const std::vector<float> x = random_floats(num_tokens * num_heads * head_dim, 7);
    std::vector<float> y = x;
    cpu::rope(y.data(), positions.data(), num_tokens, num_heads, head_dim, theta);
    const int64_t half = head_dim / 2;
    double max_error = 0.0;
    for (int64_t t = 0; t < num_tokens; ++t) {
      for (int64_t h = 0; h < num_heads; ++h) {
        const float* in = x.data() + (t * num_heads + h) * head_dim;
        const float* out = y.data() + (t * num_heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          // transformers: inv_freq = 1 / theta^(2i/d) and angle = position * inv_freq, both in
          // fp32; cos and sin of that fp32 angle.
          const float inv_freq =
              1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
          const double angle = static_cast<float>(positions[t]) * inv_freq;
          const double c = std::cos(angle), s = std::sin(angle);
          const double lo = in[i] * c - in[i + half] * s;
          const double hi = in[i + half] * c + in[i] * s;
          max_error = std::max({max_error, std::fabs(out[i] - lo), std::fabs(out[i + half] - hi)});
        }
      }
    }
    CHECK(max_error < 1e-6);
    // Position 0 is the identity.
    for (int64_t e = 0; e < num_heads * head_dim; ++e) CHECK(y[e] == x[e]);
  }
}

// A decode step or a later prefill chunk starts far from position 0: each token's angle is its
// own position, whatever the batch's first position is, and a token gives the same bits alone
// and in a batch.
TEST_CASE("rope at positions that do not start at 0", "[kernels]") {
  const float theta = 1e6f;
  const int64_t num_heads = 2, head_dim = 16, half = head_dim / 2;
  const std::vector<int32_t> positions = {9, 10, 11, 4000, 2, 9};
  const int64_t num_tokens = static_cast<int64_t>(positions.size());
  const int64_t row = num_heads * head_dim;
  const std::vector<float> x = random_floats(num_tokens * row, 21);
  std::vector<float> batch = x;
  cpu::rope(batch.data(), positions.data(), num_tokens, num_heads, head_dim, theta);
  double max_error = 0.0;
  for (int64_t t = 0; t < num_tokens; ++t) {
    CAPTURE(t, positions[t]);
    std::vector<float> alone(x.begin() + t * row, x.begin() + (t + 1) * row);
    cpu::rope(alone.data(), &positions[t], 1, num_heads, head_dim, theta);
    for (int64_t e = 0; e < row; ++e) CHECK(alone[e] == batch[t * row + e]);
    for (int64_t h = 0; h < num_heads; ++h) {
      const float* in = x.data() + t * row + h * head_dim;
      const float* out = batch.data() + t * row + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float inv_freq =
            1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
        const double angle = static_cast<float>(positions[t]) * inv_freq;
        const double lo = in[i] * std::cos(angle) - in[i + half] * std::sin(angle);
        const double hi = in[i + half] * std::cos(angle) + in[i] * std::sin(angle);
        max_error = std::max({max_error, std::fabs(out[i] - lo), std::fabs(out[i + half] - hi)});
      }
    }
  }
  CHECK(max_error < 1e-6);
}

TEST_CASE("paged attention on a mixed batch matches dense causal attention", "[kernels]") {
  const int64_t num_heads = 6, num_kv_heads = 2, head_dim = 12, block_size = 4;
  const int64_t num_blocks = 10, max_blocks_per_seq = 4;
  const int64_t kv_row = num_kv_heads * head_dim;
  // Sequence 0: positions 0..4 cached by an earlier step, this step a prefill chunk at 5..10.
  // Sequence 1: positions 0..12 cached earlier, this step decodes position 13.
  const int64_t len[2] = {11, 14};
  const std::vector<int32_t> block_tables = {7, 2, 9, 0,   // sequence 0 (3 blocks used)
                                             4, 8, 1, 5};  // sequence 1 (4 blocks used)
  auto slot_of = [&](int seq, int64_t pos) {
    return int64_t{block_tables[seq * max_blocks_per_seq + pos / block_size]} * block_size +
           pos % block_size;
  };
  // Contiguous keys and values of every position of each sequence.
  std::vector<float> keys[2], values[2];
  for (int s = 0; s < 2; ++s) {
    keys[s] = random_floats(len[s] * kv_row, 30 + s, -2.0f, 2.0f);
    values[s] = random_floats(len[s] * kv_row, 40 + s);
  }
  // Unwritten cache slots stay NaN: reading one would poison the output.
  std::vector<float> k_cache = poisoned(num_blocks * block_size * kv_row);
  std::vector<float> v_cache = poisoned(num_blocks * block_size * kv_row);
  auto write = [&](int seq, int64_t begin, int64_t end) {
    std::vector<int64_t> slots;
    for (int64_t p = begin; p < end; ++p) slots.push_back(slot_of(seq, p));
    cpu::write_kv_cache(keys[seq].data() + begin * kv_row, values[seq].data() + begin * kv_row,
                        slots.data(), end - begin, num_kv_heads, head_dim, k_cache.data(),
                        v_cache.data());
  };
  write(0, 0, 5);
  write(1, 0, 13);
  // This step: the new tokens' keys are written first, then attention runs.
  std::vector<int32_t> token_seq_idx, positions;
  for (int64_t p = 5; p < 11; ++p) token_seq_idx.push_back(0), positions.push_back(int32_t(p));
  token_seq_idx.push_back(1), positions.push_back(13);
  write(0, 5, 11);
  write(1, 13, 14);
  const int64_t num_tokens = static_cast<int64_t>(positions.size());
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int s = token_seq_idx[t];
    const int64_t slot = slot_of(s, positions[t]);
    for (int64_t e = 0; e < kv_row; ++e) {
      CHECK(k_cache[slot * kv_row + e] == keys[s][positions[t] * kv_row + e]);
      CHECK(v_cache[slot * kv_row + e] == values[s][positions[t] * kv_row + e]);
    }
  }

  const std::vector<float> q = random_floats(num_tokens * num_heads * head_dim, 50, -2.0f, 2.0f);
  std::vector<float> out = poisoned(num_tokens * num_heads * head_dim);
  cpu::PagedAttentionArgs args;
  args.q = q.data();
  args.k_cache = k_cache.data();
  args.v_cache = v_cache.data();
  args.block_tables = block_tables.data();
  args.token_seq_idx = token_seq_idx.data();
  args.positions = positions.data();
  args.num_tokens = num_tokens;
  args.num_heads = num_heads;
  args.num_kv_heads = num_kv_heads;
  args.head_dim = head_dim;
  args.block_size = block_size;
  args.max_blocks_per_seq = max_blocks_per_seq;
  args.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  args.out = out.data();
  cpu::paged_attention(args);

  double max_error = 0.0;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int s = token_seq_idx[t];
    for (int64_t h = 0; h < num_heads; ++h) {
      const int64_t kv_head = h / (num_heads / num_kv_heads);
      const float* qv = q.data() + (t * num_heads + h) * head_dim;
      std::vector<double> weight(positions[t] + 1);
      double max_score = -INFINITY, sum = 0.0;
      for (int64_t p = 0; p <= positions[t]; ++p) {
        double score = 0.0;
        for (int64_t d = 0; d < head_dim; ++d) {
          score += double{qv[d]} * keys[s][p * kv_row + kv_head * head_dim + d];
        }
        weight[p] = score / std::sqrt(static_cast<double>(head_dim));
        max_score = std::max(max_score, weight[p]);
      }
      for (double& w : weight) sum += (w = std::exp(w - max_score));
      for (int64_t d = 0; d < head_dim; ++d) {
        double expected = 0.0;
        for (int64_t p = 0; p <= positions[t]; ++p) {
          expected += weight[p] / sum * values[s][p * kv_row + kv_head * head_dim + d];
        }
        const float got = out[(t * num_heads + h) * head_dim + d];
        max_error = std::isnan(got) ? INFINITY : std::max(max_error, std::fabs(got - expected));
      }
    }
  }
  CHECK(max_error < 1e-5);
}

TEST_CASE("router: softmax, top-k by probability then lower index, renormalised", "[kernels]") {
  const int64_t num_tokens = 17, num_experts = 13;
  std::vector<float> logits = random_floats(num_tokens * num_experts, 8, -4.0f, 4.0f);
  // Token 0: every logit equal. Token 1: ties inside and at the edge of the top 4.
  std::fill(logits.begin(), logits.begin() + num_experts, 0.5f);
  const float tied[num_experts] = {1, 3, 2, 3, 0, 2, 2, 3, -1, 2, 0, 1, 3};
  std::copy(tied, tied + num_experts, logits.begin() + num_experts);
  for (const int64_t k : {int64_t{1}, int64_t{4}, num_experts}) {
    for (const bool norm : {false, true}) {
      CAPTURE(k, norm);
      std::vector<int32_t> ids(num_tokens * k, -1);
      std::vector<float> weights = poisoned(num_tokens * k);
      cpu::router_topk(logits.data(), num_tokens, num_experts, k, norm, ids.data(), weights.data());
      for (int64_t t = 0; t < num_tokens; ++t) {
        std::vector<double> p(num_experts);
        double max_logit = -INFINITY, sum = 0.0;
        for (int64_t e = 0; e < num_experts; ++e) {
          max_logit = std::max<double>(max_logit, logits[t * num_experts + e]);
        }
        for (int64_t e = 0; e < num_experts; ++e) {
          sum += (p[e] = std::exp(logits[t * num_experts + e] - max_logit));
        }
        for (double& v : p) v /= sum;
        std::vector<int32_t> order(num_experts);
        std::iota(order.begin(), order.end(), 0);
        // Ranked by logit (monotone in probability, exact in ties), then by index.
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
          return logits[t * num_experts + a] > logits[t * num_experts + b];
        });
        double selected = 0.0;
        for (int64_t j = 0; j < k; ++j) selected += p[order[j]];
        for (int64_t j = 0; j < k; ++j) {
          CHECK(ids[t * k + j] == order[j]);
          const double expected = norm ? p[order[j]] / selected : p[order[j]];
          CHECK(std::fabs(weights[t * k + j] - expected) <= 1e-6 * (1.0 + expected));
        }
      }
      if (k == 4) {
        CHECK(std::vector<int32_t>(ids.begin(), ids.begin() + 4) ==
              std::vector<int32_t>{0, 1, 2, 3});
        CHECK(std::vector<int32_t>(ids.begin() + 4, ids.begin() + 8) ==
              std::vector<int32_t>{1, 3, 7, 12});
      }
    }
  }
}

TEST_CASE("expert_ffn and its accumulating form match a double SwiGLU", "[kernels]") {
  for (const int64_t num_rows : {int64_t{1}, int64_t{5}, int64_t{19}}) {
    const int64_t hidden = 24, intermediate = 37;
    CAPTURE(num_rows);
    const std::vector<float> x = random_floats(num_rows * hidden, 60);
    const std::vector<float> gate = random_floats(intermediate * hidden, 61, -0.5f, 0.5f);
    const std::vector<float> up = random_floats(intermediate * hidden, 62, -0.5f, 0.5f);
    const std::vector<float> down = random_floats(hidden * intermediate, 63, -0.5f, 0.5f);
    const std::vector<float> row_weights = random_floats(num_rows, 64, 0.0f, 1.0f);
    const std::vector<float> y0 = random_floats(num_rows * hidden, 65);
    std::vector<float> scratch =
        poisoned(cpu::expert_ffn_scratch_floats(num_rows, hidden, intermediate));
    std::vector<float> y = poisoned(num_rows * hidden);
    cpu::expert_ffn(x.data(), gate.data(), up.data(), down.data(), num_rows, hidden, intermediate,
                    scratch.data(), y.data());
    std::vector<float> acc = y0;
    cpu::expert_ffn_accumulate(x.data(), gate.data(), up.data(), down.data(), row_weights.data(),
                               num_rows, hidden, intermediate, scratch.data(), acc.data());
    double max_error = 0.0, max_acc_error = 0.0;
    for (int64_t r = 0; r < num_rows; ++r) {
      std::vector<double> act(intermediate);
      for (int64_t i = 0; i < intermediate; ++i) {
        double g = 0.0, u = 0.0;
        for (int64_t h = 0; h < hidden; ++h) {
          g += double{x[r * hidden + h]} * gate[i * hidden + h];
          u += double{x[r * hidden + h]} * up[i * hidden + h];
        }
        act[i] = silu(g) * u;
      }
      for (int64_t h = 0; h < hidden; ++h) {
        double expected = 0.0;
        for (int64_t i = 0; i < intermediate; ++i) expected += act[i] * down[h * intermediate + i];
        const int64_t e = r * hidden + h;
        max_error = std::isnan(y[e]) ? INFINITY : std::max(max_error, std::fabs(y[e] - expected));
        const double expected_acc = y0[e] + row_weights[r] * expected;
        max_acc_error = std::isnan(acc[e])
                            ? INFINITY
                            : std::max(max_acc_error, std::fabs(acc[e] - expected_acc));
      }
    }
    CHECK(max_error < 1e-5);
    CHECK(max_acc_error < 1e-5);
  }
}

TEST_CASE("sampling_uniform is splitmix64 of (seed, step)", "[kernels]") {
  // The first output of the reference splitmix64 generator seeded with 0 is 0xE220A8397B1DCDAF.
  CHECK(cpu::sampling_uniform(0, 0) ==
        static_cast<double>(0xE220A8397B1DCDAFull >> 11) * 0x1.0p-53);
  CHECK(cpu::sampling_uniform(0, 1) ==
        static_cast<double>(0x6E789E6AA1B965F4ull >> 11) * 0x1.0p-53);
  CHECK(cpu::sampling_uniform(12345, 7) ==
        static_cast<double>(0x6E7411B06820371Cull >> 11) * 0x1.0p-53);
  for (uint64_t step = 0; step < 1000; ++step) {
    const double u = cpu::sampling_uniform(99, step);
    CHECK((u >= 0.0 && u < 1.0));
  }
}

TEST_CASE("sample_token: greedy, nucleus, reproducible, distributed as softmax", "[kernels]") {
  const int64_t vocab = 101;
  std::vector<float> logits = random_floats(vocab, 9, -3.0f, 3.0f);
  logits[42] = 5.0f;
  logits[77] = 5.0f;  // a tie for the maximum: greedy takes the lower id
  std::vector<std::byte> scratch(cpu::sampling_scratch_bytes(vocab));
  CHECK(cpu::sample_token(logits.data(), vocab, 0.0f, 1.0f, 1, 0, scratch.data()) == 42);
  for (uint64_t seed = 0; seed < 50; ++seed) {
    CHECK(cpu::sample_token(logits.data(), vocab, 1.0f, 1e-6f, seed, seed * 3, scratch.data()) ==
          42);
  }
  // The same (seed, step) gives the same token; different steps do not all agree.
  std::vector<int32_t> draws;
  for (uint64_t step = 0; step < 40; ++step) {
    const int32_t a = cpu::sample_token(logits.data(), vocab, 1.5f, 0.95f, 7, step, scratch.data());
    const int32_t b = cpu::sample_token(logits.data(), vocab, 1.5f, 0.95f, 7, step, scratch.data());
    CHECK(a == b);
    CHECK((a >= 0 && a < vocab));
    draws.push_back(a);
  }
  CHECK(std::count(draws.begin(), draws.end(), draws[0]) < 40);

  // Distribution over many seeds: probabilities 0.1, 0.2, 0.3, 0.4.
  const float four[4] = {std::log(0.1f), std::log(0.2f), std::log(0.3f), std::log(0.4f)};
  std::vector<std::byte> small(cpu::sampling_scratch_bytes(4));
  auto frequencies = [&](float temperature, float top_p) {
    const int num_draws = 20000;
    std::vector<double> count(4, 0.0);
    for (int seed = 0; seed < num_draws; ++seed) {
      count[cpu::sample_token(four, 4, temperature, top_p, seed, 5, small.data())] += 1.0;
    }
    for (double& c : count) c /= num_draws;
    return count;
  };
  // 3 standard deviations of a frequency from 20000 draws is below 0.011.
  const double tolerance = 0.011;
  const std::vector<double> plain = frequencies(1.0f, 1.0f);
  const double expected_plain[4] = {0.1, 0.2, 0.3, 0.4};
  for (int i = 0; i < 4; ++i) CHECK(std::fabs(plain[i] - expected_plain[i]) < tolerance);
  // top_p 0.65: the nucleus is {0.4, 0.3} (0.4 alone falls short), renormalised to 4/7, 3/7.
  const std::vector<double> nucleus = frequencies(1.0f, 0.65f);
  CHECK(nucleus[0] == 0.0);
  CHECK(nucleus[1] == 0.0);
  CHECK(std::fabs(nucleus[2] - 3.0 / 7.0) < tolerance);
  CHECK(std::fabs(nucleus[3] - 4.0 / 7.0) < tolerance);
  // Temperature 2: probabilities proportional to sqrt(p).
  const std::vector<double> warm = frequencies(2.0f, 1.0f);
  double norm = 0.0;
  for (double p : expected_plain) norm += std::sqrt(p);
  for (int i = 0; i < 4; ++i)
    CHECK(std::fabs(warm[i] - std::sqrt(expected_plain[i]) / norm) < tolerance);
}

// The nucleus is the shortest prefix whose mass reaches top_p: on 4 equal logits (probabilities
// exactly 1/4) top_p 0.5 is reached by 2 tokens, and ties go to the lower id, so only 0 and 1
// are ever drawn; top_p 0.5 + a little needs a third.
TEST_CASE("sample_token: a nucleus that reaches top_p exactly stops there", "[kernels]") {
  const std::vector<float> logits(4, 0.25f);
  std::vector<std::byte> scratch(cpu::sampling_scratch_bytes(4));
  std::set<int32_t> drawn, drawn_wider;
  for (uint64_t step = 0; step < 200; ++step) {
    drawn.insert(cpu::sample_token(logits.data(), 4, 1.0f, 0.5f, 3, step, scratch.data()));
    drawn_wider.insert(cpu::sample_token(logits.data(), 4, 1.0f, 0.51f, 3, step, scratch.data()));
  }
  CHECK(drawn == std::set<int32_t>{0, 1});
  CHECK(drawn_wider == std::set<int32_t>{0, 1, 2});
}

TEST_CASE("sample_token draws exactly what the documented procedure draws", "[kernels]") {
  // Vocabularies above and below the first partial sort, flat and peaked rows (a flat row with
  // top_p 0.9 makes the nucleus grow past the first sorted tokens), with ties.
  for (const int64_t vocab : {int64_t{3}, int64_t{300}, int64_t{5000}}) {
    for (const float spread : {0.1f, 8.0f}) {
      std::vector<float> logits =
          random_floats(vocab, 70 + static_cast<uint32_t>(vocab), -spread, spread);
      for (int64_t i = 0; i + 3 < vocab; i += 7) logits[i + 3] = logits[i];
      std::vector<std::byte> scratch(cpu::sampling_scratch_bytes(vocab));
      int64_t num_different = 0;
      for (const float temperature : {0.7f, 1.0f}) {
        for (const float top_p : {0.05f, 0.5f, 0.9f, 0.999f, 1.0f}) {
          for (uint64_t step = 0; step < 25; ++step) {
            const int32_t got = cpu::sample_token(logits.data(), vocab, temperature, top_p, 11,
                                                  step, scratch.data());
            num_different += got != reference_sample(logits, temperature, top_p, 11, step);
          }
        }
      }
      CAPTURE(vocab, spread);
      CHECK(num_different == 0);
    }
  }
}
