// The assignment problem: pair each of n rows with its own column so that the summed weight of
// the pairs is the largest. EPLB uses it to match the ranks (and nodes) of a new packing to the
// current ones so that the most experts stay where they are (docs/eplb.md). Pure function.
#pragma once

#include <cstdint>
#include <vector>

namespace eep::coordinator {

// weight[row][col] of a square matrix (n x n, n >= 0). Returns column_of[row], a permutation of
// 0..n-1 with the largest sum of weight[row][column_of[row]] (Hungarian method, O(n^3));
// deterministic.
std::vector<int> max_weight_assignment(const std::vector<std::vector<int64_t>>& weight);

}  // namespace eep::coordinator
