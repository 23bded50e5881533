#include "eep/coordinator/text/incremental_detokenizer.h"

#include "eep/coordinator/tokenizer.h"

namespace eep::coordinator::text {
namespace {

// How many bytes at the end of `bytes` could still be the start of a valid character: a lead
// byte with fewer continuation bytes than it needs, each in the range it allows (RFC 3629's
// table, the one sanitize_utf8 follows). 0 when the end is complete or already invalid.
size_t incomplete_tail(std::string_view bytes) {
  size_t max_back = std::min<size_t>(3, bytes.size());
  for (size_t back = 1; back <= max_back; ++back) {
    auto lead = static_cast<unsigned char>(bytes[bytes.size() - back]);
    if ((lead & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    size_t length = lead >= 0xC2 && lead <= 0xDF   ? 2
                    : lead >= 0xE0 && lead <= 0xEF ? 3
                    : lead >= 0xF0 && lead <= 0xF4 ? 4
                                                   : 1;
    if (length <= back) return 0;  // complete (or a byte that cannot lead)
    if (back >= 2) {               // the second byte's range depends on the lead
      auto second = static_cast<unsigned char>(bytes[bytes.size() - back + 1]);
      unsigned char lo = lead == 0xE0 ? 0xA0 : lead == 0xF0 ? 0x90 : 0x80;
      unsigned char hi = lead == 0xED ? 0x9F : lead == 0xF4 ? 0x8F : 0xBF;
      if (second < lo || second > hi) return 0;
    }
    return back;
  }
  return 0;
}

}  // namespace

std::string IncrementalDetokenizer::push(int32_t id) {
  size_t old_size = pending_.size();
  tokenizer_.append_token_bytes(id, skip_special_tokens_, pending_);
  if (pending_.size() == old_size) return {};
  size_t num_kept = incomplete_tail(pending_);
  std::string text =
      sanitize_utf8(std::string_view(pending_).substr(0, pending_.size() - num_kept));
  pending_.erase(0, pending_.size() - num_kept);
  return text;
}

std::string IncrementalDetokenizer::finish() {
  std::string text = sanitize_utf8(pending_);
  pending_.clear();
  return text;
}

}  // namespace eep::coordinator::text
