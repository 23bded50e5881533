#include "eep/coordinator/stop_strings.h"

#include <algorithm>
#include <utility>

namespace eep::coordinator {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings) {
  for (std::string& stop : stop_strings) {
    if (!stop.empty()) stop_strings_.push_back(std::move(stop));
  }
}

StopStringMatcher::Output StopStringMatcher::push(std::string_view text) {
  if (stopped_) return {};
  if (stop_strings_.empty()) return {std::string(text), false};
  std::string buffer = std::move(held_);
  held_.clear();
  buffer.append(text);
  // The stop string that ends first wins (of two that end together, the longer), so the result
  // does not depend on how the text was split into pieces. It ends in what was just added: the
  // held part alone completed none.
  size_t cut = std::string::npos;
  size_t first_end = std::string::npos;
  for (const std::string& stop : stop_strings_) {
    const size_t pos = buffer.find(stop);
    if (pos == std::string::npos) continue;
    const size_t end = pos + stop.size();
    if (end < first_end || (end == first_end && pos < cut)) {
      first_end = end;
      cut = pos;
    }
  }
  if (cut != std::string::npos) {
    stopped_ = true;
    buffer.resize(cut);
    return {std::move(buffer), true};
  }
  // Hold back the longest end of the text that begins some stop string. It starts where a stop
  // string starts (a character boundary of valid UTF-8), so no character is split.
  size_t num_held = 0;
  for (const std::string& stop : stop_strings_) {
    const size_t longest = std::min(stop.size() - 1, buffer.size());
    for (size_t length = longest; length > num_held; --length) {
      if (std::string_view(buffer).substr(buffer.size() - length) ==
          std::string_view(stop).substr(0, length)) {
        num_held = length;
        break;
      }
    }
  }
  held_ = buffer.substr(buffer.size() - num_held);
  buffer.resize(buffer.size() - num_held);
  return {std::move(buffer), false};
}

std::string StopStringMatcher::finish() {
  if (stopped_) return {};
  return std::exchange(held_, {});
}

}  // namespace eep::coordinator
