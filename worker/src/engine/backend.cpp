#include "eep/worker/engine/backend.h"

#include <algorithm>
#include <string>

#include "eep/worker/cpu/cpu_backend.h"
#ifdef EEP_WITH_CUDA
#include "eep/worker/cuda/cuda_backend.h"
#endif

namespace eep::worker {

const char* device_name(Device device) {
  switch (device) {
    case Device::kCpu:
      return "cpu";
    case Device::kCuda:
      return "cuda";
  }
  return "unknown";
}

const std::map<std::string, Device>& device_by_name() {
  static const std::map<std::string, Device> names = {{"cpu", Device::kCpu},
                                                      {"cuda", Device::kCuda}};
  return names;
}

Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options,
                                              const ModelConfig& config) {
  if (options.device == Device::kCpu) return make_cpu_backend(options, config);
#ifdef EEP_WITH_CUDA
  return make_cuda_backend(options, config);
#else
  (void)config;
  return error(ErrorCode::kFailedPrecondition,
               "this build has no CUDA backend (configure with -DEEP_CUDA=ON on a machine with "
               "nvcc and NCCL)");
#endif
}

Result<std::unique_ptr<GenerationState>> Backend::build_for_transfer(
    const Checkpoint&, const Placement&, int, ProcessGroup*, const std::vector<CheckpointSlot>&) {
  return error(ErrorCode::kFailedPrecondition,
               "the " + std::string(name()) + " backend takes no weights from peers");
}

Result<std::byte*> Backend::transfer_staging(size_t) {
  return error(ErrorCode::kFailedPrecondition,
               "the " + std::string(name()) + " backend takes no weights from peers");
}

Status Backend::pack_installed_piece(const WeightPiece&, std::byte*) {
  return transfer_staging(0).status();
}

Status Backend::unpack_piece(GenerationState&, const WeightPiece&, const std::byte*) {
  return transfer_staging(0).status();
}

Result<uint64_t> run_transfer_chunk(Backend& backend, GenerationState* next,
                                    const ChunkSchedule& schedule, ProcessGroup* group) {
  EEP_CHECK(next != nullptr || (schedule.recvs.empty() && schedule.local.empty()));
  PieceIo io;
  io.staging = [&](size_t bytes) { return backend.transfer_staging(bytes); };
  io.pack = [&](const WeightPiece& piece, std::byte* out) {
    return backend.pack_installed_piece(piece, out);
  };
  io.unpack = [&](const WeightPiece& piece, const std::byte* in) {
    return backend.unpack_piece(*next, piece, in);
  };
  io.finish = [&] { return backend.finish_transfer_chunk(); };
  return exchange_pieces(schedule, group, io);
}

Result<int> install_single_rank(Backend& backend, const Checkpoint& checkpoint, int max_kv_blocks) {
  const ModelConfig& config = checkpoint.config();
  EEP_ASSIGN_OR_RETURN(
      Placement placement,
      Placement::round_robin(config.num_hidden_layers, config.num_experts, 1, config.num_experts));
  EEP_ASSIGN_OR_RETURN(std::unique_ptr<GenerationState> state,
                       backend.build(checkpoint, placement, 0, nullptr));
  EEP_ASSIGN_OR_RETURN(int num_kv_blocks, backend.plan_kv_blocks());
  num_kv_blocks = std::min(num_kv_blocks, max_kv_blocks);
  EEP_RETURN_IF_ERROR(backend.install(std::move(state), num_kv_blocks));
  return num_kv_blocks;
}

}  // namespace eep::worker
