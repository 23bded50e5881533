// An error of the OpenAI-compatible API as the client sees it: an HTTP status and OpenAI's body
// {"error": {"message", "type", "param", "code"}} (docs/http_api.md lists them). Pure.
#pragma once

#include <string>

#include "eep/common/status.h"

namespace eep::coordinator {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the offending field; "" renders as null
  std::string code;   // "" renders as null
};

std::string error_body(const ApiError& error);
// A Status from the frontend as an ApiError: kInvalidArgument 400, kNotFound 404,
// kUnauthenticated 401, kResourceExhausted 429, kUnavailable 503, anything else 500.
ApiError api_error_from_status(const Status& status);

// A 400 invalid_request_error about `param` (code invalid_value unless given).
ApiError invalid_request(std::string param, std::string message,
                         std::string code = "invalid_value");

}  // namespace eep::coordinator
