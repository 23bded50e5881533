#include <catch2/catch.hpp>

#include <set>

#include "eep/worker/engine/kv_cache.h"

using namespace eep;
using namespace eep::worker;

TEST_CASE("KV blocks are reserved, mapped to slots and released", "[kvcache]") {
  KvBlockManager blocks(4, 16);
  REQUIRE(blocks.reserve(7, 20).is_ok());  // 2 blocks
  CHECK(blocks.num_free_blocks() == 2);
  CHECK(blocks.block_table(7).size() == 2);
  CHECK(blocks.capacity_tokens(7) == 32);
  CHECK(blocks.slot_of(7, 0) == blocks.block_table(7)[0] * 16);
  CHECK(blocks.slot_of(7, 17) == blocks.block_table(7)[1] * 16 + 1);
  REQUIRE(blocks.reserve(7, 32).is_ok());  // still 2
  CHECK(blocks.num_free_blocks() == 2);
  REQUIRE(blocks.reserve(9, 1).is_ok());
  // Too much: refused, nothing allocated, the sequence not created.
  Status full = blocks.reserve(11, 40);
  CHECK(full.code() == ErrorCode::kResourceExhausted);
  CHECK_THAT(full.message(), Catch::Contains("KV cache full"));
  CHECK_FALSE(blocks.contains(11));
  CHECK(blocks.num_free_blocks() == 1);
  // Slots of live sequences never collide.
  std::set<int64_t> slots;
  for (int64_t pos = 0; pos < 32; ++pos) CHECK(slots.insert(blocks.slot_of(7, pos)).second);
  for (int64_t pos = 0; pos < 16; ++pos) CHECK(slots.insert(blocks.slot_of(9, pos)).second);
  blocks.release(7);
  blocks.release(7);  // idempotent
  CHECK(blocks.num_free_blocks() == 3);
  REQUIRE(blocks.reserve(11, 40).is_ok());
  blocks.release(9);
  blocks.release(11);
  CHECK(blocks.num_free_blocks() == 4);
}
