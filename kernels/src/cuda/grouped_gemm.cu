// Grouped GEMM of the MoE experts on tensor cores (mma.sync m16n8k16 bf16, fp32 accumulation),
// and the batch-invariant dense products, which are the same tiles with one group (plus a
// warp-per-element kernel for small n). SwiGLU's activation is in silu_mul.cu.
//
// The block-scaled FP8 product (fp8.h) runs the same tiles on e4m3 codes: a stage holds 128 codes
// per row (the same 128 bytes as 64 bf16, so shared memory, swizzle and ldmatrix are unchanged),
// each 16-byte ldmatrix fragment holds 32 codes, in the byte layout mma.sync m16n8k32 e4m3 takes,
// and after each stage (one 128-wide scale block of k) the stage's products are added to the
// fp32 accumulators times the row's activation scale and the tile's weight-block scale.
//
// One persistent launch per GEMM: the grid depends only on host arguments (so the launch can be
// captured in a CUDA graph), and each thread block walks the list of output tiles
//   tile = global row tile * (n / kBlockN) + column tile,
// where the global row tiles are the groups' ceil(rows_g / kBlockM) row tiles in group order.
// Every warp maps its tiles to groups itself from the device offsets (a warp-wide prefix over 32
// groups at a time, with a cursor that only moves forward since a block's tiles increase).
//
// Main loop: a multi-stage cp.async pipeline fills shared memory with kBlockK = 64 columns of k
// per stage (one 128-byte row per tile row, 16-byte chunks XOR-swizzled by row so that ldmatrix
// and cp.async hit distinct banks); warps load fragments with ldmatrix and multiply with
// mma.sync. Rows of a partial tile beyond the group's end are zero-filled (cp.async with source
// size 0, nothing read) and not written.
//
// Summation order: every output element starts from +0 and adds the 16-wide mma products over k
// in increasing k, whatever the tile shape, the block or the other rows. So a row's result is
// bitwise the same in every launch and every tile variant.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#include "eep/kernels/cuda/fp8.h"
#include "eep/kernels/cuda/grouped_gemm.h"

namespace eep::kernels::cuda {
namespace {

constexpr int kBlockK = 64;                  // k per pipeline stage (bf16; 128 FP8 codes)
constexpr int kChunksPerRow = kBlockK / 8;   // 16-byte chunks of 8 bf16 per tile row and stage
constexpr int kStageRowBytes = kBlockK * 2;  // = 128, one FP8 scale block of k

template <int kBlockM_, int kBlockN_, int kWarpM_, int kWarpN_, int kStages_>
struct TileShape {
  static constexpr int kBlockM = kBlockM_;  // rows of c per tile
  static constexpr int kBlockN = kBlockN_;  // columns of c per tile
  static constexpr int kWarpM = kWarpM_;    // rows of c per warp
  static constexpr int kWarpN = kWarpN_;    // columns of c per warp
  static constexpr int kStages = kStages_;
  static constexpr int kWarpsM = kBlockM / kWarpM;
  static constexpr int kWarpsN = kBlockN / kWarpN;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kMmaM = kWarpM / 16;  // m16 fragments per warp
  static constexpr int kMmaN = kWarpN / 8;   // n8 fragments per warp
  static constexpr int kStageElems = (kBlockM + kBlockN) * kBlockK;
  static constexpr int kSmemBytes = kStages * kStageElems * static_cast<int>(sizeof(bf16));

