#include "eep/coordinator/assignment.h"

#include <limits>

#include "eep/common/check.h"

namespace eep::coordinator {

std::vector<int> max_weight_assignment(const std::vector<std::vector<int64_t>>& weight) {
  const int n = static_cast<int>(weight.size());
  for (const auto& row : weight) EEP_CHECK(static_cast<int>(row.size()) == n);
  // Minimum-cost assignment on cost = -weight with potentials u (rows) and v (columns), rows added
  // one at a time along shortest augmenting paths; index 0 is a sentinel, so rows and columns are
  // 1-based here.
  constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;
  std::vector<int64_t> u(n + 1, 0), v(n + 1, 0);
  std::vector<int> row_of(n + 1, 0), way(n + 1, 0);  // row_of[col]: its row (0 = none)
  for (int row = 1; row <= n; ++row) {
    row_of[0] = row;
    int col0 = 0;
    std::vector<int64_t> min_slack(n + 1, kInf);
    std::vector<bool> used(n + 1, false);
    do {
      used[col0] = true;
      const int row0 = row_of[col0];
      int64_t delta = kInf;
      int col1 = 0;
      for (int col = 1; col <= n; ++col) {
        if (used[col]) continue;
        const int64_t cost = -weight[row0 - 1][col - 1] - u[row0] - v[col];
        if (cost < min_slack[col]) {
          min_slack[col] = cost;
          way[col] = col0;
        }
        if (min_slack[col] < delta) {
          delta = min_slack[col];
          col1 = col;
        }
      }
      for (int col = 0; col <= n; ++col) {
        if (used[col]) {
          u[row_of[col]] += delta;
          v[col] -= delta;
        } else {
          min_slack[col] -= delta;
        }
      }
      col0 = col1;
    } while (row_of[col0] != 0);
    do {
      const int col1 = way[col0];
      row_of[col0] = row_of[col1];
      col0 = col1;
    } while (col0 != 0);
  }
  std::vector<int> column_of(n, -1);
  for (int col = 1; col <= n; ++col) column_of[row_of[col] - 1] = col - 1;
  return column_of;
}

}  // namespace eep::coordinator
