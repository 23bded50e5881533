#include "eep/coordinator/tokenizer.h"

namespace eep::coordinator {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

struct Utf8Scan {
  enum class Kind { kValid, kInvalid, kIncomplete } kind;
  size_t num_bytes;  // kValid: the character; kInvalid: bytes to replace (>= 1); else the prefix
};

// The UTF-8 character starting at bytes[0] (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
Utf8Scan scan_utf8(std::string_view bytes) {
  auto byte = [&](size_t idx) { return static_cast<unsigned char>(bytes[idx]); };
  unsigned char lead = byte(0);
  if (lead < 0x80) return {Utf8Scan::Kind::kValid, 1};
  size_t length = 0;
  unsigned char second_min = 0x80, second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_min = 0xA0;
    if (lead == 0xED) second_max = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_min = 0x90;
    if (lead == 0xF4) second_max = 0x8F;
  } else {
    return {Utf8Scan::Kind::kInvalid, 1};
  }
  for (size_t idx = 1; idx < length; ++idx) {
    if (idx >= bytes.size()) return {Utf8Scan::Kind::kIncomplete, idx};
    unsigned char lo = idx == 1 ? second_min : 0x80;
    unsigned char hi = idx == 1 ? second_max : 0xBF;
    if (byte(idx) < lo || byte(idx) > hi) return {Utf8Scan::Kind::kInvalid, idx};
  }
  return {Utf8Scan::Kind::kValid, length};
}

// Appends the valid text of `bytes` to `out`; returns how many trailing bytes form an incomplete
// character (left unconsumed) when keep_incomplete, else replaces them too.
size_t append_utf8(std::string_view bytes, bool keep_incomplete, std::string& out) {
  size_t idx = 0;
  while (idx < bytes.size()) {
    Utf8Scan scan = scan_utf8(bytes.substr(idx));
    switch (scan.kind) {
      case Utf8Scan::Kind::kValid:
        out.append(bytes.substr(idx, scan.num_bytes));
        break;
      case Utf8Scan::Kind::kInvalid:
        out.append(kReplacement);
        break;
      case Utf8Scan::Kind::kIncomplete:
        if (keep_incomplete) return bytes.size() - idx;
        out.append(kReplacement);
        break;
    }
    idx += scan.num_bytes;
  }
  return 0;
}

}  // namespace

Result<std::vector<int32_t>> byte_encode(std::string_view text, int vocab_size) {
  if (vocab_size < kByteVocabSize) {
    return error(ErrorCode::kInvalidArgument,
                 "the model's vocabulary has " + std::to_string(vocab_size) +
                     " ids, fewer than the 256 a byte tokenizer needs; send token ids");
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (char c : text) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

std::string byte_decode(std::span<const int32_t> ids) {
  std::string bytes;
  bytes.reserve(ids.size());
  for (int32_t id : ids) {
    if (id >= 0 && id < kByteVocabSize) bytes.push_back(static_cast<char>(id));
  }
  return bytes;
}

std::string Utf8StreamDecoder::push(std::span<const int32_t> ids) {
  pending_ += byte_decode(ids);
  std::string text;
  size_t num_kept = append_utf8(pending_, /*keep_incomplete=*/true, text);
  pending_.erase(0, pending_.size() - num_kept);
  return text;
}

std::string Utf8StreamDecoder::finish() {
  std::string text;
  append_utf8(pending_, /*keep_incomplete=*/false, text);
  pending_.clear();
  return text;
}

std::string sanitize_utf8(std::string_view bytes) {
  std::string text;
  append_utf8(bytes, /*keep_incomplete=*/false, text);
  return text;
}

}  // namespace eep::coordinator