  static_assert(kBlockM % kWarpM == 0 && kBlockN % kWarpN == 0);
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "B fragments are loaded two n8 at a time");
  static_assert(kBlockM * kChunksPerRow % kThreads == 0, "A chunks split evenly over threads");
  static_assert(kBlockN * kChunksPerRow % kThreads == 0, "B chunks split evenly over threads");
  static_assert(kStages >= 2);
};

// Every variant: 128 threads, 96 KB of shared memory, 2 blocks per SM, so that one kernel can
// hold all three and pick on the device (the auto kernel below).
// Decode: a few rows per group; 64-column tiles for more blocks, 8 stages keep the weight
// stream in flight.
using Rows32 = TileShape<32, 64, 32, 16, 8>;
// Mid-size groups (tens of rows): less padding than 128-row tiles.
using Rows64 = TileShape<64, 128, 32, 64, 4>;
// Prefill: 64 x 64 warp tiles (the best mma-to-ldmatrix ratio that fits the registers).
using Rows128 = TileShape<128, 128, 64, 64, 3>;
constexpr int kGemmThreads = 128;
constexpr int kGemmMinBlocks = 2;
constexpr int kGemmSmemBytes = 96 * 1024;
static_assert(Rows32::kThreads == kGemmThreads && Rows64::kThreads == kGemmThreads &&
              Rows128::kThreads == kGemmThreads);
static_assert(Rows32::kSmemBytes == kGemmSmemBytes && Rows64::kSmemBytes == kGemmSmemBytes &&
              Rows128::kSmemBytes == kGemmSmemBytes);

// Relative time per row of a tile (a padding row costs as much as a real one), so the auto
// kernel picks the variant of least padded_tiles * kBlockM * cost: small tiles waste less on
// partial tiles but run slower (fewer mma per ldmatrix). Guesses from the mma/ldmatrix ratios;
// calibrate with bench_grouped_gemm (columns rows32/rows64/rows128).
constexpr int kRowCost32 = 8;   // 2.0x
constexpr int kRowCost64 = 5;   // 1.25x
constexpr int kRowCost128 = 4;  // 1.0x

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; when !valid nothing is read and the 16 bytes are zeros.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += a * b for one m16n8k16 tile (a row-major 16 x 16, b column-major 16 x 8).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// d += a * b for one m16n8k32 tile of e4m3 codes: the same registers, in bytes, as the bf16 tile
// above (a row-major 16 x 32, b column-major 32 x 8).
__device__ __forceinline__ void mma_e4m3_16832(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Element offset of (row, 16-byte chunk) in a [rows][kBlockK] stage tile: chunk c of row r sits
// at chunk position c ^ (r % 8), so 8 consecutive rows at the same chunk cover all 32 banks.
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * kBlockK + ((chunk ^ (row & 7)) << 3);
}

// Where a global row tile lies: its group and rows. Each warp keeps its own cursor; all lanes
// hold the same values.
template <int kBlockM>
class RowTileCursor {
 public:
  // Finds the group of global row tile `row_tile` (non-decreasing from call to call). Returns
  // false when row_tile is beyond the last row tile. Called by all 32 lanes of the warp.
  __device__ bool find(int64_t row_tile, const int32_t* __restrict__ offsets, int num_groups,
                       int lane, int& tile_row_begin, int& group_row_end, int& group_idx) {
    while (chunk_first_group_ < num_groups) {
      const int g = chunk_first_group_ + lane;
      int begin = 0;
      int end = 0;
      if (g < num_groups) {
        begin = offsets[g];
        end = offsets[g + 1];
      }
      const int count = end > begin ? (end - begin + kBlockM - 1) / kBlockM : 0;
      int inclusive = count;
#pragma unroll
      for (int delta = 1; delta < 32; delta <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, inclusive, delta);
        if (lane >= delta) inclusive += v;
      }
      const int chunk_total = __shfl_sync(0xffffffffu, inclusive, 31);
      if (row_tile < row_tiles_before_ + chunk_total) {
        // The first lane whose inclusive count passes row_tile owns it (and has count > 0).
        const unsigned passed =
            __ballot_sync(0xffffffffu, row_tiles_before_ + inclusive > row_tile);
        const int owner = __ffs(passed) - 1;
        const int owner_exclusive = __shfl_sync(0xffffffffu, inclusive - count, owner);
        const int owner_begin = __shfl_sync(0xffffffffu, begin, owner);
        group_row_end = __shfl_sync(0xffffffffu, end, owner);
        group_idx = chunk_first_group_ + owner;
        const int64_t tile_in_group = row_tile - row_tiles_before_ - owner_exclusive;
        tile_row_begin = owner_begin + static_cast<int>(tile_in_group) * kBlockM;
        return true;
      }
      row_tiles_before_ += chunk_total;
      chunk_first_group_ += 32;
    }
    return false;
  }

 private:
  int chunk_first_group_ = 0;     // the groups [chunk_first_group_, + 32) are the current chunk
  int64_t row_tiles_before_ = 0;  // row tiles of the groups before the current chunk
};

// How a tile writes two adjacent fp32 results (columns col, col + 1 of a row): rounded to bf16,
// stored as fp32, or added to the fp32 values there (a projection into the residual stream).
struct StoreBf16 {
  using T = bf16;
  static __device__ __forceinline__ void write(bf16* out, float x, float y) {
    *reinterpret_cast<__nv_bfloat162*>(out) = __floats2bfloat162_rn(x, y);
  }
};
struct StoreF32 {
  using T = float;
  static __device__ __forceinline__ void write(float* out, float x, float y) {
    *reinterpret_cast<float2*>(out) = make_float2(x, y);
  }
};
struct AddF32 {
  using T = float;
  static __device__ __forceinline__ void write(float* out, float x, float y) {
    float2 value = *reinterpret_cast<float2*>(out);
    value.x += x;
    value.y += y;
    *reinterpret_cast<float2*>(out) = value;
  }
};

