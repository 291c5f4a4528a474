// File: tests/test_util.h
//
// Helpers shared by the tests: seeded random data, tolerances from the dtype, and a comparison that prints the
// first mismatches with their indices.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace ixc::testing {

inline std::vector<float> RandomFloats(int64_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, scale);
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng);
  return values;
}

// Values rounded to `dtype` and stored in it (for weights), with the f32 copy of exactly those values.
struct TypedData {
  std::vector<uint8_t> bytes;
  std::vector<float> as_f32;
};

inline TypedData RandomTyped(DType dtype, int64_t n, uint64_t seed, float scale = 1.f) {
  TypedData data;
  std::vector<float> values = RandomFloats(n, seed, scale);
  data.bytes.resize(n * DTypeSize(dtype));
  data.as_f32.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::kF32:
        reinterpret_cast<float*>(data.bytes.data())[i] = values[i];
        data.as_f32[i] = values[i];
        break;
      case DType::kBF16: {
        const uint16_t bits = F32ToBf16(values[i]);
        reinterpret_cast<uint16_t*>(data.bytes.data())[i] = bits;
        data.as_f32[i] = Bf16ToF32(bits);
        break;
      }
      case DType::kF16: {
        const uint16_t bits = F32ToF16(values[i]);
        reinterpret_cast<uint16_t*>(data.bytes.data())[i] = bits;
        data.as_f32[i] = F16ToF32(bits);
        break;
      }
    }
  }
  return data;
}

struct Tolerance {
  float atol;
  float rtol;
};

// |actual - expected| <= atol + rtol * |expected| elementwise; reports the first five mismatches.
inline ::testing::AssertionResult AllClose(const std::vector<float>& actual, const std::vector<float>& expected,
                                           Tolerance tolerance) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure() << "sizes differ: " << actual.size() << " vs " << expected.size();
  }
  int64_t mismatches = 0;
  std::string first;
  double max_error = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    max_error = std::max(max_error, std::isnan(error) ? INFINITY : error);
    if (!(error <= tolerance.atol + tolerance.rtol * std::fabs(expected[i]))) {
      if (mismatches++ < 5) {
        first += "\n  [" + std::to_string(i) + "] " + std::to_string(actual[i]) + " vs " + std::to_string(expected[i]);
      }
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << mismatches << " of " << actual.size() << " differ, max error " << max_error
                                       << first;
}

}  // namespace ixc::testing
