// Expected failures as values: Status (ok or code + message) and Result<T> (a value or a Status).
// Messages say what happened and what to do; codes are stable strings on the wire.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "eep/common/check.h"

namespace eep {

enum class ErrorCode {
  kOk,
  kInvalidArgument,  // the request itself is wrong (bad JSON, bad field, impossible value)
  kNotFound,         // it names something that does not exist
  kAlreadyExists,
  kFailedPrecondition,  // legal request, wrong time (a scale while another runs)
  kResourceExhausted,   // no ports, no workers, no memory left for it
  kUnauthenticated,     // missing or wrong token
  kVersionMismatch,     // peer speaks another protocol version
  kUnavailable,         // peer gone or not answering
  kDeadlineExceeded,
  kIoError,   // file or socket error
  kDataLoss,  // a file is truncated or corrupt
  kInternal,
};

std::string_view to_string(ErrorCode code);
std::optional<ErrorCode> error_code_from_string(std::string_view name);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }
  bool is_ok() const { return code_ == ErrorCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: dp must be >= 1"
  std::string to_string() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

inline Status error(ErrorCode code, std::string message) {
  return Status(code, std::move(message));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}        // NOLINT: implicit on purpose
  Result(Status status) : state_(std::move(status)) {  // NOLINT
    EEP_CHECK(!std::get<Status>(state_).is_ok());
  }

  bool is_ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(state_);
  }
  T& value() & {
    EEP_CHECK(is_ok());
    return std::get<T>(state_);
  }
  const T& value() const& {
    EEP_CHECK(is_ok());
    return std::get<T>(state_);
  }
  T&& value() && {
    EEP_CHECK(is_ok());
    return std::get<T>(std::move(state_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace eep

// Propagates a failed Status out of the current function (which returns Status or Result<T>).
#define EEP_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::eep::Status eep_status_ = (expr);           \
    if (!eep_status_.is_ok()) return eep_status_; \
  } while (0)

#define EEP_CONCAT_INNER(a, b) a##b
#define EEP_CONCAT(a, b) EEP_CONCAT_INNER(a, b)
// EEP_ASSIGN_OR_RETURN(auto x, make_x()): binds the value or returns the error.
#define EEP_ASSIGN_OR_RETURN(lhs, expr) \
  EEP_ASSIGN_OR_RETURN_IMPL(EEP_CONCAT(eep_result_, __LINE__), lhs, expr)
#define EEP_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.is_ok()) return tmp.status();          \
  lhs = std::move(tmp).value()
