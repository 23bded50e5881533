#include "eep/worker/model/block_fp8.h"

#include <algorithm>
#include <cmath>

#include "eep/common/check.h"
#include "eep/worker/model/dtype.h"

namespace eep::worker {

std::optional<std::size_t> first_invalid_scale(std::span<const float> scales) {
  for (std::size_t idx = 0; idx < scales.size(); ++idx) {
    if (!std::isfinite(scales[idx]) || !(scales[idx] > 0.0f)) return idx;
  }
  return std::nullopt;
}

void dequantize_fp8_blocks(const Fp8BlockGeometry& geometry, std::span<const std::byte> codes,
                           std::span<const float> scales, int64_t first_element,
                           std::span<float> out) {
  const int64_t num_elements = geometry.rows * geometry.cols;
  const auto num_out = static_cast<int64_t>(out.size());
  EEP_CHECK(static_cast<int64_t>(codes.size()) == num_elements);
  EEP_CHECK(static_cast<int64_t>(scales.size()) ==
            geometry.num_row_blocks() * geometry.num_col_blocks());
  EEP_CHECK(first_element >= 0 && first_element + num_out <= num_elements);
  // Row by row: within a row, the scale changes every block_cols columns.
  int64_t done = 0;
  while (done < num_out) {
    const int64_t element = first_element + done;
    const int64_t row = element / geometry.cols;
    const int64_t first_col = element % geometry.cols;
    const int64_t count = std::min(geometry.cols - first_col, num_out - done);
    const float* row_scales =
        scales.data() + (row / geometry.block_rows) * geometry.num_col_blocks();
    for (int64_t i = 0; i < count; ++i) {
      const int64_t col = first_col + i;
      const auto code = static_cast<uint8_t>(codes[static_cast<std::size_t>(element + i)]);
      out[static_cast<std::size_t>(done + i)] =
          fp8_e4m3_to_fp32(code) * row_scales[col / geometry.block_cols];
    }
    done += count;
  }
}

void quantize_fp8_blocks(const Fp8BlockGeometry& geometry, std::span<const float> values,
                         std::span<std::byte> codes, std::span<float> scales) {
  const int64_t num_col_blocks = geometry.num_col_blocks();
  EEP_CHECK(static_cast<int64_t>(values.size()) == geometry.rows * geometry.cols);
  EEP_CHECK(codes.size() == values.size());
  EEP_CHECK(static_cast<int64_t>(scales.size()) == geometry.num_row_blocks() * num_col_blocks);
  for (int64_t row_block = 0; row_block < geometry.num_row_blocks(); ++row_block) {
    const int64_t row_begin = row_block * geometry.block_rows;
    const int64_t row_end = std::min(geometry.rows, row_begin + geometry.block_rows);
    for (int64_t col_block = 0; col_block < num_col_blocks; ++col_block) {
      const int64_t col_begin = col_block * geometry.block_cols;
      const int64_t col_end = std::min(geometry.cols, col_begin + geometry.block_cols);
      float absmax = 0.0f;
      for (int64_t row = row_begin; row < row_end; ++row) {
        for (int64_t col = col_begin; col < col_end; ++col) {
          const float value = values[static_cast<std::size_t>(row * geometry.cols + col)];
          EEP_CHECK_MSG(std::isfinite(value), "quantizing a non-finite weight");
          absmax = std::max(absmax, std::fabs(value));
        }
      }
      const float scale = absmax > 0.0f ? absmax / kF8E4M3Max : 1.0f;
      scales[static_cast<std::size_t>(row_block * num_col_blocks + col_block)] = scale;
      for (int64_t row = row_begin; row < row_end; ++row) {
        for (int64_t col = col_begin; col < col_end; ++col) {
          const auto idx = static_cast<std::size_t>(row * geometry.cols + col);
          codes[idx] = static_cast<std::byte>(fp32_to_fp8_e4m3(values[idx] / scale));
        }
      }
    }
  }
}

}  // namespace eep::worker
