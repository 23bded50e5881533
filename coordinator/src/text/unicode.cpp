#include "eep/coordinator/text/unicode.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/uchar.h>

namespace eep::coordinator::text {
namespace {

Status append_forms(const nlohmann::json& normalizer, const std::string& where,
                    std::vector<NormalForm>& forms) {
  if (!normalizer.is_object() || !normalizer.contains("type") || !normalizer["type"].is_string()) {
    return error(ErrorCode::kInvalidArgument, where + ": a normalizer without a string \"type\"");
  }
  std::string type = normalizer["type"];
  if (type == "NFC") {
    forms.push_back(NormalForm::kNfc);
  } else if (type == "NFD") {
    forms.push_back(NormalForm::kNfd);
  } else if (type == "NFKC") {
    forms.push_back(NormalForm::kNfkc);
  } else if (type == "NFKD") {
    forms.push_back(NormalForm::kNfkd);
  } else if (type == "Sequence") {
    if (!normalizer.contains("normalizers") || !normalizer["normalizers"].is_array()) {
      return error(ErrorCode::kInvalidArgument, where + ": a Sequence without \"normalizers\"");
    }
    for (const auto& inner : normalizer["normalizers"]) {
      EEP_RETURN_IF_ERROR(append_forms(inner, where, forms));
    }
  } else {
    return error(ErrorCode::kInvalidArgument,
                 where + ": the normalizer type \"" + type +
                     "\" is not supported (only NFC, NFD, NFKC, NFKD and a Sequence of them)");
  }
  return Status::ok();
}

const icu::Normalizer2* icu_instance(NormalForm form, UErrorCode& status) {
  switch (form) {
    case NormalForm::kNfc:
      return icu::Normalizer2::getNFCInstance(status);
    case NormalForm::kNfd:
      return icu::Normalizer2::getNFDInstance(status);
    case NormalForm::kNfkc:
      return icu::Normalizer2::getNFKCInstance(status);
    case NormalForm::kNfkd:
      return icu::Normalizer2::getNFKDInstance(status);
  }
  return nullptr;
}

}  // namespace

Result<UnicodeNormalizer> UnicodeNormalizer::from_json(const nlohmann::json& normalizer,
                                                       const std::string& where) {
  UnicodeNormalizer result;
  if (normalizer.is_null()) return result;
  EEP_RETURN_IF_ERROR(append_forms(normalizer, where, result.forms_));
  for (NormalForm form : result.forms_) {  // ICU loads its data here, once, not on a request
    UErrorCode status = U_ZERO_ERROR;
    if (icu_instance(form, status) == nullptr || U_FAILURE(status)) {
      return error(ErrorCode::kInternal,
                   where + ": ICU has no normalizer: " + std::string(u_errorName(status)));
    }
  }
  return result;
}

Result<std::string> UnicodeNormalizer::apply(std::string_view text) const {
  std::string current(text);
  for (NormalForm form : forms_) {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* normalizer = icu_instance(form, status);
    icu::StringPiece input(current.data(), static_cast<int32_t>(current.size()));
    if (U_SUCCESS(status) && normalizer->isNormalizedUTF8(input, status) && U_SUCCESS(status)) {
      continue;  // most text already is: no copy
    }
    std::string normalized;
    normalized.reserve(current.size() + current.size() / 8);
    icu::StringByteSink<std::string> sink(&normalized);
    status = U_ZERO_ERROR;
    normalizer->normalizeUTF8(0, input, sink, nullptr, status);
    if (U_FAILURE(status)) {
      return error(ErrorCode::kInternal,
                   "Unicode normalization failed: " + std::string(u_errorName(status)));
    }
    current = std::move(normalized);
  }
  return current;
}

bool is_word_char(char32_t c) {
  auto code_point = static_cast<UChar32>(c);
  if (u_hasBinaryProperty(code_point, UCHAR_ALPHABETIC) ||
      u_hasBinaryProperty(code_point, UCHAR_JOIN_CONTROL)) {
    return true;
  }
  int8_t type = u_charType(code_point);
  return type == U_NON_SPACING_MARK || type == U_COMBINING_SPACING_MARK ||
         type == U_ENCLOSING_MARK || type == U_DECIMAL_DIGIT_NUMBER ||
         type == U_CONNECTOR_PUNCTUATION;
}

bool is_white_space(char32_t c) {
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE);
}

}  // namespace eep::coordinator::text
