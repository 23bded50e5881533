// Helpers of the GPU tests: device buffers, poisoning, bf16 conversion on the host, and the
// error measure every kernel test uses against its CPU implementation.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace eep::gpu_test {

#define EEP_REQUIRE_CUDA(expr)                           \
  do {                                                   \
    const cudaError_t eep_err_ = (expr);                 \
    INFO(#expr << ": " << cudaGetErrorString(eep_err_)); \
    REQUIRE(eep_err_ == cudaSuccess);                    \
  } while (0)

// Device memory of n elements of T, freed on destruction.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : size_(n) {
    if (n > 0) EEP_REQUIRE_CUDA(cudaMalloc(&data_, n * sizeof(T)));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }

  void upload(const std::vector<T>& host) {
    REQUIRE(host.size() == size_);
    EEP_REQUIRE_CUDA(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(size_);
    EEP_REQUIRE_CUDA(cudaDeviceSynchronize());
    EEP_REQUIRE_CUDA(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  // Every byte 0xFF: NaN as float or bf16, -1 as a signed integer, so an element a kernel
  // forgot to write shows in the comparison.
  void poison() { EEP_REQUIRE_CUDA(cudaMemset(data_, 0xFF, size_ * sizeof(T))); }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<__nv_bfloat16> to_bf16(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __float2bfloat16(v[i]);
  return out;
}

inline std::vector<float> to_float(const std::vector<__nv_bfloat16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __bfloat162float(v[i]);
  return out;
}

// Values rounded through bf16, so the CPU reference sees exactly the GPU's inputs.
inline std::vector<float> round_bf16(const std::vector<float>& v) {
  return to_float(to_bf16(v));
}

// max_i |actual_i - expected_i| / max(max_i |expected_i|, 1e-6); infinity when any actual value
// is not finite (an unwritten, poisoned element) or the sizes differ.
inline double max_rel_error(const std::vector<float>& actual, const std::vector<float>& expected) {
  if (actual.size() != expected.size()) return INFINITY;
  double scale = 1e-6;
  for (float e : expected) scale = std::max(scale, static_cast<double>(std::fabs(e)));
  double worst = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i])) return INFINITY;
    worst = std::max(worst, std::fabs(static_cast<double>(actual[i]) - expected[i]) / scale);
  }
  return worst;
}

// The offsets of groups with these row counts: num_groups + 1 values from 0.
inline std::vector<int32_t> offsets_of(const std::vector<int32_t>& rows_per_group) {
  std::vector<int32_t> offsets(rows_per_group.size() + 1, 0);
  for (size_t g = 0; g < rows_per_group.size(); ++g) {
    offsets[g + 1] = offsets[g] + rows_per_group[g];
  }
  return offsets;
}

// rows_total spread over num_groups uniformly at random (some groups may be empty).
inline std::vector<int32_t> random_split(int64_t rows_total, int64_t num_groups, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, num_groups - 1);
  std::vector<int32_t> rows(num_groups, 0);
  for (int64_t r = 0; r < rows_total; ++r) ++rows[pick(rng)];
  return rows;
}

// bf16 keeps 8 significant bits: one rounding is a relative error of 2^-9; results that pass
// through a few bf16 roundings and long fp32 sums stay within this of the fp32 reference.
inline constexpr double kBf16Tolerance = 2e-2;

}  // namespace eep::gpu_test
