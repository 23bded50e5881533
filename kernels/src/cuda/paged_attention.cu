#include <cooperative_groups.h>

#include <algorithm>

#include "eep/kernels/cuda/attention.h"

namespace eep::kernels::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHeadDim = 256;
// Keys a lane group loads before it computes: K and V rows of kUnroll keys in flight per lane.
constexpr int kUnroll = 2;
// Splitting a token's positions over several CTAs pays off only for long contexts and grids
// that leave SMs idle (two CTAs per SM of an H100).
constexpr int64_t kMinKeysPerSplit = 256;
constexpr int64_t kTargetCtas = 264;

// A bf16 is the upper half of a float: 8 bf16 (one 16-byte load) -> 8 floats, exactly.
__device__ __forceinline__ void bf16x8_to_float(const uint4& raw, float (&f)[8]) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(words[i] << 16);
    f[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}

// Grid (num_tokens, num_kv_heads * num_head_chunks, num_splits); cluster (1, 1, num_splits).
// A CTA attends with the query heads [head0, head0 + num_cta_heads) of one kv head (a GQA group
// or a chunk of kHeads of it), so each K/V row it loads serves all of them. Layout of a warp:
// lane groups of kT lanes, a group on one key at a time, lane `chunk` of the group on elements
// [8 * chunk, 8 * chunk + 8) of the head (kT = head_dim / 8 rounded up to a power of two; lanes
// past head_dim / 8 hold zeros). The warps stride over the CTA's positions; each lane keeps an
// online softmax (running max m, sum l, weighted values acc) per query head, in the base-2
// exponent domain (scores pre-multiplied by log2(e)). Merges: the lane groups of a warp by
// shuffles, the warps of the CTA in shared memory, the CTAs of a cluster (split positions)
// through distributed shared memory by cluster rank 0.
template <int kT, int kHeads>
__global__ void __launch_bounds__(kThreads)
    paged_attention_kernel(const PagedAttentionArgs a, const int num_head_chunks,
                           const float scale_log2) {
  constexpr int kKeysPerStep = 32 / kT;
  constexpr int kKeysPerWarpIter = kKeysPerStep * kUnroll;
  constexpr float kNegInf = -INFINITY;
  __shared__ float warp_max[kWarps][kHeads];
  __shared__ float cta_max[kHeads];
  __shared__ float cta_sum[kHeads];
  __shared__ __align__(16) float cta_acc[kHeads * kMaxHeadDim];

  const int64_t token = blockIdx.x;
  const int kv_head = static_cast<int>(blockIdx.y) / num_head_chunks;
  const int head_chunk = static_cast<int>(blockIdx.y) % num_head_chunks;
  const int split = static_cast<int>(blockIdx.z);
  const int num_splits = static_cast<int>(gridDim.z);
  const int head_dim = static_cast<int>(a.head_dim);
  const int group = static_cast<int>(a.num_heads / a.num_kv_heads);
  const int head0 = kv_head * group + head_chunk * kHeads;
  const int num_cta_heads = min(kHeads, group - head_chunk * kHeads);
  bf16* out = a.out + (token * a.num_heads + head0) * head_dim;

  const int seq = a.token_seq_idx[token];
  // Positions beyond the block table would read outside the sequence: clamp (the CPU asserts).
  const int64_t max_keys = a.max_blocks_per_seq * a.block_size;
  const int num_keys =
      seq < 0 ? 0 : static_cast<int>(min(static_cast<int64_t>(a.positions[token]) + 1, max_keys));
  if (num_keys <= 0) {
    // Padding. Every CTA of a cluster has the same token, so all of them leave here together.
    if (split == 0) {
      for (int i = threadIdx.x; i < num_cta_heads * head_dim; i += kThreads) {
        out[i] = __float2bfloat16(0.0f);
      }
    }
    return;
  }
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int block_size = static_cast<int>(a.block_size);
  const int keys_per_split = (num_keys + num_splits - 1) / num_splits;
  const int key_begin = split * keys_per_split;
  const int key_end = min(num_keys, key_begin + keys_per_split);

  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int sub = lane / kT;
  const int chunk = lane % kT;
  const bool active = chunk < head_dim / 8;
  const int64_t slot_stride = a.num_kv_heads * head_dim;
  const bf16* k_base = a.k_cache + kv_head * head_dim + chunk * 8;
  const bf16* v_base = a.v_cache + kv_head * head_dim + chunk * 8;

  float q[kHeads][8];
#pragma unroll
  for (int j = 0; j < kHeads; ++j) {
    uint4 raw = make_uint4(0, 0, 0, 0);
    if (j < num_cta_heads && active) {
      raw = __ldg(reinterpret_cast<const uint4*>(
          a.q + (token * a.num_heads + head0 + j) * head_dim + chunk * 8));
    }
    bf16x8_to_float(raw, q[j]);
  }
  float m[kHeads], l[kHeads], acc[kHeads][8];
#pragma unroll
  for (int j = 0; j < kHeads; ++j) {
    m[j] = kNegInf;
    l[j] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[j][e] = 0.0f;
  }

  for (int base = key_begin + warp * kKeysPerWarpIter; base < key_end;
       base += kWarps * kKeysPerWarpIter) {
    uint4 k_raw[kUnroll], v_raw[kUnroll];
    bool valid[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int key = base + u * kKeysPerStep + sub;
      valid[u] = key < key_end;
      k_raw[u] = v_raw[u] = make_uint4(0, 0, 0, 0);
      if (valid[u] && active) {
        const int64_t slot =
            static_cast<int64_t>(table[key / block_size]) * block_size + key % block_size;
        k_raw[u] = __ldg(reinterpret_cast<const uint4*>(k_base + slot * slot_stride));
        v_raw[u] = __ldg(reinterpret_cast<const uint4*>(v_base + slot * slot_stride));
      }
    }
    float s[kUnroll][kHeads];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float k[8];
      bf16x8_to_float(k_raw[u], k);
#pragma unroll
      for (int j = 0; j < kHeads; ++j) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) dot += q[j][e] * k[e];
#pragma unroll
        for (int offset = kT / 2; offset > 0; offset /= 2) {
          dot += __shfl_xor_sync(0xffffffffu, dot, offset);
        }
        s[u][j] = valid[u] ? dot * scale_log2 : kNegInf;
      }
    }
    float v[kUnroll][8];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) bf16x8_to_float(v_raw[u], v[u]);
