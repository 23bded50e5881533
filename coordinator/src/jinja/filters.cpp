#include "eep/coordinator/jinja/filters.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "eep/coordinator/jinja/interpreter.h"
#include "string_ops.h"
#include "text_util.h"

namespace eep::coordinator::jinja {

namespace {

Status bad_argument(const std::string& message) {
  return error(ErrorCode::kInvalidArgument, message);
}

Result<Value> need_string(const Value& input, const char* filter) {
  if (input.is_undefined()) return Value(std::string());
  if (!input.is_string())
    return bad_argument(std::string(filter) + " needs a string, got " + input.type_name());
  return input;
}

bool flag_arg(const CallArgs& args, size_t position, const char* name, bool default_value = false) {
  const Value* value = args.get(position, name);
  return value ? value->truthy() : default_value;
}

// The items a filter iterates: a list's items, a dict's keys, a string's characters; undefined
// is empty.
Result<ValueList> iterate(const Value& input, const char* filter) {
  switch (input.kind()) {
    case ValueKind::kList:
      return input.as_list();
    case ValueKind::kDict: {
      ValueList keys;
      for (const auto& entry : input.as_dict().entries()) keys.emplace_back(entry.first);
      return keys;
    }
    case ValueKind::kString: {
      ValueList chars;
      for (char32_t code : decode_utf8(input.as_string())) {
        std::string one;
        append_utf8(one, code);
        chars.emplace_back(std::move(one));
      }
      return chars;
    }
    case ValueKind::kUndefined:
      return ValueList{};
    default:
      return bad_argument(std::string(filter) + " cannot iterate over " + input.type_name());
  }
}

// item.a.b (dotted) or item[int] as Jinja's attribute= arguments do.
Result<Value> attribute_of(Interpreter& interpreter, const Value& item, const Value& attribute) {
  if (attribute.is_int()) return interpreter.get_item(item, attribute);
  if (!attribute.is_string()) return bad_argument("attribute must be a string or an int");
  Value current = item;
  std::string_view path = attribute.as_string();
  while (true) {
    size_t dot = path.find('.');
    std::string part(path.substr(0, dot));
    bool is_index = !part.empty() && std::all_of(part.begin(), part.end(),
                                                 [](char c) { return c >= '0' && c <= '9'; });
    Result<Value> next =
        is_index ? interpreter.get_item(current, Value(static_cast<int64_t>(std::stoll(part))))
                 : interpreter.get_item(current, Value(part));
    if (!next.is_ok()) return next;
    current = std::move(next).value();
    if (dot == std::string_view::npos) return current;
    path.remove_prefix(dot + 1);
  }
}

// Python's ordering of two sort keys (numbers with numbers, strings with strings).
Result<int> order(const Value& a, const Value& b, bool case_sensitive) {
  if (a.is_number() && b.is_number()) {
    double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    int c = case_sensitive ? a.as_string().compare(b.as_string())
                           : ascii_lower(a.as_string()).compare(ascii_lower(b.as_string()));
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list()) {
    const ValueList& x = a.as_list();
    const ValueList& y = b.as_list();
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
      EEP_ASSIGN_OR_RETURN(int c, order(x[i], y[i], case_sensitive));
      if (c != 0) return c;
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  return bad_argument("cannot order " + a.type_name() + " and " + b.type_name());
}

// Stable sort by key with Python's errors for unorderable keys.
Result<ValueList> sort_by(ValueList items, const ValueList& keys, bool case_sensitive,
                          bool reverse) {
  std::vector<size_t> index(items.size());
  for (size_t i = 0; i < index.size(); ++i) index[i] = i;
  Status failure;
  std::stable_sort(index.begin(), index.end(), [&](size_t a, size_t b) {
    if (!failure.is_ok()) return false;
    Result<int> c = order(keys[a], keys[b], case_sensitive);
    if (!c.is_ok()) {
      failure = c.status();
      return false;
    }
    return reverse ? *c > 0 : *c < 0;
  });
  if (!failure.is_ok()) return failure;
  ValueList sorted;
  sorted.reserve(items.size());
  for (size_t i : index) sorted.push_back(std::move(items[i]));
  return sorted;
}

// ---- the filters ----

Result<Value> filter_default(Interpreter&, const Value& input, CallArgs& args) {
  const Value* fallback = args.get(0, "default_value");
  bool boolean = flag_arg(args, 1, "boolean");
  if (input.is_undefined() || (boolean && !input.truthy()))
    return fallback ? *fallback : Value(std::string());
  return input;
}

Result<Value> filter_length(Interpreter&, const Value& input, CallArgs&) {
  switch (input.kind()) {
    case ValueKind::kString:
      return Value(static_cast<int64_t>(utf8_length(input.as_string())));
    case ValueKind::kList:
      return Value(static_cast<int64_t>(input.as_list().size()));
    case ValueKind::kDict:
    case ValueKind::kNamespace:
      return Value(static_cast<int64_t>(input.as_dict().size()));
    case ValueKind::kUndefined:
      return Value(int64_t{0});
    default:
      return bad_argument(input.type_name() + " has no length");
  }
}

Result<Value> filter_first_last(const Value& input, bool first) {
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, first ? "first" : "last"));
  if (items.empty()) return Value::undefined(first ? "first" : "last");
  return first ? items.front() : items.back();
}

Result<Value> filter_join(Interpreter& interpreter, const Value& input, CallArgs& args) {
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, "join"));
  const Value* separator = args.get(0, "d");
  const Value* attribute = args.get(1, "attribute");
  std::string sep = separator ? separator->str() : "";
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    if (attribute && !attribute->is_none()) {
      EEP_ASSIGN_OR_RETURN(Value value, attribute_of(interpreter, items[i], *attribute));
      out += value.str();
    } else {
      out += items[i].str();
    }
    EEP_RETURN_IF_ERROR(interpreter.charge_bytes(out.size()));
  }
  return Value(std::move(out));
}

