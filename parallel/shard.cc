#include "parallel/shard.h"

#include <cassert>
#include <cstring>

namespace ixc::parallel {
namespace {

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

Split TpSplitOf(const std::string& name) {
  if (name == "output.weight") return Split::kRows;
  const bool column_parallel = Contains(name, "attention.wqkv.") || Contains(name, "feed_forward.w1.") ||
                               Contains(name, "feed_forward.w3.");
  const bool row_parallel = Contains(name, "attention.wo.") || Contains(name, "feed_forward.w2.");
  if (!column_parallel && !row_parallel) return Split::kReplicated;
  const bool lora_a = EndsWith(name, "_A.weight"), lora_b = EndsWith(name, "_B.weight");
  if (column_parallel) {
    if (lora_a) return Split::kReplicated;           // every rank projects the full input
    return Split::kRows;                             // weight, bias, LoRA B: this rank's output features
  }
  if (lora_b || EndsWith(name, ".bias")) return Split::kReplicated;  // applied once, after the sum
  return Split::kColumns;                            // weight, LoRA A: this rank's input features
}

TensorView SliceRows(TensorView view, TpSlice slice) {
  const int64_t rows = view.dim(0);
  assert(rows % slice.size == 0);
  return view.Rows(rows / slice.size * slice.rank, rows / slice.size * (slice.rank + 1));
}

TensorView SliceColumns(TensorView view, TpSlice slice, std::vector<uint8_t>& storage) {
  assert(view.rank == 2 && view.dim(1) % slice.size == 0);
  const int64_t rows = view.dim(0), columns = view.dim(1) / slice.size;
  const int64_t element = DTypeSize(view.dtype);
  storage.resize(rows * columns * element);
  const auto* source = static_cast<const uint8_t*>(view.data);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(storage.data() + r * columns * element,
                source + (r * view.dim(1) + slice.rank * columns) * element, columns * element);
  }
  return TensorView(storage.data(), view.dtype, {rows, columns});
}

TensorView ShardTensor(const std::string& name, TensorView view, TpSlice slice,
                       std::vector<std::unique_ptr<std::vector<uint8_t>>>& owned) {
  if (slice.size == 1) return view;
  switch (TpSplitOf(name)) {
    case Split::kReplicated:
      return view;
    case Split::kRows:
      return SliceRows(view, slice);
    case Split::kColumns:
      owned.push_back(std::make_unique<std::vector<uint8_t>>());
      return SliceColumns(view, slice, *owned.back());
  }
  return view;
}

}  // namespace ixc::parallel
