#include "eep/worker/cuda/model_weights_cuda.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "eep/worker/cuda/cuda_status.h"
#include "eep/worker/model/dtype.h"
#include "eep/worker/model/tensor_names.h"

namespace eep::worker {
namespace {

using kernels::cuda::bf16;

// Copies host tensors into the arena through two pinned staging buffers on a non-blocking
// stream: bf16 tensors are copied as stored, others are narrowed to bf16 on the host.
class Uploader {
 public:
  ~Uploader() {
    if (stream_ != nullptr) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
    for (void* buffer : staging_) {
      if (buffer != nullptr) cudaFreeHost(buffer);
    }
  }

  Status init() {
    EEP_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    for (auto& buffer : staging_) {
      EEP_CUDA_RETURN_IF_ERROR(cudaMallocHost(&buffer, kStagingBytes));
    }
    for (auto& event : done_) EEP_CUDA_RETURN_IF_ERROR(cudaEventCreate(&event));
    return Status::ok();
  }

  // Copies num_elements bf16 values at dst from `source`, which writes fp32 or bf16 values into
  // the staging buffer: fill(first_element, count, bf16* staging).
  template <typename Fill>
  Status copy(bf16* dst, int64_t num_elements, Fill&& fill) {
    const int64_t per_buffer = kStagingBytes / sizeof(bf16);
    for (int64_t first = 0; first < num_elements; first += per_buffer) {
      const int64_t count = std::min(per_buffer, num_elements - first);
      // Wait until this buffer's previous copy is done before overwriting it.
      EEP_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(done_[next_]));
      auto* staging = static_cast<bf16*>(staging_[next_]);
      EEP_RETURN_IF_ERROR(fill(first, count, staging));
      EEP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst + first, staging, count * sizeof(bf16),
                                               cudaMemcpyHostToDevice, stream_));
      EEP_CUDA_RETURN_IF_ERROR(cudaEventRecord(done_[next_], stream_));
      next_ = 1 - next_;
    }
    return Status::ok();
  }

  Status zero(void* dst, size_t num_bytes) {
    return cuda_status(cudaMemsetAsync(dst, 0, num_bytes, stream_), "weight arena zeroing");
  }

  Status finish() { return cuda_status(cudaStreamSynchronize(stream_), "weight upload"); }

 private:
  static constexpr size_t kStagingBytes = 64 << 20;
  cudaStream_t stream_ = nullptr;
  void* staging_[2] = {nullptr, nullptr};
  cudaEvent_t done_[2] = {nullptr, nullptr};
  int next_ = 0;
};

// Writes `count` bf16 values of a stored tensor, starting at element `first`, into `out`. BF16 is
// copied as stored; F32, F16 and block-scaled F8_E4M3 are widened (FP8 dequantized) by the
// checkpoint's one fp32 read path, then narrowed here. The GPU computes in bf16 from dequantized
// FP8 until FP8 GEMMs read the codes and scales themselves.
Status narrow(const Checkpoint& checkpoint, const TensorInfo& info, int64_t first, int64_t count,
              bf16* out) {
  if (info.dtype == DType::kBF16) {
    EEP_ASSIGN_OR_RETURN(std::span<const std::byte> raw, checkpoint.raw_data(info.name));
    std::memcpy(static_cast<void*>(out), raw.data() + first * sizeof(bf16), count * sizeof(bf16));
    return Status::ok();
  }
  // Widened a piece at a time: `count` may be a whole staging buffer (32 Mi values).
  constexpr int64_t kPieceElements = 1 << 16;
  std::vector<float> wide(static_cast<size_t>(std::min(count, kPieceElements)));
  for (int64_t done = 0; done < count; done += kPieceElements) {
    const int64_t n = std::min(kPieceElements, count - done);
    EEP_RETURN_IF_ERROR(checkpoint.read_f32_elements(
        info.name, first + done, std::span<float>(wide.data(), static_cast<size_t>(n))));
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t narrowed = fp32_to_bf16(wide[static_cast<size_t>(i)]);
      std::memcpy(static_cast<void*>(&out[done + i]), &narrowed, 2);
    }
  }
  return Status::ok();
}

