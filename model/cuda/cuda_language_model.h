// File: model/cuda/cuda_language_model.h
//
// The language model on one GPU (or one rank's TP slice of it): weights in bf16 or f16 in device memory, allocated
// once; a paged KV pool sized from the free memory; a forward with LanguageModelForwardBatch's semantics built from
// kernels/cuda: cuBLASLt GEMMs (LoRA terms included), fused residual + RMSNorm, RoPE + KV store, flash prefill,
// split-KV decode batched across sequences, SwiGLU, and the next token's choice where a call asks for it
// (TokenChoice: penalty, temperature, argmax, top-k / top-p on the device). The residual stream stays f32; GEMM
// inputs and the KV cache are in `dtype`.
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

#include <array>
#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "model/batch_metadata.h"
#include "model/cuda/device_resources.h"
#include "model/cuda/scratch_plan.h"
#include "model/forward_segment.h"
#include "model/kv_cache.h"
#include "model/language_model.h"

namespace ixc::model {

struct CudaModelOptions {
  DType dtype = DType::kBF16;             // weights, GEMM inputs and the KV cache: bf16 or f16
  int block_size = 16;                    // KV cache block, in tokens
  // Device memory left free after the KV pool (scratch, cuBLASLt), at least what a forward call at the smallest
  // limits takes (ScratchPlan::ReserveBytes; 556 MiB of the 7B).
  int64_t kv_reserve_bytes = int64_t{4} << 30;
  int kv_blocks = 0;                      // the pool's blocks, exactly (fails where they do not fit); 0: all that fit
  // Decode steps (one token per sequence, no TP or SP) replay a CUDA graph captured once per batch shape, instead of
  // launching some 400 kernels from the host (--cuda-graphs, on by default; --nocuda-graphs launches them eagerly).
  bool decode_graphs = true;
  int device = 0;
  // Rows of one forward call at most, of either kind (CallLimits): a longer prompt is prefilled in chunks
  // (model/chunked_forward.h), so its scratch fits. 0: as many as half of kv_reserve_bytes holds (ScratchPlan::Limits:
  // 12K of the 7B's rows in 4 GiB, 1.4K of them with logits), at least 1024 and 64.
  int64_t max_rows_per_call = 0;
  // Rows of the longest ring prefill shard this model must take in one call (with SP: the longest prompt's block-cyclic
  // shard, a cached prefix's rows included, which is not cut into chunks): the KV pool then leaves room for its scratch
  // besides half of kv_reserve_bytes (ReserveBytes), so such a prompt cannot run out of memory halfway. 0: no ring
  // prefills.
  int64_t ring_rows = 0;
  // Rows of input embeddings a cluster worker keeps on this GPU beside the model (the NCCL handoff: the longest image
  // prompt's rows, or its shard, f32): the pool leaves room for them too. 0: none.
  int64_t input_rows = 0;
};

class CudaLanguageModel : public DeviceLanguageModel {
 public:
  // Segments of at most this many tokens attend through the decode kernel (batched across sequences); longer ones
  // through flash attention. Decode rows per launch are bounded (kDecodeRowsPerLaunch: the split-KV workspace).
  static constexpr int64_t kDecodeMaxTokens = 4;

  // Copies `weights` (this rank's TP slice) to the device, converting to options.dtype.
  static absl::StatusOr<std::shared_ptr<CudaLanguageModel>> Upload(const LlmWeights& weights,
                                                                   const CudaModelOptions& options);
  // Seeded uniform weights of `config`'s shapes, made on the device (benchmarks at the 7B shape; no checkpoint), with
  // write-mode LoRAs of `write_lora_rank` (the sft and dpo pair's summed rank) on every linear layer where it is > 0.
  static absl::StatusOr<std::shared_ptr<CudaLanguageModel>> Random(const LlmConfig& config,
                                                                   const CudaModelOptions& options, uint64_t seed,
                                                                   int64_t write_lora_rank = 0);
  ~CudaLanguageModel() override;

