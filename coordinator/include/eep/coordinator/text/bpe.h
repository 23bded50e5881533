// tokenizer.json's "model" of type BPE over the byte alphabet (byte_level.h): the vocabulary, the
// merge ranks and the merge loop that turns one pre-tokenized piece into token ids. A piece comes
// in as raw bytes (each byte is its alphabet character), and the lowest-ranked adjacent pair is
// merged until no pair of the piece has a merge, leftmost first among equal ranks, as Hugging
// Face's BPE does. Pieces seen before come from a bounded cache. Immutable after load but for
// the cache, which is locked: any thread may call encode().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"
#include "eep/coordinator/text/tokenizer_file.h"

namespace eep::coordinator::text {

struct BpeMerge {
  int32_t rank = 0;
  int32_t merged_id = 0;
};

// Merge ranks keyed by the pair of ids, open addressing: the merge loop's one hot lookup.
class BpeMergeTable {
 public:
  void reserve(size_t num_merges);
  // false when the pair was there already: the later merge replaces it, as in Hugging Face's map.
  bool insert(int32_t left_id, int32_t right_id, BpeMerge merge);
  const BpeMerge* find(int32_t left_id, int32_t right_id) const;
  size_t size() const { return num_merges_; }

 private:
  struct Slot {
    uint64_t key = kEmpty;
    BpeMerge merge;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  size_t slot_of(uint64_t key) const;
  std::vector<Slot> slots_;
  size_t num_merges_ = 0;
  int shift_ = 64;
};

// Token -> id over the vocabulary's own strings (BpeModel::tokens_), open addressing: a map of
// 151,643 std::strings cost most of the load time.
class TokenIndex {
 public:
  void reserve(size_t num_tokens);
  // false when `tokens[id]` is there already.
  bool insert(const std::vector<std::string>& tokens, int32_t id);
  std::optional<int32_t> find(const std::vector<std::string>& tokens, std::string_view token) const;

 private:
  static uint64_t hash(std::string_view token);
  std::vector<int32_t> slots_;  // ids, -1 for an empty slot
  size_t num_tokens_ = 0;
};

class BpeModel {
 public:
  // From tokenizer.json's "model"; `where` names the file in errors. kInvalidArgument for a
  // missing vocab or merges, an id out of range or given twice, a merge naming a token not in the
  // vocabulary, or what a byte-level BPE does not use (dropout, byte_fallback, a subword prefix
  // or suffix).
  static Result<BpeModel> from_file(const TokenizerFile& file, const std::string& where);

  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;
  ~BpeModel();

  // Appends the ids of one piece (raw bytes, not empty).
  void encode(std::string_view piece, std::vector<int32_t>& ids) const;

  // One more than the largest id of the vocabulary.
  int32_t vocab_size() const { return static_cast<int32_t>(tokens_.size()); }
  std::optional<int32_t> id_of(std::string_view token) const;
  // The vocabulary's spelling of `id` (in the byte alphabet), nullptr for an id it lacks.
  const std::string* token_of(int32_t id) const;
  size_t num_merges() const { return merges_.size(); }

 private:
  struct Cache;
  BpeModel();
  void merge_short(std::vector<int32_t>& symbol_ids) const;
  void merge_long(std::vector<int32_t>& symbol_ids) const;

  std::vector<std::string> tokens_;  // by id; an empty string for an id not in the vocabulary
  std::vector<bool> has_token_;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  TokenIndex token_ids_;
  // ignore_merges: a piece that is a whole token is that token; keyed by the raw bytes.
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> ids_by_bytes_;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256];  // the token of each single byte, -1 if the vocabulary lacks it
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  BpeMergeTable merges_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace eep::coordinator::text
