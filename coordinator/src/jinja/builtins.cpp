#include "eep/coordinator/jinja/builtins.h"

#include <algorithm>
#include <unordered_map>

#include "eep/coordinator/jinja/filters.h"
#include "eep/coordinator/jinja/interpreter.h"
#include "string_ops.h"
#include "text_util.h"

namespace eep::coordinator::jinja {

namespace {

Status bad_argument(const std::string& message) {
  return error(ErrorCode::kInvalidArgument, message);
}

// ---- tests ----

Result<bool> compare_test(Interpreter&, const Value& input, CallArgs& args, int want) {
  const Value* other = args.get(0, "other");
  if (!other) return bad_argument("the comparison test needs a value to compare with");
  if (want == 0) return input.equals(*other);
  if (want == 1) return !input.equals(*other);
  if (!(input.is_number() && other->is_number()) && !(input.is_string() && other->is_string())) {
    return bad_argument("cannot order " + input.type_name() + " and " + other->type_name());
  }
  int order;
  if (input.is_string()) {
    int c = input.as_string().compare(other->as_string());
    order = c < 0 ? -1 : c > 0 ? 1 : 0;
  } else {
    double a = input.as_double(), b = other->as_double();
    order = a < b ? -1 : a > b ? 1 : 0;
  }
  switch (want) {
    case 2:
      return order < 0;
    case 3:
      return order <= 0;
    case 4:
      return order > 0;
    default:
      return order >= 0;
  }
}

Result<bool> int_test(const Value& input, const char* name) {
  if (!input.is_int() && !input.is_bool()) {
    return bad_argument(std::string("test '") + name + "' needs an int, got " + input.type_name());
  }
  return true;
}

const std::unordered_map<std::string_view, TestFunction>& tests() {
  static const std::unordered_map<std::string_view, TestFunction> kTests = {
      {"defined",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return !v.is_undefined(); }},
      {"undefined",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return v.is_undefined(); }},
      {"none", [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return v.is_none(); }},
      {"boolean",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return v.is_bool(); }},
      {"true",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> {
         return v.is_bool() && v.as_bool();
       }},
      {"false",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> {
         return v.is_bool() && !v.as_bool();
       }},
      {"integer",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return v.is_int(); }},
      {"float",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return v.is_float(); }},
      {"number",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return v.is_number(); }},
      {"string",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return v.is_string(); }},
      {"mapping",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return v.is_dict(); }},
      {"iterable",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return v.is_iterable(); }},
      {"sequence",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> {
         return v.is_string() || v.is_list() || v.is_dict();
       }},
      {"callable",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> { return v.is_callable(); }},
      {"sameas",
       [](Interpreter&, const Value& v, CallArgs& args) -> Result<bool> {
         const Value* other = args.get(0, "other");
         if (!other) return bad_argument("test 'sameas' needs a value");
         return v.kind() == other->kind() && v.equals(*other);
       }},
      {"eq", [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 0); }},
      {"equalto",
       [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 0); }},
      {"==", [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 0); }},
      {"ne", [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 1); }},
      {"!=", [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 1); }},
      {"lt", [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 2); }},
      {"lessthan",
       [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 2); }},
      {"le", [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 3); }},
      {"gt", [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 4); }},
      {"greaterthan",
       [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 4); }},
      {"ge", [](Interpreter& i, const Value& v, CallArgs& a) { return compare_test(i, v, a, 5); }},
      {"in",
       [](Interpreter&, const Value& v, CallArgs& args) -> Result<bool> {
         const Value* seq = args.get(0, "seq");
         if (!seq) return bad_argument("test 'in' needs a container");
         if (seq->is_string())
           return v.is_string() && seq->as_string().find(v.as_string()) != std::string::npos;
         if (seq->is_list()) {
           return std::any_of(seq->as_list().begin(), seq->as_list().end(),
                              [&](const Value& x) { return x.equals(v); });
         }
         if (seq->is_dict()) return v.is_string() && seq->as_dict().contains(v.as_string());
         return bad_argument("test 'in' needs a string, list or dict, got " + seq->type_name());
       }},
      {"odd",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> {
         EEP_RETURN_IF_ERROR(int_test(v, "odd").status());
         return v.as_int() % 2 != 0;
       }},
      {"even",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> {
         EEP_RETURN_IF_ERROR(int_test(v, "even").status());
         return v.as_int() % 2 == 0;
       }},
      {"divisibleby",
       [](Interpreter&, const Value& v, CallArgs& args) -> Result<bool> {
         EEP_RETURN_IF_ERROR(int_test(v, "divisibleby").status());
         const Value* num = args.get(0, "num");
         if (!num || !num->is_int() || num->as_int() == 0)
           return bad_argument("test 'divisibleby' needs a non-zero int");
         return v.as_int() % num->as_int() == 0;
       }},
      {"lower",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> {
         return v.is_string() && ascii_lower(v.as_string()) == v.as_string();
       }},
      {"upper",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> {
         return v.is_string() && ascii_upper(v.as_string()) == v.as_string();
       }},
      {"escaped", [](Interpreter&, const Value&, CallArgs&) -> Result<bool> { return false; }},
      {"filter",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> {
         return v.is_string() && find_filter(v.as_string()) != nullptr;
       }},
      {"test",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<bool> {
         return v.is_string() && find_test(v.as_string()) != nullptr;
       }},
  };
  return kTests;
}

