// File: model/cuda/cuda_language_model.h
//
// The language model on one GPU (or one rank's TP slice of it): weights in bf16 or f16 in device memory, allocated
// once; a paged KV pool sized from the free memory; a forward with LanguageModelForwardBatch's semantics built from
// kernels/cuda: cuBLASLt GEMMs (LoRA terms included), fused residual + RMSNorm, RoPE + KV store, flash prefill,
// split-KV decode batched across sequences, SwiGLU. The residual stream stays f32; GEMM inputs and the KV cache are
// in `dtype`.
//
//   IXC_ASSIGN_OR_RETURN(KvCache cache, AttachCudaModel(weights, CudaModelOptions{}));  // --device cuda
//   ... LanguageModelForward(weights, input, seq, cache, &logits) now runs on the GPU ...
//
// Tensor and sequence parallelism take the NCCL DeviceComm (parallel/nccl_device_comm.h), whose calls move device
// buffers: TP sums the attention-out and FFN-down products and gathers the vocabulary slices; SP runs the ring prefill
// (K/V blocks travel on the comm's ring stream while the current block is attended to) and the gather-merge of
// decode and chunked prefill (model/cuda/cuda_sp_attention.cc), as the CPU path does.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "model/cuda/device_resources.h"
#include "model/forward_segment.h"
#include "model/kv_cache.h"
#include "model/language_model.h"

namespace ixc::model {

struct CudaModelOptions {
  DType dtype = DType::kBF16;             // weights, GEMM inputs and the KV cache: bf16 or f16
  int block_size = 16;                    // KV cache block, in tokens
  int64_t kv_reserve_bytes = int64_t{4} << 30;  // device memory left free after the KV pool (scratch, cuBLASLt)
  int kv_blocks = 0;                      // the pool's blocks, exactly (fails where they do not fit); 0: all that fit
  int device = 0;
};

class CudaLanguageModel : public DeviceLanguageModel {
 public:
  // Copies `weights` (this rank's TP slice) to the device, converting to options.dtype.
  static absl::StatusOr<std::shared_ptr<CudaLanguageModel>> Upload(const LlmWeights& weights,
                                                                   const CudaModelOptions& options);
  // Seeded uniform weights of `config`'s shapes, made on the device (benchmarks at the 7B shape; no checkpoint).
  static absl::StatusOr<std::shared_ptr<CudaLanguageModel>> Random(const LlmConfig& config,
                                                                   const CudaModelOptions& options, uint64_t seed);
  ~CudaLanguageModel() override;

  absl::Status ForwardBatch(const LlmWeights& weights, std::vector<BatchEntry>& batch, KvCache& cache,
                            parallel::DeviceComm* comm) override;

