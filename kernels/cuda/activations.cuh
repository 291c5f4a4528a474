// File: kernels/cuda/activations.cuh
//
// The activation functions of the CUDA kernels, in f32, written as the reference ops compute them
// (reference::SwiGlu, Gelu, QuickGelu): the elementwise kernels and the fused SwiGLU GEMV share them.
#pragma once

namespace ixc::kernels::cuda {

// silu(gate) * up: the feed-forward's gate.
__device__ inline float SwiGlu(float gate, float up) { return gate / (1.f + expf(-gate)) * up; }

// The exact (erf) GELU of vision_proj, and the ViT's x * sigmoid(1.702 x); as types, to pick a kernel's op.
struct ExactGelu {
  __device__ float operator()(float x) const { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
};
struct QuickGelu {
  __device__ float operator()(float x) const { return x / (1.f + expf(-1.702f * x)); }
};

}  // namespace ixc::kernels::cuda