Result<Value> filter_tojson(Interpreter& interpreter, const Value& input, CallArgs& args) {
  // Hugging Face's tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
  JsonDumpOptions options;
  options.ensure_ascii = flag_arg(args, 0, "ensure_ascii");
  if (const Value* indent = args.get(1, "indent"); indent && !indent->is_none()) {
    if (!indent->is_int()) return bad_argument("indent must be an int, got " + indent->type_name());
    options.indent = static_cast<int>(std::clamp<int64_t>(indent->as_int(), 0, 64));
  }
  if (const Value* separators = args.get(2, "separators"); separators && !separators->is_none()) {
    if (!separators->is_list() || separators->as_list().size() != 2 ||
        !separators->as_list()[0].is_string() || !separators->as_list()[1].is_string()) {
      return bad_argument("separators must be a pair of strings");
    }
    options.item_separator = separators->as_list()[0].as_string();
    options.key_separator = separators->as_list()[1].as_string();
  }
  options.sort_keys = flag_arg(args, 3, "sort_keys");
  EEP_ASSIGN_OR_RETURN(std::string text, input.to_json_text(options));
  EEP_RETURN_IF_ERROR(interpreter.charge_bytes(text.size()));
  return Value(std::move(text));
}

Result<Value> filter_trim(Interpreter&, const Value& input, CallArgs& args) {
  EEP_ASSIGN_OR_RETURN(Value text, need_string(input, "trim"));
  const Value* chars = args.get(0, "chars");
  if (chars && !chars->is_none()) {
    if (!chars->is_string()) return bad_argument("trim chars must be a string");
    std::u32string set = decode_utf8(chars->as_string());
    return Value(python_strip(text.as_string(), &set, true, true));
  }
  return Value(python_strip(text.as_string(), nullptr, true, true));
}

Result<Value> filter_replace(Interpreter& interpreter, const Value& input, CallArgs& args) {
  std::string text = input.str();
  const Value* old_text = args.get(0, "old");
  const Value* new_text = args.get(1, "new");
  if (!old_text || !new_text) return bad_argument("replace needs old and new");
  const Value* count = args.get(2, "count");
  int64_t n = count && (count->is_int()) ? count->as_int() : -1;
  EEP_ASSIGN_OR_RETURN(std::string out,
                       python_replace(interpreter, text, old_text->str(), new_text->str(), n));
  return Value(std::move(out));
}