// The operands of a product: bf16, or FP8 codes with their scales (a [rows, k / 128], b
// [num_groups, n / 128, k / 128]; the bf16 product has none).
struct Operands {
  const void* a;
  const void* b;
  const float* a_scales;
  const float* b_scales;
};

// The whole grouped product with tiles of one shape: this block's tiles, in increasing order.
// `stages`: Shape::kSmemBytes of shared memory. kFp8: the operands are e4m3 codes with scales.
template <class Shape, class Out, bool kFp8 = false>
__device__ __forceinline__ void run_tiles(const Operands operands,
                                          const int32_t* __restrict__ offsets, int num_groups,
                                          int n, int k, typename Out::T* __restrict__ c,
                                          bf16* stages) {
  constexpr int kBlockM = Shape::kBlockM;
  constexpr int kBlockN = Shape::kBlockN;
  constexpr int kThreads = Shape::kThreads;
  constexpr int kStages = Shape::kStages;
  constexpr int kMmaM = Shape::kMmaM;
  constexpr int kMmaN = Shape::kMmaN;

  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp_idx = static_cast<int>(threadIdx.x) / 32;
  const int warp_row = (warp_idx / Shape::kWarpsN) * Shape::kWarpM;  // within the tile
  const int warp_col = (warp_idx % Shape::kWarpsN) * Shape::kWarpN;
  const int num_col_tiles = n / kBlockN;
  // Rows of a and b in bytes; a stage covers 128 bytes of each row.
  const int64_t row_bytes = static_cast<int64_t>(k) * (kFp8 ? 1 : 2);
  const int num_k_tiles = static_cast<int>(row_bytes / kStageRowBytes);
  const unsigned char* __restrict__ const a = static_cast<const unsigned char*>(operands.a);
  const unsigned char* __restrict__ const b = static_cast<const unsigned char*>(operands.b);
  static_assert(!kFp8 || Shape::kBlockN <= 128, "a tile's columns share one weight scale block");

  RowTileCursor<kBlockM> cursor;
  for (int64_t tile_idx = blockIdx.x;; tile_idx += gridDim.x) {
    const int64_t row_tile = tile_idx / num_col_tiles;
    const int col_tile = static_cast<int>(tile_idx % num_col_tiles);
    int tile_row_begin = 0;
    int group_row_end = 0;
    int group_idx = 0;
    // Every warp computes the same answer, so the whole block leaves together.
    if (!cursor.find(row_tile, offsets, num_groups, lane, tile_row_begin, group_row_end,
                     group_idx)) {
      break;
    }
    const int valid_rows = min(kBlockM, group_row_end - tile_row_begin);
    const unsigned char* const b_tile =
        b + (static_cast<int64_t>(group_idx) * n + static_cast<int64_t>(col_tile) * kBlockN) *
                row_bytes;

    // One stage: kBlockM rows of a and kBlockN rows of b, bytes [k_tile * 128, + 128) of each.
    auto load_stage = [&](int stage, int k_tile) {
      bf16* const a_stage = stages + stage * Shape::kStageElems;
      bf16* const b_stage = a_stage + kBlockM * kBlockK;
      const int64_t k0 = static_cast<int64_t>(k_tile) * kStageRowBytes;
#pragma unroll
      for (int i = 0; i < kBlockM * kChunksPerRow / kThreads; ++i) {
        const int chunk_idx = static_cast<int>(threadIdx.x) + i * kThreads;
        const int row = chunk_idx / kChunksPerRow;
        const int chunk = chunk_idx % kChunksPerRow;
        const bool valid = row < valid_rows;
        // A padding row points at the tile's first row (always in the group) and reads nothing.
        const unsigned char* src =
            a + static_cast<int64_t>(tile_row_begin + (valid ? row : 0)) * row_bytes + k0 +
            chunk * 16;
        cp_async_16(shared_address(a_stage + swizzled(row, chunk)), src, valid);
      }
#pragma unroll
      for (int i = 0; i < kBlockN * kChunksPerRow / kThreads; ++i) {
        const int chunk_idx = static_cast<int>(threadIdx.x) + i * kThreads;
        const int row = chunk_idx / kChunksPerRow;
        const int chunk = chunk_idx % kChunksPerRow;
        const unsigned char* src = b_tile + static_cast<int64_t>(row) * row_bytes + k0 + chunk * 16;
        cp_async_16(shared_address(b_stage + swizzled(row, chunk)), src, true);
      }
    };

    float acc[kMmaM][kMmaN][4];
#pragma unroll
    for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
      for (int ni = 0; ni < kMmaN; ++ni) {
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;
      }
    }

    // Prologue: stages 0 .. kStages - 2 in flight, one commit group per k tile (empty past the
    // end, so the wait arithmetic below holds for any number of k tiles).
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < num_k_tiles) load_stage(s, s);
      cp_async_commit();
    }

    for (int k_tile = 0; k_tile < num_k_tiles; ++k_tile) {
      // k_tile + kStages - 1 groups are committed; at most kStages - 2 pending means k_tile's
      // group has landed (for this thread); the barrier makes every thread's copies visible and
      // ensures everyone finished computing on the stage the prefetch below overwrites.
      cp_async_wait<kStages - 2>();
      __syncthreads();
      const int prefetch = k_tile + kStages - 1;
      if (prefetch < num_k_tiles) load_stage(prefetch % kStages, prefetch);
      cp_async_commit();

      const bf16* const a_stage = stages + (k_tile % kStages) * Shape::kStageElems;
      const bf16* const b_stage = a_stage + kBlockM * kBlockK;
      // FP8: this stage's products, scaled into acc after the stage (bf16: acc itself).
      [[maybe_unused]] float part[kFp8 ? kMmaM : 1][kFp8 ? kMmaN : 1][4];
      if constexpr (kFp8) {
#pragma unroll
        for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
          for (int ni = 0; ni < kMmaN; ++ni) {
#pragma unroll
            for (int e = 0; e < 4; ++e) part[mi][ni][e] = 0.0f;
          }
        }
      }
