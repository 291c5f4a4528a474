// File: core/tensor_view.h
//
// TensorView: a non-owning, row-major, contiguous view {data, dtype, shape} of up to 4 dimensions. Views are cheap
// to copy and are passed by value; memory is owned elsewhere (a memory-mapped checkpoint, a Buffer, a KV pool).
//
//   TensorView w = reader.Tensor("output.weight");           // (vocab, hidden)
//   TensorView rows = w.Rows(/*begin=*/0, /*end=*/128);      // (128, hidden), same memory
//
// Shapes follow PyTorch: the last dimension is contiguous. A linear weight is (out_features, in_features).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace ixc {

constexpr int kMaxTensorRank = 4;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int rank = 0;
  std::array<int64_t, kMaxTensorRank> shape{};

  TensorView() = default;
  TensorView(void* data, DType dtype, std::initializer_list<int64_t> dims);
  TensorView(void* data, DType dtype, const std::vector<int64_t>& dims);

  bool empty() const { return data == nullptr; }
  int64_t dim(int i) const { return shape[i < 0 ? rank + i : i]; }
  int64_t numel() const;
  int64_t nbytes() const { return numel() * DTypeSize(dtype); }
  // Elements per step of dimension 0.
  int64_t row_size() const { return rank == 0 ? 1 : numel() / shape[0]; }

  // Rows [begin, end) of dimension 0.
  TensorView Rows(int64_t begin, int64_t end) const;
  // The same memory seen with another shape of equal element count.
  TensorView Reshape(std::initializer_list<int64_t> dims) const;

  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  float* f32() const { return static_cast<float*>(data); }

  // "BF16[6144, 4096]"
  std::string ShapeString() const;
};

}  // namespace ixc