Result<Value> filter_int(Interpreter&, const Value& input, CallArgs& args) {
  const Value* fallback = args.get(0, "default");
  Value default_value = fallback ? *fallback : Value(int64_t{0});
  if (input.is_int() || input.is_bool()) return Value(input.as_int());
  if (input.is_float()) {
    double d = input.as_double();
    if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return default_value;
    return Value(static_cast<int64_t>(d));
  }
  if (input.is_string()) {
    std::string text = python_strip(input.as_string(), nullptr, true, true);
    char* end = nullptr;
    errno = 0;
    long long parsed = std::strtoll(text.c_str(), &end, 10);
    if (!text.empty() && end && *end == '\0' && errno == 0)
      return Value(static_cast<int64_t>(parsed));
    double d = std::strtod(text.c_str(), &end);
    if (!text.empty() && end && *end == '\0' && std::isfinite(d) && std::fabs(d) < 9.2e18) {
      return Value(static_cast<int64_t>(d));
    }
  }
  return default_value;
}

Result<Value> filter_float(Interpreter&, const Value& input, CallArgs& args) {
  const Value* fallback = args.get(0, "default");
  Value default_value = fallback ? *fallback : Value(0.0);
  if (input.is_number()) return Value(input.as_double());
  if (input.is_string()) {
    std::string text = python_strip(input.as_string(), nullptr, true, true);
    char* end = nullptr;
    double d = std::strtod(text.c_str(), &end);
    if (!text.empty() && end && *end == '\0') return Value(d);
  }
  return default_value;
}

Result<Value> filter_round(Interpreter&, const Value& input, CallArgs& args) {
  if (!input.is_number()) return bad_argument("round needs a number, got " + input.type_name());
  const Value* precision_value = args.get(0, "precision");
  int64_t precision = precision_value && precision_value->is_int() ? precision_value->as_int() : 0;
  const Value* method_value = args.get(1, "method");
  std::string method = method_value ? method_value->str() : "common";
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = input.as_double() * scale;
  double rounded = method == "ceil"    ? std::ceil(x)
                   : method == "floor" ? std::floor(x)
                                       : std::round(x);
  if (method != "common" && method != "ceil" && method != "floor") {
    return bad_argument("round method must be common, ceil or floor");
  }
  return Value(rounded / scale);
}

Result<Value> filter_map(Interpreter& interpreter, const Value& input, CallArgs& args) {
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, "map"));
  ValueList out;
  if (const Value* attribute = args.get(99, "attribute")) {
    const Value* fallback = args.get(99, "default");
    for (const Value& item : items) {
      EEP_ASSIGN_OR_RETURN(Value value, attribute_of(interpreter, item, *attribute));
      out.push_back(value.is_undefined() && fallback ? *fallback : value);
    }
    return Value(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string())
    return bad_argument("map needs a filter name or attribute=");
  std::string name = args.positional[0].as_string();
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : items) {
    CallArgs call_args = rest;
    EEP_ASSIGN_OR_RETURN(Value value, interpreter.apply_filter(name, item, call_args));
    out.push_back(std::move(value));
  }
  return Value(std::move(out));
}

Result<Value> select_items(Interpreter& interpreter, const Value& input, CallArgs& args,
                           bool by_attribute, bool keep) {
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, "select"));
  size_t next = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty()) return bad_argument("selectattr/rejectattr need an attribute");
    attribute = args.positional[next++];
  }
  std::string test;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string()) return bad_argument("the test name must be a string");
    test = args.positional[next++].as_string();
  }
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next),
                              args.positional.end());
  ValueList out;
  for (const Value& item : items) {
    Value subject = item;
    if (by_attribute) {
      EEP_ASSIGN_OR_RETURN(subject, attribute_of(interpreter, item, attribute));
    }
    bool passed;
    if (test.empty()) {
      passed = subject.truthy();
    } else {
      CallArgs call_args = test_args;
      EEP_ASSIGN_OR_RETURN(passed, interpreter.apply_test(test, subject, call_args));
    }
    if (passed == keep) out.push_back(item);
  }
  return Value(std::move(out));
}

