#include "eep/worker/engine/moe_combine.h"

namespace eep::worker {

const std::map<std::string, MoeCombine>& moe_combine_by_name() {
  static const std::map<std::string, MoeCombine> names{
      {"exact", MoeCombine::kExact}, {"rank-partials", MoeCombine::kRankPartials}};
  return names;
}

const char* moe_combine_name(MoeCombine combine) {
  return combine == MoeCombine::kExact ? "exact" : "rank-partials";
}

}  // namespace eep::worker
