#include "eep/worker/model/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

namespace eep::worker {
namespace {

using nlohmann::json;

// Deepest nesting a valid header needs: {tensor: {shape: [..]}} is 3.
constexpr int kMaxHeaderNesting = 3;

Status data_loss(std::string_view file_name, const std::string& what) {
  return error(ErrorCode::kDataLoss, std::string(file_name) + ": " + what);
}

Status tensor_error(ErrorCode code, std::string_view file_name, std::string_view tensor,
                    const std::string& what) {
  return error(code, std::string(file_name) + ": tensor '" + std::string(tensor) + "': " + what);
}

// Rejects headers nested deeper than a valid one before the JSON parser sees them (a hostile
// "[[[[..." would otherwise cost a deep parse); strings are skipped, escapes honoured.
Status check_nesting(std::string_view text, std::string_view file_name) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxHeaderNesting) {
        return data_loss(file_name,
                         "header JSON is nested deeper than a safetensors header (at "
                         "byte " +
                             std::to_string(i) + "); the file is corrupt");
      }
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return Status::ok();
}

// Parses the header, refusing duplicate keys at any level (nlohmann keeps the last silently).
Result<json> parse_header_json(std::string_view text, std::string_view file_name) {
  EEP_RETURN_IF_ERROR(check_nesting(text, file_name));
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys_per_object.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys_per_object.empty()) keys_per_object.pop_back();
        break;
      case json::parse_event_t::key:
        if (parsed.is_string() && !keys_per_object.empty() &&
            !keys_per_object.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& e) {
    return data_loss(file_name, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) {
    return data_loss(file_name, "header names '" + duplicate + "' twice");
  }
  if (!header.is_object()) {
    return data_loss(file_name,
                     std::string("header must be a JSON object, found ") + header.type_name());
  }
  return header;
}

// A non-negative integer that fits in uint64 (rejects 2.0, -1, 1e30, "3").
bool get_u64(const json& value, uint64_t& out) {
  if (value.is_number_unsigned()) {
    out = value.get<uint64_t>();
    return true;
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(value.get<int64_t>());
    return true;
  }
  return false;
}

// Largest element count we accept in one dimension / in one tensor; keeps int64 arithmetic safe.
constexpr uint64_t kMaxElements = 1ull << 48;

Result<TensorInfo> parse_entry(const std::string& name, const json& entry,
                               std::string_view file_name) {
  if (!entry.is_object()) {
    return tensor_error(ErrorCode::kDataLoss, file_name, name, "entry must be a JSON object");
  }
  const auto dtype_it = entry.find("dtype");
  const auto shape_it = entry.find("shape");
  const auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || shape_it == entry.end() || offsets_it == entry.end()) {
    return tensor_error(ErrorCode::kDataLoss, file_name, name,
                        "entry needs dtype, shape and data_offsets");
  }
  if (!dtype_it->is_string()) {
    return tensor_error(ErrorCode::kDataLoss, file_name, name, "dtype must be a string");
  }
  TensorInfo info;
  info.name = name;
  const auto dtype = dtype_from_string(dtype_it->get<std::string>());
  if (!dtype) {
    return tensor_error(ErrorCode::kInvalidArgument, file_name, name,
                        "dtype '" + dtype_it->get<std::string>() +
                            "' is not supported (supported: F64, F32, F16, BF16, I64, I32, I16, "
                            "I8, U8, BOOL)");
  }
  info.dtype = *dtype;
  if (!shape_it->is_array()) {
    return tensor_error(ErrorCode::kDataLoss, file_name, name, "shape must be an array");
  }
  uint64_t num_elements = 1;
  for (const auto& dim_json : *shape_it) {
    uint64_t dim = 0;
    if (!get_u64(dim_json, dim) || dim > kMaxElements) {
      return tensor_error(ErrorCode::kDataLoss, file_name, name,
                          "shape must hold non-negative integers, found " + shape_it->dump());
    }
    info.shape.push_back(static_cast<int64_t>(dim));
    num_elements = dim == 0 ? 0 : num_elements;
    if (num_elements != 0 && (num_elements > kMaxElements / dim)) {
      return tensor_error(ErrorCode::kDataLoss, file_name, name,
                          "shape " + shape_it->dump() + " is impossibly large");
    }
    num_elements *= dim;
  }
  uint64_t begin = 0;
  uint64_t end = 0;
  if (!offsets_it->is_array() || offsets_it->size() != 2 || !get_u64((*offsets_it)[0], begin) ||
      !get_u64((*offsets_it)[1], end) || end < begin) {
    return tensor_error(
        ErrorCode::kDataLoss, file_name, name,
        "data_offsets must be [begin, end] with 0 <= begin <= end, found " + offsets_it->dump());
  }
  info.data_begin = begin;
  info.num_bytes = end - begin;
  const uint64_t expected_bytes = num_elements * dtype_size_bytes(info.dtype);
  if (info.num_bytes != expected_bytes) {
    return tensor_error(ErrorCode::kDataLoss, file_name, name,
                        "shape " + shape_to_string(info.shape) + " of " +
                            std::string(to_string(info.dtype)) + " needs " +
                            std::to_string(expected_bytes) + " bytes but data_offsets span " +
                            std::to_string(info.num_bytes));
  }
  return info;
}

}  // namespace

