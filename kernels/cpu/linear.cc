// CPU Linear and LowRankAdd.
//
// Up to kGemvRows activation rows (decode batches; kGemvRowsF32 with f32 weights), any dtype: our GEMV
// (kernels/cpu/gemv.h), which streams each weight row once, widening in registers, with software prefetch one block
// ahead (OpenBLAS's sgemv reached 70% of the read bandwidth on the LM head; this one 90%). More rows:
//   * f32 weights go straight to OpenBLAS sgemm.
//   * more rows (prefill): each thread converts a panel of kPanelRows weight rows into its own f32 buffer and runs a
//     single-threaded sgemm of all activation rows against that panel (OpenBLAS runs single-threaded inside an
//     OpenMP region), so the conversion is paid once per panel, not once per token.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/gemv.h"
#include "kernels/ops.h"

namespace ixc::kernels {
namespace {

constexpr int64_t kPanelRows = 128;

// The decode GEMV for this CPU: AVX-512 where it has it, chosen once.
void Gemv(const float* x, TensorView w, float* out, int64_t m, bool accumulate) {
  static const decltype(&GemvAvx2) gemv = __builtin_cpu_supports("avx512f") ? GemvAvx512 : GemvAvx2;
  gemv(x, w, out, m, accumulate);
}

void GemmPanels16(const float* x, TensorView w, float* out, int64_t m, bool accumulate) {
  const int64_t n = w.dim(0), k = w.dim(1);
  const int64_t panels = (n + kPanelRows - 1) / kPanelRows;
#pragma omp parallel
  {
    std::vector<float> panel(kPanelRows * k);
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t first = p * kPanelRows, rows = std::min(kPanelRows, n - first);
      ConvertToF32(w.dtype, w.as<const uint16_t>() + first * k, panel.data(), rows * k);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, rows, k, 1.f, x, k, panel.data(), k,
                  accumulate ? 1.f : 0.f, out + first, n);
    }
  }
}

}  // namespace

void Linear(const float* x, TensorView w, float* out, int64_t m, bool accumulate) {
  const int64_t n = w.dim(0), k = w.dim(1);
  if (m == 0) return;
  switch (w.dtype) {
    case DType::kF32:
      if (m <= kGemvRowsF32) {
        Gemv(x, w, out, m, accumulate);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.f, x, k, w.f32(), k, accumulate ? 1.f : 0.f,
                    out, n);
      }
      return;
    case DType::kBF16:
    case DType::kF16:
      if (m <= kGemvRows) {
        Gemv(x, w, out, m, accumulate);
      } else {
        GemmPanels16(x, w, out, m, accumulate);
      }
      return;
  }
}

void LowRankAdd(const float* x, TensorView a, TensorView b, const uint8_t* row_mask, float* out, int64_t m) {
  const int64_t rank = a.dim(0), k = a.dim(1), n = b.dim(0);
  // Gather the selected rows so that both products run as one GEMM each.
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < m; ++i) {
    if (row_mask == nullptr || row_mask[i]) rows.push_back(i);
  }
  if (rows.empty()) return;
  const int64_t selected = static_cast<int64_t>(rows.size());
  std::vector<float> gathered;  // (selected, K)
  const float* input = x;
  if (selected != m) {
    gathered.resize(selected * k);
    for (int64_t r = 0; r < selected; ++r) std::copy_n(x + rows[r] * k, k, gathered.data() + r * k);
    input = gathered.data();
  }
  std::vector<float> down(selected * rank);  // (selected, rank)
  Linear(input, a, down.data(), selected, /*accumulate=*/false);
  if (selected == m) {
    Linear(down.data(), b, out, m, /*accumulate=*/true);
    return;
  }
  std::vector<float> up(selected * n);  // (selected, N)
  Linear(down.data(), b, up.data(), selected, /*accumulate=*/false);
  for (int64_t r = 0; r < selected; ++r) {
    float* target = out + rows[r] * n;
    for (int64_t c = 0; c < n; ++c) target[c] += up[r * n + c];
  }
}

}  // namespace ixc::kernels
