#include "eep/coordinator/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "text_util.h"

namespace eep::coordinator::jinja {

const Value* ValueDict::find(std::string_view key) const {
  auto it = index_.find(std::string(key));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

Value* ValueDict::find(std::string_view key) {
  auto it = index_.find(std::string(key));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

void ValueDict::set(std::string key, Value value) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    entries_[it->second].second = std::move(value);
    return;
  }
  index_.emplace(key, entries_.size());
  entries_.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::get(size_t position, std::string_view name) const {
  for (const auto& [key, value] : keyword) {
    if (key == name) return &value;
  }
  return position < positional.size() ? &positional[position] : nullptr;
}

std::string_view to_string(ValueKind kind) {
  switch (kind) {
    case ValueKind::kUndefined:
      return "undefined";
    case ValueKind::kNone:
      return "none";
    case ValueKind::kBool:
      return "bool";
    case ValueKind::kInt:
      return "int";
    case ValueKind::kFloat:
      return "float";
    case ValueKind::kString:
      return "string";
    case ValueKind::kList:
      return "list";
    case ValueKind::kDict:
      return "dict";
    case ValueKind::kNamespace:
      return "namespace";
    case ValueKind::kCallable:
      return "callable";
  }
  return "?";
}

Value Value::undefined(std::string name) {
  Value value;
  value.undefined_name_ = std::move(name);
  return value;
}

Value Value::none() {
  Value value;
  value.kind_ = ValueKind::kNone;
  return value;
}

Value::Value(bool b) : kind_(ValueKind::kBool), bool_(b), int_(b ? 1 : 0) {}
Value::Value(int64_t i) : kind_(ValueKind::kInt), int_(i) {}
Value::Value(double d) : kind_(ValueKind::kFloat), float_(d) {}
Value::Value(std::string s)
    : kind_(ValueKind::kString), string_(std::make_shared<const std::string>(std::move(s))) {}
Value::Value(ValueList list)
    : kind_(ValueKind::kList), list_(std::make_shared<ValueList>(std::move(list))) {}
Value::Value(ValueDict dict)
    : kind_(ValueKind::kDict), dict_(std::make_shared<ValueDict>(std::move(dict))) {}

Value Value::make_namespace(ValueDict attributes) {
  Value value(std::move(attributes));
  value.kind_ = ValueKind::kNamespace;
  return value;
}

Value Value::callable(std::string name, Callable::Function function) {
  Value value;
  value.kind_ = ValueKind::kCallable;
  value.callable_ =
      std::make_shared<const Callable>(Callable{std::move(name), std::move(function)});
  return value;
}

template <typename Json>
Value value_from_json(const Json& json) {
  switch (json.type()) {
    case Json::value_t::null:
      return Value::none();
    case Json::value_t::boolean:
      return Value(json.template get<bool>());
    case Json::value_t::number_integer:
      return Value(json.template get<int64_t>());
    case Json::value_t::number_unsigned: {
      auto u = json.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Value(static_cast<int64_t>(u));
      }
      return Value(static_cast<double>(u));
    }
    case Json::value_t::number_float:
      return Value(json.template get<double>());
    case Json::value_t::string:
      return Value(json.template get<std::string>());
    case Json::value_t::array: {
      ValueList list;
      list.reserve(json.size());
      for (const auto& item : json) list.push_back(value_from_json(item));
      return Value(std::move(list));
    }
    case Json::value_t::object: {
      ValueDict dict;
      for (const auto& [key, item] : json.items()) dict.set(key, value_from_json(item));
      return Value(std::move(dict));
    }
    default:  // binary, discarded: nothing a chat request carries
      return Value::none();
  }
}

Value Value::from_json(const nlohmann::json& json) {
  return value_from_json(json);
}
Value Value::from_json(const nlohmann::ordered_json& json) {
  return value_from_json(json);
}

bool Value::is_iterable() const {
  return is_string() || is_list() || is_dict() || is_undefined();
}

double Value::as_double() const {
  return is_float() ? float_ : static_cast<double>(int_);
}

bool Value::truthy() const {
  switch (kind_) {
    case ValueKind::kUndefined:
    case ValueKind::kNone:
      return false;
    case ValueKind::kBool:
      return bool_;
    case ValueKind::kInt:
      return int_ != 0;
    case ValueKind::kFloat:
      return float_ != 0.0;
    case ValueKind::kString:
      return !string_->empty();
    case ValueKind::kList:
      return !list_->empty();
    case ValueKind::kDict:
      return !dict_->empty();
    case ValueKind::kNamespace:
    case ValueKind::kCallable:
      return true;
  }
  return false;
}

std::string format_python_float(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[64];
  auto [end, ec] =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string_view sci(buffer, static_cast<size_t>(end - buffer));  // "-1.2345e+02"
  bool negative = !sci.empty() && sci[0] == '-';
  if (negative) sci.remove_prefix(1);
  size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos)) {
    if (c != '.') digits.push_back(c);
  }
  int exponent = std::atoi(std::string(sci.substr(e_pos + 1)).c_str());
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent >= 0) {
      auto num_int_digits = static_cast<size_t>(exponent) + 1;
      if (digits.size() <= num_int_digits) {
        out += digits + std::string(num_int_digits - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, num_int_digits) + "." + digits.substr(num_int_digits);
      }
    } else {
      out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp_text[16];
  std::snprintf(exp_text, sizeof(exp_text), "e%c%02d", exponent < 0 ? '-' : '+',
                std::abs(exponent));
  return out + exp_text;
}

