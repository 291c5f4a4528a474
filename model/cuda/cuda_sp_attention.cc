// Sequence parallelism on the GPU (architecture section 4), the counterpart of model/sp_attention.cc: the ring
// prefill and the gather-merge, over the NCCL DeviceComm's SP group on device buffers. The K/V blocks of the ring
// and the (out, lse) messages of the gather travel as raw bytes counted in floats (NCCL moves them unchanged).
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"
#include "model/batch_metadata.h"
#include "model/cuda/cuda_language_model.h"

namespace ixc::model {
namespace {

namespace kc = ::ixc::kernels::cuda;
constexpr parallel::Group kSp = parallel::Group::kSequence;

}  // namespace

absl::StatusOr<CudaLanguageModel::RingPlan> CudaLanguageModel::PlanRing(const Segment& segment,
                                                                        parallel::DeviceComm& comm) {
  RingPlan plan;
  plan.size = comm.GroupSize(kSp);
  plan.rank = comm.GroupRank(kSp);
  // This rank's K/V of the sequence: a cached prefix's rows (segment.past), then the call's new ones.
  const int64_t tokens = segment.tokens, held = segment.past + tokens;
  cudaStream_t stream = gpu_->stream;
  // Shard sizes, then every shard's positions padded to the largest (positions < 2^24 travel exactly as f32).
  IXC_RETURN_IF_ERROR(sp_send_.Reserve(4, stream, "SP exchange"));
  IXC_RETURN_IF_ERROR(sp_gathered_.Reserve(plan.size * 4, stream, "SP exchange"));
  const float mine = static_cast<float>(held);
  IXC_RETURN_IF_ERROR(CopyToDeviceNow(sp_send_.data(), &mine, 4, stream));
  IXC_RETURN_IF_ERROR(comm.AllGather(sp_send_.as<float>(), 1, sp_gathered_.as<float>(), kSp));
  std::vector<float> counts(plan.size);
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpy(counts.data(), sp_gathered_.data(), plan.size * 4, cudaMemcpyDeviceToHost));
  for (float count : counts) plan.counts.push_back(static_cast<int64_t>(count));
  plan.capacity = *std::max_element(plan.counts.begin(), plan.counts.end());
  if (*std::min_element(plan.counts.begin(), plan.counts.end()) == 0) {  // the same answer on every rank
    return absl::UnimplementedError(absl::StrCat(
        "a ring prefill on the cuda backend needs a token of the prompt on every SP rank: ", segment.context_length,
        " tokens over ", plan.size, " ranks leave one without (shards of ", absl::StrJoin(plan.counts, ", "), ")"));
  }
  std::vector<float> padded(plan.capacity, 0.f), all(plan.size * plan.capacity);
  std::copy_n(segment.seq->positions.begin(), held, padded.begin());
  IXC_RETURN_IF_ERROR(sp_send_.Reserve(plan.capacity * 4, stream, "SP exchange"));
  IXC_RETURN_IF_ERROR(sp_gathered_.Reserve(plan.size * plan.capacity * 4, stream, "SP exchange"));
  IXC_RETURN_IF_ERROR(CopyToDeviceNow(sp_send_.data(), padded.data(), plan.capacity * 4, stream));
  IXC_RETURN_IF_ERROR(comm.AllGather(sp_send_.as<float>(), plan.capacity, sp_gathered_.as<float>(), kSp));
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpy(all.data(), sp_gathered_.data(), all.size() * 4, cudaMemcpyDeviceToHost));

  // Device metadata: [0][slots (tokens)][last_key (size, tokens)].
  std::vector<std::vector<int32_t>> blocks(plan.size);
  for (int source = 0; source < plan.size; ++source) {
    const float* begin = all.data() + source * plan.capacity;
    blocks[source].assign(begin, begin + plan.counts[source]);
  }
  const std::vector<int32_t> last_keys = RingLastKeys(blocks, segment.positions);
  std::vector<int32_t> ints(1 + tokens, 0);
  for (int64_t t = 0; t < tokens; ++t) ints[1 + t] = static_cast<int32_t>(segment.past + t);
  ints.insert(ints.end(), last_keys.begin(), last_keys.end());
  IXC_RETURN_IF_ERROR(ring_metadata_.Reserve(static_cast<int64_t>(ints.size()) * 4, stream, "ring metadata"));
  IXC_RETURN_IF_ERROR(CopyToDeviceNow(ring_metadata_.data(), ints.data(), ints.size() * 4, stream));
  plan.table = ring_metadata_.as<int32_t>();
  plan.slots = plan.table + 1;
  plan.last_key = plan.slots + tokens;

  const ScratchPlan::RingBuffers bytes = scratch_plan().RingBufferBytes(plan.capacity, tokens);
  for (GrowingBuffer& block : ring_blocks_) IXC_RETURN_IF_ERROR(block.Reserve(bytes.block, stream, "ring K/V block"));
  IXC_RETURN_IF_ERROR(ring_out_.Reserve(bytes.out, stream, "ring partial attention"));
  IXC_RETURN_IF_ERROR(ring_lse_.Reserve(bytes.lse, stream, "ring partial attention"));
  return plan;
}

