#include "eep/coordinator/jinja/interpreter.h"

#include <cmath>
#include <limits>

#include "eep/coordinator/jinja/builtins.h"
#include "eep/coordinator/jinja/filters.h"
#include "text_util.h"

namespace eep::coordinator::jinja {

namespace {

// Statements and expressions evaluated inside one another (through macro calls too): each costs
// a few stack frames, so this keeps a render within about 2 MB of stack, whatever the template.
constexpr int kMaxEvalDepth = 1000;

struct EvalDepthGuard {
  explicit EvalDepthGuard(int& depth) : depth_(depth) { ++depth_; }
  ~EvalDepthGuard() { --depth_; }
  int& depth_;
};

Status too_deep_at_render() {
  return error(ErrorCode::kResourceExhausted, "the template nests deeper than " +
                                                  std::to_string(kMaxEvalDepth) +
                                                  " levels while rendering");
}

const char* binary_op_symbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
      return "+";
    case BinaryOp::kSubtract:
      return "-";
    case BinaryOp::kMultiply:
      return "*";
    case BinaryOp::kDivide:
      return "/";
    case BinaryOp::kFloorDivide:
      return "//";
    case BinaryOp::kModulo:
      return "%";
    case BinaryOp::kPower:
      return "**";
    case BinaryOp::kConcat:
      return "~";
    case BinaryOp::kAnd:
      return "and";
    case BinaryOp::kOr:
      return "or";
  }
  return "?";
}

// Python's floor division and modulo on ints (the sign follows the divisor).
int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t floor_mod(int64_t a, int64_t b) {
  return a - floor_div(a, b) * b;
}

// Normalises Python slice bounds for a sequence of `length` (as slice.indices does).
void slice_indices(int64_t length, const std::optional<int64_t>& start_in,
                   const std::optional<int64_t>& stop_in, int64_t step, int64_t* start,
                   int64_t* stop) {
  auto clamp = [&](std::optional<int64_t> value, int64_t default_value, bool is_start) {
    if (!value) return default_value;
    int64_t v = *value;
    if (v < 0) {
      v += length;
      if (v < 0) v = step < 0 ? -1 : 0;
    } else if (v >= length) {
      v = step < 0 ? length - 1 : length;
    }
    (void)is_start;
    return v;
  };
  *start = clamp(start_in, step < 0 ? length - 1 : 0, true);
  *stop = clamp(stop_in, step < 0 ? -1 : length, false);
}

template <typename Sequence>
Sequence slice_sequence(const Sequence& items, int64_t start, int64_t stop, int64_t step) {
  Sequence out;
  if (step > 0) {
    for (int64_t i = start; i < stop; i += step) out.push_back(items[static_cast<size_t>(i)]);
  } else {
    for (int64_t i = start; i > stop; i += step) out.push_back(items[static_cast<size_t>(i)]);
  }
  return out;
}

}  // namespace

Interpreter::Interpreter(const SourceMap& source, const RenderLimits& limits)
    : source_(source), limits_(limits) {}

Status Interpreter::located(size_t offset, Status status) {
  if (status.is_ok() || error_located_) return status;
  error_located_ = true;
  return Status(status.code(),
                "template error at " + source_.describe(offset) + ": " + status.message());
}

Status Interpreter::fail(size_t offset, const std::string& message) {
  return located(offset, error(ErrorCode::kInvalidArgument, message));
}

Status Interpreter::template_raised(const std::string& message) {
  error_located_ = true;
  return error(ErrorCode::kInvalidArgument, message);
}

Status Interpreter::charge_bytes(size_t num_bytes) {
  if (num_bytes > limits_.max_output_bytes) {
    error_located_ = false;
    return error(ErrorCode::kResourceExhausted, "a string of " + std::to_string(num_bytes) +
                                                    " bytes is over the limit of " +
                                                    std::to_string(limits_.max_output_bytes));
  }
  num_work_bytes_ += num_bytes;
  if (num_work_bytes_ > limits_.max_work_bytes) {
    return error(
        ErrorCode::kResourceExhausted,
        "rendering built more than " + std::to_string(limits_.max_work_bytes) + " bytes of text");
  }
  return Status::ok();
}

Status Interpreter::charge_iterations(uint64_t num_iterations) {
  num_iterations_ += num_iterations;
  if (num_iterations_ > limits_.max_loop_iterations ||
      num_iterations > limits_.max_loop_iterations) {
    return error(ErrorCode::kResourceExhausted, "more than " +
                                                    std::to_string(limits_.max_loop_iterations) +
                                                    " loop iterations in one render");
  }
  return Status::ok();
}

