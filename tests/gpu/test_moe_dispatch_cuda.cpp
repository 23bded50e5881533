// MoeDispatcherCuda against the CPU MoE exchange (MoeDispatcher + cpu::expert_ffn) at EP=1, against
// itself at EP=2 and EP=4 on one GPU (ranks are threads with a loopback group), and captured in a
// CUDA graph against its eager run.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "eep/kernels/expert_ffn.h"
#include "eep/worker/cpu/moe_dispatcher_cpu.h"
#include "eep/worker/cuda/moe_dispatcher_cuda.h"
#include "gpu_test_util.h"
#include "loopback_group.h"

using namespace eep;
using namespace eep::gpu_test;
using eep::kernels::cuda::bf16;
using eep::worker::moe_combine_name;
using eep::worker::MoeCombine;
using eep::worker::MoeDispatcher;
using eep::worker::MoeDispatcherCuda;
using eep::worker::MoeLayerWeightsCuda;

namespace {

struct MoeShape {
  int hidden = 0;
  int intermediate = 0;
  int num_experts = 0;
  int top_k = 0;
  int num_layers = 0;
};

std::string describe(const MoeShape& s) {
  std::ostringstream os;
  os << "hidden " << s.hidden << ", intermediate " << s.intermediate << ", " << s.num_experts
     << " experts, top-" << s.top_k << ", " << s.num_layers << " layers";
  return os.str();
}

// Round to nearest even, as __float2bfloat16 for finite values, but fast enough for the 600 M
// weights of the Qwen3-sized case.
bf16 float_to_bf16(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, sizeof(u));
  u += 0x7FFFu + ((u >> 16) & 1u);
  __nv_bfloat16_raw raw;
  raw.x = static_cast<unsigned short>(u >> 16);
  return bf16(raw);
}

float bf16_to_float(bf16 b) {
  const __nv_bfloat16_raw raw(b);
  const uint32_t u = static_cast<uint32_t>(raw.x) << 16;
  float f = 0.0f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [-scale, scale], rounded to bf16; value i depends only on (seed, i).
void fill_random_bf16(bf16* out, size_t n, uint64_t seed, float scale) {
  for (size_t i = 0; i < n; ++i) {
    const uint64_t r = splitmix64(seed * 0x100000001B3ull + i);
    const float unit = static_cast<float>(r >> 40) * (1.0f / static_cast<float>(1ull << 24));
    out[i] = float_to_bf16((2.0f * unit - 1.0f) * scale);
  }
}

// The logical experts' weights of every layer on the host, bf16: w13 [2I, H] (gate_proj rows, then
// up_proj rows), w2 [H, I] (down_proj). Scaled by 1/sqrt(fan_in) so activations stay O(1).
struct ExpertBank {
  MoeShape shape;
  std::vector<std::vector<bf16>> w13;  // [layer * num_experts + expert]
  std::vector<std::vector<bf16>> w2;

  ExpertBank(const MoeShape& s, uint64_t seed) : shape(s) {
    const size_t n = static_cast<size_t>(s.num_layers) * s.num_experts;
    w13.resize(n);
    w2.resize(n);
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t e = next++; e < n; e = next++) {
        w13[e].resize(2 * static_cast<size_t>(s.intermediate) * s.hidden);
        w2[e].resize(static_cast<size_t>(s.hidden) * s.intermediate);
        fill_random_bf16(w13[e].data(), w13[e].size(), seed + 2 * e,
                         std::sqrt(3.0f / static_cast<float>(s.hidden)));
        fill_random_bf16(w2[e].data(), w2[e].size(), seed + 2 * e + 1,
                         std::sqrt(3.0f / static_cast<float>(s.intermediate)));
      }
    };
    std::vector<std::thread> threads;
    const unsigned num_threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    for (unsigned i = 0; i < num_threads; ++i) threads.emplace_back(work);
    for (auto& thread : threads) thread.join();
  }
  const std::vector<bf16>& gate_up(int layer, int expert) const {
    return w13[static_cast<size_t>(layer) * shape.num_experts + expert];
  }
  const std::vector<bf16>& down(int layer, int expert) const {
    return w2[static_cast<size_t>(layer) * shape.num_experts + expert];
  }
};

