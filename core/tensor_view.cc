#include "core/tensor_view.h"

#include <cassert>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ixc {

TensorView::TensorView(void* data, DType dtype, std::initializer_list<int64_t> dims)
    : data(data), dtype(dtype), rank(static_cast<int>(dims.size())) {
  assert(rank <= kMaxTensorRank);
  int i = 0;
  for (int64_t d : dims) shape[i++] = d;
}

TensorView::TensorView(void* data, DType dtype, const std::vector<int64_t>& dims)
    : data(data), dtype(dtype), rank(static_cast<int>(dims.size())) {
  assert(rank <= kMaxTensorRank);
  for (int i = 0; i < rank; ++i) shape[i] = dims[i];
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= shape[i];
  return n;
}

TensorView TensorView::Rows(int64_t begin, int64_t end) const {
  assert(rank >= 1 && 0 <= begin && begin <= end && end <= shape[0]);
  TensorView view = *this;
  view.data = static_cast<uint8_t*>(data) + begin * row_size() * DTypeSize(dtype);
  view.shape[0] = end - begin;
  return view;
}

TensorView TensorView::Reshape(std::initializer_list<int64_t> dims) const {
  TensorView view(data, dtype, dims);
  assert(view.numel() == numel());
  return view;
}

std::string TensorView::ShapeString() const {
  return absl::StrCat(DTypeName(dtype), "[",
                      absl::StrJoin(shape.begin(), shape.begin() + rank, ", "), "]");
}

}  // namespace ixc