#pragma unroll
      for (int kk = 0; kk < kBlockK / 16; ++kk) {
        uint32_t a_frag[kMmaM][4];
        uint32_t b_frag[kMmaN][2];
#pragma unroll
        for (int mi = 0; mi < kMmaM; ++mi) {
          // Matrices: rows 0-7 / 8-15 of the m16 tile at k 0-7, then the same at k 8-15.
          const int row = warp_row + mi * 16 + (lane & 15);
          const int chunk = kk * 2 + (lane >> 4);
          ldmatrix_x4(a_frag[mi], shared_address(a_stage + swizzled(row, chunk)));
        }
#pragma unroll
        for (int nj = 0; nj < kMmaN / 2; ++nj) {
          // Matrices: n 0-7 at k 0-7, n 0-7 at k 8-15, n 8-15 at k 0-7, n 8-15 at k 8-15.
          const int row = warp_col + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
          const int chunk = kk * 2 + ((lane >> 3) & 1);
          uint32_t r[4];
          ldmatrix_x4(r, shared_address(b_stage + swizzled(row, chunk)));
          b_frag[2 * nj][0] = r[0];
          b_frag[2 * nj][1] = r[1];
          b_frag[2 * nj + 1][0] = r[2];
          b_frag[2 * nj + 1][1] = r[3];
        }
#pragma unroll
        for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
          for (int ni = 0; ni < kMmaN; ++ni) {
            if constexpr (kFp8) {
              mma_e4m3_16832(part[mi][ni], a_frag[mi], b_frag[ni][0], b_frag[ni][1]);
            } else {
              mma_bf16_16816(acc[mi][ni], a_frag[mi], b_frag[ni][0], b_frag[ni][1]);
            }
          }
        }
      }
      if constexpr (kFp8) {
        // The scales of this k block: the tile's weight block (its columns lie in one block of
        // 128) and each of the lane's rows (a padding row has none and is not written).
        const int k_blocks = k / 128;
        const float b_scale = operands.b_scales[(static_cast<int64_t>(group_idx) * (n / 128) +
                                                 static_cast<int64_t>(col_tile) * kBlockN / 128) *
                                                    k_blocks +
                                                k_tile];
#pragma unroll
        for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int row = warp_row + mi * 16 + (lane >> 2) + half * 8;
            const float a_scale =
                row < valid_rows
                    ? operands
                          .a_scales[static_cast<int64_t>(tile_row_begin + row) * k_blocks + k_tile]
                    : 0.0f;
            const float scale = a_scale * b_scale;
#pragma unroll
            for (int ni = 0; ni < kMmaN; ++ni) {
              acc[mi][ni][2 * half] = fmaf(part[mi][ni][2 * half], scale, acc[mi][ni][2 * half]);
              acc[mi][ni][2 * half + 1] =
                  fmaf(part[mi][ni][2 * half + 1], scale, acc[mi][ni][2 * half + 1]);
            }
          }
        }
      }
    }
    cp_async_wait<0>();

    // Accumulator layout: lane holds rows lane / 4 and lane / 4 + 8 of each m16 tile, columns
    // 2 * (lane % 4) and + 1 of each n8 tile.
    const int64_t col0 = static_cast<int64_t>(col_tile) * kBlockN + warp_col + 2 * (lane & 3);