// One layer's slot weights of one rank on the device.
struct DeviceLayerWeights {
  DeviceBuffer<bf16> w13;
  DeviceBuffer<bf16> w2;
  MoeLayerWeightsCuda view() const { return {w13.data(), w2.data()}; }
};

std::vector<DeviceLayerWeights> upload_rank_weights(const ExpertBank& bank,
                                                    const Placement& placement, int rank) {
  const MoeShape& s = bank.shape;
  const size_t w13_elems = 2 * static_cast<size_t>(s.intermediate) * s.hidden;
  const size_t w2_elems = static_cast<size_t>(s.hidden) * s.intermediate;
  std::vector<DeviceLayerWeights> layers;
  for (int layer = 0; layer < s.num_layers; ++layer) {
    DeviceLayerWeights w{DeviceBuffer<bf16>(placement.slots_per_rank * w13_elems),
                         DeviceBuffer<bf16>(placement.slots_per_rank * w2_elems)};
    for (int local = 0; local < placement.slots_per_rank; ++local) {
      const int logical = placement.logical_of(layer, rank * placement.slots_per_rank + local);
      EEP_REQUIRE_CUDA(cudaMemcpy(w.w13.data() + local * w13_elems,
                                  bank.gate_up(layer, logical).data(), w13_elems * sizeof(bf16),
                                  cudaMemcpyHostToDevice));
      EEP_REQUIRE_CUDA(cudaMemcpy(w.w2.data() + local * w2_elems, bank.down(layer, logical).data(),
                                  w2_elems * sizeof(bf16), cudaMemcpyHostToDevice));
    }
    layers.push_back(std::move(w));
  }
  return layers;
}

// Every logical expert once, the surplus slots random replicas, all shuffled: replicas of one
// expert sit on several ranks and not in expert order.
Placement random_placement(int num_layers, int num_experts, int num_ranks, int slots_per_rank,
                           uint64_t seed) {
  std::mt19937_64 rng(seed);
  Placement p;
  p.num_layers = num_layers;
  p.num_logical_experts = num_experts;
  p.num_ranks = num_ranks;
  p.slots_per_rank = slots_per_rank;
  for (int layer = 0; layer < num_layers; ++layer) {
    std::vector<int> slots(p.num_slots());
    for (int s = 0; s < p.num_slots(); ++s) {
      slots[s] = s < num_experts ? s : static_cast<int>(rng() % num_experts);
    }
    std::shuffle(slots.begin(), slots.end(), rng);
    p.phy2log.push_back(slots);
  }
  REQUIRE(p.validate().is_ok());
  return p;
}

// One rank's tokens: bf16 hidden rows (with their float values), router choices, the fp32
// residual rows x is accumulated into.
struct TokenBatch {
  int64_t num_tokens = 0;
  std::vector<bf16> h;
  std::vector<float> h_float;
  std::vector<int32_t> ids;  // [num_tokens, top_k], distinct experts per token, -1 = padding
  std::vector<float> weights;
  std::vector<float> x0;
};