// ---- global functions ----

Result<Value> range_function(Interpreter& interpreter, CallArgs& args) {
  std::vector<int64_t> bounds;
  for (const Value& value : args.positional) {
    if (!value.is_int() && !value.is_bool())
      return bad_argument("range() takes ints, got " + value.type_name());
    bounds.push_back(value.as_int());
  }
  if (bounds.empty() || bounds.size() > 3 || !args.keyword.empty()) {
    return bad_argument("range() takes 1 to 3 int arguments");
  }
  int64_t start = bounds.size() == 1 ? 0 : bounds[0];
  int64_t stop = bounds.size() == 1 ? bounds[0] : bounds[1];
  int64_t step = bounds.size() == 3 ? bounds[2] : 1;
  if (step == 0) return bad_argument("range() step must not be zero");
  uint64_t count = 0;
  if (step > 0 && stop > start) count = static_cast<uint64_t>((stop - start - 1) / step + 1);
  if (step < 0 && stop < start) count = static_cast<uint64_t>((start - stop - 1) / (-step) + 1);
  EEP_RETURN_IF_ERROR(interpreter.charge_iterations(count));
  ValueList items;
  items.reserve(count);
  for (uint64_t i = 0; i < count; ++i) items.emplace_back(start + static_cast<int64_t>(i) * step);
  return Value(std::move(items));
}

Result<ValueDict> dict_from_args(const CallArgs& args, const char* function) {
  ValueDict dict;
  if (args.positional.size() > 1)
    return bad_argument(std::string(function) + "() takes at most one positional argument");
  if (!args.positional.empty()) {
    const Value& source = args.positional[0];
    if (!source.is_dict() && !source.is_namespace()) {
      return bad_argument(std::string(function) + "() takes a dict, got " + source.type_name());
    }
    for (const auto& [key, value] : source.as_dict().entries()) dict.set(key, value);
  }
  for (const auto& [key, value] : args.keyword) dict.set(key, value);
  return dict;
}

}  // namespace

TestFunction find_test(std::string_view name) {
  auto it = tests().find(name);
  return it == tests().end() ? nullptr : it->second;
}

