#include "eep/coordinator/jinja/parser.h"

#include <algorithm>

#include "eep/coordinator/jinja/builtins.h"
#include "eep/coordinator/jinja/filters.h"

namespace eep::coordinator::jinja {

namespace {

// Tags Jinja has that this engine does not: named so that the error says "unsupported" rather
// than "unknown".
constexpr std::string_view kUnsupportedTags[] = {"extends", "block",    "include",    "import",
                                                 "from",    "with",     "autoescape", "do",
                                                 "trans",   "pluralize"};

class Parser {
 public:
  Parser(const SourceMap& source, const std::vector<Token>& tokens)
      : source_(source), tokens_(tokens) {}

  Result<Body> run() {
    Body body;
    std::string found_end;
    EEP_RETURN_IF_ERROR(parse_body(body, {}, &found_end, 0, ""));
    return body;
  }

 private:
  // Counts nesting of expressions and statements; run() fails past kMaxNestingDepth.
  struct DepthGuard {
    explicit DepthGuard(int& depth) : depth_(depth) { ++depth_; }
    ~DepthGuard() { --depth_; }
    int& depth_;
  };

  Status fail(size_t offset, const std::string& message) const {
    return error(ErrorCode::kInvalidArgument,
                 "template syntax error at " + source_.describe(offset) + ": " + message);
  }
  // Sets node's height from its children's and refuses trees taller than kMaxNestingDepth:
  // long operator chains (a - b - c ...) and filter chains grow trees without recursing here,
  // and evaluating them would recurse.
  Result<ExprPtr> seal(ExprPtr node) const {
    int child = 0;
    auto see = [&](const ExprPtr& e) {
      if (e) child = std::max(child, e->height);
    };
    switch (node->kind) {
      case ExprKind::kList:
        for (const auto& item : static_cast<ListExpr&>(*node).items) see(item);
        break;
      case ExprKind::kDict:
        for (const auto& [key, value] : static_cast<DictExpr&>(*node).items) {
          see(key);
          see(value);
        }
        break;
      case ExprKind::kGetAttr:
        see(static_cast<GetAttrExpr&>(*node).object);
        break;
      case ExprKind::kGetItem:
        see(static_cast<GetItemExpr&>(*node).object);
        see(static_cast<GetItemExpr&>(*node).index);
        break;
      case ExprKind::kSlice: {
        auto& slice = static_cast<SliceExpr&>(*node);
        see(slice.object);
        see(slice.start);
        see(slice.stop);
        see(slice.step);
        break;
      }
      case ExprKind::kCall: {
        auto& call = static_cast<CallExpr&>(*node);
        see(call.callee);
        for (const auto& arg : call.args) see(arg);
        for (const auto& [name, arg] : call.kwargs) see(arg);
        break;
      }
      case ExprKind::kFilter: {
        auto& filter = static_cast<FilterExpr&>(*node);
        see(filter.operand);
        for (const auto& arg : filter.args) see(arg);
        for (const auto& [name, arg] : filter.kwargs) see(arg);
        break;
      }
      case ExprKind::kTest: {
        auto& test = static_cast<TestExpr&>(*node);
        see(test.operand);
        for (const auto& arg : test.args) see(arg);
        break;
      }
      case ExprKind::kUnary:
        see(static_cast<UnaryExpr&>(*node).operand);
        break;
      case ExprKind::kBinary:
        see(static_cast<BinaryExpr&>(*node).left);
        see(static_cast<BinaryExpr&>(*node).right);
        break;
      case ExprKind::kCompare: {
        auto& compare = static_cast<CompareExpr&>(*node);
        see(compare.first);
        for (const auto& [op, operand] : compare.rest) see(operand);
        break;
      }
      case ExprKind::kConditional: {
        auto& conditional = static_cast<ConditionalExpr&>(*node);
        see(conditional.condition);
        see(conditional.then_expr);
        see(conditional.else_expr);
        break;
      }
      default:
        break;
    }
    node->height = child + 1;
    if (node->height > kMaxNestingDepth) return too_deep(node->offset);
    return node;
  }

  Status too_deep(size_t offset) const {
    return fail(offset, "nesting deeper than " + std::to_string(kMaxNestingDepth) + " levels");
  }

