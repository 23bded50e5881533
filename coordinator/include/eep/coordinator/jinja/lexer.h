// The Jinja lexer: template source -> tokens, with Jinja's whitespace rules applied to the text
// between tags: `{%-`/`-%}`/`{{-`/`-}}`/`{#-`/`-#}` strip all whitespace on that side,
// trim_blocks drops the first newline after a block or comment tag, lstrip_blocks drops the
// spaces and tabs before a block or comment tag that starts its line (`{%+` keeps them, `+%}`
// keeps the newline). As Jinja does, newlines are normalised to "\n" and one trailing newline of
// the source is dropped (keep_trailing_newline=False). Comments vanish; `{% raw %}` bodies
// become text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "eep/common/status.h"

namespace eep::coordinator::jinja {

enum class TokenKind {
  kText,           // literal output between tags
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kName,
  kString,    // text holds the decoded value
  kInteger,   // int_value
  kFloat,     // float_value
  kOperator,  // text holds it: + - * / // % ** ~ == != < <= > >= = . , : | ( ) [ ] { }
  kEnd,
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0.0;
  size_t offset = 0;  // byte offset in the normalised source (see SourceMap)
};

struct LexerOptions {
  bool trim_blocks = true;    // Hugging Face's setting
  bool lstrip_blocks = true;  // Hugging Face's setting
};

// The source the lexer works on, and line/column (1-based, columns in characters) of offsets.
class SourceMap {
 public:
  explicit SourceMap(std::string_view raw_source);
  const std::string& text() const { return text_; }
  // "line 3, column 14"
  std::string describe(size_t offset) const;
  int line_of(size_t offset) const;

 private:
  std::string text_;
  std::vector<size_t> line_starts_;
};

// kInvalidArgument naming the line and column of the first problem (unclosed tag or string,
// unexpected character, invalid UTF-8).
Result<std::vector<Token>> tokenize(const SourceMap& source, const LexerOptions& options);

}  // namespace eep::coordinator::jinja