Result<std::string> Interpreter::render(const Body& body, const ValueDict& globals,
                                        const ValueDict& variables) {
  auto global_scope = std::make_shared<Scope>();
  for (const auto& [name, value] : globals.entries()) global_scope->variables[name] = value;
  auto context_scope = std::make_shared<Scope>();
  context_scope->parent = global_scope;
  for (const auto& [name, value] : variables.entries()) context_scope->variables[name] = value;
  scope_ = std::make_shared<Scope>();
  scope_->parent = context_scope;
  std::string out;
  out_ = &out;
  Status status = exec(body);
  out_ = nullptr;
  scope_.reset();
  if (!status.is_ok()) return status;
  return out;
}

Status Interpreter::emit(std::string_view text) {
  if (out_->size() + text.size() > limits_.max_output_bytes) {
    return error(ErrorCode::kResourceExhausted, "the rendered text is over the limit of " +
                                                    std::to_string(limits_.max_output_bytes) +
                                                    " bytes");
  }
  EEP_RETURN_IF_ERROR(charge_bytes(text.size()));
  out_->append(text);
  return Status::ok();
}

Result<std::string> Interpreter::capture(const Body& body) {
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  Status status = exec(body);
  out_ = saved;
  if (!status.is_ok()) return status;
  return buffer;
}

Value Interpreter::lookup(const std::string& name) const {
  for (const Scope* scope = scope_.get(); scope != nullptr; scope = scope->parent.get()) {
    auto it = scope->variables.find(name);
    if (it != scope->variables.end()) return it->second;
  }
  return Value::undefined(name);
}

// ---- statements ----

Status Interpreter::exec(const Body& body) {
  for (const StmtPtr& stmt : body) {
    EEP_RETURN_IF_ERROR(exec(*stmt));
    if (flow_ != Flow::kNormal) return Status::ok();
  }
  return Status::ok();
}

Status Interpreter::exec(const Stmt& stmt) {
  EvalDepthGuard guard(eval_depth_);
  if (eval_depth_ > kMaxEvalDepth) return located(stmt.offset, too_deep_at_render());
  switch (stmt.kind) {
    case StmtKind::kText:
      return located(stmt.offset, emit(static_cast<const TextStmt&>(stmt).text));
    case StmtKind::kOutput: {
      const auto& output = static_cast<const OutputStmt&>(stmt);
      EEP_ASSIGN_OR_RETURN(Value value, eval(*output.expr));
      return located(output.expr->offset, emit(value.str()));
    }
    case StmtKind::kIf: {
      const auto& if_stmt = static_cast<const IfStmt&>(stmt);
      for (const auto& [condition, body] : if_stmt.branches) {
        EEP_ASSIGN_OR_RETURN(Value value, eval(*condition));
        if (value.truthy()) return exec(body);
      }
      return exec(if_stmt.else_body);
    }
    case StmtKind::kFor:
      return exec_for(static_cast<const ForStmt&>(stmt));
    case StmtKind::kSet: {
      const auto& set = static_cast<const SetStmt&>(stmt);
      EEP_ASSIGN_OR_RETURN(Value value, eval(*set.value));
      return exec_set(set.target, std::move(value), stmt.offset);
    }
    case StmtKind::kSetBlock: {
      const auto& set = static_cast<const SetBlockStmt&>(stmt);
      EEP_ASSIGN_OR_RETURN(std::string text, capture(set.body));
      Value value(std::move(text));
      for (const auto& filter : set.filters) {
        EEP_ASSIGN_OR_RETURN(value, apply_filter_expr(*filter, std::move(value)));
      }
      return exec_set(set.target, std::move(value), stmt.offset);
    }
    case StmtKind::kMacro: {
      const auto& macro = static_cast<const MacroStmt&>(stmt);
      assign(macro.name, make_macro(macro));
      return Status::ok();
    }
    case StmtKind::kCallBlock:
      return exec_call_block(static_cast<const CallBlockStmt&>(stmt));
    case StmtKind::kFilterBlock: {
      const auto& block = static_cast<const FilterBlockStmt&>(stmt);
      EEP_ASSIGN_OR_RETURN(std::string text, capture(block.body));
      Value value(std::move(text));
      for (const auto& filter : block.filters) {
        EEP_ASSIGN_OR_RETURN(value, apply_filter_expr(*filter, std::move(value)));
      }
      return located(stmt.offset, emit(value.str()));
    }
    case StmtKind::kBlock:
      return exec(static_cast<const BlockStmt&>(stmt).body);
    case StmtKind::kBreak:
      flow_ = Flow::kBreak;
      return Status::ok();
    case StmtKind::kContinue:
      flow_ = Flow::kContinue;
      return Status::ok();
  }
  return fail(stmt.offset, "unknown statement");
}