  const Token& peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& next() {
    const Token& token = peek();
    if (pos_ < tokens_.size() - 1) ++pos_;
    return token;
  }
  bool is_op(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::kOperator && peek(ahead).text == op;
  }
  bool is_name(std::string_view name, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::kName && peek(ahead).text == name;
  }
  static std::string describe(const Token& token) {
    switch (token.kind) {
      case TokenKind::kText:
        return "text";
      case TokenKind::kBlockBegin:
        return "'{%'";
      case TokenKind::kBlockEnd:
        return "'%}'";
      case TokenKind::kVariableBegin:
        return "'{{'";
      case TokenKind::kVariableEnd:
        return "'}}'";
      case TokenKind::kName:
        return "'" + token.text + "'";
      case TokenKind::kString:
        return "a string";
      case TokenKind::kInteger:
      case TokenKind::kFloat:
        return "a number";
      case TokenKind::kOperator:
        return "'" + token.text + "'";
      case TokenKind::kEnd:
        return "the end of the template";
    }
    return "?";
  }
  Status expect_op(std::string_view op) {
    if (!is_op(op))
      return fail(peek().offset, "expected '" + std::string(op) + "', got " + describe(peek()));
    next();
    return Status::ok();
  }
  Status expect_kind(TokenKind kind, std::string_view what) {
    if (peek().kind != kind) {
      return fail(peek().offset, "expected " + std::string(what) + ", got " + describe(peek()));
    }
    next();
    return Status::ok();
  }
  Status expect_block_end() { return expect_kind(TokenKind::kBlockEnd, "'%}'"); }
  Result<std::string> expect_name() {
    if (peek().kind != TokenKind::kName)
      return fail(peek().offset, "expected a name, got " + describe(peek()));
    return next().text;
  }

  // Parses statements until a block tag named in `end_names` (consumed up to its name, which
  // goes to *found_end), or the end of the template when end_names is empty.
  Status parse_body(Body& body, std::initializer_list<std::string_view> end_names,
                    std::string* found_end, size_t opened_at, std::string_view opened_by) {
    while (true) {
      const Token& token = peek();
      switch (token.kind) {
        case TokenKind::kEnd:
          if (end_names.size() > 0) {
            return fail(opened_at, "'" + std::string(opened_by) +
                                       "' is never closed (expected '{% " +
                                       std::string(*end_names.begin()) + " %}')");
          }
          return Status::ok();
        case TokenKind::kText:
          body.push_back(std::make_unique<TextStmt>(token.offset, token.text));
          next();
          break;
        case TokenKind::kVariableBegin: {
          size_t offset = next().offset;
          EEP_ASSIGN_OR_RETURN(ExprPtr expr, parse_tuple_or_expression());
          EEP_RETURN_IF_ERROR(expect_kind(TokenKind::kVariableEnd, "'}}'"));
          body.push_back(std::make_unique<OutputStmt>(offset, std::move(expr)));
          break;
        }
        case TokenKind::kBlockBegin: {
          size_t offset = token.offset;
          if (peek(1).kind != TokenKind::kName) {
            return fail(peek(1).offset,
                        "expected a statement name after '{%', got " + describe(peek(1)));
          }
          const std::string& name = peek(1).text;
          if (std::find(end_names.begin(), end_names.end(), name) != end_names.end()) {
            *found_end = name;
            pos_ += 2;
            return Status::ok();
          }
          pos_ += 2;
          DepthGuard guard(depth_);
          if (depth_ > kMaxNestingDepth) return too_deep(offset);
          EEP_ASSIGN_OR_RETURN(StmtPtr stmt, parse_statement(name, offset));
          body.push_back(std::move(stmt));
          break;
        }
        default:
          return fail(token.offset, "unexpected " + describe(token));
      }
    }
  }

