#include "eep/coordinator/text/bpe.h"

#include <array>
#include <climits>
#include <mutex>
#include <queue>

#include "eep/coordinator/text/byte_level.h"

namespace eep::coordinator::text {
namespace {

// Pieces this long or longer are merged without the cache (Hugging Face's bound too): they are
// rare, and would fill it.
constexpr size_t kMaxCachedPieceBytes = 256;
constexpr size_t kNumCacheShards = 16;
constexpr size_t kMaxCachedPiecesPerShard = 8192;
// Up to this many symbols the quadratic scan beats a heap.
constexpr size_t kMaxShortSymbols = 24;

uint64_t pair_key(int32_t left_id, int32_t right_id) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left_id)) << 32) |
         static_cast<uint32_t>(right_id);
}

}  // namespace

void BpeMergeTable::reserve(size_t num_merges) {
  size_t num_slots = 16;
  shift_ = 60;
  while (num_slots < 2 * num_merges) {
    num_slots *= 2;
    --shift_;
  }
  slots_.assign(num_slots, Slot{});
  num_merges_ = 0;
}

size_t BpeMergeTable::slot_of(uint64_t key) const {
  return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
}

bool BpeMergeTable::insert(int32_t left_id, int32_t right_id, BpeMerge merge) {
  if (2 * (num_merges_ + 1) > slots_.size()) {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(8, 2 * num_merges_ + 2));
    for (const Slot& slot : old) {
      if (slot.key != kEmpty) {
        insert(static_cast<int32_t>(slot.key >> 32), static_cast<int32_t>(slot.key & 0xFFFFFFFF),
               slot.merge);
      }
    }
  }
  uint64_t key = pair_key(left_id, right_id);
  size_t mask = slots_.size() - 1;
  for (size_t idx = slot_of(key);; idx = (idx + 1) & mask) {
    if (slots_[idx].key == key) {
      slots_[idx].merge = merge;
      return false;
    }
    if (slots_[idx].key == kEmpty) {
      slots_[idx] = {key, merge};
      ++num_merges_;
      return true;
    }
  }
}

const BpeMerge* BpeMergeTable::find(int32_t left_id, int32_t right_id) const {
  if (slots_.empty()) return nullptr;
  uint64_t key = pair_key(left_id, right_id);
  size_t mask = slots_.size() - 1;
  for (size_t idx = slot_of(key);; idx = (idx + 1) & mask) {
    if (slots_[idx].key == key) return &slots_[idx].merge;
    if (slots_[idx].key == kEmpty) return nullptr;
  }
}

void TokenIndex::reserve(size_t num_tokens) {
  size_t num_slots = 16;
  while (num_slots < 2 * num_tokens) num_slots *= 2;
  slots_.assign(num_slots, -1);
  num_tokens_ = 0;
}

uint64_t TokenIndex::hash(std::string_view token) {
  uint64_t value = 0xcbf29ce484222325ull;  // FNV-1a, then a final mix for the low bits
  for (char c : token) value = (value ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return value ^ (value >> 29);
}

bool TokenIndex::insert(const std::vector<std::string>& tokens, int32_t id) {
  if (2 * (num_tokens_ + 1) > slots_.size()) {
    std::vector<int32_t> old = std::move(slots_);
    reserve(std::max<size_t>(8, 2 * num_tokens_ + 2));
    for (int32_t old_id : old) {
      if (old_id >= 0) insert(tokens, old_id);
    }
  }
  size_t mask = slots_.size() - 1;
  for (size_t idx = hash(tokens[id]) & mask;; idx = (idx + 1) & mask) {
    if (slots_[idx] < 0) {
      slots_[idx] = id;
      ++num_tokens_;
      return true;
    }
    if (tokens[slots_[idx]] == tokens[id]) return false;
  }
}

std::optional<int32_t> TokenIndex::find(const std::vector<std::string>& tokens,
                                        std::string_view token) const {
  if (slots_.empty()) return std::nullopt;
  size_t mask = slots_.size() - 1;
  for (size_t idx = hash(token) & mask;; idx = (idx + 1) & mask) {
    if (slots_[idx] < 0) return std::nullopt;
    if (tokens[slots_[idx]] == token) return slots_[idx];
  }
}

// Ids of pieces seen before, sharded so that threads rarely wait for each other. A full shard
// takes no more pieces (what is cached stays right; only the speed of new pieces suffers).
struct BpeModel::Cache {
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> ids;
  };
  std::array<Shard, kNumCacheShards> shards;

  Shard& shard_of(std::string_view piece) {
    return shards[std::hash<std::string_view>{}(piece) % kNumCacheShards];
  }
};

BpeModel::BpeModel() : cache_(std::make_unique<Cache>()) {
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
}
BpeModel::BpeModel(BpeModel&&) noexcept = default;
BpeModel& BpeModel::operator=(BpeModel&&) noexcept = default;
BpeModel::~BpeModel() = default;

