// Reference Linear and LowRankAdd: one dot product per output element, weights converted element by element.
#include <vector>

#include "kernels/ops.h"

namespace ixc::kernels::reference {

void Linear(const float* x, TensorView w, float* out, int64_t m, bool accumulate) {
  const int64_t n = w.dim(0), k = w.dim(1);
  std::vector<float> row(k);
  for (int64_t j = 0; j < n; ++j) {
    ConvertToF32(w.dtype, static_cast<const uint8_t*>(w.data) + j * k * DTypeSize(w.dtype), row.data(), k);
    for (int64_t i = 0; i < m; ++i) {
      float sum = 0.f;
      for (int64_t c = 0; c < k; ++c) sum += x[i * k + c] * row[c];
      out[i * n + j] = accumulate ? out[i * n + j] + sum : sum;
    }
  }
}

void LowRankAdd(const float* x, TensorView a, TensorView b, const uint8_t* row_mask, float* out, int64_t m) {
  const int64_t rank = a.dim(0), k = a.dim(1), n = b.dim(0);
  std::vector<float> down(rank);
  for (int64_t i = 0; i < m; ++i) {
    if (row_mask != nullptr && !row_mask[i]) continue;
    Linear(x + i * k, a, down.data(), 1, /*accumulate=*/false);
    Linear(down.data(), b, out + i * n, 1, /*accumulate=*/true);
  }
}

}  // namespace ixc::kernels::reference