  Result<StmtPtr> parse_statement(const std::string& name, size_t offset) {
    if (name == "if") return parse_if(offset);
    if (name == "for") return parse_for(offset);
    if (name == "set") return parse_set(offset);
    if (name == "macro") return parse_macro(offset);
    if (name == "call") return parse_call_block(offset);
    if (name == "filter") return parse_filter_block(offset);
    if (name == "generation") {
      EEP_RETURN_IF_ERROR(expect_block_end());
      auto block = std::make_unique<BlockStmt>(offset);
      std::string found;
      EEP_RETURN_IF_ERROR(parse_body(block->body, {"endgeneration"}, &found, offset, "generation"));
      EEP_RETURN_IF_ERROR(expect_block_end());
      return StmtPtr(std::move(block));
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) return fail(offset, "'" + name + "' outside of a for loop");
      EEP_RETURN_IF_ERROR(expect_block_end());
      return StmtPtr(std::make_unique<LoopControlStmt>(
          offset, name == "break" ? StmtKind::kBreak : StmtKind::kContinue));
    }
    if (std::find(std::begin(kUnsupportedTags), std::end(kUnsupportedTags), name) !=
        std::end(kUnsupportedTags)) {
      return fail(offset, "unsupported tag '" + name + "' (chat templates are self-contained)");
    }
    return fail(offset, "unknown tag '" + name + "'");
  }

  Result<StmtPtr> parse_if(size_t offset) {
    auto stmt = std::make_unique<IfStmt>(offset);
    EEP_ASSIGN_OR_RETURN(ExprPtr condition, parse_expression());
    EEP_RETURN_IF_ERROR(expect_block_end());
    while (true) {
      Body body;
      std::string found;
      EEP_RETURN_IF_ERROR(parse_body(body, {"endif", "elif", "else"}, &found, offset, "if"));
      stmt->branches.emplace_back(std::move(condition), std::move(body));
      if (found == "elif") {
        EEP_ASSIGN_OR_RETURN(condition, parse_expression());
        EEP_RETURN_IF_ERROR(expect_block_end());
        continue;
      }
      EEP_RETURN_IF_ERROR(expect_block_end());
      if (found == "else") {
        EEP_RETURN_IF_ERROR(parse_body(stmt->else_body, {"endif"}, &found, offset, "if"));
        EEP_RETURN_IF_ERROR(expect_block_end());
      }
      return StmtPtr(std::move(stmt));
    }
  }

  // `a`, `a, b`, `(a, b)`: names to assign.
  Status parse_targets(std::vector<std::string>& names, bool& unpack) {
    bool parenthesized = is_op("(");
    if (parenthesized) {
      next();
      unpack = true;
    }
    while (true) {
      EEP_ASSIGN_OR_RETURN(std::string name, expect_name());
      names.push_back(std::move(name));
      if (!is_op(",")) break;
      next();
      unpack = true;
      if (parenthesized && is_op(")")) break;
      if (!parenthesized && peek().kind != TokenKind::kName) break;
    }
    if (parenthesized) EEP_RETURN_IF_ERROR(expect_op(")"));
    return Status::ok();
  }

  Result<StmtPtr> parse_for(size_t offset) {
    auto stmt = std::make_unique<ForStmt>(offset);
    EEP_RETURN_IF_ERROR(parse_targets(stmt->targets, stmt->unpack));
    if (!is_name("in"))
      return fail(peek().offset, "expected 'in' in the for loop, got " + describe(peek()));
    next();
    EEP_ASSIGN_OR_RETURN(stmt->iterable, parse_expression(/*with_condition=*/false));
    if (is_name("if")) {
      next();
      EEP_ASSIGN_OR_RETURN(stmt->condition, parse_expression());
    }
    if (is_name("recursive")) return fail(peek().offset, "unsupported: recursive for loops");
    EEP_RETURN_IF_ERROR(expect_block_end());
    ++loop_depth_;
    std::string found;
    Status status = parse_body(stmt->body, {"endfor", "else"}, &found, offset, "for");
    --loop_depth_;
    EEP_RETURN_IF_ERROR(status);
    EEP_RETURN_IF_ERROR(expect_block_end());
    if (found == "else") {
      EEP_RETURN_IF_ERROR(parse_body(stmt->else_body, {"endfor"}, &found, offset, "for"));
      EEP_RETURN_IF_ERROR(expect_block_end());
    }
    return StmtPtr(std::move(stmt));
  }