// with_padding: every 7th token is padding (all ids -1), every 5th has one id -1.
TokenBatch make_batch(const MoeShape& s, int64_t num_tokens, uint64_t seed, bool with_padding) {
  TokenBatch b;
  b.num_tokens = num_tokens;
  b.h.resize(num_tokens * s.hidden);
  fill_random_bf16(b.h.data(), b.h.size(), seed, 1.0f);
  for (bf16 v : b.h) b.h_float.push_back(bf16_to_float(v));
  std::mt19937_64 rng(seed + 1);
  std::uniform_real_distribution<float> weight(0.05f, 1.0f);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<int32_t> experts(s.num_experts);
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::iota(experts.begin(), experts.end(), 0);
    std::shuffle(experts.begin(), experts.end(), rng);
    for (int j = 0; j < s.top_k; ++j) {
      int32_t id = experts[j];
      if (with_padding && (t % 7 == 3 || (t % 5 == 1 && j == 1))) id = -1;
      b.ids.push_back(id);
      b.weights.push_back(weight(rng));
    }
  }
  b.x0.resize(num_tokens * s.hidden);
  for (float& v : b.x0) v = value(rng);
  return b;
}

TokenBatch concatenate(const std::vector<TokenBatch>& batches) {
  TokenBatch all;
  for (const TokenBatch& b : batches) {
    all.num_tokens += b.num_tokens;
    all.h.insert(all.h.end(), b.h.begin(), b.h.end());
    all.h_float.insert(all.h_float.end(), b.h_float.begin(), b.h_float.end());
    all.ids.insert(all.ids.end(), b.ids.begin(), b.ids.end());
    all.weights.insert(all.weights.end(), b.weights.begin(), b.weights.end());
    all.x0.insert(all.x0.end(), b.x0.begin(), b.x0.end());
  }
  return all;
}

constexpr float kSentinel = 12345.0f;  // x rows beyond num_tokens, which must stay untouched

// A batch on the device; x has x_rows >= num_tokens rows, those beyond num_tokens kSentinel.
struct DeviceBatch {
  DeviceBuffer<bf16> h;
  DeviceBuffer<int32_t> ids;
  DeviceBuffer<float> weights;
  DeviceBuffer<float> x;
  int64_t num_tokens = 0;

  DeviceBatch(const TokenBatch& b, int64_t x_rows, int hidden)
      : h(b.h.size()), ids(b.ids.size()), weights(b.weights.size()), x(x_rows * hidden) {
    load(b);
  }
  // Same sizes as constructed with.
  void load(const TokenBatch& b) {
    num_tokens = b.num_tokens;
    if (!b.h.empty()) {
      h.upload(b.h);
      ids.upload(b.ids);
      weights.upload(b.weights);
    }
    std::vector<float> x_host(x.size(), kSentinel);
    std::copy(b.x0.begin(), b.x0.end(), x_host.begin());
    if (!x_host.empty()) x.upload(x_host);
    EEP_REQUIRE_CUDA(cudaDeviceSynchronize());
  }
  Status forward(MoeDispatcherCuda& moe, int layer, int64_t capacity,
                 const MoeLayerWeightsCuda& w) {
    return moe.forward(layer, h.data(), ids.data(), weights.data(), num_tokens, capacity, w,
                       x.data());
  }
};

// x after the forward: its first num_tokens rows; checks that the rows beyond are untouched.
std::vector<float> download_x(const DeviceBatch& d, int hidden) {
  std::vector<float> all = d.x.download();
  for (size_t i = d.num_tokens * hidden; i < all.size(); ++i) {
    INFO("x element " << i << " beyond the " << d.num_tokens << " tokens was written");
    REQUIRE(all[i] == kSentinel);
  }
  all.resize(d.num_tokens * hidden);
  return all;
}

std::vector<float> minus(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  std::vector<float> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

// Where the worst element of a comparison is, for the failure message.
std::string worst_element(const std::vector<float>& actual, const std::vector<float>& expected,
                          int hidden) {
  if (actual.size() != expected.size()) return "sizes differ";
  size_t worst = 0;
  double worst_diff = -1.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double diff = std::isfinite(actual[i])
                            ? std::fabs(static_cast<double>(actual[i]) - expected[i])
                            : INFINITY;
    if (diff > worst_diff) {
      worst_diff = diff;
      worst = i;
    }
  }
  std::ostringstream os;
  if (actual.empty()) return "empty";
  os << "worst at token " << worst / hidden << " column " << worst % hidden << ": got "
     << actual[worst] << ", expected " << expected[worst];
  return os.str();
}

