// File: kernels/cuda/sampling.h
//
// Token choice on the GPU, so that a decode step copies one id to the host instead of the vocabulary's logits.
//   LaunchArgmax   ids[r] = argmax over logits row r (rows, vocab) f32; ties go to the lowest id, as
//                  kernels::SampleToken's greedy path (std::max_element) does.
//   LaunchTopKTopPSample  the filters of kernels::SampleToken after the repetition penalty and temperature
//                  (which the caller applies to the logits): top-k by (logit, id), then HF's top-p, then the token at
//                  `uniform` (in [0, 1)) of the kept tokens' cumulative probabilities in ascending id order, the
//                  walk kernels::DrawFromAscending makes.
//   LaunchTopKTopPSampleRows  the same for several rows of a batch at once, a block each.
//   LaunchPenaltyAndTemperature  what SampleToken does to the logits before choosing: the repetition penalty on
//                  listed ids, then the division by the temperature.
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

// One row of a batched draw.
struct SampledRow {
  int32_t row = 0;     // into logits (rows, vocab) and ids
  int32_t top_k = 0;   // 0: off
  float top_p = 1.f;   // 1: off
  double uniform = 0;  // in [0, 1)
};
// Where a row's parameters are out of range (an error naming them), for the caller to check before uploading.
absl::Status CheckSampledRow(const SampledRow& row);
// ids[row] for each of the `count` rows at `rows` (device; checked by CheckSampledRow).
absl::Status LaunchTopKTopPSampleRows(const float* logits, int64_t vocab, const SampledRow* rows, int64_t count,
                                      int32_t* ids, cudaStream_t stream);

// logits (rows, vocab) f32 in place: row r's ids[offsets[r] .. offsets[r + 1]) (distinct, in range) get the
// repetition penalty penalties[r] (a positive logit divided, a negative one multiplied), then every logit of row r
// is divided by temperatures[r] (1: left as is). All arrays on the device.
absl::Status LaunchPenaltyAndTemperature(float* logits, int64_t rows, int64_t vocab, const int32_t* offsets,
                                         const int32_t* ids, const float* penalties, const float* temperatures,
                                         cudaStream_t stream);

}  // namespace ixc::kernels::cuda
