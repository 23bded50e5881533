#define PCRE2_CODE_UNIT_WIDTH 8
#include "eep/coordinator/text/pretokenizer.h"

#include <pcre2.h>

#include <mutex>

namespace eep::coordinator::text {
namespace {

// A JIT stack grows up to this for the longest inputs (a 10,000-character run of spaces takes
// far less); PCRE2's default of 32 KiB on the machine stack is too little for lookaheads over
// long runs.
constexpr size_t kJitStackStartBytes = 32 * 1024;
constexpr size_t kJitStackMaxBytes = 8 * 1024 * 1024;

std::string pcre2_message(int error_code) {
  PCRE2_UCHAR buffer[256];
  int length = pcre2_get_error_message(error_code, buffer, sizeof(buffer));
  if (length < 0) return "PCRE2 error " + std::to_string(error_code);
  return std::string(reinterpret_cast<const char*>(buffer), static_cast<size_t>(length));
}

// Unicode's White_Space, which \s means in Oniguruma (the regex engine of Hugging Face's
// tokenizers). PCRE2 10.42's \s in UCP mode also takes U+180E MONGOLIAN VOWEL SEPARATOR (a space
// separator until Unicode 6.3), which would split differently around it.
constexpr std::string_view kWhiteSpaceMembers =
    "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
    "\\x{205f}\\x{3000}";

// `pattern` with \s spelled as White_Space: [members] outside a character class, the members
// inside one (a union, so [^\s...] stays right), \S outside a class as [^members]. \S inside a
// class stays (it would need a subtraction; no tokenizer file we know writes it).
std::string pattern_for_pcre2(std::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t idx = 0; idx < pattern.size(); ++idx) {
    char c = pattern[idx];
    if (c == '\\' && idx + 1 < pattern.size()) {
      char escaped = pattern[++idx];
      if (escaped == 's') {
        out += in_class ? std::string(kWhiteSpaceMembers)
                        : "[" + std::string(kWhiteSpaceMembers) + "]";
      } else if (escaped == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpaceMembers) + "]";
      } else {
        out += c;
        out += escaped;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (idx + 1 < pattern.size() && pattern[idx + 1] == '^') out += pattern[++idx];
      if (idx + 1 < pattern.size() && pattern[idx + 1] == ']') out += pattern[++idx];  // literal
      continue;
    }
    if (in_class && c == '[' && idx + 1 < pattern.size() && pattern[idx + 1] == ':') {
      size_t end = pattern.find(":]", idx + 2);  // a POSIX class such as [:alpha:]
      if (end != std::string_view::npos) {
        out += pattern.substr(idx, end + 2 - idx);
        idx = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

size_t utf8_char_bytes(std::string_view text, size_t idx) {
  auto lead = static_cast<unsigned char>(text[idx]);
  size_t length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  return std::min(length, text.size() - idx);
}

}  // namespace

struct SplitRegex::Scratch {
  pcre2_match_data* match_data = nullptr;
  pcre2_match_context* match_context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;

  ~Scratch() {
    pcre2_match_data_free(match_data);
    pcre2_match_context_free(match_context);
    pcre2_jit_stack_free(jit_stack);
  }
};

struct SplitRegex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  mutable std::mutex mutex;  // guards free_scratch
  mutable std::vector<std::unique_ptr<Scratch>> free_scratch;

  ~Impl() { pcre2_code_free(code); }

  std::unique_ptr<Scratch> acquire() const {
    {
      std::lock_guard lock(mutex);
      if (!free_scratch.empty()) {
        auto scratch = std::move(free_scratch.back());
        free_scratch.pop_back();
        return scratch;
      }
    }
    auto scratch = std::make_unique<Scratch>();
    scratch->match_data = pcre2_match_data_create_from_pattern(code, nullptr);
    scratch->match_context = pcre2_match_context_create(nullptr);
    if (jit) {
      scratch->jit_stack = pcre2_jit_stack_create(kJitStackStartBytes, kJitStackMaxBytes, nullptr);
      pcre2_jit_stack_assign(scratch->match_context, nullptr, scratch->jit_stack);
    }
    EEP_CHECK(scratch->match_data != nullptr && scratch->match_context != nullptr);
    return scratch;
  }

  void release(std::unique_ptr<Scratch> scratch) const {
    std::lock_guard lock(mutex);
    free_scratch.push_back(std::move(scratch));
  }
};

SplitRegex::SplitRegex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SplitRegex::~SplitRegex() = default;

Result<std::unique_ptr<SplitRegex>> SplitRegex::compile(std::string_view pattern, bool literal) {
  std::string rewritten = literal ? std::string(pattern) : pattern_for_pcre2(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                                   PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0u),
                                   &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    return error(ErrorCode::kInvalidArgument, "PCRE2 refuses the regex at offset " +
                                                  std::to_string(error_offset) + ": " +
                                                  pcre2_message(error_code));
  }
  auto impl = std::make_unique<Impl>();
  impl->code = code;
  // Without JIT (a platform that lacks it) the interpreter gives the same matches, slower.
  impl->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return std::unique_ptr<SplitRegex>(new SplitRegex(std::move(impl)));
}

Status SplitRegex::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  std::unique_ptr<Scratch> scratch = impl_->acquire();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap_start = 0;  // where the text not yet in a piece begins
  size_t offset = 0;     // where the next search starts
  Status status;
  while (offset < text.size()) {
    int rc = pcre2_match(impl_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK,
                         scratch->match_data, scratch->match_context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      status = error(ErrorCode::kInternal, "the pre-tokenizer's regex failed on a text of " +
                                               std::to_string(text.size()) +
                                               " bytes: " + pcre2_message(rc));
      break;
    }
    PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch->match_data);
    size_t start = ovector[0];
    size_t end = ovector[1];
    if (end <= start) {  // an empty match: no piece; search again one character on
      offset = start + (start < text.size() ? utf8_char_bytes(text, start) : 1);
      continue;
    }
    if (start > gap_start) pieces.push_back(text.substr(gap_start, start - gap_start));
    pieces.push_back(text.substr(start, end - start));
    gap_start = end;
    offset = end;
  }
  if (status.is_ok() && gap_start < text.size()) pieces.push_back(text.substr(gap_start));
  impl_->release(std::move(scratch));
  return status;
}