Status Interpreter::exec_set(const SetTarget& target, Value value, size_t offset) {
  if (!target.namespace_attribute.empty()) {
    Value object = lookup(target.names[0]);
    if (!object.is_namespace()) {
      return fail(offset, "cannot set attribute '" + target.namespace_attribute + "' of " +
                              object.type_name() + " (only a namespace() takes attributes)");
    }
    object.as_dict().set(target.namespace_attribute, std::move(value));
    return Status::ok();
  }
  if (!target.unpack) {
    assign(target.names[0], std::move(value));
    return Status::ok();
  }
  if (!value.is_list() || value.as_list().size() != target.names.size()) {
    return fail(offset, "cannot unpack " + value.type_name() + " into " +
                            std::to_string(target.names.size()) + " names");
  }
  ValueList items = value.as_list();
  for (size_t i = 0; i < items.size(); ++i) assign(target.names[i], std::move(items[i]));
  return Status::ok();
}

Status Interpreter::exec_for(const ForStmt& stmt) {
  EEP_ASSIGN_OR_RETURN(Value iterable, eval(*stmt.iterable));
  ValueList items;
  switch (iterable.kind()) {
    case ValueKind::kList:
      items = iterable.as_list();
      break;
    case ValueKind::kDict:
      for (const auto& entry : iterable.as_dict().entries()) items.emplace_back(entry.first);
      break;
    case ValueKind::kString:
      for (char32_t code : decode_utf8(iterable.as_string())) {
        std::string one;
        append_utf8(one, code);
        items.emplace_back(std::move(one));
      }
      break;
    case ValueKind::kUndefined:
      break;  // Jinja iterates an undefined value as empty
    default:
      return fail(stmt.iterable->offset, "cannot iterate over " + iterable.type_name());
  }
  auto outer = scope_;
  auto bind = [&](const Value& item) -> Status {
    if (!stmt.unpack) {
      assign(stmt.targets[0], item);
      return Status::ok();
    }
    if (!item.is_list() || item.as_list().size() != stmt.targets.size()) {
      return fail(stmt.offset, "cannot unpack " + item.type_name() + " into " +
                                   std::to_string(stmt.targets.size()) + " loop variables");
    }
    for (size_t i = 0; i < stmt.targets.size(); ++i) assign(stmt.targets[i], item.as_list()[i]);
    return Status::ok();
  };
  if (stmt.condition) {  // `for x in xs if cond`: loop.* counts the items kept
    ValueList kept;
    for (const Value& item : items) {
      EEP_RETURN_IF_ERROR(located(stmt.offset, charge_iterations(1)));
      scope_ = std::make_shared<Scope>();
      scope_->parent = outer;
      Status status = bind(item);
      Result<Value> keep = status.is_ok() ? eval(*stmt.condition) : Result<Value>(status);
      scope_ = outer;
      if (!keep.is_ok()) return keep.status();
      if (keep->truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  const auto length = static_cast<int64_t>(items.size());
  for (int64_t index = 0; index < length; ++index) {
    EEP_RETURN_IF_ERROR(located(stmt.offset, charge_iterations(1)));
    scope_ = std::make_shared<Scope>();
    scope_->parent = outer;
    ValueDict loop;
    loop.set("index", Value(index + 1));
    loop.set("index0", Value(index));
    loop.set("revindex", Value(length - index));
    loop.set("revindex0", Value(length - index - 1));
    loop.set("first", Value(index == 0));
    loop.set("last", Value(index == length - 1));
    loop.set("length", Value(length));
    loop.set("depth", Value(int64_t{1}));
    loop.set("depth0", Value(int64_t{0}));
    if (index > 0) loop.set("previtem", items[static_cast<size_t>(index - 1)]);
    if (index + 1 < length) loop.set("nextitem", items[static_cast<size_t>(index + 1)]);
    loop.set("cycle",
             Value::callable("loop.cycle", [index](Interpreter&, CallArgs& args) -> Result<Value> {
               if (args.positional.empty())
                 return error(ErrorCode::kInvalidArgument, "loop.cycle() needs arguments");
               return args.positional[static_cast<size_t>(index) % args.positional.size()];
             }));
    assign("loop", Value(std::move(loop)));
    Status status = bind(items[static_cast<size_t>(index)]);
    if (status.is_ok()) status = exec(stmt.body);
    scope_ = outer;
    EEP_RETURN_IF_ERROR(status);
    Flow flow = flow_;
    flow_ = Flow::kNormal;
    if (flow == Flow::kBreak) break;
  }
  if (length == 0 && !stmt.else_body.empty()) {
    scope_ = std::make_shared<Scope>();
    scope_->parent = outer;
    Status status = exec(stmt.else_body);
    scope_ = outer;
    return status;
  }
  return Status::ok();
}

Value Interpreter::make_macro(const MacroStmt& stmt) {
  // The closure is weak: the macro usually lives in the scope it captures, and a strong
  // reference would keep that scope (and the macro) alive after the render.
  std::weak_ptr<Scope> closure = scope_;
  const MacroStmt* macro = &stmt;
  return Value::callable(
      stmt.name, [macro, closure](Interpreter& interpreter, CallArgs& args) -> Result<Value> {
        std::shared_ptr<Scope> scope = closure.lock();
        if (!scope)
          return error(ErrorCode::kInvalidArgument,
                       "macro '" + macro->name + "' outlived its scope");
        return interpreter.call_macro(macro->name, macro->params, macro->body, scope, args);
      });
}

Result<Value> Interpreter::call_macro(const std::string& name,
                                      const std::vector<MacroParam>& params, const Body& body,
                                      const std::shared_ptr<Scope>& closure, CallArgs& args) {
  if (call_depth_ >= limits_.max_call_depth) {
    return error(ErrorCode::kResourceExhausted,
                 "macro calls nested deeper than " + std::to_string(limits_.max_call_depth));
  }
  if (args.positional.size() > params.size()) {
    return error(ErrorCode::kInvalidArgument,
                 "macro '" + name + "' takes " + std::to_string(params.size()) +
                     " arguments, got " + std::to_string(args.positional.size()));
  }
  auto saved_scope = scope_;
  scope_ = std::make_shared<Scope>();
  scope_->parent = closure;
  auto restore = [&] { scope_ = saved_scope; };
  for (const auto& [key, value] : args.keyword) {
    bool known = key == "caller";
    for (const auto& param : params) known = known || param.name == key;
    if (!known) {
      restore();
      return error(ErrorCode::kInvalidArgument,
                   "macro '" + name + "' has no parameter '" + key + "'");
    }
    assign(key, value);
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (i < args.positional.size()) {
      assign(params[i].name, args.positional[i]);
    } else if (scope_->variables.count(params[i].name) == 0) {
      if (params[i].default_value) {
        Result<Value> value = eval(*params[i].default_value);
        if (!value.is_ok()) {
          restore();
          return value.status();
        }
        assign(params[i].name, std::move(value).value());
      } else {
        assign(params[i].name, Value::undefined(params[i].name));
      }
    }
  }
  ++call_depth_;
  Flow saved_flow = flow_;
  flow_ = Flow::kNormal;
  Result<std::string> text = capture(body);
  flow_ = saved_flow;
  --call_depth_;
  restore();
  if (!text.is_ok()) return text.status();
  return Value(std::move(text).value());
}

Status Interpreter::exec_call_block(const CallBlockStmt& stmt) {
  std::weak_ptr<Scope> closure = scope_;
  const CallBlockStmt* block = &stmt;
  Value caller = Value::callable(
      "caller", [block, closure](Interpreter& interpreter, CallArgs& args) -> Result<Value> {
        std::shared_ptr<Scope> scope = closure.lock();
        if (!scope) return error(ErrorCode::kInvalidArgument, "caller() outlived its call block");
        return interpreter.call_macro("caller", block->caller_params, block->body, scope, args);
      });
  EEP_ASSIGN_OR_RETURN(Value result, eval_call(*stmt.call, &caller));
  return located(stmt.offset, emit(result.str()));
}

// ---- expressions ----

Status Interpreter::eval_args(const std::vector<ExprPtr>& args, const KeywordArgs& kwargs,
                              CallArgs& out) {
  for (const ExprPtr& arg : args) {
    EEP_ASSIGN_OR_RETURN(Value value, eval(*arg));
    out.positional.push_back(std::move(value));
  }
  for (const auto& [name, arg] : kwargs) {
    EEP_ASSIGN_OR_RETURN(Value value, eval(*arg));
    out.keyword.emplace_back(name, std::move(value));
  }
  return Status::ok();
}

Result<Value> Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_callable()) return callee.as_callable().function(*this, args);
  if (callee.is_undefined()) {
    return error(ErrorCode::kInvalidArgument,
                 callee.undefined_name().empty()
                     ? "called an undefined value"
                     : "'" + callee.undefined_name() + "' is undefined");
  }
  return error(ErrorCode::kInvalidArgument, callee.type_name() + " is not callable");
}

Result<Value> Interpreter::eval_call(const CallExpr& expr, const Value* caller) {
  CallArgs args;
  if (expr.callee->kind == ExprKind::kGetAttr) {
    // obj.method(args): no bound-method value needed for the methods this engine knows.
    const auto& attr = static_cast<const GetAttrExpr&>(*expr.callee);
    EEP_ASSIGN_OR_RETURN(Value object, eval(*attr.object));
    if (has_method(object, attr.name)) {
      EEP_RETURN_IF_ERROR(eval_args(expr.args, expr.kwargs, args));
      Result<Value> result = call_method(*this, object, attr.name, args);
      if (!result.is_ok()) return located(expr.offset, result.status());
      return result;
    }
    Result<Value> callee = get_attribute(object, attr.name);
    if (!callee.is_ok()) return located(attr.offset, callee.status());
    if (callee->is_undefined()) {
      return fail(expr.offset, object.type_name() + " has no method '" + attr.name + "'");
    }
    EEP_RETURN_IF_ERROR(eval_args(expr.args, expr.kwargs, args));
    if (caller) args.keyword.emplace_back("caller", *caller);
    Result<Value> result = call(*callee, args);
    if (!result.is_ok()) return located(expr.offset, result.status());
    return result;
  }
  EEP_ASSIGN_OR_RETURN(Value callee, eval(*expr.callee));
  EEP_RETURN_IF_ERROR(eval_args(expr.args, expr.kwargs, args));
  if (caller) args.keyword.emplace_back("caller", *caller);
  Result<Value> result = call(callee, args);
  if (!result.is_ok()) return located(expr.offset, result.status());
  return result;
}

Result<Value> Interpreter::get_attribute(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case ValueKind::kUndefined:
      return error(ErrorCode::kInvalidArgument,
                   "cannot read '" + name + "' of " + object.type_name() + " (it is undefined)");
    case ValueKind::kDict:
    case ValueKind::kNamespace: {
      if (object.is_dict() && has_method(object, name)) break;
      const Value* value = object.as_dict().find(name);
      if (value) return *value;
      return Value::undefined(name);
    }
    default:
      break;
  }
  if (has_method(object, name)) {
    Value self = object;
    std::string method = name;
    return Value::callable(name, [self, method](Interpreter& interpreter, CallArgs& args) {
      return call_method(interpreter, self, method, args);
    });
  }
  return Value::undefined(name);
}

