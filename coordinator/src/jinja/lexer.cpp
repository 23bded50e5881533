#include "eep/coordinator/jinja/lexer.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "text_util.h"

namespace eep::coordinator::jinja {

SourceMap::SourceMap(std::string_view raw_source) {
  text_.reserve(raw_source.size());
  for (size_t i = 0; i < raw_source.size(); ++i) {
    if (raw_source[i] == '\r') {
      text_.push_back('\n');
      if (i + 1 < raw_source.size() && raw_source[i + 1] == '\n') ++i;
    } else {
      text_.push_back(raw_source[i]);
    }
  }
  if (!text_.empty() && text_.back() == '\n') text_.pop_back();
  line_starts_.push_back(0);
  for (size_t i = 0; i < text_.size(); ++i) {
    if (text_[i] == '\n') line_starts_.push_back(i + 1);
  }
}

int SourceMap::line_of(size_t offset) const {
  auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
  return static_cast<int>(it - line_starts_.begin());
}

std::string SourceMap::describe(size_t offset) const {
  offset = std::min(offset, text_.size());
  int line = line_of(offset);
  size_t start = line_starts_[static_cast<size_t>(line - 1)];
  size_t column = utf8_length(std::string_view(text_).substr(start, offset - start)) + 1;
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_name_char(char c) {
  return is_name_start(c) || is_digit(c);
}

// Python's str.rstrip() (unicode whitespace).
std::string rstrip_all(std::string_view text) {
  if (is_ascii(text)) {
    size_t end = text.size();
    while (end > 0 && is_python_space(static_cast<unsigned char>(text[end - 1]))) --end;
    return std::string(text.substr(0, end));
  }
  return python_strip(text, nullptr, false, true);
}

class Lexer {
 public:
  Lexer(const SourceMap& source, const LexerOptions& options)
      : source_(source), src_(source.text()), options_(options) {}

  Result<std::vector<Token>> run() {
    if (!is_valid_utf8(src_)) {
      return error(ErrorCode::kInvalidArgument, "template source is not valid UTF-8");
    }
    while (pos_ < src_.size()) {
      size_t tag = find_tag(pos_);
      std::string text(src_.substr(pos_, tag - pos_));
      size_t text_offset = pos_;
      if (tag == src_.size()) {
        emit_text(std::move(text), text_offset);
        break;
      }
      char kind = src_[tag + 1];
      char modifier = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      text = strip_before_tag(std::move(text), text_offset, kind, modifier);
      emit_text(std::move(text), text_offset);
      if (kind == '#') {
        EEP_RETURN_IF_ERROR(skip_comment(tag));
      } else if (kind == '%' && is_raw_begin(tag)) {
        EEP_RETURN_IF_ERROR(lex_raw(tag));
      } else {
        EEP_RETURN_IF_ERROR(lex_tag(tag, kind, modifier));
      }
    }
    Token end;
    end.kind = TokenKind::kEnd;
    end.offset = src_.size();
    tokens_.push_back(std::move(end));
    return std::move(tokens_);
  }

 private:
  Status fail(size_t offset, const std::string& message) const {
    return error(ErrorCode::kInvalidArgument,
                 "template syntax error at " + source_.describe(offset) + ": " + message);
  }

  // The offset of the next "{{", "{%" or "{#" at or after `from`, or the end.
  size_t find_tag(size_t from) const {
    while (true) {
      size_t brace = src_.find('{', from);
      if (brace == std::string_view::npos || brace + 1 >= src_.size()) return src_.size();
      char next = src_[brace + 1];
      if (next == '{' || next == '%' || next == '#') return brace;
      from = brace + 1;
    }
  }

  std::string strip_before_tag(std::string text, size_t text_offset, char kind, char modifier) {
    if (modifier == '-') return rstrip_all(text);
    if (kind == '{' || modifier == '+' || !options_.lstrip_blocks) return text;
    // lstrip_blocks: only spaces/tabs (no other character) between the line start and the tag.
    size_t line_start = text.rfind('\n');
    line_start = line_start == std::string::npos ? 0 : line_start + 1;
    bool line_starting = line_start > 0 || text_offset == 0 || src_[text_offset - 1] == '\n';
    if (!line_starting) return text;
    std::string_view tail = std::string_view(text).substr(line_start);
    for (char32_t c : decode_utf8(tail)) {
      if (c == '\n' || !is_python_space(c)) return text;
    }
    text.resize(line_start);
    return text;
  }

  void emit_text(std::string text, size_t offset) {
    if (text.empty()) return;
    Token token;
    token.kind = TokenKind::kText;
    token.text = std::move(text);
    token.offset = offset;
    tokens_.push_back(std::move(token));
  }

  void emit(TokenKind kind, std::string text, size_t offset) {
    Token token;
    token.kind = kind;
    token.text = std::move(text);
    token.offset = offset;
    tokens_.push_back(std::move(token));
  }

  // After a block or comment end: `-` strips all whitespace, `+` keeps it, else trim_blocks
  // drops one newline.
  void after_block_end(char modifier) {
    if (modifier == '-') {
      while (pos_ < src_.size()) {
        size_t before = pos_;
        unsigned char c = static_cast<unsigned char>(src_[pos_]);
        if (c < 0x80) {
          if (!is_python_space(c)) break;
          ++pos_;
          continue;
        }
        std::u32string code = decode_utf8(src_.substr(pos_, 4));
        if (code.empty() || !is_python_space(code[0])) break;
        std::string encoded;
        append_utf8(encoded, code[0]);
        pos_ = before + encoded.size();
      }
    } else if (modifier != '+' && options_.trim_blocks && pos_ < src_.size() &&
               src_[pos_] == '\n') {
      ++pos_;
    }
  }

  Status skip_comment(size_t tag) {
    size_t end = src_.find("#}", tag + 2);
    if (end == std::string_view::npos) return fail(tag, "unclosed comment '{#'");
    char modifier = end > tag + 2 && src_[end - 1] == '-' ? '-' : '\0';
    pos_ = end + 2;
    after_block_end(modifier);
    return Status::ok();
  }

  // Whether "{%[-+]? raw [-+]?%}" starts at `tag`; sets raw_content_ to just after it.
  bool match_keyword_tag(size_t tag, const char* keyword, size_t* after, char* close_modifier,
                         char* open_modifier) const {
    size_t p = tag + 2;
    *open_modifier = '\0';
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) *open_modifier = src_[p++];
    while (p < src_.size() && is_space(src_[p])) ++p;
    size_t length = std::strlen(keyword);
    if (src_.compare(p, length, keyword) != 0) return false;
    p += length;
    if (p < src_.size() && is_name_char(src_[p])) return false;
    while (p < src_.size() && is_space(src_[p])) ++p;
    *close_modifier = '\0';
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) *close_modifier = src_[p++];
    if (src_.compare(p, 2, "%}") != 0) return false;
    *after = p + 2;
    return true;
  }