Result<Value> filter_items(Interpreter&, const Value& input, CallArgs&) {
  if (input.is_undefined()) return Value(ValueList{});
  if (!input.is_dict()) return bad_argument("items needs a dict, got " + input.type_name());
  ValueList out;
  for (const auto& [key, value] : input.as_dict().entries())
    out.emplace_back(ValueList{Value(key), value});
  return Value(std::move(out));
}

Result<Value> filter_dictsort(Interpreter&, const Value& input, CallArgs& args) {
  if (!input.is_dict()) return bad_argument("dictsort needs a dict, got " + input.type_name());
  bool case_sensitive = flag_arg(args, 0, "case_sensitive");
  const Value* by = args.get(1, "by");
  bool by_value = by && by->is_string() && by->as_string() == "value";
  bool reverse = flag_arg(args, 2, "reverse");
  ValueList items, keys;
  for (const auto& [key, value] : input.as_dict().entries()) {
    items.emplace_back(ValueList{Value(key), value});
    keys.push_back(by_value ? value : Value(key));
  }
  EEP_ASSIGN_OR_RETURN(ValueList sorted, sort_by(std::move(items), keys, case_sensitive, reverse));
  return Value(std::move(sorted));
}

Result<Value> filter_sort(Interpreter& interpreter, const Value& input, CallArgs& args) {
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, "sort"));
  bool reverse = flag_arg(args, 0, "reverse");
  bool case_sensitive = flag_arg(args, 1, "case_sensitive");
  const Value* attribute = args.get(2, "attribute");
  ValueList keys;
  for (const Value& item : items) {
    if (attribute && !attribute->is_none()) {
      EEP_ASSIGN_OR_RETURN(Value key, attribute_of(interpreter, item, *attribute));
      keys.push_back(std::move(key));
    } else {
      keys.push_back(item);
    }
  }
  EEP_ASSIGN_OR_RETURN(ValueList sorted, sort_by(std::move(items), keys, case_sensitive, reverse));
  return Value(std::move(sorted));
}

Result<Value> filter_unique(Interpreter& interpreter, const Value& input, CallArgs& args) {
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, "unique"));
  bool case_sensitive = flag_arg(args, 0, "case_sensitive");
  const Value* attribute = args.get(1, "attribute");
  ValueList out, seen;
  for (const Value& item : items) {
    Value key = item;
    if (attribute && !attribute->is_none()) {
      EEP_ASSIGN_OR_RETURN(key, attribute_of(interpreter, item, *attribute));
    }
    if (!case_sensitive && key.is_string()) key = Value(ascii_lower(key.as_string()));
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return s.equals(key); })) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return Value(std::move(out));
}

Result<Value> filter_min_max(Interpreter& interpreter, const Value& input, CallArgs& args,
                             bool want_max) {
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, want_max ? "max" : "min"));
  if (items.empty()) return Value::undefined(want_max ? "max" : "min");
  bool case_sensitive = flag_arg(args, 0, "case_sensitive");
  const Value* attribute = args.get(1, "attribute");
  size_t best = 0;
  Value best_key;
  for (size_t i = 0; i < items.size(); ++i) {
    Value key = items[i];
    if (attribute && !attribute->is_none()) {
      EEP_ASSIGN_OR_RETURN(key, attribute_of(interpreter, items[i], *attribute));
    }
    if (i == 0) {
      best_key = key;
      continue;
    }
    EEP_ASSIGN_OR_RETURN(int c, order(key, best_key, case_sensitive));
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = key;
    }
  }
  return items[best];
}

