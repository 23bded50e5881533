#include "eep/worker/comm/process_group.h"

#include <string>

namespace eep::worker {

Status validate_group_spec(const GroupSpec& spec) {
  if (spec.size < 1 || spec.rank < 0 || spec.rank >= spec.size) {
    return error(ErrorCode::kInvalidArgument, "group " + spec.name + ": rank " +
                                                  std::to_string(spec.rank) + " of size " +
                                                  std::to_string(spec.size) + " is impossible");
  }
  if (spec.name.empty() || spec.name.find('/') != std::string::npos) {
    return error(ErrorCode::kInvalidArgument,
                 "group name '" + spec.name + "' must be non-empty and hold no '/'");
  }
  if (spec.timeout.count() <= 0 || spec.collective_timeout.count() <= 0) {
    return error(ErrorCode::kInvalidArgument,
                 "group " + spec.name + ": timeout and collective_timeout must be > 0");
  }
  return Status::ok();
}

}  // namespace eep::worker