#pragma unroll
    for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = warp_row + mi * 16 + (lane >> 2) + half * 8;
        if (row < valid_rows) {
          typename Out::T* const out = c + static_cast<int64_t>(tile_row_begin + row) * n + col0;
#pragma unroll
          for (int ni = 0; ni < kMmaN; ++ni) {
            Out::write(out + ni * 8, acc[mi][ni][2 * half], acc[mi][ni][2 * half + 1]);
          }
        }
      }
    }
    // The next tile's prologue overwrites stages other warps may still be reading.
    __syncthreads();
  }
}

// Rows of the tile variant of least estimated time for this split (see kRowCost*). Called by
// all 32 lanes of a warp; every warp of every block computes the same answer.
__device__ __forceinline__ int choose_tile_rows(const int32_t* __restrict__ offsets, int num_groups,
                                                int lane, bool allow128 = true) {
  long long tiles32 = 0;
  long long tiles64 = 0;
  long long tiles128 = 0;
  for (int g = lane; g < num_groups; g += 32) {
    const int rows = max(0, offsets[g + 1] - offsets[g]);
    tiles32 += (rows + 31) / 32;
    tiles64 += (rows + 63) / 64;
    tiles128 += (rows + 127) / 128;
  }
#pragma unroll
  for (int mask = 16; mask > 0; mask >>= 1) {
    tiles32 += __shfl_xor_sync(0xffffffffu, tiles32, mask);
    tiles64 += __shfl_xor_sync(0xffffffffu, tiles64, mask);
    tiles128 += __shfl_xor_sync(0xffffffffu, tiles128, mask);
  }
  const long long cost32 = tiles32 * 32 * kRowCost32;
  const long long cost64 = tiles64 * 64 * kRowCost64;
  const long long cost128 = tiles128 * 128 * kRowCost128;
  if (allow128 && cost128 <= cost64 && cost128 <= cost32) return 128;
  return cost64 <= cost32 ? 64 : 32;
}

extern __shared__ __align__(128) unsigned char grouped_gemm_shared[];

template <class Shape, class Out>
__global__ void __launch_bounds__(kGemmThreads, kGemmMinBlocks)
    grouped_matmul_nt_kernel(const bf16* __restrict__ a, const bf16* __restrict__ b,
                             const int32_t* __restrict__ offsets, int num_groups, int n, int k,
                             typename Out::T* __restrict__ c) {
  run_tiles<Shape, Out>(Operands{a, b, nullptr, nullptr}, offsets, num_groups, n, k, c,
                        reinterpret_cast<bf16*>(grouped_gemm_shared));
}

// Picks the tile variant from the device row counts (the host only knows max_rows, which may
// be far above the rows present). Needs n % 128 == 0.
template <class Out>
__global__ void __launch_bounds__(kGemmThreads, kGemmMinBlocks)
    grouped_matmul_nt_auto_kernel(const bf16* __restrict__ a, const bf16* __restrict__ b,
                                  const int32_t* __restrict__ offsets, int num_groups, int n, int k,
                                  typename Out::T* __restrict__ c) {
  bf16* const stages = reinterpret_cast<bf16*>(grouped_gemm_shared);
  const int tile_rows = choose_tile_rows(offsets, num_groups, static_cast<int>(threadIdx.x) % 32);
  const Operands operands{a, b, nullptr, nullptr};
  if (tile_rows == 128) {
    run_tiles<Rows128, Out>(operands, offsets, num_groups, n, k, c, stages);
  } else if (tile_rows == 64) {
    run_tiles<Rows64, Out>(operands, offsets, num_groups, n, k, c, stages);
  } else {
    run_tiles<Rows32, Out>(operands, offsets, num_groups, n, k, c, stages);
  }
}

