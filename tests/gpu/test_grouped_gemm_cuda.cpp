// The grouped expert GEMM and SwiGLU activation on the GPU against the CPU implementation:
// random group sizes (empty groups, one group with every row, a tail of unused rows that must
// stay poisoned), every tile variant, the Qwen3-30B-A3B shapes, row independence (bitwise), and
// a CUDA graph replayed with new row counts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "eep/kernels/cuda/grouped_gemm.h"
#include "eep/kernels/cuda/silu_mul.h"
#include "eep/kernels/gemm.h"
#include "gpu_test_util.h"

namespace eep::gpu_test {
namespace {

using kernels::cuda::bf16;
using kernels::cuda::GroupedGemmTile;

const char* tile_name(GroupedGemmTile tile) {
  switch (tile) {
    case GroupedGemmTile::kAuto:
      return "auto";
    case GroupedGemmTile::kRows32:
      return "rows32";
    case GroupedGemmTile::kRows64:
      return "rows64";
    case GroupedGemmTile::kRows128:
      return "rows128";
  }
  return "?";
}

// The tile variants valid for n.
std::vector<GroupedGemmTile> tiles_for(int64_t n) {
  std::vector<GroupedGemmTile> tiles = {GroupedGemmTile::kAuto, GroupedGemmTile::kRows32};
  if (n % 128 == 0) {
    tiles.push_back(GroupedGemmTile::kRows64);
    tiles.push_back(GroupedGemmTile::kRows128);
  }
  return tiles;
}

uint16_t bits(bf16 x) {
  uint16_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

// Checks one group's rows of c against the CPU product; on failure, says where.
void check_group(const std::vector<float>& c, const std::vector<float>& expected, int64_t group,
                 int64_t row_begin, int64_t num_rows, int64_t n) {
  std::vector<float> actual(c.begin() + row_begin * n, c.begin() + (row_begin + num_rows) * n);
  const double err = max_rel_error(actual, expected);
  if (err <= kBf16Tolerance) return;
  double scale = 1e-6;
  for (float e : expected) scale = std::max(scale, static_cast<double>(std::fabs(e)));
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i]) || std::fabs(actual[i] - expected[i]) / scale > kBf16Tolerance) {
      INFO("group " << group << " (" << num_rows << " rows from row " << row_begin
                    << "): first mismatch at row " << row_begin + static_cast<int64_t>(i) / n
                    << " (row " << static_cast<int64_t>(i) / n << " of the group) col "
                    << static_cast<int64_t>(i) % n << ": got " << actual[i] << " expected "
                    << expected[i] << " (max |expected| " << scale << ")");
      CHECK(err <= kBf16Tolerance);
      return;
    }
  }
}

// Runs grouped_matmul_nt on random inputs with the given split and checks every group against
// cpu::matmul_nt and that the rows from offsets[num_groups] to max_rows stay poisoned.
void run_grouped_case(const std::vector<int32_t>& rows_per_group, int64_t max_rows, int64_t n,
                      int64_t k, GroupedGemmTile tile, uint64_t seed) {
  const int64_t num_groups = static_cast<int64_t>(rows_per_group.size());
  const std::vector<int32_t> offsets = offsets_of(rows_per_group);
  const int64_t total_rows = offsets.back();
  REQUIRE(total_rows <= max_rows);
  INFO("num_groups " << num_groups << " total_rows " << total_rows << " max_rows " << max_rows
                     << " n " << n << " k " << k << " tile " << tile_name(tile) << " seed "
                     << seed);

  const std::vector<float> a = round_bf16(random_floats(max_rows * k, seed));
  const std::vector<float> b = round_bf16(random_floats(num_groups * n * k, seed + 1));
  DeviceBuffer<bf16> a_dev(to_bf16(a));
  DeviceBuffer<bf16> b_dev(to_bf16(b));
  DeviceBuffer<int32_t> offsets_dev(offsets);
  DeviceBuffer<bf16> c_dev(max_rows * n);
  c_dev.poison();

  EEP_REQUIRE_CUDA(kernels::cuda::grouped_matmul_nt(a_dev.data(), b_dev.data(), offsets_dev.data(),
                                                    num_groups, max_rows, n, k, c_dev.data(),
                                                    nullptr, tile));
  EEP_REQUIRE_CUDA(cudaGetLastError());
  const std::vector<bf16> c_bf16 = c_dev.download();
  const std::vector<float> c = to_float(c_bf16);

  for (int64_t g = 0; g < num_groups; ++g) {
    const int64_t rows = rows_per_group[g];
    if (rows == 0) continue;
    std::vector<float> expected(rows * n);
    kernels::cpu::matmul_nt(a.data() + offsets[g] * k, b.data() + g * n * k, expected.data(), rows,
                            n, k);
    check_group(c, expected, g, offsets[g], rows, n);
  }
  int64_t first_written_tail = -1;
  for (int64_t i = total_rows * n; i < max_rows * n; ++i) {
    if (bits(c_bf16[i]) != 0xFFFF) {
      first_written_tail = i;
      break;
    }
  }
  INFO("first element written beyond offsets[num_groups]: row "
       << (first_written_tail < 0 ? -1 : first_written_tail / n) << " col "
       << (first_written_tail < 0 ? -1 : first_written_tail % n));
  CHECK(first_written_tail == -1);
}

