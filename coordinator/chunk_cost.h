// File: coordinator/chunk_cost.h
//
// What a prompt chunk takes of a step's budget (docs/scheduling.md). A position costs its linear layers, about the
// same anywhere in the prompt, and its attention, which reads every earlier key: late in a long document the
// attention is most of it. So a position counts one batched token plus one for every `keys_per_token` keys it
// attends to, and a chunk late in a 16K prompt gets fewer positions than an early one: each step then takes about
// the same time, which is what keeps the decoders' inter-token latency flat while the document goes in.
#pragma once

#include <cstdint>

#include "model/config.h"

namespace ixc::coordinator {

// The budget the positions [first, first + count) of a prompt take: count + (keys they attend to) / keys_per_token,
// position q attending to q + 1 keys (itself and every one before). keys_per_token 0: count alone (positions only).
double ChunkCost(int64_t first, int64_t count, int64_t keys_per_token);

// The most positions from `first` on whose ChunkCost is within `budget` (0 where not one is).
int64_t ChunkWithin(double budget, int64_t first, int64_t keys_per_token);

// The keys whose attention costs as much as one position's linear layers: by FLOPs, (qkv + hidden + 3 x intermediate)
// / 2 (the projections' 2 x params per position, against 4 x hidden per key for scores and values), times how fast the
// device runs attention against its GEMMs. On the CPU that is 0.25 (bench/results-cpu-chunked-prefill-2026-12-07.log:
// the attention kernel's ~38 GFLOP/s in a 16K prefill against sgemm's ~150); GPUs are taken as 1 (attention near GEMM
// speed), not yet measured.
int64_t DefaultKeysPerToken(const model::LlmConfig& config, bool gpu);

}  // namespace ixc::coordinator