// The FP8 product with one tile shape (kRows32 or kRows64: kRows128's 64 x 64 warp tiles would
// need twice their accumulators, the stage's and the scaled sums), or the better of the two.
template <class Shape>
__global__ void __launch_bounds__(kGemmThreads, kGemmMinBlocks)
    grouped_matmul_nt_fp8_kernel(const Operands operands, const int32_t* __restrict__ offsets,
                                 int num_groups, int n, int k, bf16* __restrict__ c) {
  run_tiles<Shape, StoreBf16, true>(operands, offsets, num_groups, n, k, c,
                                    reinterpret_cast<bf16*>(grouped_gemm_shared));
}

__global__ void __launch_bounds__(kGemmThreads, kGemmMinBlocks)
    grouped_matmul_nt_fp8_auto_kernel(const Operands operands, const int32_t* __restrict__ offsets,
                                      int num_groups, int n, int k, bf16* __restrict__ c) {
  bf16* const stages = reinterpret_cast<bf16*>(grouped_gemm_shared);
  const int tile_rows =
      choose_tile_rows(offsets, num_groups, static_cast<int>(threadIdx.x) % 32, false);
  if (tile_rows == 64) {
    run_tiles<Rows64, StoreBf16, true>(operands, offsets, num_groups, n, k, c, stages);
  } else {
    run_tiles<Rows32, StoreBf16, true>(operands, offsets, num_groups, n, k, c, stages);
  }
}

// Blocks per SM of one kernel on each device (0 = not yet known), found on first use on a
// device, where the kernel's shared-memory limit is also raised (a per-device setting).
constexpr int kMaxDevices = 64;
struct KernelOccupancy {
  std::atomic<int> blocks[kMaxDevices] = {};
};

template <class Kernel>
cudaError_t blocks_per_sm(Kernel kernel, KernelOccupancy& cache, int device, int& blocks) {
  const bool cacheable = device >= 0 && device < kMaxDevices;
  if (cacheable) {
    blocks = cache.blocks[device].load(std::memory_order_relaxed);
    if (blocks > 0) return cudaSuccess;
  }
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kGemmSmemBytes);
  if (err != cudaSuccess) return err;
  err =
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kGemmThreads, kGemmSmemBytes);
  if (err != cudaSuccess) return err;
  if (blocks < 1) return cudaErrorInvalidConfiguration;
  if (cacheable) cache.blocks[device].store(blocks, std::memory_order_relaxed);
  return cudaSuccess;
}

// A persistent grid: as many blocks as fit on the device at once, but no more than the tiles
// of the smallest tile shape `kernel` may use (min_block_m x min_block_n) could number.
// `args`: the kernel's arguments.
template <class Kernel, class... Args>
cudaError_t launch_grouped(Kernel kernel, KernelOccupancy& cache, int min_block_m, int min_block_n,
                           int64_t num_groups, int64_t max_rows, int64_t n, cudaStream_t stream,
                           Args... args) {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  int num_sms = 0;
  err = cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  int blocks = 0;
  err = blocks_per_sm(kernel, cache, device, blocks);
  if (err != cudaSuccess) return err;
  // Upper bound on the row tiles: each non-empty group adds at most one partial tile.
  const int64_t max_row_tiles = max_rows / min_block_m + std::min(num_groups, max_rows);
  const int64_t max_tiles = max_row_tiles * (n / min_block_n);
  const int64_t grid = std::min<int64_t>(static_cast<int64_t>(num_sms) * blocks, max_tiles);
  if (grid <= 0) return cudaSuccess;
  kernel<<<static_cast<unsigned>(grid), kGemmThreads, kGemmSmemBytes, stream>>>(args...);
  return cudaGetLastError();
}

template <class Shape, class Out = StoreBf16>
cudaError_t launch_shape(const bf16* a, const bf16* b, const int32_t* offsets, int64_t num_groups,
                         int64_t max_rows, int64_t n, int64_t k, typename Out::T* c,
                         cudaStream_t stream) {
  static KernelOccupancy cache;
  if (n % Shape::kBlockN != 0) return cudaErrorInvalidValue;
  return launch_grouped(grouped_matmul_nt_kernel<Shape, Out>, cache, Shape::kBlockM, Shape::kBlockN,
                        num_groups, max_rows, n, stream, a, b, offsets,
                        static_cast<int>(num_groups), static_cast<int>(n), static_cast<int>(k), c);
}

