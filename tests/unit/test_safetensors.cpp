#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "eep/worker/model/dtype.h"
#include "eep/worker/model/safetensors.h"
#include "scratch_dir.h"

namespace {

using namespace eep::worker;
namespace fs = std::filesystem;

fs::path temp_dir() {
  return eep::testing::process_scratch_dir("eep_test_safetensors");
}

std::vector<std::byte> read_bytes(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

template <typename T>
std::span<const std::byte> as_bytes(const std::vector<T>& values) {
  return std::as_bytes(std::span(values));
}

// A file image: 8-byte length, the header text as given, `data_bytes` zero bytes.
std::vector<std::byte> make_image(const std::string& header, std::size_t data_bytes,
                                  std::optional<uint64_t> header_length = {}) {
  const uint64_t length = header_length.value_or(header.size());
  std::vector<std::byte> image(8 + header.size() + data_bytes);
  for (int i = 0; i < 8; ++i) image[i] = static_cast<std::byte>(length >> (8 * i));
  std::memcpy(image.data() + 8, header.data(), header.size());
  return image;
}

eep::Status parse_status(const std::string& header, std::size_t data_bytes) {
  return parse_safetensors(make_image(header, data_bytes), "hostile.safetensors").status();
}

// A small valid file, written by our writer: the base for truncation and bit-flip tests.
fs::path write_small_file(const fs::path& dir) {
  const std::vector<float> a = {1.0f, -2.0f, 3.5f, 0.25f, 8.0f, -0.5f};
  const std::vector<uint16_t> b = {fp32_to_bf16(1.5f), fp32_to_bf16(-3.0f)};
  const std::vector<int64_t> c = {7, -9, 11};
  const std::vector<TensorData> tensors = {
      {{"a", DType::kF32, {2, 3}}, as_bytes(a)},
      {{"b.bf16", DType::kBF16, {2}}, as_bytes(b)},
      {{"c", DType::kI64, {3}}, as_bytes(c)},
      {{"empty", DType::kF32, {0, 4}}, {}},
  };
  const auto path = dir / "small.safetensors";
  REQUIRE(write_safetensors(path, tensors, {{"format", "pt"}}).is_ok());
  return path;
}

}  // namespace

TEST_CASE("safetensors: write then read round-trips every tensor and the metadata",
          "[safetensors]") {
  const auto path = write_small_file(temp_dir());
  auto file = SafetensorsFile::open(path);
  REQUIRE(file.is_ok());
  CHECK(file->metadata().at("format") == "pt");
  REQUIRE(file->tensors().size() == 4);
  const TensorInfo* a = file->find("a");
  REQUIRE(a != nullptr);
  CHECK(a->dtype == DType::kF32);
  CHECK(a->shape == std::vector<int64_t>{2, 3});
  CHECK(a->num_elements() == 6);
  std::vector<float> a_values(6);
  std::memcpy(a_values.data(), file->data(*a).data(), 24);
  CHECK(a_values == std::vector<float>{1.0f, -2.0f, 3.5f, 0.25f, 8.0f, -0.5f});
  const TensorInfo* b = file->find("b.bf16");
  REQUIRE(b != nullptr);
  uint16_t b0;
  std::memcpy(&b0, file->data(*b).data(), 2);
  CHECK(bf16_to_fp32(b0) == 1.5f);
  const TensorInfo* c = file->find("c");
  REQUIRE(c != nullptr);
  int64_t c1;
  std::memcpy(&c1, file->data(*c).data() + 8, 8);
  CHECK(c1 == -9);
  CHECK(file->find("empty")->num_bytes == 0);
  CHECK(file->find("missing") == nullptr);
  // The data area starts 8-byte aligned (header padded with spaces).
  CHECK((fs::file_size(path) - 24 - 4 - 24) % 8 == 0);
}

TEST_CASE("safetensors: bf16 and fp16 conversions round to nearest even", "[safetensors]") {
  CHECK(fp32_to_bf16(1.0f) == 0x3f80);
  CHECK(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);      // tie -> even
  CHECK(fp32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);  // tie -> even (up)
  CHECK(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 0x3f81);
  CHECK(fp32_to_bf16(-2.0f) == 0xc000);
  CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(bf16_to_fp32(fp32_to_bf16(std::numeric_limits<float>::infinity()))));
  CHECK(fp32_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // rounds up to inf
  CHECK(bf16_to_fp32(0x3fc0) == 1.5f);

  CHECK(fp32_to_fp16(1.0f) == 0x3c00);
  CHECK(fp32_to_fp16(65504.0f) == 0x7bff);
  CHECK(fp32_to_fp16(65520.0f) == 0x7c00);  // halfway to the next binade: inf
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);         // tie -> even (zero)
  CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie -> even
  CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(fp16_to_fp32(0xc000) == -2.0f);
  for (uint32_t bits = 0; bits < 0x7c00; ++bits) {  // every finite positive half round-trips
    REQUIRE(fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(bits))) == bits);
  }
}

