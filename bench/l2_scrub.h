// File: bench/l2_scrub.h
//
// A read of every byte of a device buffer that writes nothing (MedianMsFromHbm's L2 scrub): afterwards the L2 holds
// clean lines of that buffer, which the timed work evicts for free, as a model step's weights evict the previous
// layer's. A scrub by writing (cudaMemset) leaves up to an L2 of dirty lines whose write-backs to HBM the timed work
// pays for: a fixed cost that made reads of a few tens of MB look slow.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ixc::bench {

// `sink`: a device uint32 the kernel could write (it never does; the reads stay).
cudaError_t LaunchReadAll(const void* buffer, int64_t bytes, uint32_t* sink, cudaStream_t stream);

}  // namespace ixc::bench