Result<PreTokenizer> PreTokenizer::from_json(const nlohmann::json& pre_tokenizer,
                                             const std::string& where) {
  auto refuse = [&](const std::string& what) {
    return error(ErrorCode::kInvalidArgument, where + ": " + what);
  };
  if (!pre_tokenizer.is_object() || !pre_tokenizer.contains("type") ||
      !pre_tokenizer["type"].is_string()) {
    return refuse("no pre-tokenizer with a string \"type\" (a byte-level BPE needs ByteLevel)");
  }
  std::vector<nlohmann::json> stages;
  if (pre_tokenizer["type"] == "Sequence") {
    if (!pre_tokenizer.contains("pretokenizers") || !pre_tokenizer["pretokenizers"].is_array()) {
      return refuse("a Sequence pre-tokenizer without \"pretokenizers\"");
    }
    for (const auto& stage : pre_tokenizer["pretokenizers"]) stages.push_back(stage);
  } else {
    stages.push_back(pre_tokenizer);
  }
  PreTokenizer result;
  for (size_t idx = 0; idx < stages.size(); ++idx) {
    const nlohmann::json& stage = stages[idx];
    std::string type = stage.is_object() ? stage.value("type", "") : "";
    bool last = idx + 1 == stages.size();
    if (type == "ByteLevel") {
      if (!last) return refuse("ByteLevel must be the last pre-tokenizer");
      if (stage.value("add_prefix_space", false)) {
        return refuse("ByteLevel with add_prefix_space true is not supported");
      }
      if (stage.value("use_regex", true)) {
        return refuse("ByteLevel with use_regex true (GPT-2's own split) is not supported");
      }
      return result;
    }
    if (type != "Split") {
      return refuse("the pre-tokenizer type \"" + type +
                    "\" is not supported (only Split and a final ByteLevel)");
    }
    if (stage.value("behavior", "") != "Isolated") {
      return refuse("Split behavior \"" + stage.value("behavior", "") +
                    "\" is not supported (only Isolated)");
    }
    if (stage.value("invert", false)) return refuse("Split with invert true is not supported");
    const nlohmann::json* pattern = stage.contains("pattern") ? &stage["pattern"] : nullptr;
    std::string regex;
    bool literal = false;
    if (pattern && pattern->is_object() && pattern->contains("Regex") &&
        (*pattern)["Regex"].is_string()) {
      regex = (*pattern)["Regex"];
    } else if (pattern && pattern->is_object() && pattern->contains("String") &&
               (*pattern)["String"].is_string()) {
      regex = (*pattern)["String"];
      literal = true;
    } else {
      return refuse("a Split without a \"pattern\" of {\"Regex\": ...} or {\"String\": ...}");
    }
    auto compiled = SplitRegex::compile(regex, literal);
    if (!compiled.is_ok()) {
      return refuse("pre_tokenizer Split pattern: " + compiled.status().message());
    }
    result.stages_.push_back(std::shared_ptr<const SplitRegex>(std::move(compiled).value()));
  }
  return refuse("the pre-tokenizer does not end with ByteLevel (a byte-level BPE needs it)");
}

Status PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  pieces.clear();
  if (text.empty()) return Status::ok();
  pieces.push_back(text);
  std::vector<std::string_view> next;
  for (const auto& stage : stages_) {
    next.clear();
    for (std::string_view piece : pieces) EEP_RETURN_IF_ERROR(stage->split(piece, next));
    pieces.swap(next);
  }
  return Status::ok();
}

}  // namespace eep::coordinator::text