Result<Value> Interpreter::get_item(const Value& object, const Value& key) {
  switch (object.kind()) {
    case ValueKind::kUndefined:
      return error(ErrorCode::kInvalidArgument, "cannot read [" + key.repr() + "] of " +
                                                    object.type_name() + " (it is undefined)");
    case ValueKind::kDict:
    case ValueKind::kNamespace:
      if (key.is_string()) {
        const Value* value = object.as_dict().find(key.as_string());
        if (value) return *value;
        if (object.is_dict() && has_method(object, key.as_string()))
          return get_attribute(object, key.as_string());
        return Value::undefined(key.as_string());
      }
      return Value::undefined(key.repr());
    case ValueKind::kList:
    case ValueKind::kString: {
      if (key.is_string()) return get_attribute(object, key.as_string());
      if (!key.is_int() && !key.is_bool()) return Value::undefined(key.repr());
      int64_t index = key.as_int();
      if (object.is_list()) {
        auto length = static_cast<int64_t>(object.as_list().size());
        if (index < 0) index += length;
        if (index < 0 || index >= length) return Value::undefined("[" + key.repr() + "]");
        return object.as_list()[static_cast<size_t>(index)];
      }
      const std::string& text = object.as_string();
      if (is_ascii(text)) {
        auto length = static_cast<int64_t>(text.size());
        if (index < 0) index += length;
        if (index < 0 || index >= length) return Value::undefined("[" + key.repr() + "]");
        return Value(std::string(1, text[static_cast<size_t>(index)]));
      }
      std::u32string codes = decode_utf8(text);
      auto length = static_cast<int64_t>(codes.size());
      if (index < 0) index += length;
      if (index < 0 || index >= length) return Value::undefined("[" + key.repr() + "]");
      std::string one;
      append_utf8(one, codes[static_cast<size_t>(index)]);
      return Value(std::move(one));
    }
    default:
      return Value::undefined(key.repr());
  }
}