// Uploads elements [first, first + count) of tensor `name` (after checking its shape) to dst.
Status upload(Uploader& uploader, const Checkpoint& checkpoint, const std::string& name,
              const std::vector<int64_t>& shape, int64_t first, int64_t count, bf16* dst) {
  const TensorInfo* info = checkpoint.find(name);
  if (info == nullptr) return error(ErrorCode::kDataLoss, "tensor " + name + " is missing");
  if (info->shape != shape) {
    return error(ErrorCode::kInvalidArgument, "tensor " + name + " has shape " +
                                                  shape_to_string(info->shape) + ", expected " +
                                                  shape_to_string(shape));
  }
  return uploader.copy(dst, count, [&](int64_t offset, int64_t n, bf16* staging) {
    return narrow(checkpoint, *info, first + offset, n, staging);
  });
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

std::vector<size_t> DeviceWeights::dense_piece_bytes(const ModelConfig& c) {
  const int64_t hidden = c.hidden_size, vocab = c.vocab_size;
  const int64_t q_dim = int64_t{c.num_attention_heads} * c.head_dim;
  const int64_t kv_dim = int64_t{c.num_key_value_heads} * c.head_dim;
  std::vector<int64_t> elements = {vocab * hidden, hidden};
  if (!c.tie_word_embeddings) elements.push_back(vocab * hidden);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    elements.insert(elements.end(),
                    {hidden, (q_dim + 2 * kv_dim) * hidden, hidden * q_dim, c.head_dim, c.head_dim,
                     hidden, int64_t{c.num_experts} * hidden});
  }
  std::vector<size_t> bytes;
  for (int64_t n : elements) bytes.push_back(static_cast<size_t>(n) * sizeof(bf16));
  return bytes;
}

size_t DeviceWeights::expert_piece_bytes(const ModelConfig& c) {
  return 3 * static_cast<size_t>(padded_intermediate(c)) * c.hidden_size * sizeof(bf16);
}

std::vector<DeviceSpan> DeviceWeights::piece(const WeightPiece& piece) const {
  if (piece.layer < 0) {
    EEP_CHECK(piece.index >= 0 && piece.index < static_cast<int>(dense_.size()));
    return {dense_[piece.index]};
  }
  EEP_CHECK(piece.layer < static_cast<int>(layers_.size()) && piece.index >= 0 &&
            piece.index < slots_per_rank_);
  const size_t w13_bytes =
      2 * static_cast<size_t>(padded_intermediate(config_)) * config_.hidden_size * sizeof(bf16);
  const size_t w2_bytes = w13_bytes / 2;
  const DeviceLayerWeights& layer = layers_[piece.layer];
  auto* w13 = reinterpret_cast<std::byte*>(layer.w13) + piece.index * w13_bytes;
  auto* w2 = reinterpret_cast<std::byte*>(layer.w2) + piece.index * w2_bytes;
  return {DeviceSpan{w13, w13_bytes}, DeviceSpan{w2, w2_bytes}};
}

Status DeviceWeights::copy_piece_out(const WeightPiece& piece, std::byte* out,
                                     cudaStream_t stream) const {
  for (const DeviceSpan& span : this->piece(piece)) {
    EEP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(out, span.data, span.bytes, cudaMemcpyDeviceToDevice, stream));
    out += span.bytes;
  }
  return Status::ok();
}

Status DeviceWeights::copy_piece_in(const WeightPiece& piece, const std::byte* in,
                                    cudaStream_t stream) {
  for (const DeviceSpan& span : this->piece(piece)) {
    EEP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(span.data, in, span.bytes, cudaMemcpyDeviceToDevice, stream));
    in += span.bytes;
  }
  return Status::ok();
}

DeviceWeights::~DeviceWeights() {
  if (arena_ != nullptr) cudaFree(arena_);
}