namespace {

const std::string kComma = ",";
const std::string kSpacedComma = ", ";

std::string repr_string(const std::string& s) {
  char quote = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == static_cast<unsigned char>(quote)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

void append_json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  if (ensure_ascii && !is_ascii(s)) {
    for (char32_t code : decode_utf8(s)) {
      if (code < 0x80) {
        std::string one(1, static_cast<char>(code));
        std::string escaped;
        append_json_string(escaped, one, false);
        out += escaped.substr(1, escaped.size() - 2);
        continue;
      }
      auto append_unit = [&](unsigned unit) {
        char hex[16];
        std::snprintf(hex, sizeof(hex), "\\u%04x", unit & 0xFFFF);
        out += hex;
      };
      if (code >= 0x10000) {
        char32_t v = code - 0x10000;
        append_unit(0xD800 + (v >> 10));
        append_unit(0xDC00 + (v & 0x3FF));
      } else {
        append_unit(code);
      }
    }
    out += '"';
    return;
  }
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char hex[8];
          std::snprintf(hex, sizeof(hex), "\\u%04x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

Status append_json(std::string& out, const Value& value, const JsonDumpOptions& options,
                   int depth) {
  const int indent = options.indent;
  constexpr int kMaxDepth = 512;  // Python's json.dumps stops at the recursion limit too
  if (depth > kMaxDepth)
    return error(ErrorCode::kInvalidArgument, "tojson: value nested too deeply");
  auto newline = [&](int level) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(level), ' ');
  };
  const std::string& item_separator =
      options.item_separator ? *options.item_separator : (indent < 0 ? kSpacedComma : kComma);
  switch (value.kind()) {
    case ValueKind::kNone:
      out += "null";
      return Status::ok();
    case ValueKind::kBool:
      out += value.as_bool() ? "true" : "false";
      return Status::ok();
    case ValueKind::kInt:
      out += std::to_string(value.as_int());
      return Status::ok();
    case ValueKind::kFloat: {
      double d = value.as_double();
      if (std::isnan(d)) {
        out += "NaN";
      } else if (std::isinf(d)) {
        out += d > 0 ? "Infinity" : "-Infinity";
      } else {
        out += format_python_float(d);
      }
      return Status::ok();
    }
    case ValueKind::kString:
      append_json_string(out, value.as_string(), options.ensure_ascii);
      return Status::ok();
    case ValueKind::kList: {
      const ValueList& list = value.as_list();
      if (list.empty()) {
        out += "[]";
        return Status::ok();
      }
      out += '[';
      for (size_t i = 0; i < list.size(); ++i) {
        if (i > 0) out += item_separator;
        newline(depth + 1);
        EEP_RETURN_IF_ERROR(append_json(out, list[i], options, depth + 1));
      }
      newline(depth);
      out += ']';
      return Status::ok();
    }
    case ValueKind::kDict: {
      const auto& entries = value.as_dict().entries();
      if (entries.empty()) {
        out += "{}";
        return Status::ok();
      }
      std::vector<const ValueDict::Entry*> order;
      for (const auto& entry : entries) order.push_back(&entry);
      if (options.sort_keys) {
        std::stable_sort(order.begin(), order.end(),
                         [](const auto* a, const auto* b) { return a->first < b->first; });
      }
      out += '{';
      for (size_t i = 0; i < order.size(); ++i) {
        if (i > 0) out += item_separator;
        newline(depth + 1);
        append_json_string(out, order[i]->first, options.ensure_ascii);
        out += options.key_separator;
        EEP_RETURN_IF_ERROR(append_json(out, order[i]->second, options, depth + 1));
      }
      newline(depth);
      out += '}';
      return Status::ok();
    }
    case ValueKind::kUndefined:
    case ValueKind::kNamespace:
    case ValueKind::kCallable:
      break;
  }
  return error(ErrorCode::kInvalidArgument,
               "tojson: " + value.type_name() + " is not JSON serializable");
}

}  // namespace

