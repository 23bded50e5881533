// Paged attention on the GPU against kernels::cpu::paged_attention on the same bf16 values (the
// CPU in fp32): decode tokens with contexts up to thousands of positions, prefill chunks, mixed
// batches, padding tokens, block tables of shuffled block ids, GQA groups of 1 to 16 heads,
// head_dim 8 to 256; each case once with one CTA per token and kv head and once split over a
// cluster (where the launcher splits), plus a CUDA graph replay with new per-step data.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "eep/kernels/attention.h"
#include "eep/kernels/cuda/attention.h"
#include "gpu_test_util.h"
#include "kernel_check.h"

namespace eep::gpu_test {
namespace {

using kernels::cuda::bf16;

struct SeqSpec {
  int32_t context;     // positions 0..context-1 are in the cache
  int32_t num_tokens;  // the batch holds the last num_tokens of them (1: decode)
};

struct AttentionCase {
  int64_t num_heads, num_kv_heads, head_dim, block_size;
  std::vector<SeqSpec> seqs;
  int64_t num_padding;  // padding tokens, spread through the batch
  float q_range;        // q in [-q_range, q_range]: larger = peakier softmax
};

// A batch laid out as the CUDA model runner stages it, with its CPU reference.
struct AttentionBatch {
  int64_t num_tokens = 0, num_blocks = 0, max_blocks_per_seq = 0;
  std::vector<float> q, k_cache, v_cache;  // bf16-rounded values
  std::vector<int32_t> block_tables, token_seq_idx, positions;
  std::vector<float> expected;  // [num_tokens, num_heads, head_dim]; zeros for padding
};

AttentionBatch make_batch(const AttentionCase& c, uint64_t seed) {
  const int64_t H = c.num_heads, KV = c.num_kv_heads, D = c.head_dim, bs = c.block_size;
  std::mt19937_64 rng(seed);
  AttentionBatch b;
  int64_t blocks_needed = 0;
  for (const SeqSpec& s : c.seqs) {
    const int64_t n = (s.context + bs - 1) / bs;
    blocks_needed += n;
    b.max_blocks_per_seq = std::max(b.max_blocks_per_seq, n);
  }
  b.max_blocks_per_seq += 1;  // a spare, unused column
  b.num_blocks = blocks_needed + 5;
  std::vector<int32_t> block_ids(b.num_blocks);
  std::iota(block_ids.begin(), block_ids.end(), 0);
  std::shuffle(block_ids.begin(), block_ids.end(), rng);
  b.block_tables.assign(c.seqs.size() * b.max_blocks_per_seq, 0);
  int64_t next_block = 0;
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    const int64_t n = (c.seqs[s].context + bs - 1) / bs;
    for (int64_t i = 0; i < n; ++i) {
      b.block_tables[s * b.max_blocks_per_seq + i] = block_ids[next_block++];
    }
  }
  // Tokens: each sequence's new tokens in order, padding tokens at random places.
  std::vector<std::pair<int32_t, int32_t>> tokens;  // (seq, position)
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    for (int32_t i = 0; i < c.seqs[s].num_tokens; ++i) {
      tokens.emplace_back(static_cast<int32_t>(s), c.seqs[s].context - c.seqs[s].num_tokens + i);
    }
  }
  for (int64_t p = 0; p < c.num_padding; ++p) {
    std::uniform_int_distribution<size_t> where(0, tokens.size());
    tokens.insert(tokens.begin() + where(rng), {-1, 0});
  }
  b.num_tokens = static_cast<int64_t>(tokens.size());
  for (const auto& [s, pos] : tokens) {
    b.token_seq_idx.push_back(s);
    b.positions.push_back(pos);
  }
  const int64_t cache_elems = b.num_blocks * bs * KV * D;
  b.k_cache = round_bf16(random_floats(cache_elems, seed + 1));
  b.v_cache = round_bf16(random_floats(cache_elems, seed + 2));
  b.q = round_bf16(random_floats(b.num_tokens * H * D, seed + 3, -c.q_range, c.q_range));

  // CPU on the valid tokens only (it does not know padding), scattered back.
  std::vector<int64_t> valid;
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    if (b.token_seq_idx[t] >= 0) valid.push_back(t);
  }
  std::vector<float> q_valid(valid.size() * H * D), out_valid(valid.size() * H * D);
  std::vector<int32_t> seq_valid, pos_valid;
  for (size_t i = 0; i < valid.size(); ++i) {
    std::copy_n(b.q.begin() + valid[i] * H * D, H * D, q_valid.begin() + i * H * D);
    seq_valid.push_back(b.token_seq_idx[valid[i]]);
    pos_valid.push_back(b.positions[valid[i]]);
  }
  kernels::cpu::PagedAttentionArgs args;
  args.q = q_valid.data();
  args.k_cache = b.k_cache.data();
  args.v_cache = b.v_cache.data();
  args.block_tables = b.block_tables.data();
  args.token_seq_idx = seq_valid.data();
  args.positions = pos_valid.data();
  args.num_tokens = static_cast<int64_t>(valid.size());
  args.num_heads = H;
  args.num_kv_heads = KV;
  args.head_dim = D;
  args.block_size = bs;
  args.max_blocks_per_seq = b.max_blocks_per_seq;
  args.scale = 1.0f / std::sqrt(static_cast<float>(D));
  args.out = out_valid.data();
  if (!valid.empty()) kernels::cpu::paged_attention(args);
  b.expected.assign(b.num_tokens * H * D, 0.0f);
  for (size_t i = 0; i < valid.size(); ++i) {
    std::copy_n(out_valid.begin() + i * H * D, H * D, b.expected.begin() + valid[i] * H * D);
  }
  return b;
}

