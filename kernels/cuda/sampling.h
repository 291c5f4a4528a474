// File: kernels/cuda/sampling.h
//
// Token choice on the GPU, so that a decode step copies one id to the host instead of the vocabulary's logits.
//   LaunchArgmax   ids[r] = argmax over logits row r (rows, vocab) f32; ties go to the lowest id, as
//                  kernels::SampleToken's greedy path (std::max_element) does.
//   LaunchTopKTopPSample  the filters of kernels::SampleToken after the repetition penalty and temperature
//                  (which the caller applies to the logits): top-k by (logit, id), then HF's top-p, then the token at
//                  `uniform` (in [0, 1)) of the kept tokens' cumulative probabilities in ascending id order, the
//                  walk kernels::DrawFromAscending makes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace ixc::kernels::cuda {

absl::Status LaunchArgmax(const float* logits, int64_t rows, int64_t vocab, int32_t* ids, cudaStream_t stream);

// One row: logits (vocab) f32 on the device, already divided by the temperature; top_k 0 = off; top_p 1 = off.
// Writes the chosen id to *id (device).
absl::Status LaunchTopKTopPSample(const float* logits, int64_t vocab, int top_k, float top_p, double uniform,
                                  int32_t* id, cudaStream_t stream);

}  // namespace ixc::kernels::cuda