  absl::Status ForwardBatch(const LlmWeights& weights, std::vector<BatchEntry>& batch, KvCache& cache,
                            parallel::DeviceComm* comm) override;
  CallLimits Limits() const override;
  absl::Status CopyKvBlock(const BlockCopy& copy) override;

  // The KV pool's blocks (a KvCache::BlocksOnly of this size does the bookkeeping), and the memory taken.
  int num_kv_blocks() const { return num_blocks_; }
  // The device memory the KV pool leaves free (ScratchPlan::ReserveBytes of the options: kv_reserve_bytes raised to a
  // call at the smallest limits and to a ring prefill of ring_rows, plus input_rows).
  int64_t ReserveBytes() const;
  // The scratch arithmetic of this rank's shard (Limits, ReserveBytes and EnsureScratch follow it).
  ScratchPlan scratch_plan() const { return {shard_, options_.dtype, tp_size_, max_lora_rank_}; }
  int64_t weight_bytes() const { return weight_bytes_; }
  int64_t kv_bytes() const { return kv_bytes_; }
  int64_t kv_block_bytes() const;  // one block's K or V of one layer
  cudaStream_t stream() const { return gpu_->stream; }
  // CudaModelOptions::decode_graphs, switched on a live model (the benchmark compares both).
  void set_decode_graphs(bool on) { options_.decode_graphs = on; }

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
    Lora plora, web;
    // The write mode's sft and dpo LoRAs as one: A stacked along rows (rank_sft + rank_dpo, in), B along columns
    // (out, rank_sft + rank_dpo), so B (A x) is both their terms in two products instead of four.
    Lora write;
  };
  struct Layer {
    float* attn_norm = nullptr;
    Linear qkv, attn_out, gate, up, down;
    float* ffn_norm = nullptr;
  };
  // Which rows get which low-rank terms (device masks; null: no such row).
  struct Masks {
    const uint8_t* image = nullptr;
    const uint8_t* web = nullptr;
    bool web_all = false;
    const uint8_t* write = nullptr;
    bool write_all = false;
  };
  // A LoRA of a call's linear layer with the rows it applies to (all rows where `all`).
  struct LoraTerm {
    const Lora* lora = nullptr;
    const uint8_t* mask = nullptr;
    bool all = false;
  };
  // The LoRAs `masks` asks of `linear`, into terms; how many.
  static int LoraTerms(const Linear& linear, const Masks& masks, LoraTerm (&terms)[3]);
  // One forward call's metadata (model/batch_metadata.h lays it out, the parts whose size depends on the rows alone
  // first, so a decode batch of one shape finds them at the same addresses) and where it sits on the device.
  struct CallPlan {
    BatchMetadata layout;             // offsets into the upload; its ints stay on the host
    const int32_t* device = nullptr;  // the upload
    Masks masks;
    Masks logit_masks;  // of the logit rows, compacted (the last layer of a prefill: LaunchLayers)
    const int32_t* at(int64_t offset) const { return device + offset; }
  };
  // A captured decode step: the batch shape and what its kernels were launched with.
  struct GraphKey {
    int64_t rows = 0;
    std::vector<int64_t> decode_buckets;  // each decode run's max_visible, rounded up
    std::vector<uint32_t> rope;           // each segment's RoPE base and position scale, as bits
    int masks = 0;                        // which low-rank terms are on
    uintptr_t metadata = 0, scratch = 0;  // the buffers the launches read (graphs are dropped when they move)
    auto operator<=>(const GraphKey&) const = default;
  };
  // Where UploadChoices put a call's token-choice data in choice_ (byte offsets).
  struct ChoicePlan {
    int64_t rows_at = 0;  // (n, vocab) f32 whole rows (with TP: the gathered slices side by side)
    int64_t ids_at = 0;   // (n) int32 chosen ids
    int64_t offsets_at = 0;  // (n + 1) int32 offsets into the penalized ids, which follow them
    int64_t penalties_at = 0, temperatures_at = 0;  // (n) f32 each
    int64_t sampled_at = 0;                         // (sampled) kernels::cuda::SampledRow
    int64_t sampled = 0;  // rows that draw (the others take the argmax)
    bool adjust = false;  // some row has a repetition penalty or a temperature to apply
  };
  // What a ring prefill's attention needs (PlanRing).
  struct RingPlan {
    int size = 1, rank = 0;
    int64_t capacity = 0;               // the largest shard, in tokens: every block travels at this size
    std::vector<int64_t> counts;        // (size) tokens of each rank's shard: a cached prefix's and the new rows
    const int32_t* table = nullptr;     // {0}: a block is one KV block of `capacity` slots (device)
    const int32_t* slots = nullptr;     // (tokens) past..past+tokens-1: the new rows into its own block (device)
    const int32_t* last_key = nullptr;  // (size, tokens): per source rank's block, each query's last visible key
  };