// Device copies of a batch and the arguments that point at them.
struct DeviceAttentionBatch {
  DeviceBuffer<bf16> q, k_cache, v_cache, out;
  DeviceBuffer<int32_t> block_tables, token_seq_idx, positions;
  kernels::cuda::PagedAttentionArgs args;

  DeviceAttentionBatch(const AttentionCase& c, const AttentionBatch& b)
      : q(to_bf16(b.q)),
        k_cache(to_bf16(b.k_cache)),
        v_cache(to_bf16(b.v_cache)),
        out(b.num_tokens * c.num_heads * c.head_dim),
        block_tables(b.block_tables),
        token_seq_idx(b.token_seq_idx),
        positions(b.positions) {
    args.q = q.data();
    args.k_cache = k_cache.data();
    args.v_cache = v_cache.data();
    args.block_tables = block_tables.data();
    args.token_seq_idx = token_seq_idx.data();
    args.positions = positions.data();
    args.num_tokens = b.num_tokens;
    args.num_heads = c.num_heads;
    args.num_kv_heads = c.num_kv_heads;
    args.head_dim = c.head_dim;
    args.block_size = c.block_size;
    args.max_blocks_per_seq = b.max_blocks_per_seq;
    args.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    args.out = out.data();
  }
};

void check_output(const AttentionCase& c, const AttentionBatch& b, const std::vector<float>& out) {
  const int64_t row = c.num_heads * c.head_dim;
  // The whole batch's scale: a token's output is an average of values, small for flat softmaxes
  // over long contexts.
  double scale = 1e-6;
  for (float e : b.expected) scale = std::max(scale, static_cast<double>(std::fabs(e)));
  // Per token, so a failure names the token (its sequence, position, and whether it pads).
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    const std::vector<float> got(out.begin() + t * row, out.begin() + (t + 1) * row);
    const std::vector<float> want(b.expected.begin() + t * row, b.expected.begin() + (t + 1) * row);
    if (b.token_seq_idx[t] < 0) {
      const bool zeros = std::all_of(got.begin(), got.end(), [](float x) { return x == 0.0f; });
      INFO("padding token " << t << " has a non-zero (or unwritten) output");
      CHECK(zeros);
      continue;
    }
    double worst = 0.0;
    int64_t worst_idx = 0;
    for (int64_t i = 0; i < row; ++i) {
      const double err = std::isfinite(got[i]) ? std::fabs(got[i] - want[i]) / scale : INFINITY;
      if (err > worst) {
        worst = err;
        worst_idx = i;
      }
    }
    if (worst > kBf16Tolerance) {
      INFO("token " << t << " (seq " << b.token_seq_idx[t] << ", position " << b.positions[t]
                    << "): worst at head " << worst_idx / c.head_dim << " dim "
                    << worst_idx % c.head_dim << ": got " << got[worst_idx] << " expected "
                    << want[worst_idx] << " (batch max |expected| " << scale << ")");
      CHECK(worst <= kBf16Tolerance);
      return;
    }
  }
}

void run_attention_case(const AttentionCase& c, uint64_t seed) {
  const AttentionBatch b = make_batch(c, seed);
  DeviceAttentionBatch d(c, b);
  for (int max_splits : {1, kernels::cuda::kPagedAttentionMaxSplits}) {
    INFO("heads " << c.num_heads << " kv heads " << c.num_kv_heads << " head_dim " << c.head_dim
                  << " block_size " << c.block_size << " sequences " << c.seqs.size() << " tokens "
                  << b.num_tokens << " padding " << c.num_padding << " max_blocks_per_seq "
                  << b.max_blocks_per_seq << " q_range " << c.q_range << " max_splits "
                  << max_splits << " seed " << seed);
    d.out.poison();
    d.args.max_splits = max_splits;
    EEP_REQUIRE_CUDA(kernels::cuda::paged_attention(d.args, nullptr));
    EEP_REQUIRE_CUDA(cudaDeviceSynchronize());
    check_output(c, b, to_float(d.out.download()));
  }
}

