// File: parallel/shard.h
//
// Tensor parallelism at load time (architecture section 5): one table says how each language-model tensor of the
// checkpoint is cut across the T ranks of a TP group, Megatron style:
//   rows (output features)   wqkv (whole KV groups: the rows are packed group by group), w1, w3, output (vocab),
//                            and the B matrices of their LoRAs; wqkv's bias
//   columns (input features) wo, w2, and the A matrices of their LoRAs: partial products, summed by one all-reduce
//                            that also sums the LoRA terms
//   replicated               embeddings, norms, wo's bias, the A of column-parallel LoRAs, the B of row-parallel ones
// Rank t keeps rows (or columns) [t * n / T, (t + 1) * n / T).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor_view.h"

namespace ixc::parallel {

enum class Split { kReplicated, kRows, kColumns };

// The split of a language-model tensor, by its checkpoint name.
Split TpSplitOf(const std::string& name);

struct TpSlice {
  int rank = 0;
  int size = 1;
};

// Rows of `view` for `slice`: a view into the same memory (rows are contiguous).
TensorView SliceRows(TensorView view, TpSlice slice);
// Columns of a 2-D `view` for `slice`: copied into `storage`, which the caller keeps alive.
TensorView SliceColumns(TensorView view, TpSlice slice, std::vector<uint8_t>& storage);
// Applies TpSplitOf(name) to `view`; copies go into a new buffer appended to `owned`.
TensorView ShardTensor(const std::string& name, TensorView view, TpSlice slice,
                       std::vector<std::unique_ptr<std::vector<uint8_t>>>& owned);

}  // namespace ixc::parallel