Result<Value> Interpreter::eval_slice(const SliceExpr& expr) {
  EEP_ASSIGN_OR_RETURN(Value object, eval(*expr.object));
  auto bound = [&](const ExprPtr& e) -> Result<std::optional<int64_t>> {
    if (!e) return std::optional<int64_t>();
    EEP_ASSIGN_OR_RETURN(Value value, eval(*e));
    if (value.is_none()) return std::optional<int64_t>();
    if (!value.is_int() && !value.is_bool()) {
      return fail(e->offset, "slice indices must be integers or none, got " + value.type_name());
    }
    return std::optional<int64_t>(value.as_int());
  };
  EEP_ASSIGN_OR_RETURN(std::optional<int64_t> start, bound(expr.start));
  EEP_ASSIGN_OR_RETURN(std::optional<int64_t> stop, bound(expr.stop));
  EEP_ASSIGN_OR_RETURN(std::optional<int64_t> step_value, bound(expr.step));
  int64_t step = step_value.value_or(1);
  if (step == 0) return fail(expr.offset, "slice step cannot be zero");
  int64_t from, to;
  if (object.is_list()) {
    slice_indices(static_cast<int64_t>(object.as_list().size()), start, stop, step, &from, &to);
    return Value(slice_sequence(object.as_list(), from, to, step));
  }
  if (object.is_string()) {
    std::u32string codes = decode_utf8(object.as_string());
    slice_indices(static_cast<int64_t>(codes.size()), start, stop, step, &from, &to);
    return Value(encode_utf8(slice_sequence(codes, from, to, step)));
  }
  return fail(expr.offset, "cannot slice " + object.type_name());
}

