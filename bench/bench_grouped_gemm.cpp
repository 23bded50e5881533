// Throughput of the grouped expert GEMM (eep::kernels::cuda::grouped_matmul_nt) on the
// Qwen3-30B-A3B expert shapes, beside two cuBLAS references run in the same process:
//   dense:   one cublasGemmEx of all the rows against one expert's weights (an upper bound: no
//            grouping, no padding of partial tiles);
//   grouped: cublasGemmGroupedBatchedEx with the same groups (row counts on the host, which a
//            graph-captured MoE layer does not have).
// Each token picks top_k distinct experts uniformly at random; every timed run cycles through
// kNumSplits such routings (so the same experts' weights do not sit in L2 run after run).
// Times: CUDA events, median of `runs` runs after warm-up. The next table times the whole expert
// FFN (gate_up GEMM, silu_mul, down GEMM) as the MoE layer runs it; the last one the same FFN in
// block-scaled FP8 (the weights quantized per 128 x 128 block, the activations per row and 128
// columns before each GEMM: eep/kernels/cuda/fp8.h) beside bf16 on the same routings, with the
// FP8 output's difference from bf16's.
// Usage: bench_grouped_gemm [num_groups=128] [runs=30]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "eep/kernels/cuda/fp8.h"
#include "eep/kernels/cuda/gemm.h"
#include "eep/kernels/cuda/grouped_gemm.h"
#include "eep/kernels/cuda/silu_mul.h"
#include "eep/kernels/fp8.h"

