#include "eep/kernels/gemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <utility>
#include <vector>

// EEP_GEMM_PORTABLE (a compile definition) leaves only the portable path, to test it on x86.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(EEP_GEMM_PORTABLE)
#include <immintrin.h>
#define EEP_GEMM_HAVE_AVX2_PATH 1
#endif

namespace eep::kernels::cpu {
namespace {

constexpr int kLanes = 8;  // see gemm.h: the summation order is defined over 8 lanes
constexpr int kMaxTileRows = 4;
constexpr int kMaxTileCols = 6;
// Rows of b (times k floats) kept hot while every row tile of a passes over them.
constexpr int64_t kPanelBytes = 256 * 1024;
// Below this many multiply-adds a product runs on the calling thread: spawning a thread costs
// tens of microseconds.
constexpr int64_t kMinParallelMacs = int64_t{1} << 20;

// Columns of c one tile covers, by the number of rows of a it covers: as wide as the 16 vector
// registers of AVX2 allow (rows * cols accumulators + the operands).
constexpr int tile_cols_for_rows(int rows) {
  return rows == 1 ? 6 : rows == 4 ? 3 : 4;
}

// One tile of c: rows [0, MR) of a times rows [0, NR) of b (row stride k), into c (row stride
// ldc). Portable: std::fma rounds once, exactly like the hardware instruction.
template <int MR, int NR>
void tile_portable(const float* a, const float* b, float* c, int64_t k, int64_t ldc) {
  float acc[MR][NR][kLanes] = {};
  for (int64_t p0 = 0; p0 < k; p0 += kLanes) {
    const int lanes = static_cast<int>(std::min<int64_t>(kLanes, k - p0));
    for (int r = 0; r < MR; ++r) {
      for (int s = 0; s < NR; ++s) {
        for (int l = 0; l < lanes; ++l) {
          acc[r][s][l] = std::fma(a[r * k + p0 + l], b[s * k + p0 + l], acc[r][s][l]);
        }
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int s = 0; s < NR; ++s) {
      const float* v = acc[r][s];
      const float q0 = v[0] + v[4], q1 = v[1] + v[5], q2 = v[2] + v[6], q3 = v[3] + v[7];
      c[r * ldc + s] = (q0 + q2) + (q1 + q3);
    }
  }
}

#ifdef EEP_GEMM_HAVE_AVX2_PATH
__attribute__((target("avx2,fma"))) inline float reduce_lanes(__m256 v) {
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s = _mm_add_ps(q, _mm_movehl_ps(q, q));  // [q0 + q2, q1 + q3, ...]
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

template <int MR, int NR>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* a, const float* b, float* c,
                                                   int64_t k, int64_t ldc) {
  __m256 acc[MR][NR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
    for (int s = 0; s < NR; ++s) acc[r][s] = _mm256_setzero_ps();
  }
  int64_t p = 0;
  for (; p + kLanes <= k; p += kLanes) {
    __m256 bv[NR];
#pragma GCC unroll 8
    for (int s = 0; s < NR; ++s) bv[s] = _mm256_loadu_ps(b + s * k + p);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_loadu_ps(a + r * k + p);
#pragma GCC unroll 8
      for (int s = 0; s < NR; ++s) acc[r][s] = _mm256_fmadd_ps(av, bv[s], acc[r][s]);
    }
  }
  if (p < k) {
    // Masked-off lanes load 0 and fma(0, 0, lane) leaves the lane unchanged.
    const int tail = static_cast<int>(k - p);
    const __m256i mask =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 bv[NR];
#pragma GCC unroll 8
    for (int s = 0; s < NR; ++s) bv[s] = _mm256_maskload_ps(b + s * k + p, mask);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_maskload_ps(a + r * k + p, mask);
#pragma GCC unroll 8
      for (int s = 0; s < NR; ++s) acc[r][s] = _mm256_fmadd_ps(av, bv[s], acc[r][s]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
    for (int s = 0; s < NR; ++s) c[r * ldc + s] = reduce_lanes(acc[r][s]);
  }
}
#endif

using TileFn = void (*)(const float*, const float*, float*, int64_t, int64_t);

// Tile functions indexed [rows - 1][cols - 1].
struct TileTable {
  TileFn fn[kMaxTileRows][kMaxTileCols];
};

template <template <int, int> class Kernel, int R, int... C>
void fill_row(TileTable& t, std::integer_sequence<int, C...>) {
  ((t.fn[R - 1][C] = &Kernel<R, C + 1>::run), ...);
}

template <int MR, int NR>
struct PortableKernel {
  static void run(const float* a, const float* b, float* c, int64_t k, int64_t ldc) {
    tile_portable<MR, NR>(a, b, c, k, ldc);
  }
};

#ifdef EEP_GEMM_HAVE_AVX2_PATH
template <int MR, int NR>
struct Avx2Kernel {
  static void run(const float* a, const float* b, float* c, int64_t k, int64_t ldc) {
    tile_avx2<MR, NR>(a, b, c, k, ldc);
  }
};
#endif

template <template <int, int> class Kernel>
TileTable make_table() {
  TileTable t{};
  const auto cols = std::make_integer_sequence<int, kMaxTileCols>{};
  fill_row<Kernel, 1>(t, cols);
  fill_row<Kernel, 2>(t, cols);
  fill_row<Kernel, 3>(t, cols);
  fill_row<Kernel, 4>(t, cols);
  return t;
}

const TileTable& tiles() {
  static const TileTable table = [] {
#ifdef EEP_GEMM_HAVE_AVX2_PATH
    __builtin_cpu_init();  // in case the first product runs in a static constructor
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      return make_table<Avx2Kernel>();
    }
#endif
    return make_table<PortableKernel>();
  }();
  return table;
}

std::atomic<int>& num_threads_setting() {
  static std::atomic<int> value{
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))};
  return value;
}