TEST_CASE("safetensors: every truncation of a valid file is a clear data-loss error",
          "[safetensors]") {
  const auto bytes = read_bytes(write_small_file(temp_dir()));
  REQUIRE(parse_safetensors(bytes, "small.safetensors").is_ok());
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    const auto result = parse_safetensors(std::span(bytes).first(cut), "small.safetensors");
    INFO("cut at " << cut);
    REQUIRE_FALSE(result.is_ok());
    CHECK(result.status().code() == eep::ErrorCode::kDataLoss);
    CHECK(result.status().message().find("small.safetensors") != std::string::npos);
  }
}

TEST_CASE("safetensors: bit flips in the header never crash", "[safetensors]") {
  const auto bytes = read_bytes(write_small_file(temp_dir()));
  const std::size_t header_end =
      8 + static_cast<std::size_t>(bytes[0]) + (static_cast<std::size_t>(bytes[1]) << 8);
  int num_rejected = 0;
  for (std::size_t i = 0; i < header_end; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto corrupt = bytes;
      corrupt[i] ^= static_cast<std::byte>(1 << bit);
      const auto result = parse_safetensors(corrupt, "flipped.safetensors");
      if (!result.is_ok()) {
        ++num_rejected;
        CHECK(result.status().message().find("flipped.safetensors") != std::string::npos);
      }
    }
  }
  // Most flips break the JSON, a length, an offset or a dtype; a few (inside a name) do not.
  CHECK(num_rejected > static_cast<int>(header_end * 8 / 2));
}

