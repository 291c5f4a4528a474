// Token choice. Argmax: one block per row. Top-k / top-p: one block of 1024 threads per row, in passes over the
// vocabulary (it stays in L2): a radix select finds the k-th largest logit, a second radix select over
// (logit, id) keys weighted by probability finds where HF's top-p cut falls, and a block-wide scan over ids finds
// the token at the uniform draw.
#include <algorithm>
#include <cfloat>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/grid_stride.cuh"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/warp_sum.cuh"

namespace ixc::kernels::cuda {
namespace {

constexpr int kThreads = 1024;

__global__ void ArgmaxKernel(const float* logits, int64_t vocab, int32_t* ids) {
  const float* row = logits + blockIdx.x * vocab;
  float best = -INFINITY;
  int64_t best_id = vocab;  // larger than any id: loses every tie
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (row[i] > best) {  // strictly greater: a thread's lowest id wins its ties
      best = row[i];
      best_id = i;
    }
  }
  __shared__ float values[kThreads / 32];
  __shared__ int64_t indices[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffff, best, offset);
    const int64_t other_id = __shfl_xor_sync(0xffffffff, best_id, offset);
    if (other > best || (other == best && other_id < best_id)) {
      best = other;
      best_id = other_id;
    }
  }
  if (threadIdx.x % 32 == 0) {
    values[threadIdx.x / 32] = best;
    indices[threadIdx.x / 32] = best_id;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) {
      if (values[w] > best || (values[w] == best && indices[w] < best_id)) {
        best = values[w];
        best_id = indices[w];
      }
    }
    ids[blockIdx.x] = best_id < vocab ? static_cast<int32_t>(best_id) : 0;  // all NaN: token 0
  }
}

// Order-preserving unsigned image of a float: a < b  <=>  FloatKey(a) < FloatKey(b).
__device__ inline uint32_t FloatKey(float value) {
  const uint32_t bits = __float_as_uint(value);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__device__ float BlockMax(float value, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(0xffffffff, value, offset));
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  float total = -INFINITY;
  for (int w = 0; w < kThreads / 32; ++w) total = fmaxf(total, scratch[w]);
  return total;
}

__device__ double BlockSum(double value, double* scratch) {
  value = WarpSum(value);
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kThreads / 32; ++w) total += scratch[w];
  return total;
}

// The radix selects' histograms: logits crowd into a few digits (at the top digit nearly all of them share one or
// two), where an atomic per element would queue on the same shared word. Every lane of the warp calls these once per
// round (digit 256: nothing to add), and the lanes with the same digit add together: one atomic per distinct digit.
__device__ inline void CountDigits(uint32_t* counts, int digit) {
  const unsigned same = __match_any_sync(0xffffffffu, digit);
  if (digit < 256 && __ffs(same) - 1 == static_cast<int>(threadIdx.x % 32)) atomicAdd(&counts[digit], __popc(same));
}

__device__ inline void AddToDigits(double* bins, int digit, double weight) {
  unsigned pending = __ballot_sync(0xffffffffu, digit < 256);
  while (pending != 0) {  // the same on every lane: one round per distinct digit
    const int leader = __ffs(pending) - 1;
    const int current = __shfl_sync(0xffffffffu, digit, leader);
    const double sum = WarpSum(digit == current ? weight : 0.0);
    if (static_cast<int>(threadIdx.x % 32) == leader) atomicAdd(&bins[current], sum);
    pending &= ~__ballot_sync(0xffffffffu, digit == current);
  }
}

// A token's probability mass before normalization, in double as kernels::DrawFromAscending sums them: a draw near a
// boundary then falls the same way. Both draws use it, so that they keep the same tokens.
__device__ inline double Mass(float logit, float max_logit) { return exp(static_cast<double>(logit - max_logit)); }

// values (kThreads) in shared memory -> their inclusive prefix sums (Hillis-Steele), by the whole block.
__device__ void InclusiveScan(double* values) {
  __syncthreads();
  for (int offset = 1; offset < kThreads; offset *= 2) {
    const double add = threadIdx.x >= offset ? values[threadIdx.x - offset] : 0.0;
    __syncthreads();
    values[threadIdx.x] += add;
    __syncthreads();
  }
}

// keys (kThreads) in shared memory sorted ascending by a bitonic network, by the whole block.
__device__ void BitonicSort(uint64_t* keys) {
  __syncthreads();
  for (int size = 2; size <= kThreads; size *= 2) {
    for (int stride = size / 2; stride > 0; stride /= 2) {
      const int i = threadIdx.x, j = i ^ stride;
      if (j > i) {
        const uint64_t a = keys[i], b = keys[j];
        if ((a > b) == ((i & size) == 0)) {  // out of this run's order (ascending where bit `size` of i is 0)
          keys[i] = b;
          keys[j] = a;
        }
      }
      __syncthreads();
    }
  }
}