  Result<StmtPtr> parse_set(size_t offset) {
    SetTarget target;
    if (peek().kind == TokenKind::kName && is_op(".", 1)) {
      target.names.push_back(next().text);
      next();
      EEP_ASSIGN_OR_RETURN(target.namespace_attribute, expect_name());
    } else {
      EEP_RETURN_IF_ERROR(parse_targets(target.names, target.unpack));
    }
    if (is_op("=")) {
      next();
      auto stmt = std::make_unique<SetStmt>(offset);
      stmt->target = std::move(target);
      EEP_ASSIGN_OR_RETURN(stmt->value, parse_tuple_or_expression());
      EEP_RETURN_IF_ERROR(expect_block_end());
      return StmtPtr(std::move(stmt));
    }
    if (target.unpack) return fail(peek().offset, "a block set takes one name");
    auto stmt = std::make_unique<SetBlockStmt>(offset);
    stmt->target = std::move(target);
    while (is_op("|")) {
      next();
      EEP_ASSIGN_OR_RETURN(auto filter, parse_filter(nullptr));
      stmt->filters.push_back(std::move(filter));
    }
    EEP_RETURN_IF_ERROR(expect_block_end());
    std::string found;
    EEP_RETURN_IF_ERROR(parse_body(stmt->body, {"endset"}, &found, offset, "set"));
    EEP_RETURN_IF_ERROR(expect_block_end());
    return StmtPtr(std::move(stmt));
  }

  Status parse_params(std::vector<MacroParam>& params) {
    EEP_RETURN_IF_ERROR(expect_op("("));
    while (!is_op(")")) {
      if (!params.empty()) EEP_RETURN_IF_ERROR(expect_op(","));
      if (is_op(")")) break;
      MacroParam param;
      EEP_ASSIGN_OR_RETURN(param.name, expect_name());
      if (is_op("=")) {
        next();
        EEP_ASSIGN_OR_RETURN(param.default_value, parse_expression());
      } else if (!params.empty() && params.back().default_value) {
        return fail(peek().offset,
                    "parameter '" + param.name + "' without a default follows one with a default");
      }
      params.push_back(std::move(param));
    }
    next();
    return Status::ok();
  }

  Result<StmtPtr> parse_macro(size_t offset) {
    auto stmt = std::make_unique<MacroStmt>(offset);
    EEP_ASSIGN_OR_RETURN(stmt->name, expect_name());
    EEP_RETURN_IF_ERROR(parse_params(stmt->params));
    EEP_RETURN_IF_ERROR(expect_block_end());
    int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    std::string found;
    Status status = parse_body(stmt->body, {"endmacro"}, &found, offset, "macro");
    loop_depth_ = saved_loop_depth;
    EEP_RETURN_IF_ERROR(status);
    EEP_RETURN_IF_ERROR(expect_block_end());
    return StmtPtr(std::move(stmt));
  }

  Result<StmtPtr> parse_call_block(size_t offset) {
    auto stmt = std::make_unique<CallBlockStmt>(offset);
    if (is_op("(")) EEP_RETURN_IF_ERROR(parse_params(stmt->caller_params));
    size_t call_offset = peek().offset;
    EEP_ASSIGN_OR_RETURN(ExprPtr call, parse_expression());
    if (call->kind != ExprKind::kCall)
      return fail(call_offset, "'call' needs a macro call, as in {% call m(x) %}");
    stmt->call.reset(static_cast<CallExpr*>(call.release()));
    EEP_RETURN_IF_ERROR(expect_block_end());
    int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    std::string found;
    Status status = parse_body(stmt->body, {"endcall"}, &found, offset, "call");
    loop_depth_ = saved_loop_depth;
    EEP_RETURN_IF_ERROR(status);
    EEP_RETURN_IF_ERROR(expect_block_end());
    return StmtPtr(std::move(stmt));
  }

  Result<StmtPtr> parse_filter_block(size_t offset) {
    auto stmt = std::make_unique<FilterBlockStmt>(offset);
    do {
      if (is_op("|")) next();
      EEP_ASSIGN_OR_RETURN(auto filter, parse_filter(nullptr));
      stmt->filters.push_back(std::move(filter));
    } while (is_op("|"));
    EEP_RETURN_IF_ERROR(expect_block_end());
    std::string found;
    EEP_RETURN_IF_ERROR(parse_body(stmt->body, {"endfilter"}, &found, offset, "filter"));
    EEP_RETURN_IF_ERROR(expect_block_end());
    return StmtPtr(std::move(stmt));
  }