Result<std::unique_ptr<DeviceWeights>> DeviceWeights::load(
    const Checkpoint& checkpoint, const Placement& placement, int rank, int device,
    const std::vector<CheckpointSlot>* only_slots) {
  const ModelConfig& c = checkpoint.config();
  EEP_RETURN_IF_ERROR(placement.validate());
  if (placement.num_layers != c.num_hidden_layers ||
      placement.num_logical_experts != c.num_experts || rank < 0 || rank >= placement.num_ranks) {
    return error(ErrorCode::kInvalidArgument, "placement does not fit the model or the rank");
  }
  EEP_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  std::unique_ptr<DeviceWeights> weights(new DeviceWeights());
  weights->config_ = c;
  weights->slots_per_rank_ = placement.slots_per_rank;
  const int64_t hidden = c.hidden_size, vocab = c.vocab_size, inter = c.moe_intermediate_size;
  const int64_t inter_p = padded_intermediate(c);
  if (hidden % kExpertWidthAlign != 0) {
    return error(ErrorCode::kInvalidArgument,
                 "the CUDA backend needs hidden_size to be a multiple of " +
                     std::to_string(kExpertWidthAlign) + ", got " + std::to_string(hidden));
  }
  const int64_t q_dim = int64_t{c.num_attention_heads} * c.head_dim;
  const int64_t kv_dim = int64_t{c.num_key_value_heads} * c.head_dim;
  const int64_t slots = placement.slots_per_rank;

  // Carve the arena: every tensor 256-byte aligned.
  size_t total = 0;
  auto reserve = [&](int64_t elements) {
    const size_t offset = total;
    total += (static_cast<size_t>(elements) * sizeof(bf16) + 255) / 256 * 256;
    return offset;
  };
  const size_t embed_at = reserve(vocab * hidden);
  const size_t final_norm_at = reserve(hidden);
  const size_t lm_head_at = c.tie_word_embeddings ? embed_at : reserve(vocab * hidden);
  struct LayerOffsets {
    size_t input_norm, qkv, o, q_norm, k_norm, post_norm, router, w13, w2;
  };
  std::vector<LayerOffsets> offsets(c.num_hidden_layers);
  for (auto& o : offsets) {
    o.input_norm = reserve(hidden);
    o.qkv = reserve((q_dim + 2 * kv_dim) * hidden);
    o.o = reserve(hidden * q_dim);
    o.q_norm = reserve(c.head_dim);
    o.k_norm = reserve(c.head_dim);
    o.post_norm = reserve(hidden);
    o.router = reserve(int64_t{c.num_experts} * hidden);
    o.w13 = reserve(slots * 2 * inter_p * hidden);
    o.w2 = reserve(slots * hidden * inter_p);
  }
  EEP_CUDA_RETURN_IF_ERROR(cudaMalloc(&weights->arena_, total));
  weights->num_bytes_ = total;
  auto* base = static_cast<std::byte*>(weights->arena_);
  auto at = [&](size_t offset) { return reinterpret_cast<bf16*>(base + offset); };

  Uploader uploader;
  EEP_RETURN_IF_ERROR(uploader.init());
  if (inter_p != inter || only_slots != nullptr) {
    EEP_RETURN_IF_ERROR(uploader.zero(weights->arena_, total));
  }
  const bool with_dense = only_slots == nullptr;
  auto whole = [&](const std::string& name, const std::vector<int64_t>& shape, bf16* dst) {
    weights->dense_.push_back(
        DeviceSpan{reinterpret_cast<std::byte*>(dst), product(shape) * sizeof(bf16)});
    if (!with_dense) return Status::ok();
    return upload(uploader, checkpoint, name, shape, 0, product(shape), dst);
  };
  EEP_RETURN_IF_ERROR(whole(tensor_names::embed_tokens(), {vocab, hidden}, at(embed_at)));
  EEP_RETURN_IF_ERROR(whole(tensor_names::final_norm(), {hidden}, at(final_norm_at)));
  if (!c.tie_word_embeddings) {
    EEP_RETURN_IF_ERROR(whole(tensor_names::lm_head(), {vocab, hidden}, at(lm_head_at)));
  }
  weights->embed_ = at(embed_at);
  weights->final_norm_ = at(final_norm_at);
  weights->lm_head_ = at(lm_head_at);

  const bool fused = checkpoint.expert_layout() == ExpertLayout::kFused;
  const int64_t expert_elems = inter * hidden;
  // Logical expert e into local slot `local` of layer l.
  auto load_slot = [&](int l, int64_t local, int e) -> Status {
    namespace tn = tensor_names;
    const LayerOffsets& o = offsets[l];
    bf16* gate = at(o.w13) + local * 2 * inter_p * hidden;
    bf16* up = gate + inter_p * hidden;
    bf16* down = at(o.w2) + local * hidden * inter_p;
    if (fused) {
      const std::vector<int64_t> gate_up_shape = {c.num_experts, 2 * inter, hidden};
      const std::string gate_up_name = tn::fused_gate_up_proj(l);
      EEP_RETURN_IF_ERROR(upload(uploader, checkpoint, gate_up_name, gate_up_shape,
                                 e * 2 * expert_elems, expert_elems, gate));
      EEP_RETURN_IF_ERROR(upload(uploader, checkpoint, gate_up_name, gate_up_shape,
                                 e * 2 * expert_elems + expert_elems, expert_elems, up));
    } else {
      EEP_RETURN_IF_ERROR(upload(uploader, checkpoint, tn::expert_gate_proj(l, e), {inter, hidden},
                                 0, expert_elems, gate));
      EEP_RETURN_IF_ERROR(upload(uploader, checkpoint, tn::expert_up_proj(l, e), {inter, hidden}, 0,
                                 expert_elems, up));
    }
    // down [H, I] into rows of Ip: whole when unpadded, else row by row.
    const std::string down_name = fused ? tn::fused_down_proj(l) : tn::expert_down_proj(l, e);
    const std::vector<int64_t> down_shape = fused
                                                ? std::vector<int64_t>{c.num_experts, hidden, inter}
                                                : std::vector<int64_t>{hidden, inter};
    const int64_t down_first = fused ? e * expert_elems : 0;
    if (inter_p == inter) {
      EEP_RETURN_IF_ERROR(
          upload(uploader, checkpoint, down_name, down_shape, down_first, expert_elems, down));
    } else {
      for (int64_t row = 0; row < hidden; ++row) {
        EEP_RETURN_IF_ERROR(upload(uploader, checkpoint, down_name, down_shape,
                                   down_first + row * inter, inter, down + row * inter_p));
      }
    }
    return Status::ok();
  };

  weights->layers_.resize(c.num_hidden_layers);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerOffsets& o = offsets[l];
    DeviceLayerWeights& w = weights->layers_[l];
    namespace tn = tensor_names;
    EEP_RETURN_IF_ERROR(whole(tn::input_layernorm(l), {hidden}, at(o.input_norm)));
    // q, k and v into one fused piece.
    weights->dense_.push_back(DeviceSpan{reinterpret_cast<std::byte*>(at(o.qkv)),
                                         (q_dim + 2 * kv_dim) * hidden * sizeof(bf16)});
    if (with_dense) {
      EEP_RETURN_IF_ERROR(upload(uploader, checkpoint, tn::q_proj(l), {q_dim, hidden}, 0,
                                 q_dim * hidden, at(o.qkv)));
      EEP_RETURN_IF_ERROR(upload(uploader, checkpoint, tn::k_proj(l), {kv_dim, hidden}, 0,
                                 kv_dim * hidden, at(o.qkv) + q_dim * hidden));
      EEP_RETURN_IF_ERROR(upload(uploader, checkpoint, tn::v_proj(l), {kv_dim, hidden}, 0,
                                 kv_dim * hidden, at(o.qkv) + (q_dim + kv_dim) * hidden));
    }
    EEP_RETURN_IF_ERROR(whole(tn::o_proj(l), {hidden, q_dim}, at(o.o)));
    EEP_RETURN_IF_ERROR(whole(tn::q_norm(l), {c.head_dim}, at(o.q_norm)));
    EEP_RETURN_IF_ERROR(whole(tn::k_norm(l), {c.head_dim}, at(o.k_norm)));
    EEP_RETURN_IF_ERROR(whole(tn::post_attention_layernorm(l), {hidden}, at(o.post_norm)));
    EEP_RETURN_IF_ERROR(whole(tn::router(l), {c.num_experts, hidden}, at(o.router)));
    if (with_dense) {
      for (int64_t local = 0; local < slots; ++local) {
        EEP_RETURN_IF_ERROR(
            load_slot(l, local, placement.logical_of(l, static_cast<int>(rank * slots + local))));
      }
    }
    w.input_norm = at(o.input_norm);
    w.qkv_proj = at(o.qkv);
    w.o_proj = at(o.o);
    w.q_norm = at(o.q_norm);
    w.k_norm = at(o.k_norm);
    w.post_norm = at(o.post_norm);
    w.router = at(o.router);
    w.w13 = at(o.w13);
    w.w2 = at(o.w2);
  }
  if (only_slots != nullptr) {
    for (const CheckpointSlot& slot : *only_slots) {
      if (slot.layer < 0 || slot.layer >= c.num_hidden_layers || slot.local_slot < 0 ||
          slot.local_slot >= slots || slot.expert < 0 || slot.expert >= c.num_experts) {
        return error(ErrorCode::kInvalidArgument, "checkpoint slot outside the placement");
      }
      EEP_RETURN_IF_ERROR(load_slot(slot.layer, slot.local_slot, slot.expert));
    }
  }
  std::vector<size_t> dense_bytes;
  for (const DeviceSpan& span : weights->dense_) dense_bytes.push_back(span.bytes);
  EEP_CHECK(dense_bytes == dense_piece_bytes(c));
  EEP_RETURN_IF_ERROR(uploader.finish());
  return weights;
}

}  // namespace eep::worker