// Top-p and the draw where top-k keeps at most kThreads tokens (k = 40 or 50 in IXC-2.5's modes): the kept tokens
// gathered into shared memory and sorted, HF's cut found by one scan of their masses in (logit, id) order and the
// draw by one in id order, in place of eight radix passes and a scan over the whole vocabulary. The same choice as
// that path: the same masses and cut rule, sums in another order (in double, as kernels::DrawFromAscending's).
// Returns false, on every thread, where more tokens are kept (ties at the k-th logit), leaving the draw undone.
__device__ bool DrawAmongFew(const float* logits, int64_t vocab, uint32_t kth_key, float max_logit, double total,
                             float top_p, double uniform, int32_t* id, double* scan) {
  __shared__ uint64_t keys[kThreads];  // (FloatKey(logit), id), then ids; the padding sorts last
  __shared__ int kept_s;
  if (threadIdx.x == 0) kept_s = 0;
  keys[threadIdx.x] = ~0ull;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const uint32_t key = FloatKey(logits[i]);
    if (key < kth_key) continue;
    const int slot = atomicAdd(&kept_s, 1);
    if (slot < kThreads) keys[slot] = (static_cast<uint64_t>(key) << 32) | static_cast<uint64_t>(i);
  }
  __syncthreads();
  const int kept = kept_s;
  if (kept == 0 || kept > kThreads) return false;
  BitonicSort(keys);
  const int j = threadIdx.x;
  const int64_t token = static_cast<int64_t>(keys[j] & 0xffffffffu);
  const double mass = j < kept ? Mass(logits[token], max_logit) : 0.0;
  // HF's top-p: in ascending (logit, id) order drop the tokens whose inclusive cumulative mass is <= (1 - top_p) of
  // the total; the most likely one always stays.
  scan[j] = mass;
  InclusiveScan(scan);
  const bool dropped = top_p < 1.f && j < kept && scan[j] <= (1.0 - top_p) * total;
  const int cut = min(__syncthreads_count(dropped), kept - 1);
  // The draw in ascending id order over the tokens left, [cut, kept) in that order: sorted again by id alone.
  __syncthreads();
  keys[j] = j >= cut && j < kept ? token : ~0ull;
  BitonicSort(keys);
  const int count = kept - cut;
  const int64_t by_id = static_cast<int64_t>(keys[j]);  // the j-th kept id, for j < count
  scan[j] = j < count ? Mass(logits[by_id], max_logit) : 0.0;
  InclusiveScan(scan);
  const double goal = uniform * scan[count - 1];
  const double before = j == 0 ? 0.0 : scan[j - 1];
  if (j < count && before <= goal && goal < scan[j]) *id = static_cast<int32_t>(by_id);
  if (j == 0 && !(goal < scan[count - 1])) *id = static_cast<int32_t>(keys[count - 1]);  // rounding: the last kept
  return true;
}