#pragma unroll
    for (int j = 0; j < kHeads; ++j) {
      float tile_max = s[0][j];
#pragma unroll
      for (int u = 1; u < kUnroll; ++u) tile_max = fmaxf(tile_max, s[u][j]);
      if (tile_max > m[j]) {
        const float correction = exp2f(m[j] - tile_max);  // 0 while m is -inf
        l[j] *= correction;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j][e] *= correction;
        m[j] = tile_max;
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (!valid[u]) continue;
        const float p = exp2f(s[u][j] - m[j]);
        l[j] += p;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j][e] += p * v[u][e];
      }
    }
  }

  // Merge the lane groups of the warp (lanes that differ in the key bits of the lane index).
#pragma unroll
  for (int offset = kT; offset < 32; offset *= 2) {
#pragma unroll
    for (int j = 0; j < kHeads; ++j) {
      const float other_m = __shfl_xor_sync(0xffffffffu, m[j], offset);
      const float other_l = __shfl_xor_sync(0xffffffffu, l[j], offset);
      const float new_m = fmaxf(m[j], other_m);
      const float mine = m[j] == kNegInf ? 0.0f : exp2f(m[j] - new_m);
      const float theirs = other_m == kNegInf ? 0.0f : exp2f(other_m - new_m);
      l[j] = l[j] * mine + other_l * theirs;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float other_acc = __shfl_xor_sync(0xffffffffu, acc[j][e], offset);
        acc[j][e] = acc[j][e] * mine + other_acc * theirs;
      }
      m[j] = new_m;
    }
  }

  // Merge the warps: rescale every warp to the CTA's maximum, then add the warps up in warp
  // order (deterministic).
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < kHeads; ++j) warp_max[warp][j] = m[j];
  }
  for (int i = threadIdx.x; i < kHeads * head_dim; i += kThreads) cta_acc[i] = 0.0f;
  if (threadIdx.x < kHeads) cta_sum[threadIdx.x] = 0.0f;
  __syncthreads();
  float factor[kHeads];
#pragma unroll
  for (int j = 0; j < kHeads; ++j) {
    float cta_m = kNegInf;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) cta_m = fmaxf(cta_m, warp_max[w][j]);
    factor[j] = m[j] == kNegInf ? 0.0f : exp2f(m[j] - cta_m);
    if (threadIdx.x == 0) cta_max[j] = cta_m;
  }
  for (int w = 0; w < kWarps; ++w) {
    if (warp == w) {
      if (sub == 0 && active) {
#pragma unroll
        for (int j = 0; j < kHeads; ++j) {
          if (j >= num_cta_heads) continue;
          float* dst = cta_acc + j * head_dim + chunk * 8;
#pragma unroll
          for (int e = 0; e < 8; ++e) dst[e] += acc[j][e] * factor[j];
        }
      }
      if (lane == 0) {
#pragma unroll
        for (int j = 0; j < kHeads; ++j) cta_sum[j] += l[j] * factor[j];
      }
    }
    __syncthreads();
  }

  if (num_splits == 1) {
    for (int i = threadIdx.x; i < num_cta_heads * head_dim; i += kThreads) {
      out[i] = __float2bfloat16(cta_acc[i] / cta_sum[i / head_dim]);
    }
    return;
  }
  // Merge the CTAs of the cluster. The second sync keeps every CTA's shared memory alive until
  // rank 0 has read it.
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  if (cluster.block_rank() == 0) {
    for (int i = threadIdx.x; i < num_cta_heads * head_dim; i += kThreads) {
      const int j = i / head_dim;
      float global_max = kNegInf;
      for (int r = 0; r < num_splits; ++r) {
        global_max = fmaxf(global_max, *cluster.map_shared_rank(&cta_max[j], r));
      }
      float sum = 0.0f;
      float value = 0.0f;
      for (int r = 0; r < num_splits; ++r) {
        const float rank_max = *cluster.map_shared_rank(&cta_max[j], r);
        if (rank_max == kNegInf) continue;  // a split without positions
        const float f = exp2f(rank_max - global_max);
        sum += *cluster.map_shared_rank(&cta_sum[j], r) * f;
        value += *cluster.map_shared_rank(&cta_acc[i], r) * f;
      }
      out[i] = __float2bfloat16(value / sum);
    }
  }
  cluster.sync();
}

