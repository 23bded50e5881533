// One logging facility for every process. Each line carries the time, the level and who speaks:
//   2026-11-28T01:02:03.456Z I [coord gen=3] worker w2 registered
// The speaker is process-wide (set_log_speaker), because each daemon is one speaker; it may be
// changed at any time (the generation changes) and is read under the same lock as the write.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace eep {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Accepts "debug", "info", "warn", "error"; returns false for anything else.
bool parse_log_level(std::string_view name, LogLevel* level);
void set_log_level(LogLevel level);
LogLevel log_level();
void set_log_speaker(std::string speaker);
// A speaker for the calling thread alone (a daemon's helper thread), over the process-wide one.
void set_thread_log_speaker(std::string speaker);
void log_line(LogLevel level, const std::string& message);

}  // namespace eep

#define EEP_LOG(level, stream_expr)                                        \
  do {                                                                     \
    if (static_cast<int>(level) >= static_cast<int>(::eep::log_level())) { \
      std::ostringstream eep_log_os_;                                      \
      eep_log_os_ << stream_expr;                                          \
      ::eep::log_line(level, eep_log_os_.str());                           \
    }                                                                      \
  } while (0)

#define EEP_LOG_DEBUG(stream_expr) EEP_LOG(::eep::LogLevel::kDebug, stream_expr)
#define EEP_LOG_INFO(stream_expr) EEP_LOG(::eep::LogLevel::kInfo, stream_expr)
#define EEP_LOG_WARN(stream_expr) EEP_LOG(::eep::LogLevel::kWarn, stream_expr)
#define EEP_LOG_ERROR(stream_expr) EEP_LOG(::eep::LogLevel::kError, stream_expr)