// One row's draw by the whole block (kThreads threads).
__device__ void TopKTopPRow(const float* logits, int64_t vocab, int top_k, float top_p, double uniform, int32_t* id) {
  __shared__ float scratch[kThreads / 32];
  __shared__ double bins[256];
  __shared__ double sum_scratch[kThreads / 32];
  __shared__ uint32_t counts[256];
  __shared__ uint64_t prefix_s;
  __shared__ double below_s;
  __shared__ uint32_t remaining_s;
  const float max_logit = BlockMax([&] {
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) m = fmaxf(m, logits[i]);
    return m;
  }(), scratch);

  // Top-k: the k-th largest logit value by a most-significant-digit-first radix select over FloatKey.
  uint32_t kth_key = 0;  // keep logits whose key >= kth_key
  if (top_k > 0 && top_k < vocab) {
    uint32_t prefix = 0, remaining = static_cast<uint32_t>(top_k);
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = threadIdx.x; b < 256; b += kThreads) counts[b] = 0;
      __syncthreads();
      const uint32_t high_mask = shift == 24 ? 0u : ~0u << (shift + 8);
      for (int64_t base = 0; base < vocab; base += kThreads) {  // whole warps every round (CountDigits)
        const int64_t i = base + threadIdx.x;
        const uint32_t key = i < vocab ? FloatKey(logits[i]) : 0u;
        const bool counted = i < vocab && (key & high_mask) == (prefix & high_mask);
        CountDigits(counts, counted ? static_cast<int>((key >> shift) & 0xff) : 256);
      }
      __syncthreads();
      if (threadIdx.x == 0) {  // from the top digit down until `remaining` are covered
        int digit = 255;
        while (digit > 0 && counts[digit] < remaining) remaining -= counts[digit--];
        prefix_s = prefix | (static_cast<uint32_t>(digit) << shift);
        remaining_s = remaining;
      }
      __syncthreads();
      prefix = static_cast<uint32_t>(prefix_s);
      remaining = remaining_s;
      __syncthreads();
    }
    kth_key = prefix;
  }
  auto kept_by_k = [&](float logit) { return FloatKey(logit) >= kth_key; };
  auto weight = [&](float logit) { return Mass(logit, max_logit); };

  double local = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    if (kept_by_k(logits[i])) local += weight(logits[i]);
  }
  const double total = BlockSum(local, sum_scratch);
  __shared__ double prefix_sums[kThreads];
  if (top_k > 0 && DrawAmongFew(logits, vocab, kth_key, max_logit, total, top_p, uniform, id, prefix_sums)) return;

  // Top-p (HF): ascending by (logit, id), drop the tokens whose cumulative probability is <= 1 - top_p; the most
  // likely one always stays. The cut is the smallest 64-bit key (FloatKey(logit), id) whose inclusive cumulative
  // mass exceeds (1 - top_p) * total: a radix select over those keys with masses for counts.
  uint64_t cut = 0;  // keep keys >= cut
  if (top_p < 1.f) {
    const double target = (1.0 - top_p) * total;
    uint64_t prefix = 0;
    double below = 0.0;  // mass of the keys below the prefix
    for (int shift = 56; shift >= 0; shift -= 8) {
      for (int b = threadIdx.x; b < 256; b += kThreads) bins[b] = 0.0;
      __syncthreads();
      const uint64_t high_mask = shift == 56 ? 0ull : ~0ull << (shift + 8);
      for (int64_t base = 0; base < vocab; base += kThreads) {  // whole warps every round (AddToDigits)
        const int64_t i = base + threadIdx.x;
        int digit = 256;
        double mass = 0.0;
        if (i < vocab && kept_by_k(logits[i])) {
          const uint64_t key = (static_cast<uint64_t>(FloatKey(logits[i])) << 32) | static_cast<uint64_t>(i);
          if ((key & high_mask) == (prefix & high_mask)) {
            digit = static_cast<int>((key >> shift) & 0xff);
            mass = weight(logits[i]);
          }
        }
        AddToDigits(bins, digit, mass);
      }
      __syncthreads();
      if (threadIdx.x == 0) {  // the lowest digit at which the cumulative mass passes the target
        int digit = 0;
        while (digit < 255 && below + bins[digit] <= target) below += bins[digit++];
        prefix_s = prefix | (static_cast<uint64_t>(digit) << shift);
        below_s = below;
      }
      __syncthreads();
      prefix = prefix_s;
      below = below_s;
      __syncthreads();
    }
    cut = prefix;
  }
  auto kept = [&](int64_t i) {
    const float logit = logits[i];
    if (!kept_by_k(logit)) return false;
    return ((static_cast<uint64_t>(FloatKey(logit)) << 32) | static_cast<uint64_t>(i)) >= cut;
  };

  // The draw: contiguous id ranges per thread, a block scan of their kept masses, then one thread walks its range.
  const int64_t per_thread = (vocab + kThreads - 1) / kThreads;
  const int64_t first = threadIdx.x * per_thread, last = min(vocab, first + per_thread);
  double mine = 0.0;
  int64_t last_kept = -1;
  for (int64_t i = first; i < last; ++i) {
    if (kept(i)) {
      mine += weight(logits[i]);
      last_kept = i;
    }
  }
  __shared__ int64_t last_kept_s[kThreads];
  prefix_sums[threadIdx.x] = mine;
  last_kept_s[threadIdx.x] = last_kept;
  InclusiveScan(prefix_sums);
  const double kept_total = prefix_sums[kThreads - 1];
  const double goal = uniform * kept_total;
  const double before = threadIdx.x == 0 ? 0.0 : prefix_sums[threadIdx.x - 1];
  if (before <= goal && goal < prefix_sums[threadIdx.x] && mine > 0.0) {
    double cumulative = before;
    int64_t chosen = last_kept;
    for (int64_t i = first; i < last; ++i) {
      if (!kept(i)) continue;
      cumulative += weight(logits[i]);
      if (cumulative > goal) {
        chosen = i;
        break;
      }
    }
    *id = static_cast<int32_t>(chosen);
  }
  if (threadIdx.x == 0 && !(goal < kept_total)) {  // rounding put the goal past the end: the last kept id
    int64_t chosen = 0;
    for (int t = kThreads - 1; t >= 0; --t) {
      if (last_kept_s[t] >= 0) {
        chosen = last_kept_s[t];
        break;
      }
    }
    *id = static_cast<int32_t>(chosen);
  }
}