TEST_CASE("safetensors: hostile headers are refused with a message naming file and tensor",
          "[safetensors]") {
  using eep::ErrorCode;
  const std::string ok_entry = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  REQUIRE(parse_status(ok_entry, 8).is_ok());

  SECTION("huge header length") {
    for (uint64_t length : {std::numeric_limits<uint64_t>::max(), uint64_t{1} << 40,
                            kMaxSafetensorsHeaderBytes + 1}) {
      const auto status =
          parse_safetensors(make_image(ok_entry, 8, length), "hostile.safetensors").status();
      CHECK(status.code() == ErrorCode::kDataLoss);
      CHECK(status.message().find("header length") != std::string::npos);
    }
  }
  SECTION("header length past the end of the file") {
    const auto status =
        parse_safetensors(make_image(ok_entry, 8, ok_entry.size() + 9), "h.safetensors").status();
    CHECK(status.code() == ErrorCode::kDataLoss);
    CHECK(status.message().find("truncated") != std::string::npos);
  }
  SECTION("offsets past the end") {
    const auto status =
        parse_status(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
    CHECK(status.code() == ErrorCode::kDataLoss);
    CHECK(status.message().find("'t'") != std::string::npos);
    CHECK(status.message().find("hostile.safetensors") != std::string::npos);
    CHECK(parse_status(R"({"t":{"dtype":"U8","shape":[1],)"
                       R"("data_offsets":[18446744073709551614,18446744073709551615]}})",
                       8)
              .code() == ErrorCode::kDataLoss);
  }
  SECTION("overlapping tensors") {
    const auto status = parse_status(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                     12);
    CHECK(status.code() == ErrorCode::kDataLoss);
    CHECK(status.message().find("overlaps") != std::string::npos);
    CHECK(status.message().find("'b'") != std::string::npos);
  }
  SECTION("holes and trailing bytes") {
    CHECK(parse_status(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8).code() ==
          ErrorCode::kDataLoss);
    CHECK(parse_status(ok_entry, 12).code() == ErrorCode::kDataLoss);
  }
  SECTION("unknown dtype is unsupported, not corrupt") {
    const auto status =
        parse_status(R"({"q":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]}})", 8);
    CHECK(status.code() == ErrorCode::kInvalidArgument);
    CHECK(status.message().find("'q'") != std::string::npos);
    CHECK(status.message().find("Q4_K") != std::string::npos);
  }
  SECTION("shape and size disagree") {
    const auto status =
        parse_status(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
    CHECK(status.code() == ErrorCode::kDataLoss);
    CHECK(status.message().find("needs 12 bytes") != std::string::npos);
  }
  SECTION("malformed shapes and offsets") {
    for (const char* entry :
         {R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
          R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})",
          R"({"t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})",
          R"({"t":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})",
          R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
          R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})",
          R"({"t":{"dtype":"F32","shape":[2]}})",
          R"({"t":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", R"({"t":[1,2]})"}) {
      INFO(entry);
      CHECK(parse_status(entry, 8).code() == ErrorCode::kDataLoss);
    }
  }
  SECTION("duplicate names") {
    const auto status = parse_status(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                     R"("t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                     8);
    CHECK(status.code() == ErrorCode::kDataLoss);
    CHECK(status.message().find("'t' twice") != std::string::npos);
  }
  SECTION("not a JSON object") {
    for (const char* header : {"[]", "3", "\"x\"", "null", "{", "", "{\"t\":}", "\xff\xfe"}) {
      INFO(header);
      CHECK(parse_status(header, 0).code() == ErrorCode::kDataLoss);
    }
  }
  SECTION("deep nesting") {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    CHECK(parse_status(deep, 0).code() == ErrorCode::kDataLoss);
  }
  SECTION("metadata must map strings to strings") {
    CHECK(parse_status(R"({"__metadata__":{"format":3}})", 0).code() == ErrorCode::kDataLoss);
    CHECK(parse_status(R"({"__metadata__":[]})", 0).code() == ErrorCode::kDataLoss);
    CHECK(parse_status(R"({"__metadata__":{"format":"pt"}})", 0).is_ok());
  }
}

TEST_CASE("safetensors: missing, empty and unfinished files", "[safetensors]") {
  const auto dir = temp_dir();
  CHECK(SafetensorsFile::open(dir / "nope.safetensors").status().code() ==
        eep::ErrorCode::kNotFound);
  std::ofstream(dir / "empty.safetensors").close();
  const auto empty = SafetensorsFile::open(dir / "empty.safetensors");
  CHECK(empty.status().code() == eep::ErrorCode::kDataLoss);
  CHECK(empty.status().message().find("empty.safetensors") != std::string::npos);

  const auto path = dir / "unfinished.safetensors";
  {
    auto writer = SafetensorsWriter::create(path, {{"t", DType::kF32, {4}}});
    REQUIRE(writer.is_ok());
    const std::vector<float> half = {1.0f, 2.0f};
    REQUIRE(writer->append(as_bytes(half)).is_ok());
    CHECK(writer->finish().code() == eep::ErrorCode::kFailedPrecondition);  // 8 of 16 bytes
  }
  CHECK_FALSE(fs::exists(path));
  {
    auto writer = SafetensorsWriter::create(path, {{"t", DType::kF32, {1}}});
    REQUIRE(writer.is_ok());
  }  // abandoned: no file, no temporary left behind
  CHECK_FALSE(fs::exists(path));
  for (const auto& entry : fs::directory_iterator(dir)) {
    CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);
  }
  CHECK(SafetensorsWriter::create(path, {{"t", DType::kF32, {1}}, {"t", DType::kF32, {1}}})
            .status()
            .code() == eep::ErrorCode::kInvalidArgument);
}