int64_t TensorInfo::num_elements() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

std::string shape_to_string(std::span<const int64_t> shape) {
  std::ostringstream out;
  out << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

Result<SafetensorsHeader> parse_safetensors(std::span<const std::byte> file_bytes,
                                            std::string_view file_name) {
  if (file_bytes.size() < 8) {
    return data_loss(file_name, "file is " + std::to_string(file_bytes.size()) +
                                    " bytes, too short for the 8-byte header length; it is "
                                    "truncated");
  }
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) {
    header_bytes =
        (header_bytes << 8) | static_cast<uint8_t>(file_bytes[static_cast<std::size_t>(i)]);
  }
  if (header_bytes > kMaxSafetensorsHeaderBytes) {
    return data_loss(file_name, "header length " + std::to_string(header_bytes) +
                                    " exceeds the limit of " +
                                    std::to_string(kMaxSafetensorsHeaderBytes) +
                                    " bytes; the file is corrupt or not a safetensors file");
  }
  if (header_bytes > file_bytes.size() - 8) {
    return data_loss(
        file_name, "header length " + std::to_string(header_bytes) + " runs past the end of the " +
                       std::to_string(file_bytes.size()) + "-byte file; it is truncated");
  }
  const std::string_view text(reinterpret_cast<const char*>(file_bytes.data()) + 8,
                              static_cast<std::size_t>(header_bytes));
  EEP_ASSIGN_OR_RETURN(json header, parse_header_json(text, file_name));

  SafetensorsHeader result;
  result.data_area_begin = 8 + header_bytes;
  const uint64_t data_area_bytes = file_bytes.size() - result.data_area_begin;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return data_loss(file_name, "__metadata__ must be an object of strings");
      }
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return data_loss(file_name, "__metadata__ value of '" + key + "' must be a string");
        }
        result.metadata.emplace(key, value.get<std::string>());
      }
      continue;
    }
    EEP_ASSIGN_OR_RETURN(TensorInfo info, parse_entry(name, entry, file_name));
    if (info.data_begin + info.num_bytes > data_area_bytes) {
      return tensor_error(ErrorCode::kDataLoss, file_name, name,
                          "data [" + std::to_string(info.data_begin) + ", " +
                              std::to_string(info.data_begin + info.num_bytes) +
                              ") runs past the end of the " + std::to_string(data_area_bytes) +
                              "-byte data area; the file is truncated");
    }
    result.tensors.push_back(std::move(info));
  }
  // Tensors must tile the data area exactly: no overlap (two tensors aliasing bytes) and no
  // hole (safetensors forbids both; a hole means a writer bug or a spliced file).
  std::sort(result.tensors.begin(), result.tensors.end(), [](const auto& a, const auto& b) {
    return a.data_begin != b.data_begin ? a.data_begin < b.data_begin : a.num_bytes < b.num_bytes;
  });
  uint64_t covered_to = 0;
  const TensorInfo* previous = nullptr;
  for (const auto& tensor : result.tensors) {
    if (tensor.data_begin < covered_to) {
      return tensor_error(ErrorCode::kDataLoss, file_name, tensor.name,
                          "data overlaps tensor '" + previous->name + "'");
    }
    if (tensor.data_begin > covered_to) {
      return tensor_error(ErrorCode::kDataLoss, file_name, tensor.name,
                          "data starts at " + std::to_string(tensor.data_begin) +
                              " leaving a hole after byte " + std::to_string(covered_to));
    }
    covered_to = tensor.data_begin + tensor.num_bytes;
    previous = &tensor;
  }
  if (covered_to != data_area_bytes) {
    return data_loss(file_name, "tensors cover " + std::to_string(covered_to) + " of the " +
                                    std::to_string(data_area_bytes) +
                                    " data bytes; the file has trailing garbage");
  }
  return result;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile file;
  file.path_ = path;
  EEP_ASSIGN_OR_RETURN(file.mapping_, MappedFile::open(path));
  EEP_ASSIGN_OR_RETURN(file.header_, parse_safetensors(file.mapping_.bytes(), path.string()));
  for (std::size_t i = 0; i < file.header_.tensors.size(); ++i) {
    file.index_.emplace(file.header_.tensors[i].name, i);
  }
  return file;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

std::span<const std::byte> SafetensorsFile::data(const TensorInfo& tensor) const {
  return mapping_.bytes().subspan(header_.data_area_begin + tensor.data_begin, tensor.num_bytes);
}

uint64_t TensorSpec::num_bytes() const {
  uint64_t count = 1;
  for (int64_t dim : shape) count *= static_cast<uint64_t>(dim);
  return count * dtype_size_bytes(dtype);
}

