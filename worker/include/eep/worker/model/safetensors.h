// Safetensors files (https://huggingface.co/docs/safetensors): a reader over a memory mapping
// that validates the whole header before any tensor is touched, and a streaming writer.
//
// File layout: u64 little-endian N, N bytes of JSON header, then the data area. The header maps
// each tensor name to {dtype, shape, data_offsets: [begin, end)} (offsets relative to the data
// area) plus an optional "__metadata__" string->string map. Every validation failure is a Status
// that names the file and the tensor: kDataLoss for a truncated or corrupt file, kInvalidArgument
// for a well-formed file we do not support (an unknown dtype).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eep/common/status.h"
#include "eep/worker/model/dtype.h"
#include "eep/worker/model/mapped_file.h"

namespace eep::worker {

// Upper bound on the JSON header: the 30B model's largest shard header is well under 1 MB.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t data_begin = 0;  // byte offset into the data area
  uint64_t num_bytes = 0;

  int64_t num_elements() const;
};

// "[128, 768, 2048]"
std::string shape_to_string(std::span<const int64_t> shape);

// The validated header of one file.
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by data_begin
  std::map<std::string, std::string> metadata;
  uint64_t data_area_begin = 0;  // byte offset of the data area in the file (8 + header length)
};

// Validates a whole file image (header length, JSON, dtypes, shapes vs sizes, offsets inside the
// data area, no overlaps, no holes, no duplicate names). `file_name` only goes into messages.
Result<SafetensorsHeader> parse_safetensors(std::span<const std::byte> file_bytes,
                                            std::string_view file_name);

class SafetensorsFile {
 public:
  // Maps and validates the file; nothing is read from it before the header passed validation.
  static Result<SafetensorsFile> open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // nullptr when the file has no tensor of that name.
  const TensorInfo* find(std::string_view name) const;
  // The tensor's raw little-endian bytes inside the mapping; valid while this object lives.
  std::span<const std::byte> data(const TensorInfo& tensor) const;

 private:
  std::filesystem::path path_;
  MappedFile mapping_;
  SafetensorsHeader header_;
  std::map<std::string, std::size_t, std::less<>> index_;  // name -> position in tensors
};

// One tensor to write: its bytes are little-endian elements of `dtype`, row-major.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;

  uint64_t num_bytes() const;
};

// Writes a file whose header is fixed up front, then the tensors' bytes in the order of `specs`,
// appended in chunks of any size, so a 60 GB model never sits in memory. The file appears under
// its final name only after finish() (temporary name + rename); a writer destroyed before that
// removes its temporary file.
class SafetensorsWriter {
 public:
  static Result<SafetensorsWriter> create(const std::filesystem::path& path,
                                          std::vector<TensorSpec> specs,
                                          const std::map<std::string, std::string>& metadata = {});

  SafetensorsWriter(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&&) = delete;
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  ~SafetensorsWriter();

  // Appends data bytes (continuing the current tensor, running into the next ones).
  Status append(std::span<const std::byte> bytes);
  // Checks that exactly the declared bytes were appended, flushes, renames into place.
  Status finish();

  uint64_t data_bytes_total() const { return data_bytes_total_; }

 private:
  SafetensorsWriter() = default;

  std::filesystem::path path_;
  std::filesystem::path temp_path_;
  std::FILE* file_ = nullptr;
  uint64_t data_bytes_total_ = 0;
  uint64_t data_bytes_written_ = 0;
};

struct TensorData {
  TensorSpec spec;
  std::span<const std::byte> bytes;  // must be spec.num_bytes() long
};

// Writes all tensors at once (a convenience over SafetensorsWriter for small files and tests).
Status write_safetensors(const std::filesystem::path& path, std::span<const TensorData> tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace eep::worker