  explicit CudaLanguageModel(const LlmConfig& shard, const CudaModelOptions& options);
  absl::Status CreateRuntime();
  absl::Status AllocateKvPool();
  absl::Status EnsureScratch(int64_t rows, int64_t logit_rows);

  // The forward (cuda_forward.cc). Positions, slots, visible keys, block tables and masks in one upload; with
  // `bucket_decode` each decode run's max_visible is rounded up (a graph then serves a range of lengths).
  absl::StatusOr<CallPlan> PlanCall(const std::vector<Segment>& segments, int64_t rows, bool bucket_decode);
  // Every layer, the final norm and the head GEMM of the wanted rows into logits_: launches on the stream (and,
  // with TP or SP, the comm's transfers).
  absl::Status LaunchLayers(const std::vector<Segment>& segments, const CallPlan& plan, SpAttention sp_mode,
                            const std::optional<RingPlan>& ring, parallel::DeviceComm* comm);
  // LaunchLayers of a decode batch, captured as a CUDA graph the first time its key is seen and replayed after.
  absl::Status LaunchLayersAsGraph(const std::vector<Segment>& segments, const CallPlan& plan);
  // LaunchLayers of a decode batch captured and instantiated.
  absl::StatusOr<cudaGraphExec_t> CaptureLayers(const std::vector<Segment>& segments, const CallPlan& plan);
  void DropGraphs();
  // The TP group's logits_ of `rows` rows into gathered_ (TP, rows, local vocab).
  absl::Status GatherLogits(int64_t rows, parallel::DeviceComm& comm);
  // logits_ (TP-gathered) to each segment's host logits; a ring prefill's block summed over the SP group.
  absl::Status DistributeLogits(const LlmWeights& weights, const std::vector<Segment>& segments, const CallPlan& plan,
                                SpAttention sp_mode, parallel::DeviceComm* comm);
  // Token choice on the device (cuda_token_choice.cc). Whether every segment of the call wants its next token and
  // can have it chosen here (one logit row each, no ring prefill).
  static bool ChoosesOnDevice(const std::vector<Segment>& segments, const CallPlan& plan, SpAttention sp_mode);
  // Each row's penalized ids, penalty, temperature and draw to choice_, before the layers are launched.
  absl::Status UploadChoices(const std::vector<Segment>& segments);
  // After the head: whole rows (TP-gathered), penalty and temperature, argmax, the draws; each segment's id to its
  // choice.
  absl::Status ChooseTokens(const std::vector<Segment>& segments, parallel::DeviceComm* comm);
  // y = x . W^T (+ LoRA terms on the masked rows), or y += that; y in out_dtype. With `norm`, x (normed_) is
  // RmsNorm(norm's residual) made by the weight pass itself, which writes it to x for the LoRA terms. With
  // `with_bias`, the layer's bias (if any) is added too, in the GEMM's epilogue where y is f32.
  absl::Status ApplyLinear(const Linear& linear, const void* x, int64_t rows, const Masks& masks, void* y,
                           DType out_dtype, const kernels::cuda::RmsNormInput* norm = nullptr, bool accumulate = false,
                           bool with_bias = false);
  // gate_ = silu(normed_ . gate^T) * (normed_ . up^T), LoRA terms and biases included; decode rows without them
  // in one weight-streaming pass over both weights, and with IXC_FEWER_DECODE_KERNELS=1 those of one LoRA in three
  // (gate's and up's base and A products, then both B products with SwiGLU: Gemm::LowRankSwiGlu). With `norm`,
  // normed_ is made from the residual first (by the first pass).
  absl::Status FeedForwardFirstHalf(const Layer& w, int64_t rows, const Masks& masks,
                                    const kernels::cuda::RmsNormInput* norm = nullptr);