TEST_CASE("grouped_matmul_nt matches the CPU product on random splits", "[gpu][grouped_gemm]") {
  struct Shape {
    int64_t num_groups, total_rows, extra_rows, n, k;
  };
  const Shape shapes[] = {
      {1, 1, 0, 64, 64},     {3, 5, 7, 64, 64},        {8, 100, 20, 64, 64},
      {5, 37, 3, 128, 128},  {16, 300, 0, 256, 192},   {64, 700, 50, 128, 256},
      {7, 1000, 5, 384, 64}, {130, 2000, 33, 128, 64},  // more groups than one warp's chunk
  };
  uint64_t seed = 100;
  for (const Shape& s : shapes) {
    for (GroupedGemmTile tile : tiles_for(s.n)) {
      const std::vector<int32_t> rows = random_split(s.total_rows, s.num_groups, ++seed);
      run_grouped_case(rows, s.total_rows + s.extra_rows, s.n, s.k, tile, ++seed);
    }
  }
}

TEST_CASE("grouped_matmul_nt edge splits", "[gpu][grouped_gemm]") {
  for (GroupedGemmTile tile : tiles_for(128)) {
    // One group holds every row; the others are empty.
    run_grouped_case({0, 0, 300, 0}, 310, 128, 128, tile, 1);
    run_grouped_case({300}, 300, 128, 128, tile, 2);
    // Every group empty: nothing is written.
    run_grouped_case({0, 0, 0}, 16, 128, 64, tile, 3);
    // Sizes around the tile heights.
    run_grouped_case({1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 0, 255, 256, 257}, 1500,
                     128, 128, tile, 4);
    // Empty groups at both ends.
    run_grouped_case({0, 3, 0, 0, 9, 0}, 12, 128, 64, tile, 5);
  }
}

TEST_CASE("grouped_matmul_nt on the Qwen3-30B-A3B expert shapes", "[gpu][grouped_gemm]") {
  const int64_t hidden = 2048;
  const int64_t intermediate = 768;
  struct Case {
    int64_t num_groups, total_rows;
  };
  // Decode-like (a few rows per expert) and prefill-like (hundreds), at EP 1 and 4.
  const Case cases[] = {{128, 8}, {128, 400}, {32, 1200}};
  uint64_t seed = 1000;
  for (const Case& cs : cases) {
    for (GroupedGemmTile tile : tiles_for(2 * intermediate)) {
      const std::vector<int32_t> rows = random_split(cs.total_rows, cs.num_groups, ++seed);
      run_grouped_case(rows, cs.total_rows + 3, 2 * intermediate, hidden, tile, ++seed);  // gate_up
      run_grouped_case(rows, cs.total_rows, hidden, intermediate, tile, ++seed);          // down
    }
  }
}

TEST_CASE("grouped_matmul_nt rejects unsupported shapes", "[gpu][grouped_gemm]") {
  DeviceBuffer<bf16> a(64 * 128);
  DeviceBuffer<bf16> b(128 * 128);
  DeviceBuffer<int32_t> offsets(std::vector<int32_t>{0, 64});
  DeviceBuffer<bf16> c(64 * 128);
  using kernels::cuda::grouped_matmul_nt;
  CHECK(grouped_matmul_nt(a.data(), b.data(), offsets.data(), 1, 64, 96, 128, c.data(), nullptr) ==
        cudaErrorInvalidValue);
  CHECK(grouped_matmul_nt(a.data(), b.data(), offsets.data(), 1, 64, 128, 96, c.data(), nullptr) ==
        cudaErrorInvalidValue);
  CHECK(grouped_matmul_nt(a.data(), b.data(), offsets.data(), 1, 64, 64, 64, c.data(), nullptr,
                          GroupedGemmTile::kRows128) == cudaErrorInvalidValue);
  CHECK(grouped_matmul_nt(a.data() + 1, b.data(), offsets.data(), 1, 64, 128, 64, c.data(),
                          nullptr) == cudaErrorInvalidValue);
  EEP_REQUIRE_CUDA(cudaGetLastError());
}