Result<BpeModel> BpeModel::from_file(const TokenizerFile& file, const std::string& where) {
  auto refuse = [&](const std::string& what) {
    return error(ErrorCode::kInvalidArgument, where + ": " + what);
  };
  if (!file.root.is_object() || !file.root.contains("model") || !file.root["model"].is_object()) {
    return refuse("no \"model\" object");
  }
  const nlohmann::json& model = file.root["model"];
  if (model.contains("type") && model["type"] != "BPE") {
    return refuse("the model type " + model["type"].dump() + " is not supported (only BPE)");
  }
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"] != 0.0) {
    return refuse("model.dropout is not supported (BPE dropout is for training)");
  }
  if (model.contains("byte_fallback") && model["byte_fallback"] == true) {
    return refuse("model.byte_fallback is not supported (a byte-level BPE has every byte)");
  }
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(field) && !model[field].is_null() && model[field] != "") {
      return refuse(std::string("model.") + field + " is not supported");
    }
  }
  if (!file.has_vocab) return refuse("model.vocab is missing");
  if (!file.has_merges) return refuse("model.merges is missing");

  BpeModel bpe;
  int64_t max_id = -1;
  for (const auto& [token, id] : file.vocab) {
    if (id < 0 || id >= INT32_MAX) {
      return refuse("model.vocab[\"" + token + "\"] is not an id in [0, 2^31)");
    }
    max_id = std::max(max_id, id);
  }
  bpe.tokens_.resize(static_cast<size_t>(max_id + 1));
  bpe.has_token_.resize(static_cast<size_t>(max_id + 1));
  bpe.token_ids_.reserve(file.vocab.size());
  for (const auto& [token, id64] : file.vocab) {
    auto id = static_cast<int32_t>(id64);
    if (bpe.has_token_[id]) {
      return refuse("model.vocab gives the id " + std::to_string(id) + " to two tokens");
    }
    bpe.tokens_[id] = token;
    bpe.has_token_[id] = true;
    if (!bpe.token_ids_.insert(bpe.tokens_, id)) {
      return refuse("model.vocab has the token \"" + token + "\" twice");
    }
  }
  for (int byte = 0; byte < 256; ++byte) {
    auto id = bpe.id_of(byte_level_encode(std::string(1, static_cast<char>(byte))));
    if (id) bpe.byte_ids_[byte] = *id;
  }

  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    if (!model["unk_token"].is_string()) return refuse("model.unk_token is not a string");
    auto unk = bpe.id_of(model["unk_token"].get<std::string>());
    if (!unk) return refuse("model.unk_token is not in model.vocab");
    bpe.unk_id_ = *unk;
    bpe.fuse_unk_ = model.contains("fuse_unk") && model["fuse_unk"] == true;
  }
  bpe.ignore_merges_ = model.contains("ignore_merges") && model["ignore_merges"] == true;
  if (bpe.ignore_merges_) {
    for (size_t id = 0; id < bpe.tokens_.size(); ++id) {
      if (!bpe.has_token_[id]) continue;
      if (auto bytes = byte_level_decode(bpe.tokens_[id])) {
        bpe.ids_by_bytes_.emplace(*bytes, static_cast<int32_t>(id));
      }
    }
  }

  bpe.merges_.reserve(file.merges.size());
  std::string merged;
  for (size_t rank = 0; rank < file.merges.size(); ++rank) {
    const auto& [left, right] = file.merges[rank];
    std::string label = "model.merges[" + std::to_string(rank) + "]";
    auto left_id = bpe.id_of(left);
    auto right_id = bpe.id_of(right);
    if (!left_id) return refuse(label + " names \"" + left + "\", which is not in model.vocab");
    if (!right_id) return refuse(label + " names \"" + right + "\", which is not in model.vocab");
    merged.assign(left).append(right);
    auto merged_id = bpe.id_of(merged);
    if (!merged_id) {
      return refuse(label + " makes \"" + merged + "\", which is not in model.vocab");
    }
    bpe.merges_.insert(*left_id, *right_id, {static_cast<int32_t>(rank), *merged_id});
  }
  return bpe;
}

std::optional<int32_t> BpeModel::id_of(std::string_view token) const {
  return token_ids_.find(tokens_, token);
}

