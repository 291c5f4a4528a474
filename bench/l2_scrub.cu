#include "bench/l2_scrub.h"

#include <cstdint>

namespace ixc::bench {
namespace {

// Every 16 bytes of `words` read once; nothing written unless the XOR of all of them equals `never` (the caller
// passes a value it cannot be, so the reads are not optimized away).
__global__ void ReadAllKernel(const uint4* words, int64_t count, uint32_t never, uint32_t* sink) {
  uint32_t folded = 0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const uint4 w = __ldcg(words + i);
    folded ^= w.x ^ w.y ^ w.z ^ w.w;
  }
  if (folded == never) *sink = folded;
}

}  // namespace

cudaError_t LaunchReadAll(const void* buffer, int64_t bytes, uint32_t* sink, cudaStream_t stream) {
  int sms = 0, device = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  ReadAllKernel<<<sms * 8, 256, 0, stream>>>(static_cast<const uint4*>(buffer), bytes / 16, 0xFFFFFFFFu, sink);
  return cudaGetLastError();
}

}  // namespace ixc::bench
