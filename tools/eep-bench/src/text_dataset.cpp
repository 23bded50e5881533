#include "eep/bench/text_dataset.h"

#include <random>

namespace eep::bench {

namespace {

// The stream of the ids that replace special tokens, apart from the prompts' own.
constexpr uint64_t kRedrawStream = 0x74657874;

}  // namespace

Result<std::vector<BenchRequest>> make_random_text_dataset(
    const RandomDatasetOptions& options, const coordinator::text::HfTokenizer& tokenizer) {
  const int32_t vocab_size = tokenizer.vocab_size();
  int32_t num_ordinary = 0;
  for (int32_t id = 0; id < vocab_size && num_ordinary == 0; ++id) {
    if (!tokenizer.is_special(id) && tokenizer.token_of(id)) ++num_ordinary;
  }
  if (num_ordinary == 0) {
    return error(ErrorCode::kInvalidArgument, "the tokenizer has no ordinary token to draw");
  }
  RandomDatasetOptions ids = options;
  ids.vocab_size = vocab_size;
  EEP_ASSIGN_OR_RETURN(std::vector<BenchRequest> requests, make_random_dataset(ids));
  std::mt19937_64 rng(options.seed ^ kRedrawStream);
  std::uniform_int_distribution<int32_t> id_dist(0, vocab_size - 1);
  for (BenchRequest& request : requests) {
    const size_t input_len = request.prompt_ids.size();
    // Special tokens (and holes in the vocabulary) would not be text: drawn again.
    for (int32_t& id : request.prompt_ids) {
      while (tokenizer.is_special(id) || !tokenizer.token_of(id)) id = id_dist(rng);
    }
    const std::string drawn = tokenizer.decode(request.prompt_ids);
    EEP_ASSIGN_OR_RETURN(std::vector<int32_t> encoded,
                         tokenizer.encode(drawn, /*add_special_tokens=*/false));
    if (encoded.size() > input_len) encoded.resize(input_len);
    // The ids of the text sent: a cut through a character decodes to U+FFFD, whose ids may be
    // more than those it replaced; then the cut moves back until the text fits.
    while (true) {
      request.prompt_text = tokenizer.decode(encoded);
      EEP_ASSIGN_OR_RETURN(request.prompt_ids,
                           tokenizer.encode(request.prompt_text, /*add_special_tokens=*/false));
      if (request.prompt_ids.size() <= input_len || encoded.size() <= 1) break;
      encoded.pop_back();
    }
  }
  return requests;
}

}  // namespace eep::bench
