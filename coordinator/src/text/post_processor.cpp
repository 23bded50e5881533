#include "eep/coordinator/text/post_processor.h"

namespace eep::coordinator::text {
namespace {

// The single template of a TemplateProcessing as special-token ids and kSequence marks.
Status parse_template(const nlohmann::json& processor, const std::string& where, int32_t sequence,
                      std::vector<int32_t>& single_template) {
  auto refuse = [&](const std::string& what) {
    return error(ErrorCode::kInvalidArgument,
                 where + ": post_processor TemplateProcessing " + what);
  };
  if (!processor.contains("single") || !processor["single"].is_array()) {
    return refuse("has no \"single\" template");
  }
  const nlohmann::json* special_tokens =
      processor.contains("special_tokens") ? &processor["special_tokens"] : nullptr;
  std::vector<int32_t> result;
  bool has_sequence = false;
  for (const auto& piece : processor["single"]) {
    if (piece.contains("Sequence")) {
      if (has_sequence) return refuse("names the sequence twice in \"single\"");
      has_sequence = true;
      result.push_back(sequence);
    } else if (piece.contains("SpecialToken") && piece["SpecialToken"].contains("id") &&
               piece["SpecialToken"]["id"].is_string()) {
      std::string name = piece["SpecialToken"]["id"];
      if (!special_tokens || !special_tokens->contains(name) ||
          !(*special_tokens)[name].contains("ids") || !(*special_tokens)[name]["ids"].is_array()) {
        return refuse("names the special token \"" + name + "\", which special_tokens lacks");
      }
      for (const auto& id : (*special_tokens)[name]["ids"]) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= INT32_MAX) {
          return refuse("special_tokens[\"" + name + "\"] has an id that is not in [0, 2^31)");
        }
        result.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
    } else {
      return refuse("has a \"single\" item that is neither Sequence nor SpecialToken");
    }
  }
  if (!has_sequence) return refuse("has no Sequence in \"single\"");
  if (!single_template.empty()) return refuse("is given twice (in a Sequence)");
  single_template = std::move(result);
  return Status::ok();
}

Status parse_processor(const nlohmann::json& processor, const std::string& where, int32_t sequence,
                       std::vector<int32_t>& single_template) {
  if (processor.is_null()) return Status::ok();
  std::string type =
      processor.is_object() && processor.contains("type") && processor["type"].is_string()
          ? processor["type"].get<std::string>()
          : "";
  if (type == "ByteLevel") return Status::ok();
  if (type == "TemplateProcessing") {
    return parse_template(processor, where, sequence, single_template);
  }
  if (type == "Sequence" && processor.contains("processors") &&
      processor["processors"].is_array()) {
    for (const auto& inner : processor["processors"]) {
      EEP_RETURN_IF_ERROR(parse_processor(inner, where, sequence, single_template));
    }
    return Status::ok();
  }
  return error(ErrorCode::kInvalidArgument,
               where + ": the post_processor type \"" + type +
                   "\" is not supported (only ByteLevel, TemplateProcessing and a Sequence)");
}

}  // namespace

Result<PostProcessor> PostProcessor::from_json(const nlohmann::json& post_processor,
                                               const std::string& where) {
  PostProcessor result;
  EEP_RETURN_IF_ERROR(parse_processor(post_processor, where, kSequence, result.single_template_));
  return result;
}

std::vector<int32_t> PostProcessor::apply(std::vector<int32_t> ids) const {
  if (single_template_.empty()) return ids;
  std::vector<int32_t> result;
  result.reserve(ids.size() + single_template_.size());
  for (int32_t id : single_template_) {
    if (id == kSequence) {
      result.insert(result.end(), ids.begin(), ids.end());
    } else {
      result.push_back(id);
    }
  }
  return result;
}

}  // namespace eep::coordinator::text