void add_builtin_globals(ValueDict& globals) {
  globals.set("range", Value::callable("range", range_function));
  globals.set("dict", Value::callable("dict", [](Interpreter&, CallArgs& args) -> Result<Value> {
                EEP_ASSIGN_OR_RETURN(ValueDict dict, dict_from_args(args, "dict"));
                return Value(std::move(dict));
              }));
  globals.set("namespace",
              Value::callable("namespace", [](Interpreter&, CallArgs& args) -> Result<Value> {
                EEP_ASSIGN_OR_RETURN(ValueDict dict, dict_from_args(args, "namespace"));
                return Value::make_namespace(std::move(dict));
              }));
}

// ---- methods ----

namespace {

constexpr std::string_view kStringMethods[] = {
    "startswith", "endswith", "strip",        "lstrip",       "rstrip",     "split",   "rsplit",
    "splitlines", "upper",    "lower",        "title",        "capitalize", "replace", "find",
    "rfind",      "count",    "join",         "isdigit",      "isalpha",    "isalnum", "isspace",
    "isupper",    "islower",  "removeprefix", "removesuffix", "format"};
constexpr std::string_view kDictMethods[] = {"items", "keys",       "values", "get", "update",
                                             "pop",   "setdefault", "clear",  "copy"};
constexpr std::string_view kListMethods[] = {"index",   "count", "append", "extend",
                                             "insert",  "pop",   "remove", "sort",
                                             "reverse", "clear", "copy"};
constexpr std::string_view kMutatingMethods[] = {"update", "pop",    "setdefault", "clear",
                                                 "append", "extend", "insert",     "remove",
                                                 "sort",   "reverse"};

template <size_t N>
bool contains(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

Result<std::string> string_arg(const CallArgs& args, size_t position, const char* name,
                               const char* method) {
  const Value* value = args.get(position, name);
  if (!value || !value->is_string()) {
    return bad_argument(std::string(method) + "() needs a string argument '" + name + "'");
  }
  return value->as_string();
}

// Optional string or none (Python's default None): nullopt when absent or none.
Result<std::optional<std::string>> optional_string_arg(const CallArgs& args, size_t position,
                                                       const char* name, const char* method) {
  const Value* value = args.get(position, name);
  if (!value || value->is_none()) return std::optional<std::string>();
  if (!value->is_string())
    return bad_argument(std::string(method) + "() argument '" + name + "' must be a string");
  return std::optional<std::string>(value->as_string());
}

Result<int64_t> int_arg(const CallArgs& args, size_t position, const char* name,
                        int64_t default_value) {
  const Value* value = args.get(position, name);
  if (!value || value->is_none()) return default_value;
  if (!value->is_int() && !value->is_bool())
    return bad_argument(std::string("argument '") + name + "' must be an int");
  return value->as_int();
}

Result<Value> affix_test(const std::string& text, const CallArgs& args, bool prefix) {
  const Value* affix = args.get(0, prefix ? "prefix" : "suffix");
  if (!affix)
    return bad_argument(std::string(prefix ? "startswith" : "endswith") + "() needs an argument");
  auto matches = [&](const Value& candidate) -> Result<bool> {
    if (!candidate.is_string()) return bad_argument("startswith/endswith take strings");
    const std::string& a = candidate.as_string();
    if (a.size() > text.size()) return false;
    return prefix ? text.compare(0, a.size(), a) == 0
                  : text.compare(text.size() - a.size(), a.size(), a) == 0;
  };
  if (affix->is_list()) {
    for (const Value& candidate : affix->as_list()) {
      EEP_ASSIGN_OR_RETURN(bool match, matches(candidate));
      if (match) return Value(true);
    }
    return Value(false);
  }
  EEP_ASSIGN_OR_RETURN(bool match, matches(*affix));
  return Value(match);
}

template <typename Predicate>
Value all_chars(const std::string& text, Predicate predicate) {
  if (text.empty()) return Value(false);
  for (char32_t c : decode_utf8(text)) {
    if (!predicate(c)) return Value(false);
  }
  return Value(true);
}

bool is_ascii_alpha(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_ascii_digit(char32_t c) {
  return c >= '0' && c <= '9';
}

Result<Value> call_string_method(Interpreter& interpreter, const std::string& text,
                                 std::string_view name, CallArgs& args) {
  if (name == "startswith" || name == "endswith")
    return affix_test(text, args, name == "startswith");
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    EEP_ASSIGN_OR_RETURN(std::optional<std::string> chars,
                         optional_string_arg(args, 0, "chars", "strip"));
    std::u32string char_set = chars ? decode_utf8(*chars) : std::u32string();
    return Value(
        python_strip(text, chars ? &char_set : nullptr, name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    EEP_ASSIGN_OR_RETURN(std::optional<std::string> sep,
                         optional_string_arg(args, 0, "sep", "split"));
    EEP_ASSIGN_OR_RETURN(int64_t maxsplit, int_arg(args, 1, "maxsplit", -1));
    if (sep && sep->empty()) return bad_argument("split(): empty separator");
    std::vector<std::string> parts = python_split(text, sep, maxsplit, name == "rsplit");
    EEP_RETURN_IF_ERROR(interpreter.charge_iterations(parts.size()));
    ValueList items;
    for (std::string& part : parts) items.emplace_back(std::move(part));
    return Value(std::move(items));
  }
  if (name == "splitlines") {
    ValueList items;
    for (std::string& line : python_splitlines(text)) items.emplace_back(std::move(line));
    return Value(std::move(items));
  }
  if (name == "upper") return Value(ascii_upper(text));
  if (name == "lower") return Value(ascii_lower(text));
  if (name == "title") return Value(python_title(text));
  if (name == "capitalize") return Value(python_capitalize(text));
  if (name == "replace") {
    EEP_ASSIGN_OR_RETURN(std::string old_text, string_arg(args, 0, "old", "replace"));
    EEP_ASSIGN_OR_RETURN(std::string new_text, string_arg(args, 1, "new", "replace"));
    EEP_ASSIGN_OR_RETURN(int64_t count, int_arg(args, 2, "count", -1));
    EEP_ASSIGN_OR_RETURN(std::string replaced,
                         python_replace(interpreter, text, old_text, new_text, count));
    return Value(std::move(replaced));
  }
  if (name == "find" || name == "rfind" || name == "count") {
    EEP_ASSIGN_OR_RETURN(std::string sub, string_arg(args, 0, "sub", std::string(name).c_str()));
    if (name == "count") {
      if (sub.empty()) return Value(static_cast<int64_t>(utf8_length(text) + 1));
      int64_t count = 0;
      for (size_t at = text.find(sub); at != std::string::npos;
           at = text.find(sub, at + sub.size()))
        ++count;
      return Value(count);
    }
    size_t at = name == "find" ? text.find(sub) : text.rfind(sub);
    if (at == std::string::npos) return Value(int64_t{-1});
    return Value(static_cast<int64_t>(utf8_length(std::string_view(text).substr(0, at))));
  }
  if (name == "join") {
    const Value* items = args.get(0, "iterable");
    if (!items || !items->is_list()) return bad_argument("join() needs a list");
    std::string out;
    for (size_t i = 0; i < items->as_list().size(); ++i) {
      const Value& item = items->as_list()[i];
      if (!item.is_string())
        return bad_argument("join(): item " + std::to_string(i) + " is " + item.type_name());
      if (i > 0) out += text;
      out += item.as_string();
      EEP_RETURN_IF_ERROR(interpreter.charge_bytes(out.size()));
    }
    return Value(std::move(out));
  }
  if (name == "isdigit") return all_chars(text, is_ascii_digit);
  if (name == "isalpha") return all_chars(text, is_ascii_alpha);
  if (name == "isalnum")
    return all_chars(text, [](char32_t c) { return is_ascii_alpha(c) || is_ascii_digit(c); });
  if (name == "isspace") return all_chars(text, is_python_space);
  if (name == "isupper" || name == "islower") {
    bool has_cased = std::any_of(text.begin(), text.end(), [](char c) {
      return is_ascii_alpha(static_cast<unsigned char>(c));
    });
    std::string mapped = name == "isupper" ? ascii_upper(text) : ascii_lower(text);
    return Value(has_cased && mapped == text);
  }
  if (name == "removeprefix" || name == "removesuffix") {
    EEP_ASSIGN_OR_RETURN(std::string affix,
                         string_arg(args, 0, "affix", std::string(name).c_str()));
    if (name == "removeprefix" && text.compare(0, affix.size(), affix) == 0)
      return Value(text.substr(affix.size()));
    if (name == "removesuffix" && affix.size() <= text.size() &&
        text.compare(text.size() - affix.size(), affix.size(), affix) == 0) {
      return Value(text.substr(0, text.size() - affix.size()));
    }
    return Value(text);
  }
  return bad_argument("unsupported string method '" + std::string(name) + "'");
}

Result<Value> call_dict_method(const Value& self, std::string_view name, CallArgs& args) {
  const ValueDict& dict = self.as_dict();
  if (name == "items") {
    ValueList items;
    for (const auto& [key, value] : dict.entries())
      items.emplace_back(ValueList{Value(key), value});
    return Value(std::move(items));
  }
  if (name == "keys") {
    ValueList items;
    for (const auto& entry : dict.entries()) items.emplace_back(entry.first);
    return Value(std::move(items));
  }
  if (name == "values") {
    ValueList items;
    for (const auto& entry : dict.entries()) items.push_back(entry.second);
    return Value(std::move(items));
  }
  if (name == "get") {
    const Value* key = args.get(0, "key");
    if (!key) return bad_argument("get() needs a key");
    if (key->is_string()) {
      if (const Value* value = dict.find(key->as_string())) return *value;
    }
    const Value* fallback = args.get(1, "default");
    return fallback ? *fallback : Value::none();
  }
  if (name == "copy") {
    ValueDict copy;
    for (const auto& [key, value] : dict.entries()) copy.set(key, value);
    return Value(std::move(copy));
  }
  return bad_argument("unsupported dict method '" + std::string(name) + "'");
}

Result<Value> call_list_method(const Value& self, std::string_view name, CallArgs& args) {
  const ValueList& list = self.as_list();
  if (name == "index" || name == "count") {
    const Value* needle = args.get(0, "value");
    if (!needle) return bad_argument(std::string(name) + "() needs a value");
    int64_t count = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      if (!list[i].equals(*needle)) continue;
      if (name == "index") return Value(static_cast<int64_t>(i));
      ++count;
    }
    if (name == "index") return bad_argument("index(): " + needle->repr() + " is not in the list");
    return Value(count);
  }
  if (name == "copy") return Value(ValueList(list));
  return bad_argument("unsupported list method '" + std::string(name) + "'");
}

}  // namespace

bool has_method(const Value& self, std::string_view name) {
  if (self.is_string()) return contains(kStringMethods, name);
  if (self.is_dict()) return contains(kDictMethods, name);
  if (self.is_list()) return contains(kListMethods, name);
  return false;
}

Result<Value> call_method(Interpreter& interpreter, const Value& self, std::string_view name,
                          CallArgs& args) {
  if (contains(kMutatingMethods, name)) {
    return bad_argument("templates cannot modify a " + std::string(to_string(self.kind())) + " (" +
                        std::string(name) + "() is refused, as Hugging Face's sandbox refuses it)");
  }
  if (self.is_string()) {
    if (name == "format")
      return bad_argument("str.format() is not supported; use ~ or the format filter");
    return call_string_method(interpreter, self.as_string(), name, args);
  }
  if (self.is_dict()) return call_dict_method(self, name, args);
  if (self.is_list()) return call_list_method(self, name, args);
  return bad_argument(self.type_name() + " has no method '" + std::string(name) + "'");
}

}  // namespace eep::coordinator::jinja