TEST_CASE("cuda paged_attention decode batches match the CPU", "[gpu][kernels]") {
  uint64_t seed = 500;
  // Qwen3-30B-A3B: 32 heads, 4 kv heads, head_dim 128.
  run_attention_case({32, 4, 128, 16, {{1, 1}}, 0, 1.0f}, ++seed);
  run_attention_case({32, 4, 128, 16, {{5000, 1}}, 0, 2.0f}, ++seed);  // one long sequence
  run_attention_case({32, 4, 128, 16, {{1200, 1}, {3001, 1}, {7, 1}}, 1, 3.0f}, ++seed);
  run_attention_case({32, 4, 128, 16, {{17, 1}, {16, 1}, {15, 1}, {1025, 1}}, 2, 1.0f}, ++seed);
  std::vector<SeqSpec> many;
  for (int i = 0; i < 80; ++i) many.push_back({1 + (i * 97) % 2100, 1});
  run_attention_case({32, 4, 128, 16, many, 5, 2.0f}, ++seed);  // a grid without splits
}

TEST_CASE("cuda paged_attention prefill chunks and mixed batches match the CPU", "[gpu][kernels]") {
  uint64_t seed = 600;
  // A prompt from position 0, a later chunk of a long prompt, decodes and padding together.
  run_attention_case({32, 4, 128, 16, {{37, 37}}, 0, 2.0f}, ++seed);
  run_attention_case({32, 4, 128, 16, {{1100, 64}, {2000, 1}, {37, 37}, {3, 1}}, 3, 2.0f}, ++seed);
  run_attention_case({32, 4, 128, 16, {{1300, 5}, {900, 1}, {4100, 1}}, 1, 4.0f}, ++seed);
  run_attention_case({32, 4, 128, 16, {{300, 300}}, 0, 1.0f}, ++seed);
}

TEST_CASE("cuda paged_attention on small and odd shapes matches the CPU", "[gpu][kernels]") {
  const std::vector<SeqSpec> mixed = {{1, 1}, {40, 13}, {700, 1}, {1500, 3}, {9, 9}};
  struct Shape {
    int64_t num_heads, num_kv_heads, head_dim, block_size;
  };
  const Shape shapes[] = {
      {4, 2, 16, 4},    // tiny test model
      {8, 2, 32, 16},   // tiny test model
      {6, 2, 24, 5},    // GQA group of 3, head_dim 24 (3 lanes of a 4-lane group busy)
      {16, 1, 64, 8},   // group of 16: two CTAs of 8 heads per kv head
      {12, 1, 40, 7},   // group of 12: 8 + 4 heads
      {2, 2, 256, 16},  // no GQA, the largest head_dim
      {4, 4, 8, 3},     // head_dim 8: one lane per key
      {10, 2, 96, 32},  // group of 5
  };
  uint64_t seed = 700;
  for (const Shape& s : shapes) {
    run_attention_case({s.num_heads, s.num_kv_heads, s.head_dim, s.block_size, mixed, 2, 2.0f},
                       ++seed);
    run_attention_case(
        {s.num_heads, s.num_kv_heads, s.head_dim, s.block_size, {{2500, 1}}, 0, 3.0f}, ++seed);
  }
}

TEST_CASE("cuda paged_attention padding-only batch writes zeros", "[gpu][kernels]") {
  // One sequence with no token in the batch, so the block table is not empty.
  run_attention_case({32, 4, 128, 16, {{5, 0}}, 4, 1.0f}, 800);
}

TEST_CASE("cuda paged_attention replays in a CUDA graph with new per-step data", "[gpu][kernels]") {
  // Capture with one batch's device arrays, then overwrite them with another batch of the same
  // host shape (num_tokens, heads, max_blocks_per_seq) and replay.
  const AttentionCase first = {32, 4, 128, 16, {{2000, 1}, {10, 1}}, 1, 2.0f};
  const AttentionCase second = {32, 4, 128, 16, {{1990, 1}, {16, 1}}, 1, 2.0f};
  AttentionBatch b1 = make_batch(first, 900);
  AttentionBatch b2 = make_batch(second, 901);
  REQUIRE(b1.num_tokens == b2.num_tokens);
  REQUIRE(b1.max_blocks_per_seq == b2.max_blocks_per_seq);
  REQUIRE(b1.num_blocks == b2.num_blocks);
  DeviceAttentionBatch d(first, b1);
  cudaStream_t stream;
  EEP_REQUIRE_CUDA(cudaStreamCreate(&stream));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  EEP_REQUIRE_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const cudaError_t launched = kernels::cuda::paged_attention(d.args, stream);
  EEP_REQUIRE_CUDA(cudaStreamEndCapture(stream, &graph));
  EEP_REQUIRE_CUDA(launched);
  EEP_REQUIRE_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (const auto& [c, b] : {std::pair{&first, &b1}, std::pair{&second, &b2}}) {
    d.q.upload(to_bf16(b->q));
    d.k_cache.upload(to_bf16(b->k_cache));
    d.v_cache.upload(to_bf16(b->v_cache));
    d.block_tables.upload(b->block_tables);
    d.token_seq_idx.upload(b->token_seq_idx);
    d.positions.upload(b->positions);
    d.out.poison();
    EEP_REQUIRE_CUDA(cudaGraphLaunch(exec, stream));
    EEP_REQUIRE_CUDA(cudaStreamSynchronize(stream));
    INFO("graph replay of batch with first context " << c->seqs[0].context);
    check_output(*c, *b, to_float(d.out.download()));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace eep::gpu_test