  // ---- expressions ----

  // `a` or `a, b` (a tuple), as {{ }} and set values allow.
  Result<ExprPtr> parse_tuple_or_expression() {
    size_t offset = peek().offset;
    EEP_ASSIGN_OR_RETURN(ExprPtr first, parse_expression());
    if (!is_op(",")) return first;
    auto tuple = std::make_unique<ListExpr>(offset);
    tuple->is_tuple = true;
    tuple->items.push_back(std::move(first));
    while (is_op(",")) {
      next();
      if (peek().kind == TokenKind::kBlockEnd || peek().kind == TokenKind::kVariableEnd) break;
      EEP_ASSIGN_OR_RETURN(ExprPtr item, parse_expression());
      tuple->items.push_back(std::move(item));
    }
    return seal(std::move(tuple));
  }

  Result<ExprPtr> parse_expression(bool with_condition = true) {
    DepthGuard guard(depth_);
    if (depth_ > kMaxNestingDepth) return too_deep(peek().offset);
    size_t offset = peek().offset;
    EEP_ASSIGN_OR_RETURN(ExprPtr expr, parse_or());
    while (with_condition && is_name("if")) {
      next();
      auto conditional = std::make_unique<ConditionalExpr>(offset);
      conditional->then_expr = std::move(expr);
      EEP_ASSIGN_OR_RETURN(conditional->condition, parse_or());
      if (is_name("else")) {
        next();
        EEP_ASSIGN_OR_RETURN(conditional->else_expr, parse_expression());
      }
      EEP_ASSIGN_OR_RETURN(expr, seal(std::move(conditional)));
    }
    return expr;
  }

  Result<ExprPtr> parse_or() {
    EEP_ASSIGN_OR_RETURN(ExprPtr left, parse_and());
    while (is_name("or")) {
      size_t offset = next().offset;
      EEP_ASSIGN_OR_RETURN(ExprPtr right, parse_and());
      EEP_ASSIGN_OR_RETURN(left, seal(std::make_unique<BinaryExpr>(
                                     offset, BinaryOp::kOr, std::move(left), std::move(right))));
    }
    return left;
  }

  Result<ExprPtr> parse_and() {
    EEP_ASSIGN_OR_RETURN(ExprPtr left, parse_not());
    while (is_name("and")) {
      size_t offset = next().offset;
      EEP_ASSIGN_OR_RETURN(ExprPtr right, parse_not());
      left =
          std::make_unique<BinaryExpr>(offset, BinaryOp::kAnd, std::move(left), std::move(right));
    }
    return left;
  }

  Result<ExprPtr> parse_not() {
    if (is_name("not")) {
      size_t offset = next().offset;
      DepthGuard guard(depth_);
      if (depth_ > kMaxNestingDepth) return too_deep(offset);
      EEP_ASSIGN_OR_RETURN(ExprPtr operand, parse_not());
      return seal(std::make_unique<UnaryExpr>(offset, UnaryOp::kNot, std::move(operand)));
    }
    return parse_compare();
  }

  Result<ExprPtr> parse_compare() {
    size_t offset = peek().offset;
    EEP_ASSIGN_OR_RETURN(ExprPtr first, parse_math1());
    std::unique_ptr<CompareExpr> compare;
    while (true) {
      std::optional<CompareOp> op;
      if (peek().kind == TokenKind::kOperator) {
        const std::string& text = peek().text;
        if (text == "==") op = CompareOp::kEqual;
        if (text == "!=") op = CompareOp::kNotEqual;
        if (text == "<") op = CompareOp::kLess;
        if (text == "<=") op = CompareOp::kLessEqual;
        if (text == ">") op = CompareOp::kGreater;
        if (text == ">=") op = CompareOp::kGreaterEqual;
        if (op) next();
      } else if (is_name("in")) {
        op = CompareOp::kIn;
        next();
      } else if (is_name("not") && is_name("in", 1)) {
        op = CompareOp::kNotIn;
        pos_ += 2;
      }
      if (!op) break;
      EEP_ASSIGN_OR_RETURN(ExprPtr operand, parse_math1());
      if (!compare) {
        compare = std::make_unique<CompareExpr>(offset);
        compare->first = std::move(first);
      }
      compare->rest.emplace_back(*op, std::move(operand));
    }
    if (compare) return seal(std::move(compare));
    return first;
  }

