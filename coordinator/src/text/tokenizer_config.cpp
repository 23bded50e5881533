#include "eep/coordinator/text/tokenizer_config.h"

#include <climits>

namespace eep::coordinator::text {
namespace {

Status wrong_type(const std::string& where, const std::string& field, const std::string& wanted) {
  return error(ErrorCode::kInvalidArgument, where + ": \"" + field + "\" is not " + wanted);
}

Status read_token(const nlohmann::json& config, const std::string& where, const char* field,
                  std::optional<std::string>& token) {
  if (!config.contains(field) || config[field].is_null()) return Status::ok();
  const nlohmann::json& value = config[field];
  if (value.is_string()) {
    token = value.get<std::string>();
  } else if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    token = value["content"].get<std::string>();
  } else {
    return wrong_type(where, field, "a string or an object with a string \"content\"");
  }
  return Status::ok();
}

Status read_bool(const nlohmann::json& config, const std::string& where, const char* field,
                 bool& flag) {
  if (!config.contains(field) || config[field].is_null()) return Status::ok();
  if (!config[field].is_boolean()) return wrong_type(where, field, "true or false");
  flag = config[field].get<bool>();
  return Status::ok();
}

Status read_number(const nlohmann::json& config, const std::string& where, const char* field,
                   std::optional<double>& number) {
  if (!config.contains(field) || config[field].is_null()) return Status::ok();
  if (!config[field].is_number()) return wrong_type(where, field, "a number");
  number = config[field].get<double>();
  return Status::ok();
}

Result<int32_t> token_id(const nlohmann::json& value, const std::string& where,
                         const std::string& field) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() >= INT32_MAX) {
    return wrong_type(where, field, "a token id in [0, 2^31)");
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

Status read_id(const nlohmann::json& config, const std::string& where, const char* field,
               std::optional<int32_t>& id) {
  if (!config.contains(field) || config[field].is_null()) return Status::ok();
  EEP_ASSIGN_OR_RETURN(id, token_id(config[field], where, field));
  return Status::ok();
}

}  // namespace

Result<TokenizerConfig> parse_tokenizer_config(const nlohmann::json& config,
                                               const std::string& where) {
  TokenizerConfig result;
  if (!config.is_object()) {
    return error(ErrorCode::kInvalidArgument, where + ": not a JSON object");
  }
  EEP_RETURN_IF_ERROR(read_token(config, where, "bos_token", result.bos_token));
  EEP_RETURN_IF_ERROR(read_token(config, where, "eos_token", result.eos_token));
  EEP_RETURN_IF_ERROR(read_token(config, where, "pad_token", result.pad_token));
  EEP_RETURN_IF_ERROR(read_token(config, where, "unk_token", result.unk_token));
  EEP_RETURN_IF_ERROR(read_bool(config, where, "add_bos_token", result.add_bos_token));
  EEP_RETURN_IF_ERROR(read_bool(config, where, "add_eos_token", result.add_eos_token));
  EEP_RETURN_IF_ERROR(read_bool(config, where, "clean_up_tokenization_spaces",
                                result.clean_up_tokenization_spaces));
  EEP_RETURN_IF_ERROR(read_number(config, where, "model_max_length", result.model_max_length));
  if (config.contains("chat_template") && !config["chat_template"].is_null()) {
    const nlohmann::json& templates = config["chat_template"];
    if (templates.is_string()) {
      result.chat_template = templates.get<std::string>();
    } else if (templates.is_array()) {
      for (const auto& entry : templates) {
        if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
            !entry.contains("template") || !entry["template"].is_string()) {
          return wrong_type(where, "chat_template",
                            "a string or a list of {\"name\": ..., \"template\": ...}");
        }
        result.named_chat_templates[entry["name"]] = entry["template"];
      }
      auto found = result.named_chat_templates.find("default");
      if (found != result.named_chat_templates.end()) result.chat_template = found->second;
    } else {
      return wrong_type(where, "chat_template",
                        "a string or a list of {\"name\": ..., \"template\": ...}");
    }
  }
  return result;
}

Result<GenerationConfig> parse_generation_config(const nlohmann::json& config,
                                                 const std::string& where) {
  GenerationConfig result;
  if (!config.is_object()) {
    return error(ErrorCode::kInvalidArgument, where + ": not a JSON object");
  }
  if (config.contains("eos_token_id") && !config["eos_token_id"].is_null()) {
    const nlohmann::json& eos = config["eos_token_id"];
    if (eos.is_array()) {
      for (const auto& id : eos) {
        EEP_ASSIGN_OR_RETURN(int32_t value, token_id(id, where, "eos_token_id"));
        result.eos_token_ids.push_back(value);
      }
    } else {
      EEP_ASSIGN_OR_RETURN(int32_t value, token_id(eos, where, "eos_token_id"));
      result.eos_token_ids.push_back(value);
    }
  }
  EEP_RETURN_IF_ERROR(read_id(config, where, "bos_token_id", result.bos_token_id));
  EEP_RETURN_IF_ERROR(read_id(config, where, "pad_token_id", result.pad_token_id));
  EEP_RETURN_IF_ERROR(read_number(config, where, "temperature", result.temperature));
  EEP_RETURN_IF_ERROR(read_number(config, where, "top_p", result.top_p));
  EEP_RETURN_IF_ERROR(read_number(config, where, "repetition_penalty", result.repetition_penalty));
  if (config.contains("top_k") && !config["top_k"].is_null()) {
    if (!config["top_k"].is_number_integer() || config["top_k"].get<int64_t>() < 0 ||
        config["top_k"].get<int64_t>() > INT32_MAX) {
      return wrong_type(where, "top_k", "a non-negative integer");
    }
    result.top_k = static_cast<int32_t>(config["top_k"].get<int64_t>());
  }
  return result;
}

}  // namespace eep::coordinator::text