__global__ void __launch_bounds__(kThreads) TopKTopPKernel(const float* logits, int64_t vocab, int top_k, float top_p,
                                                          double uniform, int32_t* id) {
  TopKTopPRow(logits, vocab, top_k, top_p, uniform, id);
}

// One block per drawn row.
__global__ void __launch_bounds__(kThreads) TopKTopPRowsKernel(const float* logits, int64_t vocab,
                                                              const SampledRow* rows, int32_t* ids) {
  const SampledRow row = rows[blockIdx.x];
  TopKTopPRow(logits + row.row * vocab, vocab, row.top_k, row.top_p, row.uniform, ids + row.row);
}

// The repetition penalty on each row's listed ids (distinct within a row), as kernels::ApplyRepetitionPenalty.
__global__ void PenalizeKernel(float* logits, int64_t vocab, const int32_t* offsets, const int32_t* ids,
                               const float* penalties) {
  const int64_t row = blockIdx.x;
  const float penalty = penalties[row];
  for (int32_t j = offsets[row] + threadIdx.x; j < offsets[row + 1]; j += blockDim.x) {
    float& logit = logits[row * vocab + ids[j]];
    logit = logit < 0.f ? logit * penalty : logit / penalty;
  }
}

// logits / temperature, the division SampleToken makes (IEEE, so the draw sees the host's values).
__global__ void DivideKernel(float* logits, int64_t vocab, const float* temperatures) {
  const float temperature = temperatures[blockIdx.y];
  if (temperature == 1.f) return;
  float* row = logits + blockIdx.y * vocab;
  IXC_GRID_STRIDE(i, vocab) {  // over x only: the row is blockIdx.y
    row[i] /= temperature;
  }
}

}  // namespace

absl::Status LaunchPenaltyAndTemperature(float* logits, int64_t rows, int64_t vocab, const int32_t* offsets,
                                         const int32_t* ids, const float* penalties, const float* temperatures,
                                         cudaStream_t stream) {
  if (rows < 0 || rows > 65535 || vocab <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("PenaltyAndTemperature: rows ", rows, ", vocab ", vocab));
  }
  if (rows == 0) return absl::OkStatus();
  PenalizeKernel<<<static_cast<unsigned>(rows), 256, 0, stream>>>(logits, vocab, offsets, ids, penalties);
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((vocab + 1023) / 1024, 64));
  DivideKernel<<<dim3(blocks, static_cast<unsigned>(rows)), 256, 0, stream>>>(logits, vocab, temperatures);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status LaunchArgmax(const float* logits, int64_t rows, int64_t vocab, int32_t* ids, cudaStream_t stream) {
  if (rows < 0 || vocab <= 0) return absl::InvalidArgumentError(absl::StrCat("Argmax: rows ", rows, ", vocab ", vocab));
  if (rows == 0) return absl::OkStatus();
  ArgmaxKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, ids);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status LaunchTopKTopPSample(const float* logits, int64_t vocab, int top_k, float top_p, double uniform,
                                  int32_t* id, cudaStream_t stream) {
  if (vocab <= 0 || vocab > INT32_MAX || top_k < 0 || !(top_p > 0.f && top_p <= 1.f) ||
      !(uniform >= 0.0 && uniform < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("TopKTopPSample: vocab ", vocab, ", top_k ", top_k, ", top_p ",
                                                   top_p, ", uniform ", uniform));
  }
  TopKTopPKernel<<<1, kThreads, 0, stream>>>(logits, vocab, top_k, top_p, uniform, id);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status CheckSampledRow(const SampledRow& row) {
  if (row.row >= 0 && row.top_k >= 0 && row.top_p > 0.f && row.top_p <= 1.f && row.uniform >= 0.0 &&
      row.uniform < 1.0) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("TopKTopPSampleRows: row ", row.row, ", top_k ", row.top_k,
                                                 ", top_p ", row.top_p, ", uniform ", row.uniform));
}

absl::Status LaunchTopKTopPSampleRows(const float* logits, int64_t vocab, const SampledRow* rows, int64_t count,
                                      int32_t* ids, cudaStream_t stream) {
  if (vocab <= 0 || vocab > INT32_MAX || count < 0 || count > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("TopKTopPSampleRows: vocab ", vocab, ", rows ", count));
  }
  if (count == 0) return absl::OkStatus();
  TopKTopPRowsKernel<<<static_cast<unsigned>(count), kThreads, 0, stream>>>(logits, vocab, rows, ids);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace ixc::kernels::cuda