absl::Status CudaLanguageModel::RingAttention(const Segment& segment, const RingPlan& plan, const int32_t* positions,
                                              int layer, parallel::DeviceComm& comm) {
  const LlmConfig& c = shard_;
  const DType dtype = options_.dtype;
  const int64_t e = DTypeSize(dtype), d = c.head_dim, tokens = segment.tokens;
  const int64_t half = plan.capacity * c.num_kv_heads * d * e;  // K, then V, in a block
  cudaStream_t stream = gpu_->stream;
  auto pools_of = [&](void* block) {
    return kc::DeviceKvPools{block,          static_cast<uint8_t*>(block) + half,
                             dtype,          static_cast<int>(plan.capacity),
                             c.num_kv_heads, static_cast<int>(d)};
  };
  // This rank's rotated K/V as the first block: a cached prefix's rows copied from the paged pools, block by block,
  // then the new rows (q is rotated again, to the same values).
  void* current = ring_blocks_[0].data();
  void* next = ring_blocks_[1].data();
  const int64_t row_bytes = c.num_kv_heads * d * e, block = options_.block_size;
  for (int64_t first = 0; first < segment.past; first += block) {
    const int64_t bytes = std::min(block, segment.past - first) * row_bytes;
    const int64_t from = static_cast<int64_t>(segment.seq->block_table[first / block]) * block * row_bytes;
    uint8_t* k_target = static_cast<uint8_t*>(current) + first * row_bytes;
    IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(k_target, static_cast<const uint8_t*>(k_pools_[layer]) + from, bytes,
                                             cudaMemcpyDeviceToDevice, stream));
    IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(k_target + half, static_cast<const uint8_t*>(v_pools_[layer]) + from,
                                             bytes, cudaMemcpyDeviceToDevice, stream));
  }
  IXC_RETURN_IF_ERROR(kc::LaunchRopeAndStoreKv(qkv_, positions, plan.slots, tokens, c.q_heads_per_kv_head(),
                                               segment.rope, q_, pools_of(current), stream));
  IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // the block is complete before it is sent
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  const int64_t message = 2 * half / 4;
  for (int step = 0; step < plan.size; ++step) {
    // Send the block in hand on, take the previous rank's (on the comm's ring stream), attend to the one in hand.
    const int source = (plan.rank - step + plan.size) % plan.size;
    const bool more = step + 1 < plan.size;
    if (more) {
      IXC_RETURN_IF_ERROR(comm.StartSendRecv(static_cast<float*>(current), message, (plan.rank + 1) % plan.size,
                                             static_cast<float*>(next), message,
                                             (plan.rank + plan.size - 1) % plan.size, kSp));
    }
    const bool first = step == 0;
    IXC_RETURN_IF_ERROR(kc::LaunchFlashAttention(q_, plan.last_key + source * tokens, tokens, c.num_heads,
                                                 pools_of(current), plan.table, plan.counts[source],
                                                 segment.context_length, scale, first ? attention_ : ring_out_.data(),
                                                 first ? lse_ : ring_lse_.as<float>(), stream));
    if (!first) {
      IXC_RETURN_IF_ERROR(kc::LaunchMergeAttention(dtype, attention_, lse_, ring_out_.data(), ring_lse_.as<float>(),
                                                   tokens, c.num_heads, static_cast<int>(d), stream));
    }
    if (more) {
      IXC_RETURN_IF_ERROR(comm.Wait());
      // The block just attended to is the next step's receive buffer: its readers finish first.
      IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
      std::swap(current, next);
    }
  }
  return absl::OkStatus();
}

absl::Status CudaLanguageModel::GatherMerge(int64_t rows, parallel::DeviceComm& comm) {
  const LlmConfig& c = shard_;
  const DType dtype = options_.dtype;
  const int size = comm.GroupSize(kSp);
  const int64_t head_rows = rows * c.num_heads;
  const int64_t out_bytes = head_rows * c.head_dim * DTypeSize(dtype), message_bytes = out_bytes + head_rows * 4;
  cudaStream_t stream = gpu_->stream;
  // One message per rank: [out (rows, heads, head_dim), lse (rows, heads)].
  IXC_RETURN_IF_ERROR(sp_send_.Reserve(message_bytes, stream, "SP exchange"));
  IXC_RETURN_IF_ERROR(sp_gathered_.Reserve(size * message_bytes, stream, "SP exchange"));
  uint8_t* send = sp_send_.as<uint8_t>();
  uint8_t* gathered = sp_gathered_.as<uint8_t>();
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(send, attention_, out_bytes, cudaMemcpyDeviceToDevice, stream));
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(send + out_bytes, lse_, head_rows * 4, cudaMemcpyDeviceToDevice, stream));
  IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // the comm runs on its own stream
  IXC_RETURN_IF_ERROR(
      comm.AllGather(reinterpret_cast<float*>(send), message_bytes / 4, reinterpret_cast<float*>(gathered), kSp));
  // Rank 0's part, merged with the others' in rank order (the CPU's order).
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(attention_, gathered, out_bytes, cudaMemcpyDeviceToDevice, stream));
  IXC_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(lse_, gathered + out_bytes, head_rows * 4, cudaMemcpyDeviceToDevice, stream));
  for (int r = 1; r < size; ++r) {
    const uint8_t* part = gathered + r * message_bytes;
    IXC_RETURN_IF_ERROR(kc::LaunchMergeAttention(dtype, attention_, lse_, part,
                                                 reinterpret_cast<const float*>(part + out_bytes), rows, c.num_heads,
                                                 c.head_dim, stream));
  }
  return absl::OkStatus();
}

absl::Status CudaLanguageModel::SumOverSequenceGroup(std::vector<float>& block, parallel::DeviceComm& comm) {
  const int64_t bytes = static_cast<int64_t>(block.size()) * 4;
  IXC_RETURN_IF_ERROR(sp_send_.Reserve(bytes, gpu_->stream, "SP logits"));
  IXC_RETURN_IF_ERROR(CopyToDeviceNow(sp_send_.data(), block.data(), bytes, gpu_->stream));
  IXC_RETURN_IF_ERROR(comm.AllReduceSum(sp_send_.as<float>(), static_cast<int64_t>(block.size()), kSp));
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpy(block.data(), sp_send_.data(), bytes, cudaMemcpyDeviceToHost));
  return absl::OkStatus();
}

}  // namespace ixc::model