// The counts ReplicaTable::choose gives for one rank's batch in one layer: [slot].
std::vector<int64_t> expected_slot_counts(const Placement& placement, int layer, int rank,
                                          const TokenBatch& b, int top_k) {
  const ReplicaTable replicas(placement);
  std::vector<int64_t> counts(placement.num_slots(), 0);
  for (int64_t e = 0; e < b.num_tokens * top_k; ++e) {
    if (b.ids[e] < 0) continue;
    ++counts[replicas.choose(layer, b.ids[e], rank, static_cast<uint64_t>(e))];
  }
  return counts;
}

// The CPU exchange at EP=1 on the same bf16 values: out[t] = sum_j w_j * expert_j(h[t]). Padding
// ids (which the CPU path does not accept) become expert 0 with weight 0: they add exact zeros.
std::vector<float> cpu_moe(const ExpertBank& bank, const Placement& placement, int layer,
                           const TokenBatch& b) {
  const MoeShape& s = bank.shape;
  std::vector<int32_t> ids = b.ids;
  std::vector<float> weights = b.weights;
  for (size_t e = 0; e < ids.size(); ++e) {
    if (ids[e] < 0) {
      ids[e] = 0;
      weights[e] = 0.0f;
    }
  }
  MoeDispatcher moe(placement, 0, nullptr);
  std::vector<float> gate_up, down, scratch;
  worker::ExpertFn compute = [&](int layer_idx, int local, const float* in, int64_t n, float* out) {
    const int logical = placement.logical_of(layer_idx, local);
    const std::vector<bf16>& w13 = bank.gate_up(layer_idx, logical);
    const std::vector<bf16>& w2 = bank.down(layer_idx, logical);
    gate_up.resize(w13.size());
    down.resize(w2.size());
    for (size_t i = 0; i < w13.size(); ++i) gate_up[i] = bf16_to_float(w13[i]);
    for (size_t i = 0; i < w2.size(); ++i) down[i] = bf16_to_float(w2[i]);
    scratch.resize(kernels::cpu::expert_ffn_scratch_floats(n, s.hidden, s.intermediate));
    const float* gate = gate_up.data();
    const float* up = gate_up.data() + static_cast<size_t>(s.intermediate) * s.hidden;
    kernels::cpu::expert_ffn(in, gate, up, down.data(), n, s.hidden, s.intermediate, scratch.data(),
                             out);
  };
  std::vector<float> out(b.num_tokens * s.hidden);
  Status status = moe.forward(layer, b.h_float.data(), ids.data(), weights.data(), b.num_tokens,
                              s.top_k, s.hidden, compute, out.data());
  INFO(status.to_string());
  REQUIRE(status.is_ok());
  return out;
}

