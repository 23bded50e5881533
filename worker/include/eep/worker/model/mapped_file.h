// A read-only memory mapping of a whole file (RAII: unmapped and closed on destruction).
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

#include "eep/common/status.h"

namespace eep::worker {

class MappedFile {
 public:
  // kNotFound when the file is missing, kIoError when it cannot be opened or mapped.
  static Result<MappedFile> open(const std::filesystem::path& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  // The file's bytes; empty for an empty file. Valid while this object lives.
  std::span<const std::byte> bytes() const { return {data_, size_bytes_}; }
  std::size_t size_bytes() const { return size_bytes_; }

 private:
  void release();

  const std::byte* data_ = nullptr;
  std::size_t size_bytes_ = 0;
};

}  // namespace eep::worker