  // Sequence parallelism (cuda_sp_attention.cc). Every SP rank's shard size and positions, and what the ring's
  // attention needs on the device; fails alike on every rank where a rank holds no token of the prompt.
  absl::StatusOr<RingPlan> PlanRing(const Segment& segment, parallel::DeviceComm& comm);
  // attention_ and lse_ of the segment's rows (it runs alone) over the whole sequence: this rank's rotated K/V (a
  // cached prefix's rows of layer `layer`, then the new ones) go around the SP ring, each block attended to as it
  // passes and merged by log-sum-exp.
  absl::Status RingAttention(const Segment& segment, const RingPlan& plan, const int32_t* positions, int layer,
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
  GrowingBuffer scratch_;
  float* x_ = nullptr;          // (rows, hidden) f32 residual stream
  float* delta_ = nullptr;      // (rows, hidden) f32 sublayer output
  void* normed_ = nullptr;      // (rows, hidden)
  void* qkv_ = nullptr;         // (rows, qkv_size)
  void* q_ = nullptr;           // (rows, heads, head_dim)
  void* attention_ = nullptr;   // (rows, heads, head_dim)
  void* gate_ = nullptr;        // (rows, intermediate)
  void* up_ = nullptr;          // (rows, intermediate)
  void* low_rank_ = nullptr;    // (2, rows, max LoRA rank): the A products of gate and up for LowRankSwiGlu
  void* head_in_ = nullptr;     // (logit rows, hidden)
  float* logits_ = nullptr;     // (logit rows, local vocab)
  float* gathered_ = nullptr;   // (TP, logit rows, local vocab); only with TP
  float* lse_ = nullptr;         // (rows, heads) f32: the attention's log-sum-exp, for the SP merges
  float* decode_workspace_ = nullptr;
  int64_t decode_workspace_floats_ = 0;
  int64_t max_lora_rank_ = 0;
  // Per-call metadata (CallPlan): positions, slots, masks, block tables, decode rows.
  GrowingBuffer metadata_;
  std::map<GraphKey, cudaGraphExec_t> graphs_;  // with options_.decode_graphs
  // Sequence parallelism: the ring's K/V blocks in hand and in flight, a block's partial attention, the ring's
  // metadata, and the staging of the SP group's exchanges.
  GrowingBuffer ring_blocks_[2], ring_out_, ring_lse_, ring_metadata_, sp_send_, sp_gathered_;
  // Token choice: the call's parameters, chosen ids and (with TP) whole logit rows; where they are.
  GrowingBuffer choice_;
  ChoicePlan choice_plan_;
};

// Uploads `weights` to the GPU and sets weights.device, so that every forward call on them runs there. Returns the
// KV cache bookkeeping for the device pool. Fails with a clear message where there is no usable GPU.
absl::StatusOr<KvCache> AttachCudaModel(LlmWeights& weights, const CudaModelOptions& options);

}  // namespace ixc::model
