#include "eep/coordinator/text/tokenizer_file.h"

namespace eep::coordinator::text {
namespace {

using nlohmann::json;

// Splits a merge written "a b"; false unless there is exactly one space with text on both sides.
bool split_merge(const std::string& line, std::pair<std::string, std::string>& merge) {
  size_t space = line.find(' ');
  if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
      line.find(' ', space + 1) != std::string::npos) {
    return false;
  }
  merge = {line.substr(0, space), line.substr(space + 1)};
  return true;
}

// Builds the tree like nlohmann's own DOM parser, except inside model.vocab and model.merges.
class TokenizerSax : public json::json_sax_t {
 public:
  TokenizerSax(TokenizerFile& file, const std::string& where) : file_(file), where_(where) {}

  const std::string& failure() const { return failure_; }

  bool null() override { return scalar(nullptr); }
  bool boolean(bool value) override { return scalar(value); }
  bool number_integer(number_integer_t value) override {
    if (mode_ == Mode::kVocab) return vocab_id(value);
    return scalar(value);
  }
  bool number_unsigned(number_unsigned_t value) override {
    if (mode_ == Mode::kVocab) {
      return vocab_id(value > INT64_MAX ? -1 : static_cast<int64_t>(value));
    }
    return scalar(value);
  }
  bool number_float(number_float_t value, const string_t&) override { return scalar(value); }
  bool binary(binary_t&) override { return fail("binary values are not JSON"); }

  bool string(string_t& value) override {
    if (mode_ == Mode::kMerges) {
      std::pair<std::string, std::string> merge;
      if (!split_merge(value, merge)) {
        return fail(merge_label() + " \"" + value + "\" is not two tokens separated by one space");
      }
      file_.merges.push_back(std::move(merge));
      return true;
    }
    if (mode_ == Mode::kMergePair) {
      if (pair_parts_.size() == 2) return fail(merge_label() + " has more than two tokens");
      pair_parts_.push_back(std::move(value));
      return true;
    }
    return scalar(std::move(value));
  }

  bool key(string_t& value) override {
    key_ = std::move(value);
    return true;
  }

  bool start_object(std::size_t) override {
    if (mode_ != Mode::kTree) return fail(special_label() + " holds an object where it should not");
    if (at_model_field("vocab")) {
      mode_ = Mode::kVocab;
      file_.has_vocab = true;
      return true;
    }
    return open(json::object());
  }
  bool end_object() override {
    if (mode_ == Mode::kVocab) {
      mode_ = Mode::kTree;
      return true;
    }
    stack_.pop_back();
    return true;
  }

  bool start_array(std::size_t) override {
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kMergePair;
      pair_parts_.clear();
      return true;
    }
    if (mode_ != Mode::kTree) return fail(special_label() + " holds an array where it should not");
    if (at_model_field("merges")) {
      mode_ = Mode::kMerges;
      file_.has_merges = true;
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::kMergePair) {
      if (pair_parts_.size() != 2) return fail(merge_label() + " is not a pair of tokens");
      file_.merges.emplace_back(std::move(pair_parts_[0]), std::move(pair_parts_[1]));
      mode_ = Mode::kMerges;
      return true;
    }
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kTree;
      return true;
    }
    stack_.pop_back();
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    if (failure_.empty()) failure_ = where_ + ": not valid JSON: " + e.what();
    return false;
  }

 private:
  enum class Mode { kTree, kVocab, kMerges, kMergePair };

  bool fail(const std::string& what) {
    if (failure_.empty()) failure_ = where_ + ": " + what;
    return false;
  }
  std::string merge_label() const {
    return "model.merges[" + std::to_string(file_.merges.size()) + "]";
  }
  std::string special_label() const {
    return mode_ == Mode::kVocab ? "model.vocab[\"" + key_ + "\"]" : merge_label();
  }

  // Whether the value about to open is `field` of the top-level "model" object.
  bool at_model_field(const char* field) const {
    return stack_.size() == 2 && in_model_ && key_ == field;
  }

  bool vocab_id(int64_t id) {
    file_.vocab.emplace_back(std::move(key_), id);
    return true;
  }

  json* place(json value) {
    if (stack_.empty()) {
      file_.root = std::move(value);
      return &file_.root;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(value));
      return &parent.back();
    }
    json& slot = parent[key_];
    slot = std::move(value);
    return &slot;
  }

  bool open(json container) {
    bool is_model = stack_.size() == 1 && key_ == "model" && container.is_object();
    stack_.push_back(place(std::move(container)));
    if (stack_.size() == 2) in_model_ = is_model;
    return true;
  }

  bool scalar(json value) {
    if (mode_ == Mode::kVocab) {
      return fail("model.vocab[\"" + key_ + "\"] is not an integer id");
    }
    if (mode_ != Mode::kTree) return fail(merge_label() + " is neither \"a b\" nor [\"a\", \"b\"]");
    place(std::move(value));
    return true;
  }

  TokenizerFile& file_;
  const std::string& where_;
  std::string failure_;
  Mode mode_ = Mode::kTree;
  std::vector<json*> stack_;  // the open containers of the tree, innermost last
  std::string key_;           // the last key read
  bool in_model_ = false;     // stack_[1] is the top-level "model" object
  std::vector<std::string> pair_parts_;
};

}  // namespace

Result<TokenizerFile> parse_tokenizer_file(std::string_view text, const std::string& where) {
  TokenizerFile file;
  TokenizerSax sax(file, where);
  bool parsed = false;
  try {
    parsed = json::sax_parse(text, &sax);
  } catch (const json::exception& e) {
    return error(ErrorCode::kInvalidArgument, where + ": not valid JSON: " + e.what());
  }
  if (!parsed) {
    return error(ErrorCode::kInvalidArgument,
                 sax.failure().empty() ? where + ": not valid JSON" : sax.failure());
  }
  return file;
}

Result<TokenizerFile> tokenizer_file_from_json(json root, const std::string& where) {
  TokenizerFile file;
  if (root.is_object() && root.contains("model") && root["model"].is_object()) {
    json& model = root["model"];
    if (model.contains("vocab")) {
      file.has_vocab = true;
      if (!model["vocab"].is_object()) {
        return error(ErrorCode::kInvalidArgument, where + ": model.vocab is not an object");
      }
      for (auto& [token, id] : model["vocab"].items()) {
        if (!id.is_number_integer()) {
          return error(ErrorCode::kInvalidArgument,
                       where + ": model.vocab[\"" + token + "\"] is not an integer id");
        }
        file.vocab.emplace_back(token, id.get<int64_t>());
      }
      model.erase("vocab");
    }
    if (model.contains("merges")) {
      file.has_merges = true;
      if (!model["merges"].is_array()) {
        return error(ErrorCode::kInvalidArgument, where + ": model.merges is not an array");
      }
      for (const json& merge : model["merges"]) {
        std::string label = "model.merges[" + std::to_string(file.merges.size()) + "]";
        std::pair<std::string, std::string> pair;
        if (merge.is_string()) {
          if (!split_merge(merge.get<std::string>(), pair)) {
            return error(ErrorCode::kInvalidArgument,
                         where + ": " + label + " is not two tokens separated by one space");
          }
        } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
                   merge[1].is_string()) {
          pair = {merge[0].get<std::string>(), merge[1].get<std::string>()};
        } else {
          return error(ErrorCode::kInvalidArgument,
                       where + ": " + label + " is neither \"a b\" nor [\"a\", \"b\"]");
        }
        file.merges.push_back(std::move(pair));
      }
      model.erase("merges");
    }
  }
  file.root = std::move(root);
  return file;
}

}  // namespace eep::coordinator::text
