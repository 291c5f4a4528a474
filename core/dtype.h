// File: core/dtype.h
//
// Element types of tensors (f32, bf16, f16) and their conversions to and from f32.
// bf16 -> f32 and f16 -> f32 are exact; f32 -> bf16/f16 round to nearest even, as torch does.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/statusor.h"

namespace ixc {

enum class DType : uint8_t { kF32, kBF16, kF16 };

// Bytes per element.
constexpr int64_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
      return 2;
  }
  return 0;
}

// "F32", "BF16", "F16": the names the safetensors format uses.
const char* DTypeName(DType dtype);
absl::StatusOr<DType> DTypeFromName(std::string_view name);

inline float Bf16ToF32(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

inline uint16_t F32ToBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float F16ToF32(uint16_t bits);
uint16_t F32ToF16(float value);

// Converts `count` elements of `dtype` at `src` into f32 at `dst`.
void ConvertToF32(DType dtype, const void* src, float* dst, int64_t count);

}  // namespace ixc
