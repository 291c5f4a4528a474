#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace ixc {
namespace {

// Headers of real checkpoints are tens of KiB; this only guards against garbage lengths.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

int64_t ElementSizeOf(const std::string& dtype_name) {
  static const std::map<std::string, int64_t> kSizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
      {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = kSizes.find(dtype_name);
  return it == kSizes.end() ? -1 : it->second;
}

std::string ShapeText(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(info.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", size, " bytes, too short for a safetensors header"));
  }
  void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mapping == MAP_FAILED) return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
  file->mapping_ = mapping;
  file->mapping_size_ = size;

  const auto* bytes = static_cast<const uint8_t*>(mapping);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];  // little-endian u64
  if (header_size > kMaxHeaderBytes || header_size > size - 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header length ", header_size, " does not fit in a file of ", size, " bytes"));
  }
  file->data_ = bytes + 8 + header_size;
  const std::string header(reinterpret_cast<const char*>(bytes + 8), header_size);
  IXC_RETURN_IF_ERROR(file->ParseHeader(header, size - 8 - header_size));
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

absl::Status SafetensorsFile::ParseHeader(const std::string& header, uint64_t data_size) {
  nlohmann::json json = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": header is not a JSON object"));
  }
  for (const auto& item : json.items()) {
    const std::string& name = item.key();  // not a structured binding: the lambda below captures it
    const nlohmann::json& value = item.value();
    if (name == "__metadata__") {
      if (!value.is_object()) return absl::InvalidArgumentError(absl::StrCat(path_, ": __metadata__ is not an object"));
      for (const auto& [key, text] : value.items()) {
        if (text.is_string()) metadata_[key] = text.get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", name, "': ", why));
    };
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") ||
        !value.contains("data_offsets")) {
      return bad("header entry needs dtype, shape and data_offsets");
    }
    TensorEntry entry;
    if (!value["dtype"].is_string()) return bad("dtype is not a string");
    entry.dtype_name = value["dtype"].get<std::string>();
    const int64_t element_size = ElementSizeOf(entry.dtype_name);
    if (element_size < 0) return bad(absl::StrCat("unknown dtype '", entry.dtype_name, "'"));
    const auto& shape = value["shape"];
    if (!shape.is_array()) return bad("shape is not an array");
    uint64_t elements = 1;
    for (const auto& d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) return bad("shape holds a negative or non-integer size");
      entry.shape.push_back(d.get<int64_t>());
      // Saturated, not wrapped around: a wrapped product could match a short byte span.
      const uint64_t size = static_cast<uint64_t>(entry.shape.back());
      elements = size != 0 && elements > UINT64_MAX / size ? UINT64_MAX : elements * size;
    }
    if (elements > data_size) {
      return bad(absl::StrCat("shape ", ShapeText(entry.shape), " holds more elements than the ", data_size,
                              "-byte data section has bytes"));
    }
    const auto& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      return bad("data_offsets must be two non-negative integers");
    }
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    if (entry.begin > entry.end || entry.end > data_size) {
      return bad(absl::StrCat("data_offsets [", entry.begin, ", ", entry.end, ") lie outside the ", data_size,
                              "-byte data section"));
    }
    if (entry.end - entry.begin != elements * static_cast<uint64_t>(element_size)) {
      return bad(absl::StrCat("shape ", ShapeText(entry.shape), " of ", entry.dtype_name, " needs ",
                              elements * element_size, " bytes but data_offsets span ", entry.end - entry.begin));
    }
    entries_.emplace(name, std::move(entry));
  }
  // No two tensors may share bytes.
  std::vector<std::pair<const std::string*, const TensorEntry*>> by_offset;
  for (const auto& [name, entry] : entries_) by_offset.emplace_back(&name, &entry);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i].second->begin < by_offset[i - 1].second->end) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": tensors '", *by_offset[i - 1].first, "' and '",
                                                     *by_offset[i].first, "' overlap"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TensorView> SafetensorsFile::Tensor(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  const TensorEntry& entry = it->second;
  auto dtype = DTypeFromName(entry.dtype_name);
  if (!dtype.ok()) return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", name, "': ", dtype.status().message()));
  if (entry.shape.size() > kMaxTensorRank) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": tensor '", name, "' has rank ", entry.shape.size(), ", more than ", kMaxTensorRank));
  }
  return TensorView(const_cast<uint8_t*>(data_ + entry.begin), *dtype, entry.shape);
}