Result<Value> filter_sum(Interpreter& interpreter, const Value& input, CallArgs& args) {
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, "sum"));
  const Value* attribute = args.get(0, "attribute");
  const Value* start = args.get(1, "start");
  Value total = start ? *start : Value(int64_t{0});
  for (const Value& item : items) {
    Value value = item;
    if (attribute && !attribute->is_none()) {
      EEP_ASSIGN_OR_RETURN(value, attribute_of(interpreter, item, *attribute));
    }
    if (!value.is_number() || !total.is_number())
      return bad_argument("sum needs numbers, got " + value.type_name());
    if (value.is_float() || total.is_float()) {
      total = Value(total.as_double() + value.as_double());
    } else {
      int64_t sum;
      if (__builtin_add_overflow(total.as_int(), value.as_int(), &sum))
        return bad_argument("integer overflow");
      total = Value(sum);
    }
  }
  return total;
}

Result<Value> filter_reverse(Interpreter&, const Value& input, CallArgs&) {
  if (input.is_string()) {
    std::u32string codes = decode_utf8(input.as_string());
    std::reverse(codes.begin(), codes.end());
    return Value(encode_utf8(codes));
  }
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, "reverse"));
  std::reverse(items.begin(), items.end());
  return Value(std::move(items));
}

Result<Value> filter_indent(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const Value* width = args.get(0, "width");
  std::string indentation = !width               ? std::string(4, ' ')
                            : width->is_string() ? width->as_string()
                                                 : "";
  if (width && !width->is_string()) {
    if (!width->is_int() || width->as_int() < 0 || width->as_int() > 1024) {
      return bad_argument("indent width must be an int in [0, 1024] or a string");
    }
    indentation = std::string(static_cast<size_t>(width->as_int()), ' ');
  }
  bool first = flag_arg(args, 1, "first");
  bool blank = flag_arg(args, 2, "blank");
  std::vector<std::string> lines = python_splitlines(input.str() + "\n");
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += "\n";
      if (blank || !lines[i].empty()) out += indentation;
    }
    out += lines[i];
    EEP_RETURN_IF_ERROR(interpreter.charge_bytes(out.size()));
  }
  if (first) out = indentation + out;
  return Value(std::move(out));
}

Result<Value> filter_escape(Interpreter& interpreter, const Value& input, CallArgs&) {
  std::string out;
  for (char c : input.str()) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  EEP_RETURN_IF_ERROR(interpreter.charge_bytes(out.size()));
  return Value(std::move(out));
}

Result<Value> filter_batch(Interpreter&, const Value& input, CallArgs& args) {
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, "batch"));
  const Value* count = args.get(0, "linecount");
  if (!count || !count->is_int() || count->as_int() <= 0)
    return bad_argument("batch needs a positive count");
  const Value* fill = args.get(1, "fill_with");
  auto size = static_cast<size_t>(count->as_int());
  ValueList out, current;
  for (Value& item : items) {
    current.push_back(std::move(item));
    if (current.size() == size) {
      out.emplace_back(std::move(current));
      current = {};
    }
  }
  if (!current.empty()) {
    if (fill && !fill->is_none()) {
      while (current.size() < size) current.push_back(*fill);
    }
    out.emplace_back(std::move(current));
  }
  return Value(std::move(out));
}

Result<Value> filter_center(Interpreter& interpreter, const Value& input, CallArgs& args) {
  std::string text = input.str();
  const Value* width_value = args.get(0, "width");
  int64_t width = width_value && width_value->is_int() ? width_value->as_int() : 80;
  auto length = static_cast<int64_t>(utf8_length(text));
  if (width <= length) return Value(text);
  if (width > 4096) return bad_argument("center width over 4096");
  // Python's str.center: the extra space goes left when the margin and the width are odd.
  int64_t margin = width - length;
  int64_t left = margin / 2 + (margin & width & 1);
  EEP_RETURN_IF_ERROR(interpreter.charge_bytes(static_cast<size_t>(width)));
  return Value(std::string(static_cast<size_t>(left), ' ') + text +
               std::string(static_cast<size_t>(margin - left), ' '));
}