// The same row, with the same weights, at a different place among different rows, in launches
// of every tile variant and different max_rows: bitwise the same output.
TEST_CASE("grouped_matmul_nt rows do not depend on the other rows", "[gpu][grouped_gemm]") {
  const int64_t n = 256;
  const int64_t k = 512;
  const int64_t num_groups = 6;
  const int64_t probe_group = 3;
  const std::vector<float> b = round_bf16(random_floats(num_groups * n * k, 7));
  const std::vector<float> probe = round_bf16(random_floats(k, 8));
  DeviceBuffer<bf16> b_dev(to_bf16(b));

  struct Layout {
    std::vector<int32_t> rows_per_group;
    int64_t probe_row_in_group;
    int64_t extra_rows;
  };
  const Layout layouts[] = {
      {{5, 0, 7, 1, 2, 3}, 0, 0},         // the probe alone in its group
      {{5, 0, 7, 40, 2, 3}, 17, 9},       // in the middle of a group
      {{0, 0, 0, 300, 0, 0}, 299, 1000},  // the last row of a large group
      {{1, 2, 3, 130, 5, 6}, 128, 3},     // just past a 128-row tile boundary
  };
  std::vector<uint16_t> reference;
  uint64_t seed = 50;
  for (const Layout& layout : layouts) {
    const std::vector<int32_t> offsets = offsets_of(layout.rows_per_group);
    const int64_t max_rows = offsets.back() + layout.extra_rows;
    const int64_t probe_row = offsets[probe_group] + layout.probe_row_in_group;
    std::vector<float> a = round_bf16(random_floats(max_rows * k, ++seed));
    std::copy(probe.begin(), probe.end(), a.begin() + probe_row * k);
    DeviceBuffer<bf16> a_dev(to_bf16(a));
    DeviceBuffer<int32_t> offsets_dev(offsets);
    DeviceBuffer<bf16> c_dev(max_rows * n);
    for (GroupedGemmTile tile : tiles_for(n)) {
      INFO("layout with max_rows " << max_rows << ", probe at row " << probe_row << ", tile "
                                   << tile_name(tile));
      c_dev.poison();
      EEP_REQUIRE_CUDA(kernels::cuda::grouped_matmul_nt(a_dev.data(), b_dev.data(),
                                                        offsets_dev.data(), num_groups, max_rows, n,
                                                        k, c_dev.data(), nullptr, tile));
      const std::vector<bf16> c = c_dev.download();
      std::vector<uint16_t> row(n);
      for (int64_t j = 0; j < n; ++j) row[j] = bits(c[probe_row * n + j]);
      if (reference.empty()) {
        reference = row;
        std::vector<float> expected(n);
        kernels::cpu::matmul_nt(probe.data(), b.data() + probe_group * n * k, expected.data(), 1, n,
                                k);
        std::vector<float> actual(n);
        for (int64_t j = 0; j < n; ++j) actual[j] = __bfloat162float(c[probe_row * n + j]);
        REQUIRE(max_rel_error(actual, expected) <= kBf16Tolerance);
      }
      int64_t first_diff = -1;
      for (int64_t j = 0; j < n && first_diff < 0; ++j) {
        if (row[j] != reference[j]) first_diff = j;
      }
      INFO("first differing column " << first_diff);
      CHECK(first_diff == -1);
    }
  }
}

