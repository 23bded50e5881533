// The Jinja parser: tokens -> syntax tree. Statements: if/elif/else, for (else, `if` filter,
// unpacking), set (plain, unpacking, namespace attribute, block), macro, call, filter, break,
// continue, raw (in the lexer), and Hugging Face's {% generation %}. Anything else (extends,
// block, include, import, with, ...) is refused here, as are unknown filters and tests, with the
// line, column and name of the construct. Nesting is capped (kMaxNestingDepth) so that no
// template can exhaust the stack.
#pragma once

#include <vector>

#include "eep/common/status.h"
#include "eep/coordinator/jinja/ast.h"
#include "eep/coordinator/jinja/lexer.h"

namespace eep::coordinator::jinja {

// Expression and statement nesting, together: far above any real template, far below the stack.
constexpr int kMaxNestingDepth = 128;

Result<Body> parse(const SourceMap& source, const std::vector<Token>& tokens);

}  // namespace eep::coordinator::jinja
