// CPU Linear and LowRankAdd.
//
// Up to kGemvRows activation rows (decode), any dtype: our GEMV, which streams each weight row once, converting
// 8 values at a time in registers, with software prefetch one block ahead (OpenBLAS's sgemv reached 70% of the
// read bandwidth on the LM head; this one 90%). More rows:
//   * f32 weights go straight to OpenBLAS sgemm.
//   * more rows (prefill): each thread converts a panel of kPanelRows weight rows into its own f32 buffer and runs a
//     single-threaded sgemm of all activation rows against that panel (OpenBLAS runs single-threaded inside an
//     OpenMP region), so the conversion is paid once per panel, not once per token.
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/ops.h"

namespace ixc::kernels {
namespace {

constexpr int64_t kGemvRows = 4;
constexpr int64_t kPanelRows = 128;

// Eight weights at `p` as f32; Element is float (f32 weights) or uint16_t (bf16/f16, told apart by `dtype`).
template <typename Element>
inline __m256 Load8(DType dtype, const Element* p) {
  if constexpr (std::is_same_v<Element, float>) {
    return _mm256_loadu_ps(p);
  } else {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if (dtype == DType::kBF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
    return _mm256_cvtph_ps(raw);
  }
}

template <typename Element>
inline float LoadOne(DType dtype, const Element* p) {
  if constexpr (std::is_same_v<Element, float>) {
    return *p;
  } else {
    return dtype == DType::kBF16 ? Bf16ToF32(*p) : F16ToF32(*p);
  }
}

inline float HorizontalSum(__m256 v) {
  const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  return _mm_cvtss_f32(_mm_add_ss(sum2, _mm_shuffle_ps(sum2, sum2, 1)));
}

// Up to kGemvRows activation rows: the decode case, bound by reading the weights. Each task owns kRowBlock
// consecutive weight rows and keeps one accumulator per weight row, so four independent FMA chains hide the FMA
// latency; the block (kRowBlock x K weights) stays in L1/L2 while it is reused for every activation row.
template <typename Element>
void Gemv(const float* x, TensorView w, float* out, int64_t m, bool accumulate) {
  constexpr int64_t kRowBlock = 4;
  const int64_t n = w.dim(0), k = w.dim(1);
  const auto* weights = w.as<const Element>();
  const int64_t k8 = k / 8 * 8;
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t first = block * kRowBlock, rows = std::min(kRowBlock, n - first);
    const Element* w_rows = weights + first * k;
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x + i * k;
      float sums[kRowBlock] = {};
      if (rows == kRowBlock) {
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
               acc3 = _mm256_setzero_ps();
        // The next block is fetched 4 x 8 elements per step, so it arrives as this one finishes.
        const char* next_block = reinterpret_cast<const char*>(w_rows + kRowBlock * k);
        const bool prefetch = i == 0 && block + 1 < blocks;
        for (int64_t c = 0; c < k8; c += 8) {
          if (prefetch) {
            for (size_t byte = 0; byte < kRowBlock * 8 * sizeof(Element); byte += 64) {
              _mm_prefetch(next_block + c * kRowBlock * sizeof(Element) + byte, _MM_HINT_T0);
            }
          }
          const __m256 xv = _mm256_loadu_ps(xi + c);
          acc0 = _mm256_fmadd_ps(xv, Load8(w.dtype, w_rows + c), acc0);
          acc1 = _mm256_fmadd_ps(xv, Load8(w.dtype, w_rows + k + c), acc1);
          acc2 = _mm256_fmadd_ps(xv, Load8(w.dtype, w_rows + 2 * k + c), acc2);
          acc3 = _mm256_fmadd_ps(xv, Load8(w.dtype, w_rows + 3 * k + c), acc3);
        }
        sums[0] = HorizontalSum(acc0);
        sums[1] = HorizontalSum(acc1);
        sums[2] = HorizontalSum(acc2);
        sums[3] = HorizontalSum(acc3);
        for (int64_t r = 0; r < kRowBlock; ++r) {
          for (int64_t c = k8; c < k; ++c) sums[r] += xi[c] * LoadOne(w.dtype, w_rows + r * k + c);
        }
      } else {
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < k; ++c) sums[r] += xi[c] * LoadOne(w.dtype, w_rows + r * k + c);
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        float& target = out[i * n + first + r];
        target = accumulate ? target + sums[r] : sums[r];
      }
    }
  }
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
      if (m <= kGemvRows) {
        Gemv<float>(x, w, out, m, accumulate);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.f, x, k, w.f32(), k, accumulate ? 1.f : 0.f,
                    out, n);
      }
      return;
    case DType::kBF16:
    case DType::kF16:
      if (m <= kGemvRows) {
        Gemv<uint16_t>(x, w, out, m, accumulate);
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
