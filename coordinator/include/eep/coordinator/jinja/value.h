// The dynamic value of the Jinja engine: undefined, none, bool, int, float, string, list, dict
// (insertion-ordered, string keys), namespace and callable. Lists, dicts and namespaces are shared
// by reference like Python's objects (a namespace assigned in a loop is seen after it); strings
// are UTF-8. Values follow Python's semantics where templates can see them: truthiness, equality
// (1 == 1.0 == true), str() and repr() of containers, float formatting. Not thread-safe: a value
// belongs to one render.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"

namespace eep::coordinator::jinja {

class Value;
class Interpreter;

using ValueList = std::vector<Value>;

// A dict that keeps insertion order (Python 3.7+ dicts, and so json.dumps output order).
class ValueDict {
 public:
  using Entry = std::pair<std::string, Value>;

  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  void set(std::string key, Value value);
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

// Arguments of a call: positional, then keyword (in source order).
struct CallArgs {
  ValueList positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument named `name` at position `position` (either way), or nullptr.
  const Value* get(size_t position, std::string_view name) const;
};

// A function a template can call: a global (range, namespace, raise_exception), a bound method
// ("abc".split) or a macro. It may render (macros do), hence the interpreter.
struct Callable {
  using Function = std::function<Result<Value>(Interpreter&, CallArgs&)>;
  std::string name;
  Function function;
};

// json.dumps' arguments as Hugging Face's tojson filter passes them: ensure_ascii=False,
// indent=None, separators=None (", " and ": ", or "," and ": " when indenting), sort_keys=False.
struct JsonDumpOptions {
  int indent = -1;  // -1: one line; 0: newlines without indentation, as Python's indent=0
  bool sort_keys = false;
  bool ensure_ascii = false;                  // true: non-ASCII as \uXXXX escapes
  std::optional<std::string> item_separator;  // default ", " (one line) or "," (indenting)
  std::string key_separator = ": ";
};

enum class ValueKind {
  kUndefined,
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,
  kDict,
  kNamespace,
  kCallable
};

std::string_view to_string(ValueKind kind);

class Value {
 public:
  Value() = default;  // undefined
  static Value undefined(std::string name = {});
  static Value none();
  Value(bool b);     // NOLINT: implicit on purpose, like Python literals
  Value(int64_t i);  // NOLINT
  Value(int i) : Value(static_cast<int64_t>(i)) {}  // NOLINT
  Value(double d);                                  // NOLINT
  Value(std::string s);                             // NOLINT
  Value(const char* s) : Value(std::string(s)) {}   // NOLINT
  Value(ValueList list);                            // NOLINT
  Value(ValueDict dict);                            // NOLINT
  static Value make_namespace(ValueDict attributes);
  static Value callable(std::string name, Callable::Function function);

  // JSON objects become dicts in the JSON value's member order: nlohmann::ordered_json keeps a
  // request's order (as Python's json.loads does, and so what tojson writes); nlohmann::json
  // sorts members by name.
  static Value from_json(const nlohmann::json& json);
  static Value from_json(const nlohmann::ordered_json& json);

  ValueKind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == ValueKind::kUndefined; }
  bool is_none() const { return kind_ == ValueKind::kNone; }
  bool is_bool() const { return kind_ == ValueKind::kBool; }
  bool is_int() const { return kind_ == ValueKind::kInt; }
  bool is_float() const { return kind_ == ValueKind::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind_ == ValueKind::kString; }
  bool is_list() const { return kind_ == ValueKind::kList; }
  bool is_dict() const { return kind_ == ValueKind::kDict; }
  bool is_namespace() const { return kind_ == ValueKind::kNamespace; }
  bool is_callable() const { return kind_ == ValueKind::kCallable; }
  bool is_iterable() const;

  bool as_bool() const { return bool_; }
  int64_t as_int() const { return int_; }  // also a bool's 0/1
  double as_double() const;                // int, bool or float
  const std::string& as_string() const { return *string_; }
  const ValueList& as_list() const { return *list_; }
  ValueList& as_list() { return *list_; }
  // A dict's or a namespace's entries.
  const ValueDict& as_dict() const { return *dict_; }
  ValueDict& as_dict() { return *dict_; }
  const Callable& as_callable() const { return *callable_; }
  // For an undefined value: the name that was looked up (for messages).
  const std::string& undefined_name() const { return undefined_name_; }

  // Python's bool(): false for undefined, none, 0, "", [], {}.
  bool truthy() const;
  // Python's str() (what {{ x }} prints; undefined prints nothing).
  std::string str() const;
  // Python's repr() (what str() of a list shows for its items).
  std::string repr() const;
  // Python's ==, with 1 == 1.0 == true; lists and dicts compared deeply.
  bool equals(const Value& other) const;
  // "a string", "an int", for messages.
  std::string type_name() const;

  // Python's json.dumps(value, **options) (see JsonDumpOptions); fails for undefined,
  // namespaces and callables, as Python's does.
  Result<std::string> to_json_text(const struct JsonDumpOptions& options) const;
  Result<std::string> to_json_text() const;
  // The value as JSON (undefined -> error, namespace -> object); for tests and callers.
  Result<nlohmann::json> to_json() const;

 private:
  ValueKind kind_ = ValueKind::kUndefined;
  bool bool_ = false;
  int64_t int_ = 0;
  double float_ = 0.0;
  std::shared_ptr<const std::string> string_;
  std::shared_ptr<ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<const Callable> callable_;
  std::string undefined_name_;
};

// Python's repr() of a float: shortest round-trip digits, "1.0" for integral values, exponent
// form outside [1e-4, 1e16), "inf"/"nan".
std::string format_python_float(double value);

}  // namespace eep::coordinator::jinja
