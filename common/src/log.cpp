#include "eep/common/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace eep {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::mutex g_mutex;
std::string g_speaker = "eep";       // guarded by g_mutex
thread_local std::string t_speaker;  // empty: g_speaker

char level_letter(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return 'D';
    case LogLevel::kInfo:
      return 'I';
    case LogLevel::kWarn:
      return 'W';
    case LogLevel::kError:
      return 'E';
  }
  return '?';
}

}  // namespace

bool parse_log_level(std::string_view name, LogLevel* level) {
  if (name == "debug")
    *level = LogLevel::kDebug;
  else if (name == "info")
    *level = LogLevel::kInfo;
  else if (name == "warn")
    *level = LogLevel::kWarn;
  else if (name == "error")
    *level = LogLevel::kError;
  else
    return false;
  return true;
}

void set_log_level(LogLevel level) {
  g_level = level;
}
LogLevel log_level() {
  return g_level;
}

void set_log_speaker(std::string speaker) {
  std::lock_guard lock(g_mutex);
  g_speaker = std::move(speaker);
}

void set_thread_log_speaker(std::string speaker) {
  t_speaker = std::move(speaker);
}

void log_line(LogLevel level, const std::string& message) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
  std::lock_guard lock(g_mutex);
  std::fprintf(stderr, "%s.%03dZ %c [%s] %s\n", stamp, static_cast<int>(millis),
               level_letter(level), (t_speaker.empty() ? g_speaker : t_speaker).c_str(),
               message.c_str());
  std::fflush(stderr);
}

}  // namespace eep