const std::string* BpeModel::token_of(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size() || !has_token_[id]) return nullptr;
  return &tokens_[id];
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t>& ids) const {
  bool cacheable = piece.size() < kMaxCachedPieceBytes;
  if (cacheable) {
    Cache::Shard& shard = cache_->shard_of(piece);
    std::lock_guard lock(shard.mutex);
    auto found = shard.ids.find(piece);
    if (found != shard.ids.end()) {
      ids.insert(ids.end(), found->second.begin(), found->second.end());
      return;
    }
  }
  std::vector<int32_t> symbol_ids;
  if (ignore_merges_) {
    auto found = ids_by_bytes_.find(piece);
    if (found != ids_by_bytes_.end()) symbol_ids.push_back(found->second);
  }
  if (symbol_ids.empty()) {
    symbol_ids.reserve(piece.size());
    bool last_unk = false;
    for (char byte : piece) {
      int32_t id = byte_ids_[static_cast<uint8_t>(byte)];
      if (id >= 0) {
        symbol_ids.push_back(id);
        last_unk = false;
      } else if (unk_id_ && !(fuse_unk_ && last_unk)) {
        symbol_ids.push_back(*unk_id_);
        last_unk = true;
      }  // else Hugging Face drops the byte too
    }
    if (symbol_ids.size() <= kMaxShortSymbols) {
      merge_short(symbol_ids);
    } else {
      merge_long(symbol_ids);
    }
  }
  ids.insert(ids.end(), symbol_ids.begin(), symbol_ids.end());
  if (cacheable) {
    Cache::Shard& shard = cache_->shard_of(piece);
    std::lock_guard lock(shard.mutex);
    if (shard.ids.size() < kMaxCachedPiecesPerShard) {
      shard.ids.emplace(std::string(piece), std::move(symbol_ids));
    }
  }
}

// The lowest rank of adjacent pairs, leftmost on ties, rescanned after each merge.
void BpeModel::merge_short(std::vector<int32_t>& symbol_ids) const {
  std::array<const BpeMerge*, kMaxShortSymbols> pair_merges;
  size_t num_symbols = symbol_ids.size();
  for (size_t idx = 0; idx + 1 < num_symbols; ++idx) {
    pair_merges[idx] = merges_.find(symbol_ids[idx], symbol_ids[idx + 1]);
  }
  while (num_symbols > 1) {
    size_t best_idx = num_symbols;
    int32_t best_rank = INT32_MAX;
    for (size_t idx = 0; idx + 1 < num_symbols; ++idx) {
      if (pair_merges[idx] && pair_merges[idx]->rank < best_rank) {
        best_rank = pair_merges[idx]->rank;
        best_idx = idx;
      }
    }
    if (best_idx == num_symbols) break;
    symbol_ids[best_idx] = pair_merges[best_idx]->merged_id;
    for (size_t idx = best_idx + 1; idx + 1 < num_symbols; ++idx) {
      symbol_ids[idx] = symbol_ids[idx + 1];
      pair_merges[idx] = pair_merges[idx + 1];
    }
    --num_symbols;
    if (best_idx > 0) {
      pair_merges[best_idx - 1] = merges_.find(symbol_ids[best_idx - 1], symbol_ids[best_idx]);
    }
    if (best_idx + 1 < num_symbols) {
      pair_merges[best_idx] = merges_.find(symbol_ids[best_idx], symbol_ids[best_idx + 1]);
    }
  }
  symbol_ids.resize(num_symbols);
}

// The same order through a heap of candidate merges over a linked list of symbols (long pieces:
// a 10,000-byte word stays O(n log n)). A candidate whose pair changed since is skipped.
void BpeModel::merge_long(std::vector<int32_t>& symbol_ids) const {
  struct Candidate {
    int32_t rank;
    int32_t pos;  // the left symbol's index
    int32_t merged_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  auto num_symbols = static_cast<int32_t>(symbol_ids.size());
  std::vector<int32_t> prev(num_symbols), next(num_symbols);
  std::vector<bool> alive(num_symbols, true);
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  for (int32_t pos = 0; pos < num_symbols; ++pos) {
    prev[pos] = pos - 1;
    next[pos] = pos + 1 < num_symbols ? pos + 1 : -1;
    if (pos + 1 < num_symbols) {
      if (const BpeMerge* merge = merges_.find(symbol_ids[pos], symbol_ids[pos + 1])) {
        queue.push({merge->rank, pos, merge->merged_id});
      }
    }
  }
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    int32_t right = next[top.pos];
    const BpeMerge* merge = merges_.find(symbol_ids[top.pos], symbol_ids[right]);
    if (!merge || merge->merged_id != top.merged_id) continue;
    symbol_ids[top.pos] = top.merged_id;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    if (int32_t left = prev[top.pos]; left >= 0) {
      if (const BpeMerge* m = merges_.find(symbol_ids[left], symbol_ids[top.pos])) {
        queue.push({m->rank, left, m->merged_id});
      }
    }
    if (int32_t after = next[top.pos]; after >= 0) {
      if (const BpeMerge* m = merges_.find(symbol_ids[top.pos], symbol_ids[after])) {
        queue.push({m->rank, top.pos, m->merged_id});
      }
    }
  }
  size_t num_alive = 0;
  for (int32_t pos = 0; pos < num_symbols; ++pos) {
    if (alive[pos]) symbol_ids[num_alive++] = symbol_ids[pos];
  }
  symbol_ids.resize(num_alive);
}

}  // namespace eep::coordinator::text