// One captured launch serves any split: replay the graph after changing the device offsets.
TEST_CASE("grouped_matmul_nt in a CUDA graph follows the device offsets", "[gpu][grouped_gemm]") {
  const int64_t n = 128;
  const int64_t k = 256;
  const int64_t num_groups = 4;
  const int64_t max_rows = 200;
  const std::vector<float> a = round_bf16(random_floats(max_rows * k, 21));
  const std::vector<float> b = round_bf16(random_floats(num_groups * n * k, 22));
  DeviceBuffer<bf16> a_dev(to_bf16(a));
  DeviceBuffer<bf16> b_dev(to_bf16(b));
  DeviceBuffer<int32_t> offsets_dev(offsets_of({50, 50, 50, 50}));
  DeviceBuffer<bf16> c_dev(max_rows * n);

  cudaStream_t stream = nullptr;
  EEP_REQUIRE_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  EEP_REQUIRE_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const cudaError_t launch_err =
      kernels::cuda::grouped_matmul_nt(a_dev.data(), b_dev.data(), offsets_dev.data(), num_groups,
                                       max_rows, n, k, c_dev.data(), stream);
  EEP_REQUIRE_CUDA(cudaStreamEndCapture(stream, &graph));
  EEP_REQUIRE_CUDA(launch_err);
  EEP_REQUIRE_CUDA(cudaGraphInstantiate(&exec, graph, 0));

  const std::vector<std::vector<int32_t>> splits = {{50, 50, 50, 50}, {0, 170, 3, 0}, {1, 0, 0, 0}};
  for (const std::vector<int32_t>& split : splits) {
    const std::vector<int32_t> offsets = offsets_of(split);
    offsets_dev.upload(offsets);
    c_dev.poison();
    EEP_REQUIRE_CUDA(cudaDeviceSynchronize());  // the memset ran on the legacy default stream
    EEP_REQUIRE_CUDA(cudaGraphLaunch(exec, stream));
    EEP_REQUIRE_CUDA(cudaStreamSynchronize(stream));
    const std::vector<float> c = to_float(c_dev.download());
    for (int64_t g = 0; g < num_groups; ++g) {
      if (split[g] == 0) continue;
      std::vector<float> expected(split[g] * n);
      kernels::cpu::matmul_nt(a.data() + offsets[g] * k, b.data() + g * n * k, expected.data(),
                              split[g], n, k);
      INFO("split " << split[0] << "," << split[1] << "," << split[2] << "," << split[3]);
      check_group(c, expected, g, offsets[g], split[g], n);
    }
    for (int64_t i = offsets.back() * n; i < max_rows * n; ++i) {
      if (!std::isnan(c[i])) {
        INFO("element " << i << " beyond the rows written: " << c[i]);
        CHECK(std::isnan(c[i]));
        break;
      }
    }
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_CASE("silu_mul matches a CPU loop", "[gpu][grouped_gemm]") {
  struct Case {
    int64_t max_rows, num_rows, intermediate;
  };
  // 768: Qwen3-30B-A3B (vectorised path); 12: not a multiple of 8 (scalar path).
  const Case cases[] = {{1, 1, 768}, {300, 257, 768}, {64, 0, 768}, {40, 33, 12}, {5, 5, 64}};
  uint64_t seed = 300;
  for (const Case& cs : cases) {
    INFO("max_rows " << cs.max_rows << " num_rows " << cs.num_rows << " intermediate "
                     << cs.intermediate);
    const int64_t width = 2 * cs.intermediate;
    const std::vector<float> gate_up =
        round_bf16(random_floats(cs.max_rows * width, ++seed, -8, 8));
    DeviceBuffer<bf16> gate_up_dev(to_bf16(gate_up));
    DeviceBuffer<int32_t> num_rows_dev(std::vector<int32_t>{static_cast<int32_t>(cs.num_rows)});
    DeviceBuffer<bf16> out_dev(cs.max_rows * cs.intermediate);
    out_dev.poison();
    EEP_REQUIRE_CUDA(kernels::cuda::silu_mul(gate_up_dev.data(), num_rows_dev.data(), cs.max_rows,
                                             cs.intermediate, out_dev.data(), nullptr));
    const std::vector<bf16> out = out_dev.download();
    int64_t bad = -1;
    float got = 0.0f;
    float want = 0.0f;
    for (int64_t r = 0; r < cs.max_rows && bad < 0; ++r) {
      for (int64_t i = 0; i < cs.intermediate; ++i) {
        const int64_t idx = r * cs.intermediate + i;
        if (r >= cs.num_rows) {
          if (bits(out[idx]) != 0xFFFF) {
            bad = idx;
            got = __bfloat162float(out[idx]);
            want = NAN;
            break;
          }
          continue;
        }
        const float g = gate_up[r * width + i];
        const float u = gate_up[r * width + cs.intermediate + i];
        const float expected = g / (1.0f + std::exp(-g)) * u;
        const float actual = __bfloat162float(out[idx]);
        // One bf16 rounding (2^-9 relative) plus a last-bit difference of exp.
        if (!(std::fabs(actual - expected) <= std::fabs(expected) * 0x1p-7f + 1e-30f)) {
          bad = idx;
          got = actual;
          want = expected;
          break;
        }
      }
    }
    INFO("first bad element: row " << (bad < 0 ? -1 : bad / cs.intermediate) << " col "
                                   << (bad < 0 ? -1 : bad % cs.intermediate) << " got " << got
                                   << " expected " << want << " (NaN: must stay unwritten)");
    CHECK(bad == -1);
  }
}

namespace {

enum class DenseOut { kBf16, kStoreF32, kAddF32 };

// dense_matmul_nt for m rows whose row `probe_row` is `probe` (the other rows random), checked
// against cpu::matmul_nt (outputs poisoned first; kAddF32 adds into random values). Returns the
// bits of the probe row's outputs (as float bits; bf16 outputs widened).
std::vector<uint32_t> run_dense_case(int64_t m, int64_t n, int64_t k, DenseOut out,
                                     const std::vector<float>& b, const std::vector<float>& probe,
                                     int64_t probe_row, uint64_t seed) {
  INFO("dense m " << m << " n " << n << " k " << k << " out " << static_cast<int>(out)
                  << " probe row " << probe_row);
  std::vector<float> a = round_bf16(random_floats(m * k, seed));
  std::copy(probe.begin(), probe.end(), a.begin() + probe_row * k);
  std::vector<float> expected(m * n);
  kernels::cpu::matmul_nt(a.data(), b.data(), expected.data(), m, n, k);
  DeviceBuffer<bf16> a_dev(to_bf16(a));
  DeviceBuffer<bf16> b_dev(to_bf16(b));
  DeviceBuffer<int32_t> offsets(2);
  offsets.poison();
  std::vector<float> actual;
  if (out == DenseOut::kBf16) {
    DeviceBuffer<bf16> c(m * n);
    c.poison();
    EEP_REQUIRE_CUDA(kernels::cuda::dense_matmul_nt(a_dev.data(), b_dev.data(), m, n, k, c.data(),
                                                    offsets.data(), nullptr));
    actual = to_float(c.download());
  } else {
    std::vector<float> initial = random_floats(m * n, seed + 1);
    DeviceBuffer<float> c(m * n);
    if (out == DenseOut::kAddF32) {
      c.upload(initial);
      for (int64_t i = 0; i < m * n; ++i) expected[i] += initial[i];
    } else {
      c.poison();
    }
    EEP_REQUIRE_CUDA(kernels::cuda::dense_matmul_nt(a_dev.data(), b_dev.data(), m, n, k, c.data(),
                                                    out == DenseOut::kAddF32 ? 1.0f : 0.0f,
                                                    offsets.data(), nullptr));
    actual = c.download();
  }
  CHECK(max_rel_error(actual, expected) <= kBf16Tolerance);
  std::vector<uint32_t> row_bits(n);
  std::memcpy(row_bits.data(), actual.data() + probe_row * n, n * sizeof(float));
  return row_bits;
}

}  // namespace

// The batch-invariant dense products: right against the CPU, and one row's bits the same
// whatever the number of rows and its place among them; both paths (tiles, and one warp per
// element for n or k not a multiple of 64).
TEST_CASE("dense_matmul_nt matches the CPU and a row does not depend on the others",
          "[gpu][grouped_gemm]") {
  const struct { int64_t n, k; } shapes[] = {{256, 512}, {128, 2048}, {16, 128}, {40, 72}};
  for (const auto& shape : shapes) {
    const std::vector<float> b = round_bf16(random_floats(shape.n * shape.k, 70));
    const std::vector<float> probe = round_bf16(random_floats(shape.k, 71));
    for (DenseOut out : {DenseOut::kBf16, DenseOut::kStoreF32, DenseOut::kAddF32}) {
      std::vector<uint32_t> reference;
      uint64_t seed = 80;
      for (const auto& [m, probe_row] :
           std::vector<std::pair<int64_t, int64_t>>{{1, 0}, {5, 3}, {37, 36}, {300, 129}}) {
        const std::vector<uint32_t> row =
            run_dense_case(m, shape.n, shape.k, out, b, probe, probe_row, ++seed);
        if (out == DenseOut::kAddF32) continue;  // the values added differ per case
        if (reference.empty()) reference = row;
        INFO("n " << shape.n << " k " << shape.k << " m " << m);
        CHECK(row == reference);
      }
    }
  }
  // Only beta 0 and 1.
  DeviceBuffer<bf16> a(64 * 64);
  DeviceBuffer<float> c(64 * 64);
  DeviceBuffer<int32_t> offsets(2);
  CHECK(kernels::cuda::dense_matmul_nt(a.data(), a.data(), 64, 64, 64, c.data(), 0.5f,
                                       offsets.data(), nullptr) == cudaErrorInvalidValue);
}

}  // namespace
}  // namespace eep::gpu_test
