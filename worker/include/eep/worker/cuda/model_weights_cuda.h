// The weights one rank holds on its GPU (the CUDA backend), in bf16: every non-expert weight and,
// per layer, the experts of this rank's physical slots of the placement, in the layouts the
// kernels read: q/k/v fused into one [q_dim + 2 * kv_dim, H] projection, each slot's gate and up
// fused into w13 [2I, H] (gate rows first) beside w2 [H, I], with the expert width I padded with
// zeros to a multiple of kExpertWidthAlign (what the grouped GEMM tiles; zero gate and up rows
// give silu(0) * 0 = 0, so the padding changes no result). One device allocation; loading runs
// on the engine's helper thread on its own non-blocking stream, so it never waits for (or
// delays) the steps of the generation that serves meanwhile.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <cuda_runtime.h>

#include "eep/common/placement.h"
#include "eep/common/status.h"
#include "eep/kernels/cuda/types.h"
#include "eep/worker/elastic/weight_transfer.h"
#include "eep/worker/model/checkpoint.h"

namespace eep::worker {

struct DeviceLayerWeights {
  const kernels::cuda::bf16* input_norm = nullptr;  // [H]
  const kernels::cuda::bf16* qkv_proj = nullptr;    // [q_dim + 2 * kv_dim, H]
  const kernels::cuda::bf16* o_proj = nullptr;      // [H, q_dim]
  const kernels::cuda::bf16* q_norm = nullptr;      // [head_dim]
  const kernels::cuda::bf16* k_norm = nullptr;      // [head_dim]
  const kernels::cuda::bf16* post_norm = nullptr;   // [H]
  const kernels::cuda::bf16* router = nullptr;      // [E, H]
  kernels::cuda::bf16* w13 = nullptr;               // [slots_per_rank, 2 * Ip, H]
  kernels::cuda::bf16* w2 = nullptr;                // [slots_per_rank, H, Ip]
};

inline constexpr int kExpertWidthAlign = 64;

// Device bytes of a weight-transfer piece.
struct DeviceSpan {
  std::byte* data = nullptr;
  size_t bytes = 0;
};

class DeviceWeights {
 public:
  // Loads on `device` (made current on the calling thread). With `only_slots`, only those expert
  // slots are read from the checkpoint and every other weight is left zero, to arrive from peers
  // (a weight transfer, docs/weight_transfer.md).
  static Result<std::unique_ptr<DeviceWeights>> load(
      const Checkpoint& checkpoint, const Placement& placement, int rank, int device,
      const std::vector<CheckpointSlot>* only_slots = nullptr);
  ~DeviceWeights();
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;

  const ModelConfig& config() const { return config_; }
  const kernels::cuda::bf16* embed() const { return embed_; }            // [V, H]
  const kernels::cuda::bf16* final_norm() const { return final_norm_; }  // [H]
  const kernels::cuda::bf16* lm_head() const { return lm_head_; }        // [V, H] (embed when tied)
  const DeviceLayerWeights& layer(int layer_idx) const { return layers_[layer_idx]; }
  int slots_per_rank() const { return slots_per_rank_; }
  // Ip: moe_intermediate_size rounded up to kExpertWidthAlign.
  static int padded_intermediate(const ModelConfig& config) {
    return (config.moe_intermediate_size + kExpertWidthAlign - 1) / kExpertWidthAlign *
           kExpertWidthAlign;
  }
  size_t num_bytes() const { return num_bytes_; }
  const void* data() const { return arena_; }

  // The weight-transfer pieces (Backend::dense_piece_bytes): the non-expert tensors in a fixed
  // order (embed, final norm, lm_head unless tied, then per layer input norm, fused qkv, o_proj,
  // q norm, k norm, post-attention norm, router), and one expert slot: its w13 block, then its
  // w2 block (padding included).
  static std::vector<size_t> dense_piece_bytes(const ModelConfig& config);
  static size_t expert_piece_bytes(const ModelConfig& config);
  // Where `piece` lies in this arena: one span for a non-expert tensor, two for an expert slot.
  std::vector<DeviceSpan> piece(const WeightPiece& piece) const;
  // `piece` to or from device memory (its bytes in piece() order), enqueued on `stream`.
  Status copy_piece_out(const WeightPiece& piece, std::byte* out, cudaStream_t stream) const;
  Status copy_piece_in(const WeightPiece& piece, const std::byte* in, cudaStream_t stream);

 private:
  DeviceWeights() = default;

  ModelConfig config_;
  void* arena_ = nullptr;
  size_t num_bytes_ = 0;
  int slots_per_rank_ = 0;
  const kernels::cuda::bf16* embed_ = nullptr;
  const kernels::cuda::bf16* final_norm_ = nullptr;
  const kernels::cuda::bf16* lm_head_ = nullptr;
  std::vector<DeviceLayerWeights> layers_;
  std::vector<DeviceSpan> dense_;  // dense_piece_bytes' order
};

}  // namespace eep::worker