struct Stream {
  cudaStream_t stream = nullptr;
  // Blocking (not cudaStreamNonBlocking): it waits for the tests' cudaMemcpy/cudaMemset uploads.
  Stream() { EEP_REQUIRE_CUDA(cudaStreamCreate(&stream)); }
  ~Stream() { cudaStreamDestroy(stream); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

std::unique_ptr<MoeDispatcherCuda> make_dispatcher(const Placement& placement, int rank,
                                                   worker::ProcessGroup* group,
                                                   int64_t max_capacity, const MoeShape& s,
                                                   cudaStream_t stream,
                                                   MoeCombine combine = MoeCombine::kExact) {
  auto created = MoeDispatcherCuda::create(placement, rank, group, max_capacity, s.hidden,
                                           s.intermediate, s.top_k, stream, combine);
  INFO(created.status().to_string());
  REQUIRE(created.is_ok());
  CHECK(created.value()->device_bytes() ==
        MoeDispatcherCuda::required_device_bytes(placement, group != nullptr, max_capacity,
                                                 s.hidden, s.intermediate, s.top_k, combine));
  return std::move(created).value();
}

// The first element whose bits differ, -1 when none does.
int64_t first_difference(const std::vector<float>& x, const std::vector<float>& y) {
  REQUIRE(x.size() == y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::memcmp(&x[i], &y[i], sizeof(float)) != 0) return static_cast<int64_t>(i);
  }
  return -1;
}

// EP=1 on the GPU against the CPU exchange, each layer, each token count (capacity = count +
// extra_capacity), and the slot counts against ReplicaTable::choose.
//
// Tolerance: both sides see the same bf16 inputs and weights; the GPU rounds the gate/up product,
// the activation and the expert output to bf16 (relative 2^-9 each) where the CPU keeps fp32.
// silu' is at most 1.1, so the activation is off by about 3 such roundings, the down
// projection's sum of independent errors stays at that relative size, and the output rounding
// adds one more: a few 2^-9 (~0.6%) of the output's scale, under kBf16Tolerance (2%). The
// comparison is on x_after - x_before (the MoE contribution), not on x, whose O(1) start values
// would hide errors.
void check_against_cpu(const MoeShape& s, int slots_per_rank,
                       const std::vector<int64_t>& token_counts, int64_t extra_capacity,
                       uint64_t seed) {
  INFO(describe(s) << ", " << slots_per_rank << " slots");
  const Placement placement =
      random_placement(s.num_layers, s.num_experts, 1, slots_per_rank, seed);
  const ExpertBank bank(s, seed + 100);
  Stream stream;
  const std::vector<DeviceLayerWeights> weights = upload_rank_weights(bank, placement, 0);
  const int64_t max_capacity =
      *std::max_element(token_counts.begin(), token_counts.end()) + extra_capacity;
  auto moe = make_dispatcher(placement, 0, nullptr, max_capacity, s, stream.stream);

  for (int64_t num_tokens : token_counts) {
    for (int layer = 0; layer < s.num_layers; ++layer) {
      const int64_t capacity = num_tokens + extra_capacity;
      INFO("layer " << layer << ", " << num_tokens << " tokens, capacity " << capacity);
      const TokenBatch batch =
          make_batch(s, num_tokens, seed + 1000 * num_tokens + layer, /*with_padding=*/true);
      DeviceBatch device(batch, capacity, s.hidden);
      const Status status = device.forward(*moe, layer, capacity, weights[layer].view());
      INFO(status.to_string());
      REQUIRE(status.is_ok());
      const std::vector<float> x = download_x(device, s.hidden);
      const std::vector<float> expected = cpu_moe(bank, placement, layer, batch);
      const std::vector<float> delta = minus(x, batch.x0);
      INFO(worst_element(delta, expected, s.hidden));
      CHECK(max_rel_error(delta, expected) <= kBf16Tolerance);

      const auto counts = moe->take_slot_counts();
      REQUIRE(counts.size() == static_cast<size_t>(s.num_layers));
      for (int l = 0; l < s.num_layers; ++l) {
        INFO("slot counts of layer " << l);
        CHECK(counts[l] == (l == layer ? expected_slot_counts(placement, layer, 0, batch, s.top_k)
                                       : std::vector<int64_t>(placement.num_slots(), 0)));
      }
    }
  }
}

}  // namespace

TEST_CASE("MoE dispatch on the GPU at EP=1 equals the CPU exchange", "[gpu][moe]") {
  const MoeShape small{128, 64, 16, 4, 2};
  // 600 tokens: more than one tile of the row-assignment scan (512).
  check_against_cpu(small, 20, {0, 1, 7, 33, 600}, 5, 11);
  // More slots than one tile of the slot-offset scan (256), mostly redundant replicas.
  check_against_cpu(small, 300, {1, 40}, 3, 12);
  // Qwen3-30B-A3B's expert shape, with 8 redundant slots.
  const MoeShape qwen3{2048, 768, 128, 8, 1};
  check_against_cpu(qwen3, 136, {64}, 16, 13);
}