namespace {

using eep::kernels::cuda::bf16;
using eep::kernels::cuda::GroupedGemmTile;

#define BENCH_CUDA(expr)                                                 \
  do {                                                                   \
    const cudaError_t bench_err_ = (expr);                               \
    if (bench_err_ != cudaSuccess) {                                     \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, \
                   cudaGetErrorString(bench_err_));                      \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

#define BENCH_CUBLAS(expr)                                                             \
  do {                                                                                 \
    const cublasStatus_t bench_status_ = (expr);                                       \
    if (bench_status_ != CUBLAS_STATUS_SUCCESS) {                                      \
      std::fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #expr, \
                   static_cast<int>(bench_status_));                                   \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)

constexpr int kTopK = 8;
constexpr int kNumSplits = 8;
constexpr int kWarmupRuns = 5;
constexpr int64_t kHidden = 2048;
constexpr int64_t kIntermediate = 768;

template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : size_(n) {
    if (n > 0) BENCH_CUDA(cudaMalloc(&data_, n * sizeof(T)));
  }
  ~DeviceArray() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* data() { return data_; }
  size_t size() const { return size_; }
  void upload(const T* host, size_t n, size_t offset = 0) {
    BENCH_CUDA(cudaMemcpy(data_ + offset, host, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download(size_t n) const {
    std::vector<T> host(n);
    BENCH_CUDA(cudaDeviceSynchronize());
    BENCH_CUDA(cudaMemcpy(host.data(), data_, n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

// Uniform values in [-scale, scale], from a 4M-value host pattern repeated at a shifting start.
void fill_random(DeviceArray<bf16>& dev, float scale, uint64_t seed) {
  constexpr size_t kPattern = size_t{1} << 22;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<bf16> pattern(2 * kPattern);
  for (bf16& v : pattern) v = __float2bfloat16(dist(rng));
  size_t shift = 0;
  for (size_t done = 0; done < dev.size(); done += kPattern) {
    const size_t n = std::min(kPattern, dev.size() - done);
    dev.upload(pattern.data() + shift, n, done);
    shift = (shift + 12345) % kPattern;
  }
}

// Rows per expert when each of `tokens` tokens picks top_k distinct experts at random.
std::vector<int32_t> route(int64_t tokens, int64_t num_groups, std::mt19937_64& rng) {
  std::vector<int32_t> rows(num_groups, 0);
  std::vector<int32_t> experts(num_groups);
  std::iota(experts.begin(), experts.end(), 0);
  const int64_t top_k = std::min<int64_t>(kTopK, num_groups);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < top_k; ++j) {  // partial Fisher-Yates
      std::uniform_int_distribution<int64_t> pick(j, num_groups - 1);
      std::swap(experts[j], experts[pick(rng)]);
      ++rows[experts[j]];
    }
  }
  return rows;
}

// Median milliseconds of run(i) over `runs` runs after warm-up, each timed by its own events.
double median_ms(const std::function<void(int)>& run, int runs, cudaStream_t stream) {
  for (int i = 0; i < kWarmupRuns; ++i) run(i);
  std::vector<cudaEvent_t> events(2 * runs);
  for (cudaEvent_t& e : events) BENCH_CUDA(cudaEventCreate(&e));
  for (int i = 0; i < runs; ++i) {
    BENCH_CUDA(cudaEventRecord(events[2 * i], stream));
    run(i);
    BENCH_CUDA(cudaEventRecord(events[2 * i + 1], stream));
  }
  BENCH_CUDA(cudaStreamSynchronize(stream));
  std::vector<double> ms(runs);
  for (int i = 0; i < runs; ++i) {
    float t = 0.0f;
    BENCH_CUDA(cudaEventElapsedTime(&t, events[2 * i], events[2 * i + 1]));
    ms[i] = t;
  }
  for (cudaEvent_t& e : events) cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  return ms[runs / 2];
}

// The routings of one token count: host rows per group and device offsets, per split.
struct Splits {
  int64_t rows = 0;  // max over the splits (every split has tokens * top_k rows)
  std::vector<std::vector<int32_t>> rows_per_group;
  DeviceArray<int32_t> offsets;  // kNumSplits x (num_groups + 1)

  Splits(int64_t tokens, int64_t num_groups, uint64_t seed)
      : offsets(static_cast<size_t>(kNumSplits * (num_groups + 1))) {
    std::mt19937_64 rng(seed);
    for (int s = 0; s < kNumSplits; ++s) {
      rows_per_group.push_back(route(tokens, num_groups, rng));
      std::vector<int32_t> off(num_groups + 1, 0);
      for (int64_t g = 0; g < num_groups; ++g) off[g + 1] = off[g] + rows_per_group[s][g];
      offsets.upload(off.data(), off.size(), s * (num_groups + 1));
      rows = std::max<int64_t>(rows, off.back());
    }
  }
  const int32_t* offsets_of(int split, int64_t num_groups) {
    return offsets.data() + split * (num_groups + 1);
  }
};

// cublasGemmGroupedBatchedEx over the non-empty groups of one split (row-major c = a * b^T is
// column-major c^T = b * a^T).
class CublasGrouped {
 public:
  CublasGrouped(const std::vector<int32_t>& rows_per_group, const bf16* a, const bf16* b, bf16* c,
                int64_t n, int64_t k) {
    std::vector<void*> a_ptrs;
    std::vector<void*> b_ptrs;
    std::vector<void*> c_ptrs;
    int64_t row = 0;
    for (size_t g = 0; g < rows_per_group.size(); ++g) {
      const int rows = rows_per_group[g];
      if (rows > 0) {
        // cuBLAS's A is the weights (transposed), its B the rows; neither is written.
        a_ptrs.push_back(const_cast<bf16*>(b + g * n * k));
        b_ptrs.push_back(const_cast<bf16*>(a + row * k));
        c_ptrs.push_back(c + row * n);
        m_.push_back(static_cast<int>(n));
        n_.push_back(rows);
      }
      row += rows;
    }
    const size_t count = m_.size();
    k_.assign(count, static_cast<int>(k));
    lda_.assign(count, static_cast<int>(k));
    ldb_.assign(count, static_cast<int>(k));
    ldc_.assign(count, static_cast<int>(n));
    trans_a_.assign(count, CUBLAS_OP_T);
    trans_b_.assign(count, CUBLAS_OP_N);
    alpha_.assign(count, 1.0f);
    beta_.assign(count, 0.0f);
    group_size_.assign(count, 1);
    pointers_ = std::make_unique<DeviceArray<void*>>(3 * count);
    pointers_->upload(a_ptrs.data(), count, 0);
    pointers_->upload(b_ptrs.data(), count, count);
    pointers_->upload(c_ptrs.data(), count, 2 * count);
  }
  CublasGrouped(CublasGrouped&&) = delete;

  cublasStatus_t run(cublasHandle_t handle) {
    const int count = static_cast<int>(m_.size());
    if (count == 0) return CUBLAS_STATUS_SUCCESS;
    void* const* ptrs = pointers_->data();
    return cublasGemmGroupedBatchedEx(
        handle, trans_a_.data(), trans_b_.data(), m_.data(), n_.data(), k_.data(), alpha_.data(),
        ptrs, CUDA_R_16BF, lda_.data(), ptrs + count, CUDA_R_16BF, ldb_.data(), beta_.data(),
        ptrs + 2 * count, CUDA_R_16BF, ldc_.data(), count, group_size_.data(), CUBLAS_COMPUTE_32F);
  }

 private:
  std::vector<int> m_, n_, k_, lda_, ldb_, ldc_, group_size_;
  std::vector<cublasOperation_t> trans_a_, trans_b_;
  std::vector<float> alpha_, beta_;
  std::unique_ptr<DeviceArray<void*>> pointers_;  // A, B, C pointers, count each
};

// Weights [num_groups, n, k] to e4m3 codes with one scale per 128 x 128 block (a checkpoint's
// weight_scale_inv), expert by expert through the host.
void quantize_weights(DeviceArray<bf16>& w, int64_t num_groups, int64_t n, int64_t k,
                      DeviceArray<uint8_t>& codes, DeviceArray<float>& scales) {
  using eep::kernels::cpu::fp32_to_fp8_e4m3;
  const int64_t n_blocks = n / 128;
  const int64_t k_blocks = k / 128;
  std::vector<bf16> host(n * k);
  std::vector<uint8_t> host_codes(n * k);
  std::vector<float> host_scales(n_blocks * k_blocks);
  for (int64_t g = 0; g < num_groups; ++g) {
    BENCH_CUDA(cudaMemcpy(host.data(), w.data() + g * n * k, n * k * sizeof(bf16),
                          cudaMemcpyDeviceToHost));
    for (int64_t nb = 0; nb < n_blocks; ++nb) {
      for (int64_t kb = 0; kb < k_blocks; ++kb) {
        float amax = 0.0f;
        for (int64_t i = nb * 128; i < (nb + 1) * 128; ++i) {
          for (int64_t j = kb * 128; j < (kb + 1) * 128; ++j) {
            amax = std::max(amax, std::fabs(__bfloat162float(host[i * k + j])));
          }
        }
        const float scale = amax > 0.0f ? amax / eep::kernels::cpu::kF8E4M3Max : 1.0f;
        host_scales[nb * k_blocks + kb] = scale;
        for (int64_t i = nb * 128; i < (nb + 1) * 128; ++i) {
          for (int64_t j = kb * 128; j < (kb + 1) * 128; ++j) {
            host_codes[i * k + j] = fp32_to_fp8_e4m3(__bfloat162float(host[i * k + j]) / scale);
          }
        }
      }
    }
    codes.upload(host_codes.data(), host_codes.size(), g * n * k);
    scales.upload(host_scales.data(), host_scales.size(), g * n_blocks * k_blocks);
  }
}

double tflops(int64_t rows, int64_t n, int64_t k, double ms) {
  return ms > 0.0 ? 2.0 * rows * n * k / (ms * 1e-3) * 1e-12 : 0.0;
}

// max |x - y| / max |y| over the first `count` elements.
double max_rel_diff(const std::vector<bf16>& x, const std::vector<bf16>& y, size_t count) {
  double scale = 1e-6;
  double worst = 0.0;
  for (size_t i = 0; i < count; ++i) {
    const double xv = __bfloat162float(x[i]);
    const double yv = __bfloat162float(y[i]);
    if (!std::isfinite(xv)) return INFINITY;
    scale = std::max(scale, std::fabs(yv));
    worst = std::max(worst, std::fabs(xv - yv));
  }
  return worst / scale;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t num_groups = argc > 1 ? std::atoll(argv[1]) : 128;
  const int runs = argc > 2 ? std::max(1, std::atoi(argv[2])) : 30;
  const int64_t token_counts[] = {1, 16, 64, 256, 1024, 4096};
  const int64_t max_tokens = 4096;

  int device = 0;
  BENCH_CUDA(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  BENCH_CUDA(cudaGetDeviceProperties(&prop, device));
  std::printf("GPU: %s (%d SMs), %lld groups, top-%d, median of %d runs\n", prop.name,
              prop.multiProcessorCount, static_cast<long long>(num_groups), kTopK, runs);

  cudaStream_t stream = nullptr;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  eep::kernels::cuda::Blas blas(stream);
  if (!blas.ok()) {
    std::fprintf(stderr, "cuBLAS initialisation failed\n");
    return 1;
  }
  cublasHandle_t grouped_handle = nullptr;
  BENCH_CUBLAS(cublasCreate(&grouped_handle));
  BENCH_CUBLAS(cublasSetStream(grouped_handle, stream));

  const int64_t max_rows = max_tokens * kTopK;
  const int64_t gate_up_n = 2 * kIntermediate;
  DeviceArray<bf16> w_gate_up(num_groups * gate_up_n * kHidden);
  DeviceArray<bf16> w_down(num_groups * kHidden * kIntermediate);
  DeviceArray<bf16> x(max_rows * kHidden);
  DeviceArray<bf16> gate_up(max_rows * gate_up_n);
  DeviceArray<bf16> act(max_rows * kIntermediate);
  DeviceArray<bf16> y(max_rows * kHidden);
  DeviceArray<bf16> check(max_rows * kHidden);
  // Weights about 1 / sqrt(k) so that the products stay O(1), as in a trained model.
  fill_random(w_gate_up, 1.0f / std::sqrt(static_cast<float>(kHidden)), 1);
  fill_random(w_down, 1.0f / std::sqrt(static_cast<float>(kIntermediate)), 2);
  fill_random(x, 1.0f, 3);
  fill_random(act, 1.0f, 4);

  struct Shape {
    const char* name;
    int64_t n, k;
    DeviceArray<bf16>* w;
    DeviceArray<bf16>* a;
    DeviceArray<bf16>* c;
  };
  Shape shapes[] = {{"gate_up", gate_up_n, kHidden, &w_gate_up, &x, &gate_up},
                    {"down", kHidden, kIntermediate, &w_down, &act, &y}};
  const GroupedGemmTile tiles[] = {GroupedGemmTile::kAuto, GroupedGemmTile::kRows32,
                                   GroupedGemmTile::kRows64, GroupedGemmTile::kRows128};

  std::printf("\n%-8s %6s %6s %5s | %9s %7s | %8s %8s %8s | %9s %7s | %9s %7s | %8s\n", "shape",
              "tokens", "rows", "n", "ours ms", "TFLOP/s", "rows32", "rows64", "rows128",
              "dense ms", "TFLOP/s", "grouped", "TFLOP/s", "diff");
  for (Shape& s : shapes) {
    for (int64_t tokens : token_counts) {
      Splits splits(tokens, num_groups, 1000 + tokens);
      const int64_t rows = tokens * std::min<int64_t>(kTopK, num_groups);
      double ours_ms[4] = {};
      for (int t = 0; t < 4; ++t) {
        ours_ms[t] = median_ms(
            [&](int i) {
              BENCH_CUDA(eep::kernels::cuda::grouped_matmul_nt(
                  s.a->data(), s.w->data(), splits.offsets_of(i % kNumSplits, num_groups),
                  num_groups, splits.rows, s.n, s.k, s.c->data(), stream, tiles[t]));
            },
            runs, stream);
      }
      const double dense_ms = median_ms(
          [&](int i) {
            const bf16* w = s.w->data() + (i % num_groups) * s.n * s.k;
            BENCH_CUBLAS(blas.matmul_nt(s.a->data(), w, s.c->data(), rows, s.n, s.k));
          },
          runs, stream);
      std::vector<std::unique_ptr<CublasGrouped>> grouped;
      for (int sp = 0; sp < kNumSplits; ++sp) {
        grouped.push_back(std::make_unique<CublasGrouped>(splits.rows_per_group[sp], s.a->data(),
                                                          s.w->data(), s.c->data(), s.n, s.k));
      }
      // cuBLAS may not offer the grouped call for these types: report n/a, keep going.
      double grouped_ms = NAN;
      const cublasStatus_t grouped_status = grouped[0]->run(grouped_handle);
      if (grouped_status == CUBLAS_STATUS_SUCCESS) {
        grouped_ms =
            median_ms([&](int i) { BENCH_CUBLAS(grouped[i % kNumSplits]->run(grouped_handle)); },
                      runs, stream);
      } else {
        std::fprintf(stderr, "cublasGemmGroupedBatchedEx: status %d\n",
                     static_cast<int>(grouped_status));
      }
      // Agreement with cuBLAS, one dense product per group, on split 0 (catches a broken kernel
      // in a benchmark run).
      BENCH_CUDA(eep::kernels::cuda::grouped_matmul_nt(
          s.a->data(), s.w->data(), splits.offsets_of(0, num_groups), num_groups, splits.rows, s.n,
          s.k, check.data(), stream));
      int64_t row = 0;
      for (int64_t g = 0; g < num_groups; ++g) {
        const int64_t group_rows = splits.rows_per_group[0][g];
        if (group_rows > 0) {
          BENCH_CUBLAS(blas.matmul_nt(s.a->data() + row * s.k, s.w->data() + g * s.n * s.k,
                                      s.c->data() + row * s.n, group_rows, s.n, s.k));
        }
        row += group_rows;
      }
      BENCH_CUDA(cudaStreamSynchronize(stream));
      const double diff = max_rel_diff(check.download(rows * s.n), s.c->download(rows * s.n),
                                       static_cast<size_t>(rows * s.n));
      std::printf(
          "%-8s %6lld %6lld %5lld | %9.4f %7.1f | %8.4f %8.4f %8.4f | %9.4f %7.1f | %9.4f %7.1f | "
          "%8.1e\n",
          s.name, static_cast<long long>(tokens), static_cast<long long>(rows),
          static_cast<long long>(s.n), ours_ms[0], tflops(rows, s.n, s.k, ours_ms[0]), ours_ms[1],
          ours_ms[2], ours_ms[3], dense_ms, tflops(rows, s.n, s.k, dense_ms), grouped_ms,
          tflops(rows, s.n, s.k, grouped_ms), diff);
    }
  }
  std::printf(
      "(gate_up n = %lld, k = %lld; down n = %lld, k = %lld; rows32/64/128: ms of "
      "each tile variant; grouped: cublasGemmGroupedBatchedEx; diff: max |ours - cuBLAS| / "
      "max |cuBLAS| with one cuBLAS product per group)\n",
      static_cast<long long>(gate_up_n), static_cast<long long>(kHidden),
      static_cast<long long>(kHidden), static_cast<long long>(kIntermediate));

  std::printf("\nExpert FFN (gate_up GEMM + silu_mul + down GEMM, tile auto)\n");
  std::printf("%6s %6s | %9s %7s\n", "tokens", "rows", "ms", "TFLOP/s");
  for (int64_t tokens : token_counts) {
    Splits splits(tokens, num_groups, 2000 + tokens);
    const int64_t rows = tokens * std::min<int64_t>(kTopK, num_groups);
    const double ms = median_ms(
        [&](int i) {
          const int32_t* offsets = splits.offsets_of(i % kNumSplits, num_groups);
          BENCH_CUDA(eep::kernels::cuda::grouped_matmul_nt(x.data(), w_gate_up.data(), offsets,
                                                           num_groups, splits.rows, gate_up_n,
                                                           kHidden, gate_up.data(), stream));
          BENCH_CUDA(eep::kernels::cuda::silu_mul(gate_up.data(), offsets + num_groups, splits.rows,
                                                  kIntermediate, act.data(), stream));
          BENCH_CUDA(eep::kernels::cuda::grouped_matmul_nt(act.data(), w_down.data(), offsets,
                                                           num_groups, splits.rows, kHidden,
                                                           kIntermediate, y.data(), stream));
        },
        runs, stream);
    const double rate =
        tflops(rows, gate_up_n, kHidden, ms) + tflops(rows, kHidden, kIntermediate, ms);
    std::printf("%6lld %6lld | %9.4f %7.1f\n", static_cast<long long>(tokens),
                static_cast<long long>(rows), ms, rate);
  }

  // The same FFN in FP8: codes and scales of both weights, activations quantized in the run.
  DeviceArray<uint8_t> w_gate_up_fp8(num_groups * gate_up_n * kHidden);
  DeviceArray<float> w_gate_up_scales(num_groups * (gate_up_n / 128) * (kHidden / 128));
  DeviceArray<uint8_t> w_down_fp8(num_groups * kHidden * kIntermediate);
  DeviceArray<float> w_down_scales(num_groups * (kHidden / 128) * (kIntermediate / 128));
  quantize_weights(w_gate_up, num_groups, gate_up_n, kHidden, w_gate_up_fp8, w_gate_up_scales);
  quantize_weights(w_down, num_groups, kHidden, kIntermediate, w_down_fp8, w_down_scales);
  DeviceArray<uint8_t> x_fp8(max_rows * kHidden);
  DeviceArray<float> x_scales(max_rows * (kHidden / 128));
  DeviceArray<uint8_t> act_fp8(max_rows * kIntermediate);
  DeviceArray<float> act_scales(max_rows * (kIntermediate / 128));
  auto ffn_bf16 = [&](const int32_t* offsets, int64_t max_rows_split, bf16* out) {
    BENCH_CUDA(eep::kernels::cuda::grouped_matmul_nt(x.data(), w_gate_up.data(), offsets,
                                                     num_groups, max_rows_split, gate_up_n, kHidden,
                                                     gate_up.data(), stream));
    BENCH_CUDA(eep::kernels::cuda::silu_mul(gate_up.data(), offsets + num_groups, max_rows_split,
                                            kIntermediate, act.data(), stream));
    BENCH_CUDA(eep::kernels::cuda::grouped_matmul_nt(act.data(), w_down.data(), offsets, num_groups,
                                                     max_rows_split, kHidden, kIntermediate, out,
                                                     stream));
  };
  auto ffn_fp8 = [&](const int32_t* offsets, int64_t max_rows_split, bf16* out) {
    const int32_t* valid = offsets + num_groups;
    BENCH_CUDA(eep::kernels::cuda::quantize_fp8_rows(x.data(), max_rows_split, kHidden, valid,
                                                     x_fp8.data(), x_scales.data(), stream));
    BENCH_CUDA(eep::kernels::cuda::grouped_matmul_nt_fp8(
        x_fp8.data(), x_scales.data(), w_gate_up_fp8.data(), w_gate_up_scales.data(), offsets,
        num_groups, max_rows_split, gate_up_n, kHidden, gate_up.data(), stream));
    BENCH_CUDA(eep::kernels::cuda::silu_mul(gate_up.data(), valid, max_rows_split, kIntermediate,
                                            act.data(), stream));
    BENCH_CUDA(eep::kernels::cuda::quantize_fp8_rows(act.data(), max_rows_split, kIntermediate,
                                                     valid, act_fp8.data(), act_scales.data(),
                                                     stream));
    BENCH_CUDA(eep::kernels::cuda::grouped_matmul_nt_fp8(
        act_fp8.data(), act_scales.data(), w_down_fp8.data(), w_down_scales.data(), offsets,
        num_groups, max_rows_split, kHidden, kIntermediate, out, stream));
  };
  std::printf(
      "\nExpert FFN, bf16 and block-scaled FP8 (activation quantization included), tile "
      "auto\n");
  std::printf("%6s %6s | %9s %9s %7s | %8s\n", "tokens", "rows", "bf16 ms", "fp8 ms", "speedup",
              "diff");
  for (int64_t tokens : token_counts) {
    Splits splits(tokens, num_groups, 3000 + tokens);
    const int64_t rows = tokens * std::min<int64_t>(kTopK, num_groups);
    const double bf16_ms = median_ms(
        [&](int i) {
          ffn_bf16(splits.offsets_of(i % kNumSplits, num_groups), splits.rows, y.data());
        },
        runs, stream);
    const double fp8_ms = median_ms(
        [&](int i) {
          ffn_fp8(splits.offsets_of(i % kNumSplits, num_groups), splits.rows, y.data());
        },
        runs, stream);
    ffn_bf16(splits.offsets_of(0, num_groups), splits.rows, y.data());
    ffn_fp8(splits.offsets_of(0, num_groups), splits.rows, check.data());
    BENCH_CUDA(cudaStreamSynchronize(stream));
    const double diff = max_rel_diff(check.download(rows * kHidden), y.download(rows * kHidden),
                                     static_cast<size_t>(rows * kHidden));
    std::printf("%6lld %6lld | %9.4f %9.4f %6.2fx | %8.1e\n", static_cast<long long>(tokens),
                static_cast<long long>(rows), bf16_ms, fp8_ms, bf16_ms / fp8_ms, diff);
  }
  std::printf("(diff: max |fp8 - bf16| / max |bf16| of the FFN's output, routing split 0)\n");

  cublasDestroy(grouped_handle);
  cudaStreamDestroy(stream);
  return 0;
}