  // The KV pool's blocks (a KvCache::BlocksOnly of this size does the bookkeeping), and the memory taken.
  int num_kv_blocks() const { return num_blocks_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  int64_t kv_bytes() const { return kv_bytes_; }
  cudaStream_t stream() const { return gpu_->stream; }

 private:
  struct Lora {
    void* a = nullptr;  // (rank, in)
    void* b = nullptr;  // (out, rank)
    int64_t rank = 0;
  };
  struct Linear {
    void* weight = nullptr;  // (out, in)
    int64_t out = 0, in = 0;
    float* bias = nullptr;   // (out) or null
    Lora plora, web, sft, dpo;
  };
  struct Layer {
    float* attn_norm = nullptr;
    Linear qkv, attn_out, gate, up, down;
    float* ffn_norm = nullptr;
  };
  struct Masks;
  // What a ring prefill's attention needs (PlanRing).
  struct RingPlan {
    int size = 1, rank = 0;
    int64_t capacity = 0;               // the largest shard, in tokens: every block travels at this size
    std::vector<int64_t> counts;        // (size) tokens of each rank's shard
    const int32_t* table = nullptr;     // {0}: a block is one KV block of `capacity` slots (device)
    const int32_t* slots = nullptr;     // (tokens) 0..tokens-1: this rank's rows into its own block (device)
    const int32_t* last_key = nullptr;  // (size, tokens): per source rank's block, each query's last visible key
  };

  explicit CudaLanguageModel(const LlmConfig& shard, const CudaModelOptions& options);
  absl::Status CreateRuntime();
  absl::Status AllocateKvPool();
  absl::Status EnsureScratch(int64_t rows, int64_t logit_rows);
  // y = x . W^T (+ LoRA terms on the masked rows); y in out_dtype.
  absl::Status ApplyLinear(const Linear& linear, const void* x, int64_t rows, const Masks& masks, void* y,
                           DType out_dtype);

  // Sequence parallelism (cuda_sp_attention.cc). Every SP rank's shard size and positions, and what the ring's
  // attention needs on the device; fails alike on every rank where a rank holds no token of the prompt.
  absl::StatusOr<RingPlan> PlanRing(const Segment& segment, parallel::DeviceComm& comm);
  // attention_ and lse_ of the segment's rows (it runs alone) over the whole prompt: this rank's rotated K/V go
  // around the SP ring, each block attended to as it passes and merged by log-sum-exp.
  absl::Status RingAttention(const Segment& segment, const RingPlan& plan, const int32_t* positions,
                             parallel::DeviceComm& comm);
  // attention_ and lse_ of `rows` rows that every SP rank holds, each over its own shard of the keys, made exact on
  // every rank by one all-gather and a log-sum-exp merge.
  absl::Status GatherMerge(int64_t rows, parallel::DeviceComm& comm);
  // The SP group's sum of a ring prefill's logit block (each rank fills the rows of its positions).
  absl::Status SumOverSequenceGroup(std::vector<float>& block, parallel::DeviceComm& comm);

  LlmConfig shard_;   // this rank's heads, KV heads, intermediate size, vocabulary
  int tp_size_ = 1;   // the TP group the weights were sliced for
  CudaModelOptions options_;
  std::unique_ptr<GpuRuntime> gpu_;
  DeviceArena arena_;  // weights and the KV pool
  int64_t weight_bytes_ = 0, kv_bytes_ = 0;

  void* embeddings_ = nullptr;  // (vocab, hidden); the full vocabulary on every rank
  int64_t embedding_rows_ = 0;
  void* output_ = nullptr;      // (local vocab, hidden)
  float* final_norm_ = nullptr;
  std::vector<Layer> layers_;

  int num_blocks_ = 0;
  std::vector<void*> k_pools_, v_pools_;  // per layer: (num_blocks, block_size, kv_heads, head_dim)

  // Scratch for up to scratch_rows_ rows, grown on demand (the first long prefill allocates it).
  int64_t scratch_rows_ = 0, scratch_logit_rows_ = 0;
  void* scratch_ = nullptr;
  float* x_ = nullptr;          // (rows, hidden) f32 residual stream
  float* delta_ = nullptr;      // (rows, hidden) f32 sublayer output
  void* normed_ = nullptr;      // (rows, hidden)
  void* qkv_ = nullptr;         // (rows, qkv_size)
  void* q_ = nullptr;           // (rows, heads, head_dim)
  void* attention_ = nullptr;   // (rows, heads, head_dim)
  void* gate_ = nullptr;        // (rows, intermediate)
  void* up_ = nullptr;          // (rows, intermediate)
  void* low_rank_ = nullptr;    // (rows, max LoRA rank)
  void* head_in_ = nullptr;     // (logit rows, hidden)
  float* logits_ = nullptr;     // (logit rows, local vocab)
  float* gathered_ = nullptr;   // (TP, logit rows, local vocab); only with TP
  float* lse_ = nullptr;         // (rows, heads) f32: the attention's log-sum-exp, for the SP merges
  float* decode_workspace_ = nullptr;
  int64_t decode_workspace_floats_ = 0;
  int64_t max_lora_rank_ = 0;
  // Per-call metadata: positions, slots, masks, block tables, decode rows.
  int32_t* metadata_ = nullptr;
  int64_t metadata_ints_ = 0;
  // Sequence parallelism: the ring's K/V blocks in hand and in flight, a block's partial attention, the ring's
  // metadata, and the staging of the SP group's exchanges.
  GrowingBuffer ring_blocks_[2], ring_out_, ring_lse_, ring_metadata_, sp_send_, sp_gathered_;
};

// Uploads `weights` to the GPU and sets weights.device, so that every forward call on them runs there. Returns the
// KV cache bookkeeping for the device pool. Fails with a clear message where there is no usable GPU.
absl::StatusOr<KvCache> AttachCudaModel(LlmWeights& weights, const CudaModelOptions& options);

}  // namespace ixc::model
