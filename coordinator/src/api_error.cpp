#include "eep/coordinator/api_error.h"

#include <nlohmann/json.hpp>

namespace eep::coordinator {

std::string error_body(const ApiError& error) {
  using nlohmann::ordered_json;
  ordered_json body = {
      {"error",
       {{"message", error.message},
        {"type", error.type},
        {"param", error.param.empty() ? ordered_json(nullptr) : ordered_json(error.param)},
        {"code", error.code.empty() ? ordered_json(nullptr) : ordered_json(error.code)}}}};
  // Messages may quote a client's bytes: replace what is not UTF-8 instead of throwing.
  return body.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

ApiError api_error_from_status(const Status& status) {
  switch (status.code()) {
    case ErrorCode::kInvalidArgument:
      return {400, status.message(), "invalid_request_error", "", "invalid_value"};
    case ErrorCode::kNotFound:
      return {404, status.message(), "invalid_request_error", "", "not_found"};
    case ErrorCode::kUnauthenticated:
      return {401, status.message(), "invalid_request_error", "", "invalid_api_key"};
    case ErrorCode::kResourceExhausted:
      return {429, status.message(), "rate_limit_exceeded", "", "rate_limit_exceeded"};
    case ErrorCode::kUnavailable:
      return {503, status.message(), "service_unavailable", "", "service_unavailable"};
    default:
      return {500, status.to_string(), "server_error", "", "internal_error"};
  }
}

ApiError invalid_request(std::string param, std::string message, std::string code) {
  return ApiError{400, std::move(message), "invalid_request_error", std::move(param),
                  std::move(code)};
}

}  // namespace eep::coordinator