  template <typename Next>
  Result<ExprPtr> parse_binary_level(
      Next next_level, std::initializer_list<std::pair<std::string_view, BinaryOp>> ops) {
    EEP_ASSIGN_OR_RETURN(ExprPtr left, (this->*next_level)());
    while (peek().kind == TokenKind::kOperator) {
      auto it = std::find_if(ops.begin(), ops.end(),
                             [&](const auto& op) { return op.first == peek().text; });
      if (it == ops.end()) break;
      size_t offset = next().offset;
      EEP_ASSIGN_OR_RETURN(ExprPtr right, (this->*next_level)());
      EEP_ASSIGN_OR_RETURN(left, seal(std::make_unique<BinaryExpr>(
                                     offset, it->second, std::move(left), std::move(right))));
    }
    return left;
  }

  Result<ExprPtr> parse_math1() {
    return parse_binary_level(&Parser::parse_concat,
                              {{"+", BinaryOp::kAdd}, {"-", BinaryOp::kSubtract}});
  }
  Result<ExprPtr> parse_concat() {
    return parse_binary_level(&Parser::parse_math2, {{"~", BinaryOp::kConcat}});
  }
  Result<ExprPtr> parse_math2() {
    return parse_binary_level(&Parser::parse_pow, {{"*", BinaryOp::kMultiply},
                                                   {"/", BinaryOp::kDivide},
                                                   {"//", BinaryOp::kFloorDivide},
                                                   {"%", BinaryOp::kModulo}});
  }
  Result<ExprPtr> parse_pow() {
    return parse_binary_level(&Parser::parse_unary_filtered, {{"**", BinaryOp::kPower}});
  }
  Result<ExprPtr> parse_unary_filtered() { return parse_unary(true); }

  Result<ExprPtr> parse_unary(bool with_filter) {
    DepthGuard guard(depth_);
    if (depth_ > kMaxNestingDepth) return too_deep(peek().offset);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      size_t offset = peek().offset;
      UnaryOp op = next().text == "-" ? UnaryOp::kNegate : UnaryOp::kPlus;
      EEP_ASSIGN_OR_RETURN(ExprPtr operand, parse_unary(false));
      EEP_ASSIGN_OR_RETURN(node, seal(std::make_unique<UnaryExpr>(offset, op, std::move(operand))));
    } else {
      EEP_ASSIGN_OR_RETURN(node, parse_primary());
    }
    EEP_ASSIGN_OR_RETURN(node, parse_postfix(std::move(node)));
    if (with_filter) {
      EEP_ASSIGN_OR_RETURN(node, parse_filters_and_tests(std::move(node)));
    }
    return node;
  }

  Result<ExprPtr> parse_primary() {
    const Token& token = peek();
    switch (token.kind) {
      case TokenKind::kName: {
        next();
        const std::string& name = token.text;
        if (name == "true" || name == "True")
          return ExprPtr(std::make_unique<LiteralExpr>(token.offset, Value(true)));
        if (name == "false" || name == "False")
          return ExprPtr(std::make_unique<LiteralExpr>(token.offset, Value(false)));
        if (name == "none" || name == "None")
          return ExprPtr(std::make_unique<LiteralExpr>(token.offset, Value::none()));
        return ExprPtr(std::make_unique<NameExpr>(token.offset, name));
      }
      case TokenKind::kString: {
        std::string text = next().text;
        while (peek().kind == TokenKind::kString) text += next().text;  // 'a' 'b' is 'ab'
        return ExprPtr(std::make_unique<LiteralExpr>(token.offset, Value(std::move(text))));
      }
      case TokenKind::kInteger:
        next();
        return ExprPtr(std::make_unique<LiteralExpr>(token.offset, Value(token.int_value)));
      case TokenKind::kFloat:
        next();
        return ExprPtr(std::make_unique<LiteralExpr>(token.offset, Value(token.float_value)));
      case TokenKind::kOperator:
        if (token.text == "(") return parse_parenthesized();
        if (token.text == "[") return parse_list();
        if (token.text == "{") return parse_dict();
        break;
      default:
        break;
    }
    return fail(token.offset, "unexpected " + describe(token) + " in an expression");
  }

