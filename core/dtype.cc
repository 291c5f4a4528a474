#include "core/dtype.h"

#include <immintrin.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace ixc {

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
  }
  return "?";
}

absl::StatusOr<DType> DTypeFromName(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  return absl::InvalidArgumentError(absl::StrCat("unsupported dtype '", std::string(name), "' (expected F32, BF16 or F16)"));
}

float F16ToF32(uint16_t bits) { return _cvtsh_ss(bits); }

uint16_t F32ToF16(float value) { return _cvtss_sh(value, _MM_FROUND_TO_NEAREST_INT); }

void ConvertToF32(DType dtype, const void* src, float* dst, int64_t count) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kBF16: {
      const auto* in = static_cast<const uint16_t*>(src);
      int64_t i = 0;
      for (; i + 8 <= count; i += 8) {
        const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
        const __m256i wide = _mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(wide));
      }
      for (; i < count; ++i) dst[i] = Bf16ToF32(in[i]);
      return;
    }
    case DType::kF16: {
      const auto* in = static_cast<const uint16_t*>(src);
      int64_t i = 0;
      for (; i + 8 <= count; i += 8) {
        const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(half));
      }
      for (; i < count; ++i) dst[i] = F16ToF32(in[i]);
      return;
    }
  }
}

}  // namespace ixc
