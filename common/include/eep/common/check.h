// Broken invariants abort with file:line. Expected failures use Status instead (status.h).
#pragma once

#include <sstream>
#include <string>

namespace eep::detail {
[[noreturn]] void check_failed(const char* file, int line, const char* condition,
                               const std::string& detail);
}  // namespace eep::detail

#define EEP_CHECK(cond)                                                      \
  do {                                                                       \
    if (!(cond)) ::eep::detail::check_failed(__FILE__, __LINE__, #cond, ""); \
  } while (0)

// EEP_CHECK_MSG(n > 0, "n=" << n)
#define EEP_CHECK_MSG(cond, stream_expr)                                           \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::ostringstream eep_check_os_;                                            \
      eep_check_os_ << stream_expr;                                                \
      ::eep::detail::check_failed(__FILE__, __LINE__, #cond, eep_check_os_.str()); \
    }                                                                              \
  } while (0)