// Any number of groups, the tile variant chosen on the device where n allows.
template <class Out>
cudaError_t launch_auto(const bf16* a, const bf16* b, const int32_t* offsets, int64_t num_groups,
                        int64_t max_rows, int64_t n, int64_t k, typename Out::T* c,
                        cudaStream_t stream) {
  if (n % 128 != 0) {
    return launch_shape<Rows32, Out>(a, b, offsets, num_groups, max_rows, n, k, c, stream);
  }
  static KernelOccupancy cache;
  return launch_grouped(grouped_matmul_nt_auto_kernel<Out>, cache, Rows32::kBlockM, Rows32::kBlockN,
                        num_groups, max_rows, n, stream, a, b, offsets,
                        static_cast<int>(num_groups), static_cast<int>(n), static_cast<int>(k), c);
}

__global__ void set_dense_offsets_kernel(int32_t* offsets, int32_t m) {
  offsets[0] = 0;
  offsets[1] = m;
}

// One thread block per row of a, a warp per output column at a time: lane l sums the products of
// elements [8 l + 256 i, + 8) over i in increasing order, then the warp adds its lanes by a fixed
// butterfly. So an element depends on its row of a and of b only (the small-n dense products).
template <class Out>
__global__ void rowwise_matmul_nt_kernel(const bf16* __restrict__ a, const bf16* __restrict__ b,
                                         int64_t n, int64_t k, typename Out::T* __restrict__ c) {
  const int64_t row = blockIdx.x;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int num_warps = static_cast<int>(blockDim.x) / 32;
  const bf16* const a_row = a + row * k;
  for (int64_t col = warp; col < n; col += num_warps) {
    const bf16* const b_row = b + col * k;
    float sum = 0.0f;
    for (int64_t e = 8 * lane; e < k; e += 256) {
      const uint4 av = *reinterpret_cast<const uint4*>(a_row + e);
      const uint4 bv = *reinterpret_cast<const uint4*>(b_row + e);
      const __nv_bfloat162* ap = reinterpret_cast<const __nv_bfloat162*>(&av);
      const __nv_bfloat162* bp = reinterpret_cast<const __nv_bfloat162*>(&bv);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 x = __bfloat1622float2(ap[i]);
        const float2 y = __bfloat1622float2(bp[i]);
        sum = __fmaf_rn(x.x, y.x, sum);
        sum = __fmaf_rn(x.y, y.y, sum);
      }
    }
#pragma unroll
    for (int mask = 16; mask > 0; mask >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, mask);
    if (lane == 0) {
      if constexpr (std::is_same_v<Out, AddF32>) {
        c[row * n + col] += sum;
      } else if constexpr (std::is_same_v<Out, StoreF32>) {
        c[row * n + col] = sum;
      } else {
        c[row * n + col] = __float2bfloat16_rn(sum);
      }
    }
  }
}

bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// The sizes a grouped product can take: n and k multiples of `multiple`, and every count within
// the kernel's 32-bit indices (rows, offsets, n, k, group count).
bool valid_grouped_sizes(int64_t num_groups, int64_t max_rows, int64_t n, int64_t k,
                         int64_t multiple) {
  return num_groups >= 0 && max_rows >= 0 && n > 0 && k > 0 && n % multiple == 0 &&
         k % multiple == 0 && num_groups <= INT32_MAX - 1 && max_rows <= INT32_MAX &&
         n <= INT32_MAX && k <= INT32_MAX;
}

using Fp8Kernel = void (*)(Operands, const int32_t*, int, int, int, bf16*);

// The FP8 product with one kernel: `Shape` gives the smallest tile it may use (the grid bound),
// and each kernel its own occupancy cache.
template <class Shape, Fp8Kernel kKernel>
cudaError_t launch_fp8(const Operands& operands, const int32_t* offsets, int64_t num_groups,
                       int64_t max_rows, int64_t n, int64_t k, bf16* c, cudaStream_t stream) {
  static KernelOccupancy cache;
  return launch_grouped(kKernel, cache, Shape::kBlockM, Shape::kBlockN, num_groups, max_rows, n,
                        stream, operands, offsets, static_cast<int>(num_groups),
                        static_cast<int>(n), static_cast<int>(k), c);
}

template <class Out>
cudaError_t dense(const bf16* a, const bf16* b, int64_t m, int64_t n, int64_t k, typename Out::T* c,
                  int32_t* offsets, cudaStream_t stream) {
  if (m < 0 || n <= 0 || k <= 0 || k % 8 != 0 || m > INT32_MAX || n > INT32_MAX || k > INT32_MAX ||
      !aligned(a, 16) || !aligned(b, 16) || !aligned(c, 8)) {
    return cudaErrorInvalidValue;
  }
  if (m == 0) return cudaSuccess;
  if (n % 64 != 0 || k % 64 != 0) {
    constexpr int kRowThreads = 256;
    rowwise_matmul_nt_kernel<Out>
        <<<static_cast<unsigned>(m), kRowThreads, 0, stream>>>(a, b, n, k, c);
    return cudaGetLastError();
  }
  set_dense_offsets_kernel<<<1, 1, 0, stream>>>(offsets, static_cast<int32_t>(m));
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  return launch_auto<Out>(a, b, offsets, 1, m, n, k, c, stream);
}

}  // namespace

