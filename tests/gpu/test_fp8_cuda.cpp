// Block-scaled FP8 on the GPU against the CPU reference (eep/kernels/fp8.h): the activations'
// quantization bit for bit (codes and scales, all-zero blocks, saturation, a device row count
// that leaves the tail untouched), and the grouped product of codes with their scales on random
// splits, every tile variant and the Qwen3-30B-A3B expert shapes, rows past the groups poisoned.
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "eep/kernels/cuda/fp8.h"
#include "eep/kernels/fp8.h"
#include "gpu_test_util.h"

namespace eep::gpu_test {
namespace {

using kernels::cuda::bf16;
using kernels::cuda::GroupedGemmTile;

// Random e4m3 codes, never the NaN codes 0x7f and 0xff.
std::vector<uint8_t> random_codes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> pick(0, 253);
  std::vector<uint8_t> codes(n);
  for (uint8_t& code : codes) {
    const int v = pick(rng);
    code = static_cast<uint8_t>(v < 0x7f ? v : v + 1);  // skips 0x7f; 254 values, up to 0xfe
  }
  return codes;
}

void run_fp8_case(const std::vector<int32_t>& rows_per_group, int64_t max_rows, int64_t n,
                  int64_t k, GroupedGemmTile tile, uint64_t seed) {
  const int64_t num_groups = static_cast<int64_t>(rows_per_group.size());
  const std::vector<int32_t> offsets = offsets_of(rows_per_group);
  const int64_t total_rows = offsets.back();
  REQUIRE(total_rows <= max_rows);
  INFO("num_groups " << num_groups << " total_rows " << total_rows << " n " << n << " k " << k
                     << " tile " << static_cast<int>(tile) << " seed " << seed);
  // Activations quantized as the CPU does; weights as random codes with random block scales.
  const std::vector<float> x = random_floats(max_rows * k, seed, -3.0f, 3.0f);
  std::vector<uint8_t> a(max_rows * k);
  std::vector<float> a_scales(max_rows * (k / 128));
  kernels::cpu::quantize_fp8_rows(x.data(), max_rows, k, a.data(), a_scales.data());
  const std::vector<uint8_t> b = random_codes(num_groups * n * k, seed + 1);
  const std::vector<float> b_scales =
      random_floats(num_groups * (n / 128) * (k / 128), seed + 2, 1e-4f, 4e-3f);

  DeviceBuffer<uint8_t> a_dev(a);
  DeviceBuffer<float> a_scales_dev(a_scales);
  DeviceBuffer<uint8_t> b_dev(b);
  DeviceBuffer<float> b_scales_dev(b_scales);
  DeviceBuffer<int32_t> offsets_dev(offsets);
  DeviceBuffer<bf16> c_dev(max_rows * n);
  c_dev.poison();
  EEP_REQUIRE_CUDA(kernels::cuda::grouped_matmul_nt_fp8(
      a_dev.data(), a_scales_dev.data(), b_dev.data(), b_scales_dev.data(), offsets_dev.data(),
      num_groups, max_rows, n, k, c_dev.data(), nullptr, tile));
  const std::vector<bf16> c_bf16 = c_dev.download();
  const std::vector<float> c = to_float(c_bf16);

  std::vector<float> expected(total_rows * n);
  kernels::cpu::grouped_matmul_nt_fp8(a.data(), a_scales.data(), b.data(), b_scales.data(),
                                      offsets.data(), num_groups, n, k, expected.data());
  for (int64_t g = 0; g < num_groups; ++g) {
    if (rows_per_group[g] == 0) continue;
    INFO("group " << g << " rows " << offsets[g] << ".." << offsets[g + 1]);
    const std::vector<float> got(c.begin() + offsets[g] * n, c.begin() + offsets[g + 1] * n);
    const std::vector<float> want(expected.begin() + offsets[g] * n,
                                  expected.begin() + offsets[g + 1] * n);
    CHECK(max_rel_error(got, want) <= kBf16Tolerance);
  }
  int64_t tail_written = 0;
  for (int64_t i = total_rows * n; i < max_rows * n; ++i) {
    uint16_t u;
    std::memcpy(&u, &c_bf16[i], sizeof(u));
    tail_written += u != 0xFFFF;
  }
  CHECK(tail_written == 0);
}

}  // namespace

