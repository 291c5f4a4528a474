// The decode GEMV's body (kernels/cpu/gemv.h), over a vector ISA. Included by one file per ISA, after every other
// header and inside that file's target pragma: this code is compiled for the ISA and nothing shared with the rest of
// the program is (an inline function compiled for AVX-512 could otherwise be the copy the linker keeps for everyone).
// No include guard, and internal linkage throughout, on purpose.
namespace ixc::kernels {
namespace {

inline float LoadOne(DType dtype, const void* p, int64_t i) {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return Bf16ToF32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return F16ToF32(static_cast<const uint16_t*>(p)[i]);
  }
  return 0.f;
}

// Isa: V (a vector of kLanes floats), Zero, LoadF, Fma, Add, Sum, and LoadPair<kDType>(p, first, second), the
// 2 x kLanes weights at p as two f32 vectors in the order kernels/cpu/gemv.h describes.
template <typename Isa, DType kDType>
void Gemv(const float* x, TensorView w, float* out, int64_t m, bool accumulate) {
  using V = typename Isa::V;
  using Element = std::conditional_t<kDType == DType::kF32, float, uint16_t>;
  constexpr int64_t kRowBlock = 4, kStep = 2 * Isa::kLanes;
  const int64_t n = w.dim(0), k = w.dim(1), k_main = k / kStep * kStep;
  const auto* weights = w.as<const Element>();
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;

  std::vector<float> paired;  // (m, K): x as bf16's loads pair it; other dtypes read x as it is
  const float* xs = x;
  if constexpr (kDType == DType::kBF16) {
    paired.assign(x, x + m * k);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t c = 0; c < k_main; c += kStep) {
        for (int j = 0; j < Isa::kLanes; ++j) {
          paired[i * k + c + j] = x[i * k + c + 2 * j];
          paired[i * k + c + Isa::kLanes + j] = x[i * k + c + 2 * j + 1];
        }
      }
    }
    xs = paired.data();
  }

#pragma omp parallel for schedule(static)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t first = block * kRowBlock, rows = std::min(kRowBlock, n - first);
    const Element* w_rows = weights + first * k;
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = xs + i * k;
      float sums[kRowBlock] = {};
      if (rows == kRowBlock) {
        // Two accumulators per weight row: eight independent FMA chains hide the FMA latency.
        V acc[kRowBlock][2];
        for (auto& row : acc) row[0] = row[1] = Isa::Zero();
        // The next block is fetched a step's worth per step, so it arrives as this one finishes.
        const char* next_block = reinterpret_cast<const char*>(w_rows + kRowBlock * k);
        const bool prefetch = i == 0 && block + 1 < blocks;
        for (int64_t c = 0; c < k_main; c += kStep) {
          if (prefetch) {
            for (size_t byte = 0; byte < kRowBlock * kStep * sizeof(Element); byte += 64) {
              _mm_prefetch(next_block + c * kRowBlock * sizeof(Element) + byte, _MM_HINT_T0);
            }
          }
          const V x0 = Isa::LoadF(xi + c), x1 = Isa::LoadF(xi + c + Isa::kLanes);
          for (int64_t r = 0; r < kRowBlock; ++r) {
            V w0, w1;
            Isa::template LoadPair<kDType>(w_rows + r * k + c, w0, w1);
            acc[r][0] = Isa::Fma(x0, w0, acc[r][0]);
            acc[r][1] = Isa::Fma(x1, w1, acc[r][1]);
          }
        }
        for (int64_t r = 0; r < kRowBlock; ++r) {
          sums[r] = Isa::Sum(Isa::Add(acc[r][0], acc[r][1]));
          for (int64_t c = k_main; c < k; ++c) sums[r] += xi[c] * LoadOne(kDType, w_rows + r * k, c);
        }
      } else {
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < k; ++c) sums[r] += x[i * k + c] * LoadOne(kDType, w_rows + r * k, c);
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        float& target = out[i * n + first + r];
        target = accumulate ? target + sums[r] : sums[r];
      }
    }
  }
}

template <typename Isa>
void GemvFor(const float* x, TensorView w, float* out, int64_t m, bool accumulate) {
  switch (w.dtype) {
    case DType::kF32: return Gemv<Isa, DType::kF32>(x, w, out, m, accumulate);
    case DType::kBF16: return Gemv<Isa, DType::kBF16>(x, w, out, m, accumulate);
    case DType::kF16: return Gemv<Isa, DType::kF16>(x, w, out, m, accumulate);
  }
}

}  // namespace
}  // namespace ixc::kernels
