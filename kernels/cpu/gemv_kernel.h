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

// Isa: V (a vector of kLanes floats), Zero, LoadF, Fma, Add, Sum, LoadPair<kDType>(p, first, second), the
// 2 x kLanes weights at p as two f32 vectors in the order kernels/cpu/gemv.h describes, and kRowsPerPass (2 or 4),
// the activation rows one pass over a weight block serves.
constexpr int64_t kRowBlock = 4;  // weight rows a thread takes at a time

// The dot products of a full block of kRowBlock weight rows with kM activation rows of `xs` (each k long; x as
// LoadPair pairs it), into sums[i][r]. Each weight pair is loaded (and, bf16, split) once for all kM rows. One row:
// two accumulators per weight row, eight independent FMA chains to hide the FMA latency; more rows: one per (weight
// row, activation row), already 4 x kM chains. `next_block` (or null) is fetched a step's worth per step, so it
// arrives as this block finishes.
template <typename Isa, DType kDType, int kM, typename Element>
void BlockDots(const float* xs, int64_t k, int64_t k_main, const Element* w_rows, const char* next_block,
               float (*sums)[kRowBlock]) {
  using V = typename Isa::V;
  constexpr int64_t kStep = 2 * Isa::kLanes;
  constexpr int kAcc = kM == 1 ? 2 : 1;
  V acc[kRowBlock][kM][kAcc];
  for (auto& row : acc) {
    for (auto& pair : row) {
      for (V& a : pair) a = Isa::Zero();
    }
  }
  for (int64_t c = 0; c < k_main; c += kStep) {
    if (next_block != nullptr) {
      for (size_t byte = 0; byte < kRowBlock * kStep * sizeof(Element); byte += 64) {
        _mm_prefetch(next_block + c * kRowBlock * sizeof(Element) + byte, _MM_HINT_T0);
      }
    }
    V x0[kM], x1[kM];
    for (int i = 0; i < kM; ++i) {
      x0[i] = Isa::LoadF(xs + i * k + c);
      x1[i] = Isa::LoadF(xs + i * k + c + Isa::kLanes);
    }
    for (int64_t r = 0; r < kRowBlock; ++r) {
      V w0, w1;
      Isa::template LoadPair<kDType>(w_rows + r * k + c, w0, w1);
      for (int i = 0; i < kM; ++i) {
        if constexpr (kAcc == 2) {
          acc[r][i][0] = Isa::Fma(x0[i], w0, acc[r][i][0]);
          acc[r][i][1] = Isa::Fma(x1[i], w1, acc[r][i][1]);
        } else {
          acc[r][i][0] = Isa::Fma(x1[i], w1, Isa::Fma(x0[i], w0, acc[r][i][0]));
        }
      }
    }
  }
  for (int64_t r = 0; r < kRowBlock; ++r) {
    for (int i = 0; i < kM; ++i) {
      float sum = Isa::Sum(kAcc == 2 ? Isa::Add(acc[r][i][0], acc[r][i][1]) : acc[r][i][0]);
      for (int64_t c = k_main; c < k; ++c) sum += xs[i * k + c] * LoadOne(kDType, w_rows + r * k, c);
      sums[i][r] = sum;
    }
  }
}

template <typename Isa, DType kDType>
void Gemv(const float* x, TensorView w, float* out, int64_t m, bool accumulate) {
  using Element = std::conditional_t<kDType == DType::kF32, float, uint16_t>;
  constexpr int64_t kStep = 2 * Isa::kLanes;
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
    float sums[kGemvRows][kRowBlock] = {};
    if (rows == kRowBlock) {
      const char* next = block + 1 < blocks ? reinterpret_cast<const char*>(w_rows + kRowBlock * k) : nullptr;
      // Activation rows in passes of as many as the registers hold accumulators for.
      for (int64_t i = 0; i < m; i += Isa::kRowsPerPass) {
        const int64_t pass = std::min<int64_t>(Isa::kRowsPerPass, m - i);
        const float* xi = xs + i * k;
        const char* fetch = i == 0 ? next : nullptr;
        if (pass == 1) {
          BlockDots<Isa, kDType, 1>(xi, k, k_main, w_rows, fetch, sums + i);
        } else if (pass == 2) {
          BlockDots<Isa, kDType, 2>(xi, k, k_main, w_rows, fetch, sums + i);
        } else if constexpr (Isa::kRowsPerPass == 4) {
          if (pass == 3) {
            BlockDots<Isa, kDType, 3>(xi, k, k_main, w_rows, fetch, sums + i);
          } else {
            BlockDots<Isa, kDType, 4>(xi, k, k_main, w_rows, fetch, sums + i);
          }
        }
      }
    } else {
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < k; ++c) sums[i][r] += x[i * k + c] * LoadOne(kDType, w_rows + r * k, c);
        }
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < rows; ++r) {
        float& target = out[i * n + first + r];
        target = accumulate ? target + sums[i][r] : sums[i][r];
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
