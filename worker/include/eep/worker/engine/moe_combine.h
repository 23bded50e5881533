// How the CUDA MoE exchange adds the experts' outputs back to a token (worker/cuda/
// moe_dispatcher_cuda.h says what each costs): the exact combine, bit for bit the one-rank sum
// whatever the placement, or the sum of per-rank fp32 partials, which moves less data.
#pragma once

#include <map>
#include <string>

namespace eep::worker {

enum class MoeCombine { kExact, kRankPartials };

// The names of the worker's --moe-combine: "exact", "rank-partials".
const std::map<std::string, MoeCombine>& moe_combine_by_name();
const char* moe_combine_name(MoeCombine combine);

}  // namespace eep::worker