Result<Value> Interpreter::apply_filter(std::string_view name, const Value& input, CallArgs& args) {
  FilterFunction filter = find_filter(name);
  if (!filter)
    return error(ErrorCode::kInvalidArgument, "unsupported filter '" + std::string(name) + "'");
  return filter(*this, input, args);
}

Result<bool> Interpreter::apply_test(std::string_view name, const Value& input, CallArgs& args) {
  TestFunction test = find_test(name);
  if (!test)
    return error(ErrorCode::kInvalidArgument, "unsupported test '" + std::string(name) + "'");
  return test(*this, input, args);
}

Result<Value> Interpreter::apply_filter_expr(const FilterExpr& filter, Value input) {
  CallArgs args;
  EEP_RETURN_IF_ERROR(eval_args(filter.args, filter.kwargs, args));
  Result<Value> result = apply_filter(filter.name, input, args);
  if (!result.is_ok()) {
    Status status = result.status();
    if (!error_located_)
      status = Status(status.code(), "filter '" + filter.name + "': " + status.message());
    return located(filter.offset, status);
  }
  return result;
}

Result<Value> Interpreter::eval(const Expr& expr) {
  EvalDepthGuard guard(eval_depth_);
  if (eval_depth_ > kMaxEvalDepth) return located(expr.offset, too_deep_at_render());
  switch (expr.kind) {
    case ExprKind::kLiteral:
      return static_cast<const LiteralExpr&>(expr).value;
    case ExprKind::kName:
      return lookup(static_cast<const NameExpr&>(expr).name);
    case ExprKind::kList: {
      ValueList items;
      for (const ExprPtr& item : static_cast<const ListExpr&>(expr).items) {
        EEP_ASSIGN_OR_RETURN(Value value, eval(*item));
        items.push_back(std::move(value));
      }
      return Value(std::move(items));
    }
    case ExprKind::kDict: {
      ValueDict dict;
      for (const auto& [key_expr, value_expr] : static_cast<const DictExpr&>(expr).items) {
        EEP_ASSIGN_OR_RETURN(Value key, eval(*key_expr));
        if (!key.is_string())
          return fail(key_expr->offset, "dict keys must be strings, got " + key.type_name());
        EEP_ASSIGN_OR_RETURN(Value value, eval(*value_expr));
        dict.set(key.as_string(), std::move(value));
      }
      return Value(std::move(dict));
    }
    case ExprKind::kGetAttr: {
      const auto& attr = static_cast<const GetAttrExpr&>(expr);
      EEP_ASSIGN_OR_RETURN(Value object, eval(*attr.object));
      Result<Value> value = get_attribute(object, attr.name);
      if (!value.is_ok()) return located(expr.offset, value.status());
      return value;
    }
    case ExprKind::kGetItem: {
      const auto& item = static_cast<const GetItemExpr&>(expr);
      EEP_ASSIGN_OR_RETURN(Value object, eval(*item.object));
      EEP_ASSIGN_OR_RETURN(Value key, eval(*item.index));
      Result<Value> value = get_item(object, key);
      if (!value.is_ok()) return located(expr.offset, value.status());
      return value;
    }
    case ExprKind::kSlice:
      return eval_slice(static_cast<const SliceExpr&>(expr));
    case ExprKind::kCall:
      return eval_call(static_cast<const CallExpr&>(expr), nullptr);
    case ExprKind::kFilter: {
      const auto& filter = static_cast<const FilterExpr&>(expr);
      EEP_ASSIGN_OR_RETURN(Value input, eval(*filter.operand));
      return apply_filter_expr(filter, std::move(input));
    }
    case ExprKind::kTest: {
      const auto& test = static_cast<const TestExpr&>(expr);
      EEP_ASSIGN_OR_RETURN(Value input, eval(*test.operand));
      CallArgs args;
      EEP_RETURN_IF_ERROR(eval_args(test.args, {}, args));
      Result<bool> result = apply_test(test.name, input, args);
      if (!result.is_ok()) return located(expr.offset, result.status());
      return Value(*result != test.negated);
    }
    case ExprKind::kUnary: {
      const auto& unary = static_cast<const UnaryExpr&>(expr);
      EEP_ASSIGN_OR_RETURN(Value operand, eval(*unary.operand));
      if (unary.op == UnaryOp::kNot) return Value(!operand.truthy());
      if (operand.is_float())
        return Value(unary.op == UnaryOp::kNegate ? -operand.as_double() : operand.as_double());
      if (operand.is_int() || operand.is_bool()) {
        if (unary.op == UnaryOp::kPlus) return Value(operand.as_int());
        if (operand.as_int() == std::numeric_limits<int64_t>::min())
          return fail(expr.offset, "integer overflow");
        return Value(-operand.as_int());
      }
      return fail(expr.offset, std::string("bad operand for unary ") +
                                   (unary.op == UnaryOp::kNegate ? "-" : "+") + ": " +
                                   operand.type_name());
    }
    case ExprKind::kBinary:
      return eval_binary(static_cast<const BinaryExpr&>(expr));
    case ExprKind::kCompare:
      return eval_compare(static_cast<const CompareExpr&>(expr));
    case ExprKind::kConditional: {
      const auto& conditional = static_cast<const ConditionalExpr&>(expr);
      EEP_ASSIGN_OR_RETURN(Value condition, eval(*conditional.condition));
      if (condition.truthy()) return eval(*conditional.then_expr);
      if (conditional.else_expr) return eval(*conditional.else_expr);
      return Value::undefined();
    }
  }
  return fail(expr.offset, "unknown expression");
}

