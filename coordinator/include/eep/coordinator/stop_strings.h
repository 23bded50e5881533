// OpenAI's `stop` strings on streamed text: the text of a choice arrives in pieces (tokens, then
// events), and a stop string may begin in one piece and end in another. The matcher shows what
// can no longer be part of a stop string and holds back the rest, so a client never sees the
// first half of a stop string that the next piece completes. Belongs to one choice (one thread
// at a time). The stop string that ends first in the text ends it, however the text was split.
// Pure.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace eep::coordinator {

class StopStringMatcher {
 public:
  // Empty strings are dropped (they would stop before any text).
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  struct Output {
    std::string text;      // what may be shown now
    bool stopped = false;  // a stop string ended the text: `text` runs up to it, excluded
  };
  // Adds the next piece of text (valid UTF-8). Once stopped, the rest is ignored.
  Output push(std::string_view text);
  // The end of the text: what was held back, as no stop string completed it.
  std::string finish();

  bool empty() const { return stop_strings_.empty(); }

 private:
  std::vector<std::string> stop_strings_;
  std::string held_;  // the text's end that may be the start of a stop string
  bool stopped_ = false;
};

}  // namespace eep::coordinator