TEST_CASE("quantize_fp8_rows gives the CPU's codes and scales bit for bit", "[gpu][fp8]") {
  const int64_t rows = 37;
  const int64_t k = 512;
  std::vector<float> x = round_bf16(random_floats(rows * k, 11, -5.0f, 5.0f));
  // An all-zero block (scale 1), a block of one huge value (the rest rounds to tiny codes) and
  // a block with tiny values (subnormal codes).
  for (int64_t i = 0; i < 128; ++i) x[3 * k + 128 + i] = 0.0f;
  x[5 * k + 7] = 30000.0f;
  for (int64_t i = 0; i < 128; ++i) x[6 * k + i] *= 1e-6f;
  x = round_bf16(x);
  std::vector<uint8_t> q_cpu(rows * k);
  std::vector<float> scales_cpu(rows * (k / 128));
  kernels::cpu::quantize_fp8_rows(x.data(), rows, k, q_cpu.data(), scales_cpu.data());

  DeviceBuffer<bf16> x_dev(to_bf16(x));
  DeviceBuffer<uint8_t> q_dev(rows * k);
  DeviceBuffer<float> scales_dev(rows * (k / 128));
  q_dev.poison();
  scales_dev.poison();
  EEP_REQUIRE_CUDA(kernels::cuda::quantize_fp8_rows(x_dev.data(), rows, k, nullptr, q_dev.data(),
                                                    scales_dev.data(), nullptr));
  CHECK(q_dev.download() == q_cpu);
  const std::vector<float> scales = scales_dev.download();
  CHECK(std::memcmp(scales.data(), scales_cpu.data(), scales.size() * sizeof(float)) == 0);
  CHECK(scales_cpu[3 * (k / 128) + 1] == 1.0f);

  // A device row count: rows from it on keep their poison.
  DeviceBuffer<int32_t> valid(std::vector<int32_t>{20});
  q_dev.poison();
  scales_dev.poison();
  EEP_REQUIRE_CUDA(kernels::cuda::quantize_fp8_rows(x_dev.data(), rows, k, valid.data(),
                                                    q_dev.data(), scales_dev.data(), nullptr));
  const std::vector<uint8_t> q = q_dev.download();
  CHECK(std::equal(q.begin(), q.begin() + 20 * k, q_cpu.begin()));
  CHECK(std::all_of(q.begin() + 20 * k, q.end(), [](uint8_t v) { return v == 0xFF; }));
}

TEST_CASE("grouped_matmul_nt_fp8 matches the CPU product of codes and scales", "[gpu][fp8]") {
  uint64_t seed = 100;
  for (GroupedGemmTile tile :
       {GroupedGemmTile::kAuto, GroupedGemmTile::kRows32, GroupedGemmTile::kRows64}) {
    run_fp8_case(random_split(150, 6, seed), 170, 256, 384, tile, seed);
    run_fp8_case({0, 0, 1, 0}, 8, 128, 128, tile, seed + 10);
    run_fp8_case({300}, 300, 384, 256, tile, seed + 20);
    seed += 100;
  }
}

TEST_CASE("grouped_matmul_nt_fp8 on the Qwen3-30B-A3B expert shapes", "[gpu][fp8]") {
  // gate_up: [2 * 768, 2048]; down: [2048, 768]; 128 experts, top-8 rows of 64 and 512 tokens.
  for (int64_t tokens : {64, 512}) {
    const std::vector<int32_t> rows = random_split(tokens * 8, 128, 7 + tokens);
    run_fp8_case(rows, tokens * 8 + 40, 1536, 2048, GroupedGemmTile::kAuto, 1 + tokens);
    run_fp8_case(rows, tokens * 8, 2048, 768, GroupedGemmTile::kAuto, 2 + tokens);
  }
}

TEST_CASE("grouped_matmul_nt_fp8 refuses what it cannot run", "[gpu][fp8]") {
  DeviceBuffer<uint8_t> a(128 * 256);
  DeviceBuffer<float> scales(256);
  DeviceBuffer<int32_t> offsets(std::vector<int32_t>{0, 128});
  DeviceBuffer<bf16> c(128 * 256);
  auto call = [&](int64_t n, int64_t k, GroupedGemmTile tile) {
    return kernels::cuda::grouped_matmul_nt_fp8(a.data(), scales.data(), a.data(), scales.data(),
                                                offsets.data(), 1, 128, n, k, c.data(), nullptr,
                                                tile);
  };
  CHECK(call(192, 128, GroupedGemmTile::kAuto) == cudaErrorInvalidValue);  // n % 128
  CHECK(call(128, 64, GroupedGemmTile::kAuto) == cudaErrorInvalidValue);   // k % 128
  CHECK(call(128, 128, GroupedGemmTile::kRows128) == cudaErrorInvalidValue);
  CHECK(call(128, 128, GroupedGemmTile::kAuto) == cudaSuccess);
  EEP_REQUIRE_CUDA(cudaDeviceSynchronize());
}

}  // namespace eep::gpu_test