std::string Value::str() const {
  switch (kind_) {
    case ValueKind::kUndefined:
      return "";
    case ValueKind::kString:
      return *string_;
    default:
      return repr();
  }
}

std::string Value::repr() const {
  switch (kind_) {
    case ValueKind::kUndefined:
      return "";
    case ValueKind::kNone:
      return "None";
    case ValueKind::kBool:
      return bool_ ? "True" : "False";
    case ValueKind::kInt:
      return std::to_string(int_);
    case ValueKind::kFloat:
      return format_python_float(float_);
    case ValueKind::kString:
      return repr_string(*string_);
    case ValueKind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < list_->size(); ++i) {
        if (i > 0) out += ", ";
        out += (*list_)[i].repr();
      }
      return out + "]";
    }
    case ValueKind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, item] : dict_->entries()) {
        if (!first) out += ", ";
        first = false;
        out += repr_string(key) + ": " + item.repr();
      }
      return out + "}";
    }
    case ValueKind::kNamespace:
      return "<Namespace>";
    case ValueKind::kCallable:
      return "<function " + callable_->name + ">";
  }
  return "";
}

bool Value::equals(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (is_float() || other.is_float()) return as_double() == other.as_double();
    return int_ == other.int_;
  }
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case ValueKind::kUndefined:
    case ValueKind::kNone:
      return true;
    case ValueKind::kString:
      return *string_ == *other.string_;
    case ValueKind::kList: {
      if (list_->size() != other.list_->size()) return false;
      for (size_t i = 0; i < list_->size(); ++i) {
        if (!(*list_)[i].equals((*other.list_)[i])) return false;
      }
      return true;
    }
    case ValueKind::kDict: {
      if (dict_->size() != other.dict_->size()) return false;
      for (const auto& [key, item] : dict_->entries()) {
        const Value* theirs = other.dict_->find(key);
        if (!theirs || !item.equals(*theirs)) return false;
      }
      return true;
    }
    case ValueKind::kNamespace:
      return dict_ == other.dict_;
    case ValueKind::kCallable:
      return callable_ == other.callable_;
    default:
      return false;
  }
}

std::string Value::type_name() const {
  switch (kind_) {
    case ValueKind::kUndefined:
      return undefined_name_.empty() ? "an undefined value" : "undefined '" + undefined_name_ + "'";
    case ValueKind::kNone:
      return "none";
    case ValueKind::kInt:
      return "an int";
    case ValueKind::kCallable:
      return "a function";
    default:
      return "a " + std::string(to_string(kind_));
  }
}

Result<std::string> Value::to_json_text(const JsonDumpOptions& options) const {
  std::string out;
  EEP_RETURN_IF_ERROR(append_json(out, *this, options, 0));
  return out;
}

Result<std::string> Value::to_json_text() const {
  return to_json_text(JsonDumpOptions{});
}

Result<nlohmann::json> Value::to_json() const {
  EEP_ASSIGN_OR_RETURN(std::string text, to_json_text());
  auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded()) {  // NaN or Infinity: JSON has no such numbers
    return error(ErrorCode::kInvalidArgument, "the value holds a NaN or an infinite float");
  }
  return json;
}

}  // namespace eep::coordinator::jinja