absl::StatusOr<Checkpoint> Checkpoint::Open(const std::string& directory) {
  namespace fs = std::filesystem;
  Checkpoint ckpt;
  ckpt.directory_ = directory;
  std::error_code error;
  if (!fs::is_directory(directory, error)) {
    return absl::NotFoundError(absl::StrCat(directory, ": model directory does not exist"));
  }
  const fs::path index_path = fs::path(directory) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(directory) / "model.safetensors";
  if (fs::exists(index_path)) {
    std::ifstream in(index_path);
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json index = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (index.is_discarded() || !index.is_object() || !index.contains("weight_map") ||
        !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": not JSON with a weight_map object"));
    }
    std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
    for (const auto& [name, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": weight_map['", name, "'] is not a file name"));
      }
      const std::string shard_name = shard.get<std::string>();
      if (shard_name.find('/') != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": weight_map['", name, "'] = '", shard_name, "' leaves the directory"));
      }
      auto it = shards.find(shard_name);
      if (it == shards.end()) {
        IXC_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                             SafetensorsFile::Open((fs::path(directory) / shard_name).string()));
        it = shards.emplace(shard_name, std::move(file)).first;
        ckpt.files_.push_back(it->second);
      }
      if (it->second->entries().count(name) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": tensor '", name, "' is mapped to ",
                                                       shard_name, ", which does not contain it"));
      }
      ckpt.shard_of_[name] = it->second.get();
    }
  } else if (fs::exists(single_path)) {
    IXC_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(single_path.string()));
    ckpt.files_.push_back(std::move(file));
    for (const auto& [name, entry] : ckpt.files_.back()->entries()) ckpt.shard_of_[name] = ckpt.files_.back().get();
  } else if (fs::exists(fs::path(directory) / "pytorch_model.bin.index.json") ||
             fs::exists(fs::path(directory) / "pytorch_model.bin")) {
    return absl::InvalidArgumentError(absl::StrCat(
        directory, ": holds PyTorch .bin weights; convert them with tools/convert_bin_to_safetensors.py first"));
  } else {
    return absl::NotFoundError(
        absl::StrCat(directory, ": neither model.safetensors.index.json nor model.safetensors is there"));
  }
  return ckpt;
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, file] : shard_of_) names.push_back(name);
  return names;
}

absl::StatusOr<TensorView> Checkpoint::Tensor(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) return absl::NotFoundError(absl::StrCat(directory_, ": checkpoint has no tensor '", name, "'"));
  return it->second->Tensor(name);
}

absl::StatusOr<TensorView> Checkpoint::Tensor(const std::string& name, const std::vector<int64_t>& expected_shape) const {
  IXC_ASSIGN_OR_RETURN(TensorView view, Tensor(name));
  const std::vector<int64_t> actual(view.shape.begin(), view.shape.begin() + view.rank);
  if (actual != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat(shard_of_.at(name)->path(), ": tensor '", name, "' has shape ",
                                                   ShapeText(actual), ", the config implies ",
                                                   ShapeText(expected_shape)));
  }
  return view;
}

absl::StatusOr<std::vector<float>> Checkpoint::Floats(const std::string& name,
                                                      const std::vector<int64_t>& expected_shape, int64_t begin,
                                                      int64_t end) const {
  IXC_ASSIGN_OR_RETURN(TensorView view, Tensor(name, expected_shape));
  if (view.rank >= 1) view = view.Rows(begin, end < 0 ? view.dim(0) : end);
  std::vector<float> values(view.numel());
  ConvertToF32(view.dtype, view.data, values.data(), view.numel());
  return values;
}

}  // namespace ixc