  Result<ExprPtr> parse_parenthesized() {
    size_t offset = next().offset;
    if (is_op(")")) {
      next();
      auto tuple = std::make_unique<ListExpr>(offset);
      tuple->is_tuple = true;
      return ExprPtr(std::move(tuple));
    }
    EEP_ASSIGN_OR_RETURN(ExprPtr first, parse_expression());
    if (is_op(")")) {
      next();
      return first;
    }
    auto tuple = std::make_unique<ListExpr>(offset);
    tuple->is_tuple = true;
    tuple->items.push_back(std::move(first));
    while (is_op(",")) {
      next();
      if (is_op(")")) break;
      EEP_ASSIGN_OR_RETURN(ExprPtr item, parse_expression());
      tuple->items.push_back(std::move(item));
    }
    EEP_RETURN_IF_ERROR(expect_op(")"));
    return seal(std::move(tuple));
  }

  Result<ExprPtr> parse_list() {
    auto list = std::make_unique<ListExpr>(next().offset);
    while (!is_op("]")) {
      if (!list->items.empty()) {
        EEP_RETURN_IF_ERROR(expect_op(","));
        if (is_op("]")) break;
      }
      EEP_ASSIGN_OR_RETURN(ExprPtr item, parse_expression());
      list->items.push_back(std::move(item));
    }
    next();
    return seal(std::move(list));
  }

  Result<ExprPtr> parse_dict() {
    auto dict = std::make_unique<DictExpr>(next().offset);
    while (!is_op("}")) {
      if (!dict->items.empty()) {
        EEP_RETURN_IF_ERROR(expect_op(","));
        if (is_op("}")) break;
      }
      EEP_ASSIGN_OR_RETURN(ExprPtr key, parse_expression());
      EEP_RETURN_IF_ERROR(expect_op(":"));
      EEP_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
      dict->items.emplace_back(std::move(key), std::move(value));
    }
    next();
    return seal(std::move(dict));
  }