namespace {

struct RankState {
  Stream stream;  // first: destroyed after the dispatcher, which synchronises it
  std::unique_ptr<gpu_test::LoopbackGroup> group;
  std::vector<DeviceLayerWeights> weights;
  std::unique_ptr<MoeDispatcherCuda> moe;
  TokenBatch batch;
  std::vector<std::unique_ptr<DeviceBatch>> layers;  // the batch per layer, x reset for each
  std::string failure;
};

// EP=N ranks as threads on one GPU: each rank's x per layer equals the EP=1 GPU result for its
// tokens, bit for bit with the exact combine (the expert rows are bitwise the same at any EP size
// and the sum runs in router order), up to fp32 re-association with rank partials (the sum is
// taken per rank first); the slot counts are ReplicaTable::choose's and add up to the EP=1
// counts per logical expert. At EP=1 both combines give the same bits.
void check_expert_parallel(int num_ranks, int slots_per_rank,
                           const std::vector<int64_t>& tokens_per_rank, uint64_t seed,
                           MoeCombine combine) {
  const MoeShape s{128, 64, 16, 4, 2};
  INFO("EP=" << num_ranks << ", " << slots_per_rank << " slots per rank, "
             << moe_combine_name(combine) << " combine");
  REQUIRE(static_cast<int>(tokens_per_rank.size()) == num_ranks);
  const ExpertBank bank(s, seed);
  const int64_t capacity = *std::max_element(tokens_per_rank.begin(), tokens_per_rank.end());

  std::vector<TokenBatch> batches;
  for (int r = 0; r < num_ranks; ++r) {
    batches.push_back(make_batch(s, tokens_per_rank[r], seed + 10 * r + 1, r % 2 == 0));
  }
  const TokenBatch all = concatenate(batches);

  // EP=1 on the GPU: the reference, per layer.
  const Placement one =
      random_placement(s.num_layers, s.num_experts, 1, s.num_experts + 2, seed + 2);
  std::vector<std::vector<float>> expected_x(s.num_layers);
  std::vector<std::vector<float>> expected_delta(s.num_layers);
  std::vector<std::vector<int64_t>> expected_logical_counts(s.num_layers,
                                                            std::vector<int64_t>(s.num_experts));
  {
    Stream stream;
    const std::vector<DeviceLayerWeights> weights = upload_rank_weights(bank, one, 0);
    const int64_t capacity_one = std::max<int64_t>(all.num_tokens, 1);
    auto moe = make_dispatcher(one, 0, nullptr, capacity_one, s, stream.stream);
    auto partials =
        make_dispatcher(one, 0, nullptr, capacity_one, s, stream.stream, MoeCombine::kRankPartials);
    for (int layer = 0; layer < s.num_layers; ++layer) {
      DeviceBatch device(all, all.num_tokens, s.hidden);
      const Status status = device.forward(*moe, layer, all.num_tokens, weights[layer].view());
      INFO(status.to_string());
      REQUIRE(status.is_ok());
      expected_x[layer] = download_x(device, s.hidden);
      expected_delta[layer] = minus(expected_x[layer], all.x0);
      DeviceBatch again(all, all.num_tokens, s.hidden);
      REQUIRE(again.forward(*partials, layer, all.num_tokens, weights[layer].view()).is_ok());
      INFO("layer " << layer << ": rank partials at EP=1");
      CHECK(first_difference(download_x(again, s.hidden), expected_x[layer]) == -1);
    }
    partials->take_slot_counts();
    const auto counts = moe->take_slot_counts();
    for (int layer = 0; layer < s.num_layers; ++layer) {
      for (int slot = 0; slot < one.num_slots(); ++slot) {
        expected_logical_counts[layer][one.logical_of(layer, slot)] += counts[layer][slot];
      }
    }
  }

  // EP=N: everything allocated here, the threads only run the forwards.
  const Placement placement =
      random_placement(s.num_layers, s.num_experts, num_ranks, slots_per_rank, seed + 3);
  auto hub = std::make_shared<gpu_test::LoopbackHub>(num_ranks);
  std::vector<std::unique_ptr<RankState>> ranks;
  for (int r = 0; r < num_ranks; ++r) {
    auto state = std::make_unique<RankState>();
    state->group = std::make_unique<gpu_test::LoopbackGroup>(hub, r, state->stream.stream);
    state->weights = upload_rank_weights(bank, placement, r);
    state->moe = make_dispatcher(placement, r, state->group.get(), capacity, s,
                                 state->stream.stream, combine);
    state->batch = batches[r];
    for (int layer = 0; layer < s.num_layers; ++layer) {
      state->layers.push_back(std::make_unique<DeviceBatch>(batches[r], capacity, s.hidden));
    }
    ranks.push_back(std::move(state));
  }
  std::vector<std::thread> threads;
  for (int r = 0; r < num_ranks; ++r) {
    threads.emplace_back([&, r] {
      RankState& rank = *ranks[r];
      for (int layer = 0; layer < s.num_layers; ++layer) {
        const Status status =
            rank.layers[layer]->forward(*rank.moe, layer, capacity, rank.weights[layer].view());
        if (!status.is_ok()) {
          rank.failure = "layer " + std::to_string(layer) + ": " + status.to_string();
          hub->abort();
          return;
        }
      }
      const cudaError_t err = cudaStreamSynchronize(rank.stream.stream);
      if (err != cudaSuccess) rank.failure = cudaGetErrorString(err);
    });
  }
  for (auto& thread : threads) thread.join();

  int64_t first_token = 0;
  std::vector<std::vector<int64_t>> logical_counts(s.num_layers,
                                                   std::vector<int64_t>(s.num_experts, 0));
  for (int r = 0; r < num_ranks; ++r) {
    RankState& rank = *ranks[r];
    INFO("rank " << r << " with " << rank.batch.num_tokens << " tokens, capacity " << capacity);
    INFO(rank.failure);
    REQUIRE(rank.failure.empty());
    for (int layer = 0; layer < s.num_layers; ++layer) {
      INFO("layer " << layer);
      const std::vector<float> x = download_x(*rank.layers[layer], s.hidden);
      const std::vector<float> delta = minus(x, rank.batch.x0);
      const std::vector<float> expected(
          expected_delta[layer].begin() + first_token * s.hidden,
          expected_delta[layer].begin() + (first_token + rank.batch.num_tokens) * s.hidden);
      // ~4e-3 here would mean expert rows differ in bf16 (a grouped GEMM whose row results depend
      // on the launch), not a combine problem.
      INFO(worst_element(delta, expected, s.hidden));
      CHECK(max_rel_error(delta, expected) <= 1e-5);
      if (combine == MoeCombine::kExact) {
        const std::vector<float> expected_bits(
            expected_x[layer].begin() + first_token * s.hidden,
            expected_x[layer].begin() + (first_token + rank.batch.num_tokens) * s.hidden);
        CHECK(first_difference(x, expected_bits) == -1);
      }
    }
    const auto counts = rank.moe->take_slot_counts();
    for (int layer = 0; layer < s.num_layers; ++layer) {
      INFO("slot counts of layer " << layer);
      CHECK(counts[layer] == expected_slot_counts(placement, layer, r, rank.batch, s.top_k));
      for (int slot = 0; slot < placement.num_slots(); ++slot) {
        logical_counts[layer][placement.logical_of(layer, slot)] += counts[layer][slot];
      }
    }
    first_token += rank.batch.num_tokens;
  }
  CHECK(logical_counts == expected_logical_counts);
}

}  // namespace