Result<SafetensorsWriter> SafetensorsWriter::create(
    const std::filesystem::path& path, std::vector<TensorSpec> specs,
    const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& spec : specs) {
    if (spec.name == "__metadata__" || !names.insert(spec.name).second) {
      return error(ErrorCode::kInvalidArgument,
                   path.string() + ": tensor name '" + spec.name + "' is reserved or repeated");
    }
    for (int64_t dim : spec.shape) {
      if (dim < 0) {
        return error(ErrorCode::kInvalidArgument,
                     path.string() + ": tensor '" + spec.name + "' has a negative dimension");
      }
    }
    const uint64_t num_bytes = spec.num_bytes();
    header[spec.name] = {{"dtype", std::string(to_string(spec.dtype))},
                         {"shape", spec.shape},
                         {"data_offsets", {offset, offset + num_bytes}}};
    offset += num_bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    return error(ErrorCode::kInvalidArgument,
                 path.string() + ": tensor names and metadata must be UTF-8: " + e.what());
  }
  // Pad with spaces so the data area starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');

  SafetensorsWriter writer;
  writer.path_ = path;
  writer.temp_path_ = path;
  writer.temp_path_ += ".tmp." + std::to_string(::getpid());
  writer.data_bytes_total_ = offset;
  writer.file_ = std::fopen(writer.temp_path_.c_str(), "wb");
  if (writer.file_ == nullptr) {
    return error(ErrorCode::kIoError,
                 "cannot create " + writer.temp_path_.string() + ": " + std::strerror(errno));
  }
  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<unsigned char>(text.size() >> (8 * i));
  if (std::fwrite(length_bytes, 1, 8, writer.file_) != 8 ||
      std::fwrite(text.data(), 1, text.size(), writer.file_) != text.size()) {
    return error(ErrorCode::kIoError,
                 "cannot write " + writer.temp_path_.string() + ": " + std::strerror(errno));
  }
  return writer;
}

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&& other) noexcept
    : path_(std::move(other.path_)),
      temp_path_(std::move(other.temp_path_)),
      file_(std::exchange(other.file_, nullptr)),
      data_bytes_total_(other.data_bytes_total_),
      data_bytes_written_(other.data_bytes_written_) {}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::error_code ignored;
    std::filesystem::remove(temp_path_, ignored);
  }
}

Status SafetensorsWriter::append(std::span<const std::byte> bytes) {
  if (file_ == nullptr) {
    return error(ErrorCode::kFailedPrecondition, path_.string() + ": writer already finished");
  }
  if (bytes.size() > data_bytes_total_ - data_bytes_written_) {
    return error(ErrorCode::kInvalidArgument, path_.string() +
                                                  ": more tensor bytes than the header declares (" +
                                                  std::to_string(data_bytes_total_) + ")");
  }
  if (bytes.empty()) return Status::ok();  // an empty span may carry a null pointer
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    return error(ErrorCode::kIoError,
                 "cannot write " + temp_path_.string() + ": " + std::strerror(errno));
  }
  data_bytes_written_ += bytes.size();
  return Status::ok();
}

Status SafetensorsWriter::finish() {
  if (file_ == nullptr) {
    return error(ErrorCode::kFailedPrecondition, path_.string() + ": writer already finished");
  }
  if (data_bytes_written_ != data_bytes_total_) {
    return error(ErrorCode::kFailedPrecondition,
                 path_.string() + ": " + std::to_string(data_bytes_written_) + " of " +
                     std::to_string(data_bytes_total_) + " tensor bytes written");
  }
  const bool flushed = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  std::error_code ec;
  if (!flushed || !closed) {
    std::filesystem::remove(temp_path_, ec);
    return error(ErrorCode::kIoError, "cannot flush " + temp_path_.string() + " (disk full?)");
  }
  std::filesystem::rename(temp_path_, path_, ec);
  if (ec) {
    std::filesystem::remove(temp_path_, ec);
    return error(ErrorCode::kIoError, "cannot rename " + temp_path_.string() + " to " +
                                          path_.string() + ": " + ec.message());
  }
  return Status::ok();
}

Status write_safetensors(const std::filesystem::path& path, std::span<const TensorData> tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  for (const auto& tensor : tensors) {
    if (tensor.bytes.size() != tensor.spec.num_bytes()) {
      return error(ErrorCode::kInvalidArgument, path.string() + ": tensor '" + tensor.spec.name +
                                                    "' has " + std::to_string(tensor.bytes.size()) +
                                                    " bytes, its shape needs " +
                                                    std::to_string(tensor.spec.num_bytes()));
    }
    specs.push_back(tensor.spec);
  }
  EEP_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::create(path, std::move(specs), metadata));
  for (const auto& tensor : tensors) EEP_RETURN_IF_ERROR(writer.append(tensor.bytes));
  return writer.finish();
}

}  // namespace eep::worker