template <int kT, int kHeads>
cudaError_t launch(const PagedAttentionArgs& a, int num_splits, cudaStream_t stream) {
  const int group = static_cast<int>(a.num_heads / a.num_kv_heads);
  const int num_head_chunks = (group + kHeads - 1) / kHeads;
  const float scale_log2 = a.scale * 1.4426950408889634f;
  const dim3 grid(static_cast<unsigned>(a.num_tokens),
                  static_cast<unsigned>(a.num_kv_heads * num_head_chunks),
                  static_cast<unsigned>(num_splits));
  if (num_splits == 1) {
    paged_attention_kernel<kT, kHeads>
        <<<grid, kThreads, 0, stream>>>(a, num_head_chunks, scale_log2);
    return cudaGetLastError();
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  cudaLaunchAttribute attribute;
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = 1;
  attribute.val.clusterDim.y = 1;
  attribute.val.clusterDim.z = static_cast<unsigned>(num_splits);
  config.attrs = &attribute;
  config.numAttrs = 1;
  const cudaError_t err = cudaLaunchKernelEx(&config, paged_attention_kernel<kT, kHeads>, a,
                                             num_head_chunks, scale_log2);
  return err != cudaSuccess ? err : cudaGetLastError();
}

template <int kT>
cudaError_t launch_heads(const PagedAttentionArgs& a, int heads_per_cta, int num_splits,
                         cudaStream_t stream) {
  switch (heads_per_cta) {
    case 1:
      return launch<kT, 1>(a, num_splits, stream);
    case 2:
      return launch<kT, 2>(a, num_splits, stream);
    case 4:
      return launch<kT, 4>(a, num_splits, stream);
    default:
      return launch<kT, 8>(a, num_splits, stream);
  }
}

int next_power_of_two(int64_t n) {
  int p = 1;
  while (p < n) p *= 2;
  return p;
}

}  // namespace

cudaError_t paged_attention(const PagedAttentionArgs& args, cudaStream_t stream) {
  if (args.num_tokens < 0 || args.num_tokens > 0x7fffffff || args.num_kv_heads <= 0 ||
      args.num_heads <= 0 || args.num_heads % args.num_kv_heads != 0 || args.head_dim <= 0 ||
      args.head_dim % 8 != 0 || args.head_dim > kMaxHeadDim || args.block_size <= 0 ||
      args.max_blocks_per_seq <= 0 || args.max_blocks_per_seq * args.block_size > 0x7fffffff ||
      args.max_splits < 1) {
    return cudaErrorInvalidValue;
  }
  if (args.num_tokens == 0) return cudaSuccess;
  const int64_t group = args.num_heads / args.num_kv_heads;
  const int heads_per_cta = group >= 8 ? 8 : next_power_of_two(group);
  const int64_t num_head_chunks = (group + heads_per_cta - 1) / heads_per_cta;
  if (args.num_kv_heads * num_head_chunks > 65535) return cudaErrorInvalidValue;

  // Split positions over a cluster only where the grid would leave SMs idle and there are
  // positions to share.
  const int64_t num_ctas = args.num_tokens * args.num_kv_heads * num_head_chunks;
  int64_t num_splits = 1;
  if (num_ctas < kTargetCtas) {
    const int64_t max_keys = args.max_blocks_per_seq * args.block_size;
    num_splits = std::min<int64_t>({(max_keys + kMinKeysPerSplit - 1) / kMinKeysPerSplit,
                                    (kTargetCtas + num_ctas - 1) / num_ctas,
                                    std::min(args.max_splits, kPagedAttentionMaxSplits)});
    num_splits = std::max<int64_t>(num_splits, 1);
  }
  const int splits = static_cast<int>(num_splits);
  switch (next_power_of_two(args.head_dim / 8)) {
    case 1:
      return launch_heads<1>(args, heads_per_cta, splits, stream);
    case 2:
      return launch_heads<2>(args, heads_per_cta, splits, stream);
    case 4:
      return launch_heads<4>(args, heads_per_cta, splits, stream);
    case 8:
      return launch_heads<8>(args, heads_per_cta, splits, stream);
    case 16:
      return launch_heads<16>(args, heads_per_cta, splits, stream);
    default:
      return launch_heads<32>(args, heads_per_cta, splits, stream);
  }
}

}  // namespace eep::kernels::cuda