TEST_CASE("MoE dispatch on the GPU at EP=2 and EP=4 equals EP=1 (bit for bit when exact)",
          "[gpu][moe]") {
  for (MoeCombine combine : {MoeCombine::kExact, MoeCombine::kRankPartials}) {
    check_expert_parallel(2, 8, {31, 12}, 21, combine);        // every expert once
    check_expert_parallel(2, 10, {700, 0}, 22, combine);       // replicas; rank 1 a dummy step
    check_expert_parallel(4, 5, {5, 0, 23, 17}, 23, combine);  // replicas across ranks
    check_expert_parallel(4, 4, {1, 1, 1, 1}, 24, combine);
  }
}

TEST_CASE("MoE dispatch on the GPU replays from a CUDA graph bit for bit", "[gpu][moe]") {
  const MoeShape s{128, 64, 16, 4, 2};
  const uint64_t seed = 31;
  const Placement placement = random_placement(s.num_layers, s.num_experts, 1, 19, seed);
  const ExpertBank bank(s, seed + 1);
  Stream stream;
  const std::vector<DeviceLayerWeights> weights = upload_rank_weights(bank, placement, 0);
  const int64_t capacity = 24;
  const int64_t num_tokens = 19;
  const int layer = 1;
  auto moe = make_dispatcher(placement, 0, nullptr, capacity, s, stream.stream);
  const TokenBatch a = make_batch(s, num_tokens, seed + 2, true);
  const TokenBatch b = make_batch(s, num_tokens, seed + 3, true);
  DeviceBatch device(a, capacity, s.hidden);

  REQUIRE(device.forward(*moe, layer, capacity, weights[layer].view()).is_ok());
  const std::vector<float> eager_a = download_x(device, s.hidden);

  device.load(a);
  cudaGraph_t graph = nullptr;
  EEP_REQUIRE_CUDA(cudaStreamBeginCapture(stream.stream, cudaStreamCaptureModeRelaxed));
  const Status captured = device.forward(*moe, layer, capacity, weights[layer].view());
  EEP_REQUIRE_CUDA(cudaStreamEndCapture(stream.stream, &graph));
  INFO(captured.to_string());
  REQUIRE(captured.is_ok());
  cudaGraphExec_t exec = nullptr;
  EEP_REQUIRE_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  CHECK(download_x(device, s.hidden) == a.x0);  // capturing ran nothing

  EEP_REQUIRE_CUDA(cudaGraphLaunch(exec, stream.stream));
  const std::vector<float> graph_a = download_x(device, s.hidden);
  CHECK(first_difference(graph_a, eager_a) == -1);

  device.load(b);
  EEP_REQUIRE_CUDA(cudaGraphLaunch(exec, stream.stream));
  const std::vector<float> graph_b = download_x(device, s.hidden);
  device.load(b);
  REQUIRE(device.forward(*moe, layer, capacity, weights[layer].view()).is_ok());
  const std::vector<float> eager_b = download_x(device, s.hidden);
  CHECK(first_difference(graph_b, eager_b) == -1);
  CHECK(first_difference(graph_b, graph_a) != -1);  // the replay did read the new inputs
  const std::vector<float> expected_b = cpu_moe(bank, placement, layer, b);
  CHECK(max_rel_error(minus(eager_b, b.x0), expected_b) <= kBf16Tolerance);

  // The replays count their tokens too.
  const auto counts = moe->take_slot_counts();
  const std::vector<int64_t> counts_a = expected_slot_counts(placement, layer, 0, a, s.top_k);
  const std::vector<int64_t> counts_b = expected_slot_counts(placement, layer, 0, b, s.top_k);
  std::vector<int64_t> expected(placement.num_slots());
  for (int slot = 0; slot < placement.num_slots(); ++slot) {
    expected[slot] = 2 * counts_a[slot] + 2 * counts_b[slot];
  }
  CHECK(counts[layer] == expected);

  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}