// Columns [col_begin, col_end) of c: panels of b rows, each swept by every row tile of a.
void matmul_columns(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k,
                    int64_t col_begin, int64_t col_end) {
  const TileTable& table = tiles();
  const int64_t row_bytes = std::max<int64_t>(k, 1) * static_cast<int64_t>(sizeof(float));
  const int64_t panel = std::max<int64_t>(kMaxTileCols, kPanelBytes / row_bytes);
  for (int64_t j0 = col_begin; j0 < col_end; j0 += panel) {
    const int64_t j1 = std::min(col_end, j0 + panel);
    for (int64_t i = 0; i < m; i += kMaxTileRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kMaxTileRows, m - i));
      const int64_t step = tile_cols_for_rows(rows);
      for (int64_t j = j0; j < j1; j += step) {
        const int cols = static_cast<int>(std::min<int64_t>(step, j1 - j));
        table.fn[rows - 1][cols - 1](a + i * k, b + j * k, c + i * n + j, k, n);
      }
    }
  }
}

}  // namespace

float dot(const float* x, const float* y, int64_t k) {
  float result;
  tiles().fn[0][0](x, y, &result, k, 1);
  return result;
}

void matmul_nt(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0) return;
  const int64_t macs = m * n * k;
  int64_t num_threads = std::min<int64_t>(gemm_num_threads(), (n + kLanes - 1) / kLanes);
  if (macs < kMinParallelMacs || num_threads <= 1) {
    matmul_columns(a, b, c, m, n, k, 0, n);
    return;
  }
  // Contiguous column ranges, multiples of 8 so tiles stay full; the caller takes the first.
  const int64_t chunk = ((n + num_threads - 1) / num_threads + kLanes - 1) / kLanes * kLanes;
  std::vector<std::thread> helpers;
  for (int64_t begin = chunk; begin < n; begin += chunk) {
    helpers.emplace_back(matmul_columns, a, b, c, m, n, k, begin, std::min(n, begin + chunk));
  }
  matmul_columns(a, b, c, m, n, k, 0, std::min(n, chunk));
  for (std::thread& t : helpers) t.join();
}

void set_gemm_num_threads(int num_threads) {
  num_threads_setting().store(std::max(1, num_threads), std::memory_order_relaxed);
}

int gemm_num_threads() {
  return num_threads_setting().load(std::memory_order_relaxed);
}

}  // namespace eep::kernels::cpu
