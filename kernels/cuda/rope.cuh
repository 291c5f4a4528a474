// File: kernels/cuda/rope.cuh
//
// Rotate-half RoPE's arithmetic, shared by the kernels that apply it (RopeStoreKernel; the decode qkv weight pass,
// kernels/cuda/gemm.cu): the angle of pair index i as the reference computes it in f32, and the rotation of a pair
// (i, i + half) of a q or k head stored in T.
#pragma once

#include "kernels/cuda/convert.cuh"

namespace ixc::kernels::cuda {

// sin and cos of `position` (already scaled) times inv_freq = 1 / base^(2i / head_dim).
__device__ inline void RopeAngle(float position, int i, int head_dim, float base, float* sin, float* cos) {
  const float inv_freq = 1.f / powf(base, static_cast<float>(2 * i) / static_cast<float>(head_dim));
  sincosf(position * inv_freq, sin, cos);
}

// (a, b) = (a cos - b sin, b cos + a sin), in f32 and stored back in T.
template <typename T>
__device__ inline void RotatePair(T& a, T& b, float cos, float sin) {
  const float fa = ToFloat(a), fb = ToFloat(b);
  a = FromFloat<T>(fa * cos - fb * sin);
  b = FromFloat<T>(fb * cos + fa * sin);
}

}  // namespace ixc::kernels::cuda
