// Renders a parsed template: scopes (a for loop's body and a macro call have their own, `if`
// does not; a namespace is how a loop body changes what is seen after it), the loop variable
// (index, index0, revindex, revindex0, first, last, length, previtem, nextitem, cycle, depth),
// macros with defaults and `caller`, break/continue. Every render is bounded (RenderLimits): a
// template can fail, never hang the server or exhaust its memory. One Interpreter per render;
// not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "eep/common/status.h"
#include "eep/coordinator/jinja/ast.h"
#include "eep/coordinator/jinja/lexer.h"
#include "eep/coordinator/jinja/value.h"

namespace eep::coordinator::jinja {

struct RenderLimits {
  // The rendered text, and any one string built while rendering.
  size_t max_output_bytes = size_t{16} << 20;
  // Loop iterations of one render, all loops together (also the longest range() and list
  // repetition): real chat templates iterate a few times per message.
  uint64_t max_loop_iterations = 1'000'000;
  // Bytes of all strings built in one render (concatenations, joins, output): stops templates
  // that grow a string quadratically long before they cost seconds.
  uint64_t max_work_bytes = uint64_t{256} << 20;
  // Nested macro calls (recursive macros).
  int max_call_depth = 64;
};

class Interpreter {
 public:
  Interpreter(const SourceMap& source, const RenderLimits& limits);
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders `body` with `globals` (functions: range, namespace, raise_exception, ...) under the
  // caller's `variables`. Errors name the template line and column.
  Result<std::string> render(const Body& body, const ValueDict& globals,
                             const ValueDict& variables);

  // ---- for filters, tests, functions and methods ----
  // Calls a callable value (a macro, a global function, a bound method).
  Result<Value> call(const Value& callee, CallArgs& args);
  Result<Value> apply_filter(std::string_view name, const Value& input, CallArgs& args);
  Result<bool> apply_test(std::string_view name, const Value& input, CallArgs& args);
  // Counts bytes of a string being built against max_work_bytes and max_output_bytes.
  Status charge_bytes(size_t num_bytes);
  // Counts iterations (loops, range, repetition) against max_loop_iterations.
  Status charge_iterations(uint64_t num_iterations);
  const RenderLimits& limits() const { return limits_; }
  // An error that carries the template's own message (raise_exception); no location is added.
  Status template_raised(const std::string& message);

  // Item/attribute lookup as Jinja does it (undefined when missing; an error on undefined).
  Result<Value> get_attribute(const Value& object, const std::string& name);
  Result<Value> get_item(const Value& object, const Value& key);

 private:
  struct Scope {
    std::unordered_map<std::string, Value> variables;
    std::shared_ptr<Scope> parent;
  };
  enum class Flow { kNormal, kBreak, kContinue };

  Status exec(const Body& body);
  Status exec(const Stmt& stmt);
  Status exec_for(const ForStmt& stmt);
  Status exec_set(const SetTarget& target, Value value, size_t offset);
  Status exec_call_block(const CallBlockStmt& stmt);
  Result<std::string> capture(const Body& body);
  Status emit(std::string_view text);

  Result<Value> eval(const Expr& expr);
  Result<Value> eval_call(const CallExpr& expr, const Value* caller);
  Result<Value> eval_binary(const BinaryExpr& expr);
  Result<Value> eval_compare(const CompareExpr& expr);
  Result<Value> eval_slice(const SliceExpr& expr);
  Result<Value> apply_filter_expr(const FilterExpr& filter, Value input);
  Status eval_args(const std::vector<ExprPtr>& args, const KeywordArgs& kwargs, CallArgs& out);

  Value make_macro(const MacroStmt& stmt);
  Result<Value> call_macro(const std::string& name, const std::vector<MacroParam>& params,
                           const Body& body, const std::shared_ptr<Scope>& closure, CallArgs& args);

  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value value) { scope_->variables[name] = std::move(value); }

  // Adds "template error at line L, column C: " to an error that has no location yet.
  Status located(size_t offset, Status status);
  Status fail(size_t offset, const std::string& message);

  const SourceMap& source_;
  RenderLimits limits_;
  std::shared_ptr<Scope> scope_;
  std::string* out_ = nullptr;
  Flow flow_ = Flow::kNormal;
  uint64_t num_iterations_ = 0;
  uint64_t num_work_bytes_ = 0;
  int call_depth_ = 0;
  int eval_depth_ = 0;  // statements and expressions being evaluated, nested (kMaxEvalDepth)
  bool error_located_ = false;
};

}  // namespace eep::coordinator::jinja