Result<Value> Interpreter::eval_binary(const BinaryExpr& expr) {
  EEP_ASSIGN_OR_RETURN(Value left, eval(*expr.left));
  if (expr.op == BinaryOp::kAnd) return left.truthy() ? eval(*expr.right) : Result<Value>(left);
  if (expr.op == BinaryOp::kOr) return left.truthy() ? Result<Value>(left) : eval(*expr.right);
  EEP_ASSIGN_OR_RETURN(Value right, eval(*expr.right));
  auto unsupported = [&] {
    return fail(expr.offset, std::string("unsupported operands for ") + binary_op_symbol(expr.op) +
                                 ": " + left.type_name() + " and " + right.type_name());
  };
  if (expr.op == BinaryOp::kConcat) {
    std::string text = left.str();
    std::string right_text = right.str();
    EEP_RETURN_IF_ERROR(located(expr.offset, charge_bytes(text.size() + right_text.size())));
    return Value(text + right_text);
  }
  if (left.is_number() && right.is_number()) {
    bool as_float = left.is_float() || right.is_float();
    double a = left.as_double(), b = right.as_double();
    int64_t x = left.as_int(), y = right.as_int();
    int64_t int_result = 0;
    switch (expr.op) {
      case BinaryOp::kAdd:
        if (as_float) return Value(a + b);
        if (__builtin_add_overflow(x, y, &int_result)) return fail(expr.offset, "integer overflow");
        return Value(int_result);
      case BinaryOp::kSubtract:
        if (as_float) return Value(a - b);
        if (__builtin_sub_overflow(x, y, &int_result)) return fail(expr.offset, "integer overflow");
        return Value(int_result);
      case BinaryOp::kMultiply:
        if (as_float) return Value(a * b);
        if (__builtin_mul_overflow(x, y, &int_result)) return fail(expr.offset, "integer overflow");
        return Value(int_result);
      case BinaryOp::kDivide:
        if (b == 0.0) return fail(expr.offset, "division by zero");
        return Value(a / b);
      case BinaryOp::kFloorDivide:
        if (b == 0.0) return fail(expr.offset, "division by zero");
        if (as_float) return Value(std::floor(a / b));
        if (x == std::numeric_limits<int64_t>::min() && y == -1)
          return fail(expr.offset, "integer overflow");
        return Value(floor_div(x, y));
      case BinaryOp::kModulo:
        if (b == 0.0) return fail(expr.offset, "modulo by zero");
        if (as_float) {
          double r = std::fmod(a, b);
          if (r != 0.0 && ((r < 0) != (b < 0))) r += b;
          return Value(r);
        }
        if (x == std::numeric_limits<int64_t>::min() && y == -1) return Value(int64_t{0});
        return Value(floor_mod(x, y));
      case BinaryOp::kPower: {
        if (as_float || y < 0) {
          if (a == 0.0 && b < 0) return fail(expr.offset, "zero to a negative power");
          return Value(std::pow(a, b));
        }
        int64_t result = 1;
        for (int64_t i = 0; i < y; ++i) {
          if (__builtin_mul_overflow(result, x, &result))
            return fail(expr.offset, "integer overflow");
          if (result == 0 || result == 1) break;
        }
        return Value(result);
      }
      default:
        break;
    }
    return unsupported();
  }
  if (expr.op == BinaryOp::kAdd) {
    if (left.is_string() && right.is_string()) {
      EEP_RETURN_IF_ERROR(
          located(expr.offset, charge_bytes(left.as_string().size() + right.as_string().size())));
      return Value(left.as_string() + right.as_string());
    }
    if (left.is_list() && right.is_list()) {
      EEP_RETURN_IF_ERROR(located(expr.offset, charge_iterations(right.as_list().size())));
      ValueList items = left.as_list();
      items.insert(items.end(), right.as_list().begin(), right.as_list().end());
      return Value(std::move(items));
    }
  }
  if (expr.op == BinaryOp::kMultiply) {
    const Value* sequence = left.is_string() || left.is_list() ? &left : &right;
    const Value* count = sequence == &left ? &right : &left;
    if ((sequence->is_string() || sequence->is_list()) && (count->is_int() || count->is_bool())) {
      int64_t n = std::max<int64_t>(0, count->as_int());
      if (sequence->is_string()) {
        size_t unit = sequence->as_string().size();
        if (unit > 0 && static_cast<uint64_t>(n) > limits_.max_output_bytes / unit) {
          return fail(expr.offset, "string repetition over the output limit");
        }
        EEP_RETURN_IF_ERROR(located(expr.offset, charge_bytes(unit * static_cast<size_t>(n))));
        std::string text;
        text.reserve(unit * static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) text += sequence->as_string();
        return Value(std::move(text));
      }
      size_t unit = sequence->as_list().size();
      if (unit > 0)
        EEP_RETURN_IF_ERROR(
            located(expr.offset, charge_iterations(unit * static_cast<uint64_t>(n))));
      ValueList items;
      for (int64_t i = 0; i < n; ++i)
        items.insert(items.end(), sequence->as_list().begin(), sequence->as_list().end());
      return Value(std::move(items));
    }
  }
  return unsupported();
}