cudaError_t grouped_matmul_nt(const bf16* a, const bf16* b, const int32_t* offsets,
                              int64_t num_groups, int64_t max_rows, int64_t n, int64_t k, bf16* c,
                              cudaStream_t stream, GroupedGemmTile tile) {
  if (!valid_grouped_sizes(num_groups, max_rows, n, k, 64)) return cudaErrorInvalidValue;
  // cp.async copies 16-byte chunks of a and b; c is written two bf16 at a time.
  if (!aligned(a, 16) || !aligned(b, 16) || !aligned(c, 4)) return cudaErrorInvalidValue;
  if (num_groups == 0 || max_rows == 0) return cudaSuccess;

  switch (tile) {
    case GroupedGemmTile::kAuto:
      return launch_auto<StoreBf16>(a, b, offsets, num_groups, max_rows, n, k, c, stream);
    case GroupedGemmTile::kRows32:
      return launch_shape<Rows32>(a, b, offsets, num_groups, max_rows, n, k, c, stream);
    case GroupedGemmTile::kRows64:
      return launch_shape<Rows64>(a, b, offsets, num_groups, max_rows, n, k, c, stream);
    case GroupedGemmTile::kRows128:
      return launch_shape<Rows128>(a, b, offsets, num_groups, max_rows, n, k, c, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t grouped_matmul_nt(const bf16* a, const bf16* b, const int32_t* offsets,
                              int64_t num_groups, int64_t max_rows, int64_t n, int64_t k, bf16* c,
                              cudaStream_t stream) {
  return grouped_matmul_nt(a, b, offsets, num_groups, max_rows, n, k, c, stream,
                           GroupedGemmTile::kAuto);
}

cudaError_t grouped_matmul_nt_fp8(const uint8_t* a, const float* a_scales, const uint8_t* b,
                                  const float* b_scales, const int32_t* offsets, int64_t num_groups,
                                  int64_t max_rows, int64_t n, int64_t k, bf16* c,
                                  cudaStream_t stream, GroupedGemmTile tile) {
  if (!valid_grouped_sizes(num_groups, max_rows, n, k, 128)) return cudaErrorInvalidValue;
  if (!aligned(a, 16) || !aligned(b, 16) || !aligned(c, 4) || !aligned(a_scales, 4) ||
      !aligned(b_scales, 4)) {
    return cudaErrorInvalidValue;
  }
  if (num_groups == 0 || max_rows == 0) return cudaSuccess;
  const Operands operands{a, b, a_scales, b_scales};
  switch (tile) {
    case GroupedGemmTile::kAuto:
      return launch_fp8<Rows32, grouped_matmul_nt_fp8_auto_kernel>(operands, offsets, num_groups,
                                                                   max_rows, n, k, c, stream);
    case GroupedGemmTile::kRows32:
      return launch_fp8<Rows32, grouped_matmul_nt_fp8_kernel<Rows32>>(operands, offsets, num_groups,
                                                                      max_rows, n, k, c, stream);
    case GroupedGemmTile::kRows64:
      return launch_fp8<Rows64, grouped_matmul_nt_fp8_kernel<Rows64>>(operands, offsets, num_groups,
                                                                      max_rows, n, k, c, stream);
    case GroupedGemmTile::kRows128:
      break;  // see grouped_matmul_nt_fp8_kernel
  }
  return cudaErrorInvalidValue;
}

cudaError_t dense_matmul_nt(const bf16* a, const bf16* b, int64_t m, int64_t n, int64_t k, bf16* c,
                            int32_t* offsets, cudaStream_t stream) {
  return dense<StoreBf16>(a, b, m, n, k, c, offsets, stream);
}

cudaError_t dense_matmul_nt(const bf16* a, const bf16* b, int64_t m, int64_t n, int64_t k, float* c,
                            float beta, int32_t* offsets, cudaStream_t stream) {
  if (beta == 0.0f) return dense<StoreF32>(a, b, m, n, k, c, offsets, stream);
  if (beta == 1.0f) return dense<AddF32>(a, b, m, n, k, c, offsets, stream);
  return cudaErrorInvalidValue;
}

}  // namespace eep::kernels::cuda
