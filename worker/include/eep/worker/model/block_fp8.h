// Block-scaled FP8 weights, the layout of Hugging Face fine-grained FP8 checkpoints (DeepSeek-V3,
// Qwen3-*-FP8): a row-major [rows, cols] weight is stored as F8_E4M3 codes plus a
// "weight_scale_inv" tensor of shape [ceil(rows / block_rows), ceil(cols / block_cols)], and
//   w[i][j] = fp8_e4m3_to_fp32(code[i][j]) * scale_inv[i / block_rows][j / block_cols]
// (computed in fp32; "inv" because quantizing divided by it). Blocks at the right and bottom edges
// are partial when the sizes are not multiples of the block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace eep::worker {

struct Fp8BlockGeometry {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t block_rows = 128;
  int64_t block_cols = 128;

  int64_t num_row_blocks() const { return (rows + block_rows - 1) / block_rows; }
  int64_t num_col_blocks() const { return (cols + block_cols - 1) / block_cols; }
  // The shape the weight_scale_inv tensor must have.
  std::vector<int64_t> scale_shape() const { return {num_row_blocks(), num_col_blocks()}; }
};

// The index of the first scale that is NaN, infinite, zero or negative: such a scale makes the
// weight garbage, so a checkpoint holding one is refused.
std::optional<std::size_t> first_invalid_scale(std::span<const float> scales);

// Writes elements [first_element, first_element + out.size()) of the dequantized weight, counted
// row-major over the whole matrix, into `out`. `codes` holds all rows * cols codes, `scales` all
// num_row_blocks * num_col_blocks scales (validated by the caller); the range must lie inside.
void dequantize_fp8_blocks(const Fp8BlockGeometry& geometry, std::span<const std::byte> codes,
                           std::span<const float> scales, int64_t first_element,
                           std::span<float> out);

// Quantizes a whole finite weight: each block's scale is its largest magnitude / 448 (1 for an
// all-zero block, so no scale is 0), each value the nearest code of value / scale. `codes` must
// hold rows * cols, `scales` num_row_blocks * num_col_blocks.
void quantize_fp8_blocks(const Fp8BlockGeometry& geometry, std::span<const float> values,
                         std::span<std::byte> codes, std::span<float> scales);

}  // namespace eep::worker
