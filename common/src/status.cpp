#include "eep/common/status.h"

#include <array>
#include <cstdio>
#include <cstdlib>

#include "eep/common/log.h"

namespace eep {
namespace {

struct CodeName {
  ErrorCode code;
  std::string_view name;
};

constexpr std::array kCodeNames = {
    CodeName{ErrorCode::kOk, "ok"},
    CodeName{ErrorCode::kInvalidArgument, "invalid_argument"},
    CodeName{ErrorCode::kNotFound, "not_found"},
    CodeName{ErrorCode::kAlreadyExists, "already_exists"},
    CodeName{ErrorCode::kFailedPrecondition, "failed_precondition"},
    CodeName{ErrorCode::kResourceExhausted, "resource_exhausted"},
    CodeName{ErrorCode::kUnauthenticated, "unauthenticated"},
    CodeName{ErrorCode::kVersionMismatch, "version_mismatch"},
    CodeName{ErrorCode::kUnavailable, "unavailable"},
    CodeName{ErrorCode::kDeadlineExceeded, "deadline_exceeded"},
    CodeName{ErrorCode::kIoError, "io_error"},
    CodeName{ErrorCode::kDataLoss, "data_loss"},
    CodeName{ErrorCode::kInternal, "internal"},
};

}  // namespace

std::string_view to_string(ErrorCode code) {
  for (const auto& entry : kCodeNames) {
    if (entry.code == code) return entry.name;
  }
  return "unknown";
}

std::optional<ErrorCode> error_code_from_string(std::string_view name) {
  for (const auto& entry : kCodeNames) {
    if (entry.name == name) return entry.code;
  }
  return std::nullopt;
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(eep::to_string(code_)) + ": " + message_;
}

namespace detail {

void check_failed(const char* file, int line, const char* condition, const std::string& detail) {
  std::ostringstream os;
  os << "check failed at " << file << ":" << line << ": " << condition;
  if (!detail.empty()) os << " (" << detail << ")";
  log_line(LogLevel::kError, os.str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace detail
}  // namespace eep
