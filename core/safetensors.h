// File: core/safetensors.h
//
// Reads checkpoints in the safetensors format, memory-mapped: a single `model.safetensors`, or the shards named by a
// `model.safetensors.index.json` (HF sharded layout). Every header is validated when a file is opened: JSON shape,
// dtype names, shapes against byte sizes, offsets inside the file, no two tensors overlapping. Every error names the
// file and, where there is one, the tensor.
//
//   IXC_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::Open("/models/ixc25"));
//   IXC_ASSIGN_OR_RETURN(TensorView w, ckpt.Tensor("output.weight", {vocab, hidden}));
//
// Views point straight into the mapping; they live as long as the Checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor_view.h"

namespace ixc {

// One tensor's header entry. `dtype_name` is kept verbatim so that files holding tensors of other types
// (an I64 `position_ids` buffer, say) still open; asking for such a tensor's view is an error.
struct TensorEntry {
  std::string dtype_name;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the start of the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The tensor's view, or an error naming the file and tensor when it is absent or of an unsupported dtype.
  absl::StatusOr<TensorView> Tensor(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  absl::Status ParseHeader(const std::string& header, uint64_t data_size);

  std::string path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, TensorEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// A whole checkpoint directory: one file or an index plus shards.
class Checkpoint {
 public:
  static absl::StatusOr<Checkpoint> Open(const std::string& directory);

  bool Has(const std::string& name) const { return shard_of_.count(name) > 0; }
  std::vector<std::string> Names() const;
  const std::string& directory() const { return directory_; }

  absl::StatusOr<TensorView> Tensor(const std::string& name) const;
  // Also checks the shape, naming the tensor, the file and both shapes on a mismatch.
  absl::StatusOr<TensorView> Tensor(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  // The shape-checked tensor widened to f32, copied out (for the small vectors: norms, biases, embeddings of a few
  // rows); `rows` [begin, end) of dimension 0 only, when given.
  absl::StatusOr<std::vector<float>> Floats(const std::string& name, const std::vector<int64_t>& expected_shape,
                                            int64_t begin = 0, int64_t end = -1) const;

 private:
  std::string directory_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> shard_of_;
};

}  // namespace ixc
