// The syntax tree of a parsed template. Nodes own their children; every node keeps the byte
// offset of its first token so that render errors name a line and column. Immutable after
// parsing, so one parsed template may render on several threads at once.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "eep/coordinator/jinja/value.h"

namespace eep::coordinator::jinja {

// ---- expressions ----

enum class ExprKind {
  kLiteral,      // 1, 'a', true, none
  kName,         // messages
  kList,         // [a, b] and tuples (a, b)
  kDict,         // {'a': b}
  kGetAttr,      // x.name
  kGetItem,      // x[i]
  kSlice,        // x[a:b:c]
  kCall,         // f(a, k=v)
  kFilter,       // x | name(args)
  kTest,         // x is [not] name(args)
  kUnary,        // -x, +x, not x
  kBinary,       // + - * / // % ** ~ and or
  kCompare,      // a == b < c, in, not in
  kConditional,  // a if c else b
};

struct Expr {
  Expr(ExprKind kind, size_t offset) : kind(kind), offset(offset) {}
  virtual ~Expr() = default;
  ExprKind kind;
  size_t offset;
  int height = 1;  // of the subtree: the parser refuses trees taller than kMaxNestingDepth
};
using ExprPtr = std::unique_ptr<Expr>;
using KeywordArgs = std::vector<std::pair<std::string, ExprPtr>>;

struct LiteralExpr : Expr {
  LiteralExpr(size_t offset, Value value)
      : Expr(ExprKind::kLiteral, offset), value(std::move(value)) {}
  Value value;
};

struct NameExpr : Expr {
  NameExpr(size_t offset, std::string name)
      : Expr(ExprKind::kName, offset), name(std::move(name)) {}
  std::string name;
};

struct ListExpr : Expr {
  explicit ListExpr(size_t offset) : Expr(ExprKind::kList, offset) {}
  std::vector<ExprPtr> items;
  bool is_tuple = false;
};

struct DictExpr : Expr {
  explicit DictExpr(size_t offset) : Expr(ExprKind::kDict, offset) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

struct GetAttrExpr : Expr {
  GetAttrExpr(size_t offset, ExprPtr object, std::string name)
      : Expr(ExprKind::kGetAttr, offset), object(std::move(object)), name(std::move(name)) {}
  ExprPtr object;
  std::string name;
};

struct GetItemExpr : Expr {
  GetItemExpr(size_t offset, ExprPtr object, ExprPtr index)
      : Expr(ExprKind::kGetItem, offset), object(std::move(object)), index(std::move(index)) {}
  ExprPtr object;
  ExprPtr index;
};

struct SliceExpr : Expr {
  explicit SliceExpr(size_t offset) : Expr(ExprKind::kSlice, offset) {}
  ExprPtr object;
  ExprPtr start, stop, step;  // each may be null
};

struct CallExpr : Expr {
  explicit CallExpr(size_t offset) : Expr(ExprKind::kCall, offset) {}
  ExprPtr callee;
  std::vector<ExprPtr> args;
  KeywordArgs kwargs;
};

struct FilterExpr : Expr {
  explicit FilterExpr(size_t offset) : Expr(ExprKind::kFilter, offset) {}
  ExprPtr operand;  // null for the filters of a filter block or a block set
  std::string name;
  std::vector<ExprPtr> args;
  KeywordArgs kwargs;
};

struct TestExpr : Expr {
  explicit TestExpr(size_t offset) : Expr(ExprKind::kTest, offset) {}
  ExprPtr operand;
  std::string name;
  std::vector<ExprPtr> args;
  bool negated = false;
};

enum class UnaryOp { kNegate, kPlus, kNot };

struct UnaryExpr : Expr {
  UnaryExpr(size_t offset, UnaryOp op, ExprPtr operand)
      : Expr(ExprKind::kUnary, offset), op(op), operand(std::move(operand)) {}
  UnaryOp op;
  ExprPtr operand;
};

enum class BinaryOp {
  kAdd,
  kSubtract,
  kMultiply,
  kDivide,
  kFloorDivide,
  kModulo,
  kPower,
  kConcat,
  kAnd,
  kOr
};

struct BinaryExpr : Expr {
  BinaryExpr(size_t offset, BinaryOp op, ExprPtr left, ExprPtr right)
      : Expr(ExprKind::kBinary, offset), op(op), left(std::move(left)), right(std::move(right)) {}
  BinaryOp op;
  ExprPtr left, right;
};

enum class CompareOp { kEqual, kNotEqual, kLess, kLessEqual, kGreater, kGreaterEqual, kIn, kNotIn };

// a < b < c is (a < b) and (b < c), b evaluated once.
struct CompareExpr : Expr {
  explicit CompareExpr(size_t offset) : Expr(ExprKind::kCompare, offset) {}
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> rest;
};

struct ConditionalExpr : Expr {
  explicit ConditionalExpr(size_t offset) : Expr(ExprKind::kConditional, offset) {}
  ExprPtr condition, then_expr, else_expr;  // else_expr may be null (undefined then)
};

// ---- statements ----

enum class StmtKind {
  kText,         // literal text
  kOutput,       // {{ expr }}
  kIf,           // if / elif / else
  kFor,          // for ... in ... [if ...] / else
  kSet,          // set a = x, set a, b = x, set ns.attr = x
  kSetBlock,     // set a [| filters] ... endset
  kMacro,        // macro name(params) ... endmacro
  kCallBlock,    // call[(params)] macro(args) ... endcall
  kFilterBlock,  // filter name | name ... endfilter
  kBlock,        // a body with no scope of its own: {% generation %}
  kBreak,
  kContinue,
};

struct Stmt {
  Stmt(StmtKind kind, size_t offset) : kind(kind), offset(offset) {}
  virtual ~Stmt() = default;
  StmtKind kind;
  size_t offset;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct TextStmt : Stmt {
  TextStmt(size_t offset, std::string text)
      : Stmt(StmtKind::kText, offset), text(std::move(text)) {}
  std::string text;
};

struct OutputStmt : Stmt {
  OutputStmt(size_t offset, ExprPtr expr)
      : Stmt(StmtKind::kOutput, offset), expr(std::move(expr)) {}
  ExprPtr expr;
};

struct IfStmt : Stmt {
  explicit IfStmt(size_t offset) : Stmt(StmtKind::kIf, offset) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, then each elif
  Body else_body;
};

struct ForStmt : Stmt {
  explicit ForStmt(size_t offset) : Stmt(StmtKind::kFor, offset) {}
  std::vector<std::string> targets;  // one name, or several to unpack each item into
  bool unpack = false;               // `for a, b in ...` (also `for (a,) in ...`)
  ExprPtr iterable;
  ExprPtr condition;  // `for x in xs if cond`, may be null
  Body body;
  Body else_body;
};

// Where a set stores: a variable, several (unpacking), or an attribute of a namespace.
struct SetTarget {
  std::vector<std::string> names;
  bool unpack = false;
  std::string namespace_attribute;  // non-empty: names[0] is the namespace, this its attribute
};

struct SetStmt : Stmt {
  explicit SetStmt(size_t offset) : Stmt(StmtKind::kSet, offset) {}
  SetTarget target;
  ExprPtr value;
};

struct SetBlockStmt : Stmt {
  explicit SetBlockStmt(size_t offset) : Stmt(StmtKind::kSetBlock, offset) {}
  SetTarget target;
  std::vector<std::unique_ptr<FilterExpr>> filters;
  Body body;
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct MacroStmt : Stmt {
  explicit MacroStmt(size_t offset) : Stmt(StmtKind::kMacro, offset) {}
  std::string name;
  std::vector<MacroParam> params;
  Body body;
};

struct CallBlockStmt : Stmt {
  explicit CallBlockStmt(size_t offset) : Stmt(StmtKind::kCallBlock, offset) {}
  std::vector<MacroParam> caller_params;
  std::unique_ptr<CallExpr> call;
  Body body;
};

struct FilterBlockStmt : Stmt {
  explicit FilterBlockStmt(size_t offset) : Stmt(StmtKind::kFilterBlock, offset) {}
  std::vector<std::unique_ptr<FilterExpr>> filters;
  Body body;
};

struct BlockStmt : Stmt {
  explicit BlockStmt(size_t offset) : Stmt(StmtKind::kBlock, offset) {}
  Body body;
};

struct LoopControlStmt : Stmt {
  LoopControlStmt(size_t offset, StmtKind kind) : Stmt(kind, offset) {}
};

}  // namespace eep::coordinator::jinja