Result<Value> Interpreter::eval_compare(const CompareExpr& expr) {
  EEP_ASSIGN_OR_RETURN(Value left, eval(*expr.first));
  for (const auto& [op, right_expr] : expr.rest) {
    EEP_ASSIGN_OR_RETURN(Value right, eval(*right_expr));
    bool result = false;
    switch (op) {
      case CompareOp::kEqual:
        result = left.equals(right);
        break;
      case CompareOp::kNotEqual:
        result = !left.equals(right);
        break;
      case CompareOp::kIn:
      case CompareOp::kNotIn: {
        if (right.is_string()) {
          if (!left.is_string()) {
            return fail(expr.offset,
                        "'in <string>' needs a string on the left, got " + left.type_name());
          }
          result = right.as_string().find(left.as_string()) != std::string::npos;
        } else if (right.is_list()) {
          for (const Value& item : right.as_list()) {
            if (item.equals(left)) {
              result = true;
              break;
            }
          }
        } else if (right.is_dict() || right.is_namespace()) {
          result = left.is_string() && right.as_dict().contains(left.as_string());
        } else if (right.is_undefined()) {
          result = false;
        } else {
          return fail(expr.offset,
                      "'in' needs a string, list or dict on the right, got " + right.type_name());
        }
        if (op == CompareOp::kNotIn) result = !result;
        break;
      }
      default: {
        int order = 0;
        if (left.is_number() && right.is_number()) {
          if (left.is_float() || right.is_float()) {
            double a = left.as_double(), b = right.as_double();
            if (std::isnan(a) || std::isnan(b)) return Value(false);
            order = a < b ? -1 : a > b ? 1 : 0;
          } else {
            order = left.as_int() < right.as_int() ? -1 : left.as_int() > right.as_int() ? 1 : 0;
          }
        } else if (left.is_string() && right.is_string()) {
          int c =
              left.as_string().compare(right.as_string());  // UTF-8 byte order is code point order
          order = c < 0 ? -1 : c > 0 ? 1 : 0;
        } else {
          return fail(expr.offset,
                      "cannot order " + left.type_name() + " and " + right.type_name());
        }
        result = op == CompareOp::kLess        ? order < 0
                 : op == CompareOp::kLessEqual ? order <= 0
                 : op == CompareOp::kGreater   ? order > 0
                                               : order >= 0;
      }
    }
    if (!result) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

}  // namespace eep::coordinator::jinja
