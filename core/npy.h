// File: core/npy.h
//
// NumPy .npy files (format 1.0, little-endian, C order): how logits and other arrays travel between this program
// and independent implementations. Reads f4/f2/i4/i8/u1/b1 arrays (integers and bools come back as int64 values,
// floats as f32), writes f4 and i4.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ixc {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> floats;   // for float arrays
  std::vector<int64_t> ints;   // for integer and bool arrays
};

absl::StatusOr<NpyArray> ReadNpy(const std::string& path);
absl::Status WriteNpyF32(const std::string& path, const std::vector<int64_t>& shape, const float* data);
absl::Status WriteNpyI32(const std::string& path, const std::vector<int64_t>& shape, const int32_t* data);

}  // namespace ixc