Result<Value> filter_wordcount(Interpreter&, const Value& input, CallArgs&) {
  // Jinja counts \w+ runs.
  int64_t count = 0;
  bool in_word = false;
  for (char32_t c : decode_utf8(input.str())) {
    bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c >= 0x80;
    if (word && !in_word) ++count;
    in_word = word;
  }
  return Value(count);
}

Result<Value> filter_abs(Interpreter&, const Value& input, CallArgs&) {
  if (input.is_float()) return Value(std::fabs(input.as_double()));
  if (input.is_int() || input.is_bool()) {
    if (input.as_int() == std::numeric_limits<int64_t>::min())
      return bad_argument("integer overflow");
    return Value(input.as_int() < 0 ? -input.as_int() : input.as_int());
  }
  return bad_argument("abs needs a number, got " + input.type_name());
}

Result<Value> filter_list(Interpreter&, const Value& input, CallArgs&) {
  EEP_ASSIGN_OR_RETURN(ValueList items, iterate(input, "list"));
  return Value(std::move(items));
}

Result<Value> filter_attr(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const Value* name = args.get(0, "name");
  if (!name || !name->is_string()) return bad_argument("attr needs a name");
  return interpreter.get_attribute(input, name->as_string());
}

const std::unordered_map<std::string_view, FilterFunction>& filters() {
  static const std::unordered_map<std::string_view, FilterFunction> kFilters = {
      {"abs", filter_abs},
      {"attr", filter_attr},
      {"batch", filter_batch},
      {"capitalize",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<Value> {
         return Value(python_capitalize(v.str()));
       }},
      {"center", filter_center},
      {"count", filter_length},
      {"d", filter_default},
      {"default", filter_default},
      {"dictsort", filter_dictsort},
      {"e", filter_escape},
      {"escape", filter_escape},
      {"first", [](Interpreter&, const Value& v, CallArgs&) { return filter_first_last(v, true); }},
      {"float", filter_float},
      {"indent", filter_indent},
      {"int", filter_int},
      {"items", filter_items},
      {"join", filter_join},
      {"last", [](Interpreter&, const Value& v, CallArgs&) { return filter_first_last(v, false); }},
      {"length", filter_length},
      {"list", filter_list},
      {"lower",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<Value> {
         return Value(ascii_lower(v.str()));
       }},
      {"map", filter_map},
      {"max",
       [](Interpreter& i, const Value& v, CallArgs& a) { return filter_min_max(i, v, a, true); }},
      {"min",
       [](Interpreter& i, const Value& v, CallArgs& a) { return filter_min_max(i, v, a, false); }},
      {"reject", [](Interpreter& i, const Value& v,
                    CallArgs& a) { return select_items(i, v, a, false, false); }},
      {"rejectattr", [](Interpreter& i, const Value& v,
                        CallArgs& a) { return select_items(i, v, a, true, false); }},
      {"replace", filter_replace},
      {"reverse", filter_reverse},
      {"round", filter_round},
      {"safe", [](Interpreter&, const Value& v, CallArgs&) -> Result<Value> { return v; }},
      {"select", [](Interpreter& i, const Value& v,
                    CallArgs& a) { return select_items(i, v, a, false, true); }},
      {"selectattr", [](Interpreter& i, const Value& v,
                        CallArgs& a) { return select_items(i, v, a, true, true); }},
      {"sort", filter_sort},
      {"string",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<Value> { return Value(v.str()); }},
      {"sum", filter_sum},
      {"title",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<Value> {
         return Value(python_title(v.str()));
       }},
      {"tojson", filter_tojson},
      {"trim", filter_trim},
      {"unique", filter_unique},
      {"upper",
       [](Interpreter&, const Value& v, CallArgs&) -> Result<Value> {
         return Value(ascii_upper(v.str()));
       }},
      {"wordcount", filter_wordcount},
  };
  return kFilters;
}

}  // namespace

FilterFunction find_filter(std::string_view name) {
  auto it = filters().find(name);
  return it == filters().end() ? nullptr : it->second;
}

}  // namespace eep::coordinator::jinja