  Result<ExprPtr> parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".")) {
        size_t offset = next().offset;
        if (peek().kind == TokenKind::kName) {
          node = std::make_unique<GetAttrExpr>(offset, std::move(node), next().text);
        } else if (peek().kind == TokenKind::kInteger) {
          auto index = std::make_unique<LiteralExpr>(peek().offset, Value(next().int_value));
          node = std::make_unique<GetItemExpr>(offset, std::move(node), std::move(index));
        } else {
          return fail(peek().offset,
                      "expected an attribute name after '.', got " + describe(peek()));
        }
      } else if (is_op("[")) {
        EEP_ASSIGN_OR_RETURN(node, parse_subscript(std::move(node)));
      } else if (is_op("(")) {
        EEP_ASSIGN_OR_RETURN(node, parse_call(std::move(node)));
      } else {
        return node;
      }
      EEP_ASSIGN_OR_RETURN(node, seal(std::move(node)));
    }
  }

  Result<ExprPtr> parse_subscript(ExprPtr object) {
    size_t offset = next().offset;
    ExprPtr start;
    if (!is_op(":")) {
      EEP_ASSIGN_OR_RETURN(start, parse_expression());
      if (is_op("]")) {
        next();
        return ExprPtr(std::make_unique<GetItemExpr>(offset, std::move(object), std::move(start)));
      }
    }
    auto slice = std::make_unique<SliceExpr>(offset);
    slice->object = std::move(object);
    slice->start = std::move(start);
    EEP_RETURN_IF_ERROR(expect_op(":"));
    if (!is_op("]") && !is_op(":")) {
      EEP_ASSIGN_OR_RETURN(slice->stop, parse_expression());
    }
    if (is_op(":")) {
      next();
      if (!is_op("]")) {
        EEP_ASSIGN_OR_RETURN(slice->step, parse_expression());
      }
    }
    EEP_RETURN_IF_ERROR(expect_op("]"));
    return ExprPtr(std::move(slice));
  }

  Status parse_args(std::vector<ExprPtr>& args, KeywordArgs& kwargs) {
    EEP_RETURN_IF_ERROR(expect_op("("));
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        EEP_RETURN_IF_ERROR(expect_op(","));
        if (is_op(")")) break;
      }
      first = false;
      if (is_op("*") || is_op("**"))
        return fail(peek().offset, "unsupported: *args and **kwargs in calls");
      if (peek().kind == TokenKind::kName && is_op("=", 1)) {
        std::string name = next().text;
        next();
        EEP_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
        kwargs.emplace_back(std::move(name), std::move(value));
      } else {
        if (!kwargs.empty())
          return fail(peek().offset, "a positional argument follows a keyword argument");
        EEP_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
        args.push_back(std::move(value));
      }
    }
    next();
    return Status::ok();
  }

  Result<ExprPtr> parse_call(ExprPtr callee) {
    auto call = std::make_unique<CallExpr>(peek().offset);
    call->callee = std::move(callee);
    EEP_RETURN_IF_ERROR(parse_args(call->args, call->kwargs));
    return ExprPtr(std::move(call));
  }

  Result<std::unique_ptr<FilterExpr>> parse_filter(ExprPtr operand) {
    size_t offset = peek().offset;
    EEP_ASSIGN_OR_RETURN(std::string name, expect_name());
    while (is_op(".") && peek(1).kind == TokenKind::kName) {  // dotted filter names
      next();
      name += "." + next().text;
    }
    if (find_filter(name) == nullptr) return fail(offset, "unsupported filter '" + name + "'");
    auto filter = std::make_unique<FilterExpr>(offset);
    filter->operand = std::move(operand);
    filter->name = std::move(name);
    if (is_op("(")) EEP_RETURN_IF_ERROR(parse_args(filter->args, filter->kwargs));
    return filter;
  }

  Result<ExprPtr> parse_filters_and_tests(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        next();
        EEP_ASSIGN_OR_RETURN(auto filter, parse_filter(std::move(node)));
        node = std::move(filter);
      } else if (is_name("is")) {
        EEP_ASSIGN_OR_RETURN(node, parse_test(std::move(node)));
      } else if (is_op("(")) {
        EEP_ASSIGN_OR_RETURN(node, parse_call(std::move(node)));
      } else {
        return node;
      }
      EEP_ASSIGN_OR_RETURN(node, seal(std::move(node)));
    }
  }

  Result<ExprPtr> parse_test(ExprPtr operand) {
    auto test = std::make_unique<TestExpr>(next().offset);
    test->operand = std::move(operand);
    if (is_name("not")) {
      next();
      test->negated = true;
    }
    size_t name_offset = peek().offset;
    EEP_ASSIGN_OR_RETURN(test->name, expect_name());
    if (find_test(test->name) == nullptr)
      return fail(name_offset, "unsupported test '" + test->name + "'");
    if (is_op("(")) {
      KeywordArgs kwargs;
      EEP_RETURN_IF_ERROR(parse_args(test->args, kwargs));
      if (!kwargs.empty()) return fail(name_offset, "tests take no keyword arguments");
      return ExprPtr(std::move(test));
    }
    // `x is divisibleby 3`, `x is sameas none`: one argument without parentheses.
    const Token& token = peek();
    bool starts_argument = token.kind == TokenKind::kString || token.kind == TokenKind::kInteger ||
                           token.kind == TokenKind::kFloat || is_op("[") || is_op("{") ||
                           (token.kind == TokenKind::kName && token.text != "else" &&
                            token.text != "or" && token.text != "and" && token.text != "if" &&
                            token.text != "is" && token.text != "in" && token.text != "not");
    if (starts_argument) {
      EEP_ASSIGN_OR_RETURN(ExprPtr argument, parse_primary());
      EEP_ASSIGN_OR_RETURN(argument, parse_postfix(std::move(argument)));
      test->args.push_back(std::move(argument));
    }
    return ExprPtr(std::move(test));
  }

  const SourceMap& source_;
  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Result<Body> parse(const SourceMap& source, const std::vector<Token>& tokens) {
  if (tokens.empty() || tokens.back().kind != TokenKind::kEnd) {
    return error(ErrorCode::kInvalidArgument, "template token stream has no end");
  }
  return Parser(source, tokens).run();
}

}  // namespace eep::coordinator::jinja