  bool is_raw_begin(size_t tag) const {
    size_t after;
    char close_modifier, open_modifier;
    return match_keyword_tag(tag, "raw", &after, &close_modifier, &open_modifier);
  }

  Status lex_raw(size_t tag) {
    size_t after;
    char close_modifier, open_modifier;
    match_keyword_tag(tag, "raw", &after, &close_modifier, &open_modifier);
    pos_ = after;
    after_block_end(close_modifier);
    size_t content_start = pos_;
    for (size_t search = content_start;;) {
      size_t end_tag = src_.find("{%", search);
      if (end_tag == std::string_view::npos) return fail(tag, "unclosed '{% raw %}' block");
      char end_close, end_open;
      if (match_keyword_tag(end_tag, "endraw", &after, &end_close, &end_open)) {
        std::string content(src_.substr(content_start, end_tag - content_start));
        content = strip_before_tag(std::move(content), content_start, '%', end_open);
        emit_text(std::move(content), content_start);
        pos_ = after;
        after_block_end(end_close);
        return Status::ok();
      }
      search = end_tag + 2;
    }
  }

  Status lex_tag(size_t tag, char kind, char modifier) {
    bool is_block = kind == '%';
    emit(is_block ? TokenKind::kBlockBegin : TokenKind::kVariableBegin, is_block ? "{%" : "{{",
         tag);
    pos_ = tag + 2;
    if (modifier == '-' || (is_block && modifier == '+')) ++pos_;
    std::string brackets;  // open ( [ { inside the tag
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
      if (pos_ >= src_.size()) {
        return fail(tag, std::string("unclosed tag '") + (is_block ? "{%" : "{{") + "'");
      }
      if (brackets.empty()) {
        std::string_view rest = src_.substr(pos_);
        const char* close = is_block ? "%}" : "}}";
        char close_modifier = '\0';
        size_t length = 0;
        if (rest.size() >= 3 && (rest[0] == '-' || (is_block && rest[0] == '+')) &&
            rest.substr(1, 2) == close) {
          close_modifier = rest[0];
          length = 3;
        } else if (rest.substr(0, 2) == close) {
          length = 2;
        }
        if (length > 0) {
          emit(is_block ? TokenKind::kBlockEnd : TokenKind::kVariableEnd, close, pos_);
          pos_ += length;
          if (is_block) {
            after_block_end(close_modifier);
          } else if (close_modifier == '-') {
            after_block_end('-');
          }
          return Status::ok();
        }
      }
      EEP_RETURN_IF_ERROR(lex_one(brackets, tag, is_block));
    }
  }

  Status lex_one(std::string& brackets, size_t tag, bool is_block) {
    char c = src_[pos_];
    size_t start = pos_;
    if (is_name_start(c)) {
      while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
      emit(TokenKind::kName, std::string(src_.substr(start, pos_ - start)), start);
      return Status::ok();
    }
    if (is_digit(c)) return lex_number();
    if (c == '\'' || c == '"') return lex_string();
    static const char* kTwoCharOperators[] = {"**", "//", "==", "!=", "<=", ">="};
    for (const char* op : kTwoCharOperators) {
      if (src_.compare(pos_, 2, op) == 0) {
        emit(TokenKind::kOperator, op, start);
        pos_ += 2;
        return Status::ok();
      }
    }
    if (std::strchr("+-*/%~<>=.,:|()[]{}", c) != nullptr && c != '\0') {
      if (c == '(' || c == '[' || c == '{') {
        if (brackets.size() >= 256) return fail(start, "brackets nested too deeply");
        brackets.push_back(c);
      } else if (c == ')' || c == ']' || c == '}') {
        char open = c == ')' ? '(' : c == ']' ? '[' : '{';
        if (brackets.empty() || brackets.back() != open) {
          return fail(start, std::string("unexpected '") + c + "'");
        }
        brackets.pop_back();
      }
      emit(TokenKind::kOperator, std::string(1, c), start);
      ++pos_;
      return Status::ok();
    }
    (void)tag;
    (void)is_block;
    std::u32string code = decode_utf8(src_.substr(pos_, 4));
    std::string shown;
    append_utf8(shown, code.empty() ? U'?' : code[0]);
    return fail(start, "unexpected character '" + shown + "' inside a tag");
  }

  Status lex_number() {
    size_t start = pos_;
    std::string digits;
    auto take_digits = [&] {
      while (pos_ < src_.size() && (is_digit(src_[pos_]) || src_[pos_] == '_')) {
        if (src_[pos_] != '_') digits.push_back(src_[pos_]);
        ++pos_;
      }
    };
    take_digits();
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && is_digit(src_[pos_ + 1])) {
      is_float = true;
      digits.push_back('.');
      ++pos_;
      take_digits();
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && is_digit(src_[p])) {
        is_float = true;
        digits += std::string(src_.substr(pos_, p - pos_));
        pos_ = p;
        take_digits();
      }
    }
    Token token;
    token.offset = start;
    token.text = digits;
    if (is_float) {
      token.kind = TokenKind::kFloat;
      token.float_value = std::strtod(digits.c_str(), nullptr);
    } else {
      token.kind = TokenKind::kInteger;
      errno = 0;
      unsigned long long parsed = std::strtoull(digits.c_str(), nullptr, 10);
      if (errno == ERANGE ||
          parsed > static_cast<unsigned long long>(std::numeric_limits<int64_t>::max())) {
        return fail(start, "integer literal " + digits + " is out of range");
      }
      token.int_value = static_cast<int64_t>(parsed);
    }
    tokens_.push_back(std::move(token));
    return Status::ok();
  }

  // Python string literal escapes, as Jinja decodes them ("unicode-escape"); unknown escapes
  // keep their backslash.
  Status lex_string() {
    size_t start = pos_;
    char quote = src_[pos_++];
    std::string value;
    while (true) {
      if (pos_ >= src_.size()) return fail(start, "unclosed string literal");
      char c = src_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        value.push_back(c);
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= src_.size()) return fail(start, "unclosed string literal");
      char e = src_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case 'n':
          value.push_back('\n');
          break;
        case 't':
          value.push_back('\t');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case 'b':
          value.push_back('\b');
          break;
        case 'f':
          value.push_back('\f');
          break;
        case 'v':
          value.push_back('\v');
          break;
        case 'a':
          value.push_back('\a');
          break;
        case '\\':
          value.push_back('\\');
          break;
        case '\'':
          value.push_back('\'');
          break;
        case '"':
          value.push_back('"');
          break;
        case '\n':
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          size_t num_digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (pos_ + num_digits > src_.size())
            return fail(pos_ - 2, "truncated \\" + std::string(1, e) + " escape");
          std::string hex(src_.substr(pos_, num_digits));
          if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
            return fail(pos_ - 2, "invalid \\" + std::string(1, e) + " escape");
          }
          auto code = static_cast<char32_t>(std::stoul(hex, nullptr, 16));
          if (code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
            return fail(pos_ - 2, "escape \\" + std::string(1, e) + hex + " is not a character");
          }
          append_utf8(value, code);
          pos_ += num_digits;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t code = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7';
                 ++k) {
              code = code * 8 + static_cast<char32_t>(src_[pos_++] - '0');
            }
            append_utf8(value, code);
          } else {
            value.push_back('\\');
            value.push_back(e);
          }
      }
    }
    emit(TokenKind::kString, std::move(value), start);
    return Status::ok();
  }

  const SourceMap& source_;
  std::string_view src_;
  LexerOptions options_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

Result<std::vector<Token>> tokenize(const SourceMap& source, const LexerOptions& options) {
  return Lexer(source, options).run();
}

}  // namespace eep::coordinator::jinja
