#include "model/cuda/cuda_language_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status_macros.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/norm.h"
#include "model/forward_segment.h"

namespace ixc::model {
namespace {

namespace kc = ::ixc::kernels::cuda;


}  // namespace

CudaLanguageModel::CudaLanguageModel(const LlmConfig& shard, const CudaModelOptions& options)
    : shard_(shard), options_(options) {}

CudaLanguageModel::~CudaLanguageModel() {
  if (gpu_ != nullptr) cudaStreamSynchronize(gpu_->stream);
  DropGraphs();
}

absl::Status CudaLanguageModel::CreateRuntime() {
  if (options_.dtype == DType::kF32) {
    return absl::InvalidArgumentError("the cuda backend runs bf16 or f16 weights (--dtype bf16|f16), not f32");
  }
  IXC_ASSIGN_OR_RETURN(gpu_, GpuRuntime::Create(options_.device));
  return absl::OkStatus();
}

int64_t CudaLanguageModel::kv_block_bytes() const {
  return int64_t{options_.block_size} * shard_.num_kv_heads * shard_.head_dim * DTypeSize(options_.dtype);
}

absl::Status CudaLanguageModel::CopyKvBlock(const BlockCopy& copy) {
  if (copy.from < 0 || copy.to < 0 || copy.from >= num_blocks_ || copy.to >= num_blocks_) {
    return absl::InvalidArgumentError(absl::StrCat("a KV block copy from ", copy.from, " to ", copy.to,
                                                   " outside the pool of ", num_blocks_));
  }
  const int64_t bytes = kv_block_bytes();
  for (size_t l = 0; l < k_pools_.size(); ++l) {
    for (void* pool : {k_pools_[l], v_pools_[l]}) {
      uint8_t* base = static_cast<uint8_t*>(pool);
      IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(base + copy.to * bytes, base + copy.from * bytes, bytes,
                                               cudaMemcpyDeviceToDevice, gpu_->stream));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaLanguageModel::AllocateKvPool() {
  const LlmConfig& c = shard_;
  const int64_t pool_bytes_per_block = kv_block_bytes();
  const int64_t per_block = 2 * c.num_layers * pool_bytes_per_block;
  size_t free_bytes = 0, total_bytes = 0;
  IXC_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  const int64_t reserve = ReserveBytes();
  const int64_t fit =
      std::min<int64_t>((static_cast<int64_t>(free_bytes) - reserve) / per_block, INT32_MAX / options_.block_size);
  const int64_t blocks = options_.kv_blocks > 0 ? options_.kv_blocks : fit;
  if (blocks < 1 || blocks > fit) {
    // Why the reserve is what it is: the flag, at least a forward call of the smallest limits, a ring's scratch, the
    // input rows from the NCCL handoff.
    const int64_t without_ring = scratch_plan().ReserveBytes(options_.kv_reserve_bytes, 0);
    const int64_t without_inputs = scratch_plan().ReserveBytes(options_.kv_reserve_bytes, options_.ring_rows);
    const std::string why =
        absl::StrCat("--kv-reserve-mib",
                     without_ring > options_.kv_reserve_bytes
                         ? absl::StrCat(" raised to hold a forward call of ", ScratchPlan::kMinCallRows, " rows")
                         : "",
                     without_inputs > without_ring
                         ? absl::StrCat(" and a ring prefill's scratch for ", options_.ring_rows,
                                        " rows (the longest prompt's share of this SP rank: --max-context over --sp)")
                         : "",
                     reserve > without_inputs ? absl::StrCat(" and the input rows of a ", options_.input_rows,
                                                             "-row image prompt from the NCCL handoff (--max-context)")
                                              : "");
    return absl::ResourceExhaustedError(absl::StrCat(
        "no room for a KV cache of ", blocks, " blocks on the GPU (--kv-blocks): ", std::max<int64_t>(fit, 0),
        " fit in the ", free_bytes >> 20, " MiB free after the weights less the ", reserve >> 20,
        " MiB kept in reserve (", why, "), at ", per_block >> 10, " KiB per block"));
  }
  num_blocks_ = static_cast<int>(blocks);
  IXC_ASSIGN_OR_RETURN(void* pool, arena_.Allocate(blocks * per_block));
  kv_bytes_ = blocks * per_block;
  for (int l = 0; l < c.num_layers; ++l) {
    k_pools_.push_back(static_cast<uint8_t*>(pool) + (2 * l) * blocks * pool_bytes_per_block);
    v_pools_.push_back(static_cast<uint8_t*>(pool) + (2 * l + 1) * blocks * pool_bytes_per_block);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<CudaLanguageModel>> CudaLanguageModel::Upload(const LlmWeights& weights,
                                                                             const CudaModelOptions& options) {
  std::shared_ptr<CudaLanguageModel> model(new CudaLanguageModel(weights.shard, options));
  model->tp_size_ = weights.tp.size;
  IXC_RETURN_IF_ERROR(model->CreateRuntime());
  const DType dtype = options.dtype;
  DeviceArena& arena = model->arena_;
  auto matrix = [&](TensorView view) { return arena.UploadMatrix(view, dtype); };
  auto floats = [&](const std::vector<float>& values) { return arena.UploadFloats(values); };
  auto lora = [&](const LoraPair& pair, Lora& out) -> absl::Status {
    IXC_ASSIGN_OR_RETURN(out.a, matrix(pair.a));
    IXC_ASSIGN_OR_RETURN(out.b, matrix(pair.b));
    out.rank = pair.present() ? pair.a.dim(0) : 0;
    model->max_lora_rank_ = std::max(model->max_lora_rank_, out.rank);
    return absl::OkStatus();
  };
  auto linear = [&](const LinearWeights& in, Linear& out) -> absl::Status {
    IXC_ASSIGN_OR_RETURN(out.weight, matrix(in.weight));
    out.out = in.weight.dim(0);
    out.in = in.weight.dim(1);
    IXC_ASSIGN_OR_RETURN(out.bias, floats(in.bias));
    IXC_RETURN_IF_ERROR(lora(in.plora, out.plora));
    IXC_RETURN_IF_ERROR(lora(in.web, out.web));
    IXC_ASSIGN_OR_RETURN(out.write.a, arena.UploadConcatenated({in.sft.a, in.dpo.a}, dtype, 0));
    IXC_ASSIGN_OR_RETURN(out.write.b, arena.UploadConcatenated({in.sft.b, in.dpo.b}, dtype, 1));
    out.write.rank = (in.sft.present() ? in.sft.a.dim(0) : 0) + (in.dpo.present() ? in.dpo.a.dim(0) : 0);
    model->max_lora_rank_ = std::max(model->max_lora_rank_, out.write.rank);
    return absl::OkStatus();
  };
  IXC_ASSIGN_OR_RETURN(model->embeddings_, matrix(weights.tok_embeddings));
  model->embedding_rows_ = weights.tok_embeddings.dim(0);
  IXC_ASSIGN_OR_RETURN(model->output_, matrix(weights.output));
  IXC_ASSIGN_OR_RETURN(model->final_norm_, floats(weights.final_norm));
  model->layers_.resize(weights.layers.size());
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const LayerWeights& w = weights.layers[l];
    Layer& layer = model->layers_[l];
    IXC_ASSIGN_OR_RETURN(layer.attn_norm, floats(w.attn_norm));
    IXC_ASSIGN_OR_RETURN(layer.ffn_norm, floats(w.ffn_norm));
    IXC_RETURN_IF_ERROR(linear(w.attn_qkv, layer.qkv));
    IXC_RETURN_IF_ERROR(linear(w.attn_out, layer.attn_out));
    IXC_RETURN_IF_ERROR(linear(w.ffn_gate, layer.gate));
    IXC_RETURN_IF_ERROR(linear(w.ffn_up, layer.up));
    IXC_RETURN_IF_ERROR(linear(w.ffn_down, layer.down));
  }
  model->weight_bytes_ = arena.bytes();
  IXC_RETURN_IF_ERROR(model->AllocateKvPool());
  return model;
}

absl::StatusOr<std::shared_ptr<CudaLanguageModel>> CudaLanguageModel::Random(const LlmConfig& config,
                                                                             const CudaModelOptions& options,
                                                                             uint64_t seed, int64_t write_lora_rank) {
  std::shared_ptr<CudaLanguageModel> model(new CudaLanguageModel(config, options));
  IXC_RETURN_IF_ERROR(model->CreateRuntime());
  const DType dtype = options.dtype;
  DeviceArena& arena = model->arena_;
  auto matrix = [&](int64_t rows, int64_t cols) -> absl::StatusOr<void*> {
    IXC_ASSIGN_OR_RETURN(void* p, arena.Allocate(rows * cols * DTypeSize(dtype)));
    // Uniform with variance 1/cols: activations keep their scale through the layers.
    IXC_RETURN_IF_ERROR(kc::LaunchFillUniform(dtype, p, rows * cols, seed++, std::sqrt(3.f / static_cast<float>(cols)),
                                              model->stream()));
    return p;
  };
  auto ones = [&](int64_t n) { return arena.UploadFloats(std::vector<float>(n, 1.f)); };
  auto linear = [&](int64_t out, int64_t in, Linear& l) -> absl::Status {
    IXC_ASSIGN_OR_RETURN(l.weight, matrix(out, in));
    l.out = out;
    l.in = in;
    if (write_lora_rank > 0) {
      IXC_ASSIGN_OR_RETURN(l.write.a, matrix(write_lora_rank, in));
      IXC_ASSIGN_OR_RETURN(l.write.b, matrix(out, write_lora_rank));
      l.write.rank = write_lora_rank;
    }
    return absl::OkStatus();
  };
  model->max_lora_rank_ = write_lora_rank;
  const LlmConfig& c = config;
  IXC_ASSIGN_OR_RETURN(model->embeddings_, matrix(c.vocab_size, c.hidden_size));
  model->embedding_rows_ = c.vocab_size;
  IXC_ASSIGN_OR_RETURN(model->output_, matrix(c.vocab_size, c.hidden_size));
  IXC_ASSIGN_OR_RETURN(model->final_norm_, ones(c.hidden_size));
  model->layers_.resize(c.num_layers);
  for (Layer& layer : model->layers_) {
    IXC_ASSIGN_OR_RETURN(layer.attn_norm, ones(c.hidden_size));
    IXC_ASSIGN_OR_RETURN(layer.ffn_norm, ones(c.hidden_size));
    IXC_RETURN_IF_ERROR(linear(c.qkv_size(), c.hidden_size, layer.qkv));
    IXC_RETURN_IF_ERROR(linear(c.hidden_size, c.num_heads * c.head_dim, layer.attn_out));
    IXC_RETURN_IF_ERROR(linear(c.intermediate_size, c.hidden_size, layer.gate));
    IXC_RETURN_IF_ERROR(linear(c.intermediate_size, c.hidden_size, layer.up));
    IXC_RETURN_IF_ERROR(linear(c.hidden_size, c.intermediate_size, layer.down));
  }
  IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(model->stream()));
  model->weight_bytes_ = arena.bytes();
  IXC_RETURN_IF_ERROR(model->AllocateKvPool());
  return model;
}

CallLimits CudaLanguageModel::Limits() const {
  if (options_.max_rows_per_call > 0) return {options_.max_rows_per_call, options_.max_rows_per_call};
  return scratch_plan().Limits(options_.kv_reserve_bytes);
}

int64_t CudaLanguageModel::ReserveBytes() const {
  return scratch_plan().ReserveBytes(options_.kv_reserve_bytes, options_.ring_rows, options_.input_rows);
}

absl::Status CudaLanguageModel::EnsureScratch(int64_t rows, int64_t logit_rows) {
  if (rows <= scratch_rows_ && logit_rows <= scratch_logit_rows_) return absl::OkStatus();
  rows = std::max(rows, scratch_rows_);
  logit_rows = std::max(logit_rows, scratch_logit_rows_);
  const ScratchPlan plan = scratch_plan();
  decode_workspace_floats_ = plan.DecodeWorkspaceFloats(rows);
  const std::array<int64_t, ScratchPlan::kBuffers> sizes = plan.Sizes(rows, logit_rows);
  IXC_RETURN_IF_ERROR(scratch_.Reserve(
      plan.Bytes(rows, logit_rows), gpu_->stream,
      absl::StrCat("scratch for ", rows, " rows beside the KV pool (raise --kv-reserve-mib)").c_str()));
  DropGraphs();  // they read the old buffers (Reserve waited for them)
  uint8_t* p = scratch_.as<uint8_t>();
  void** slots[] = {reinterpret_cast<void**>(&x_),
                    reinterpret_cast<void**>(&delta_),
                    &normed_,
                    &qkv_,
                    &q_,
                    &attention_,
                    &gate_,
                    &up_,
                    &low_rank_,
                    &head_in_,
                    reinterpret_cast<void**>(&logits_),
                    reinterpret_cast<void**>(&gathered_),
                    reinterpret_cast<void**>(&lse_),
                    reinterpret_cast<void**>(&decode_workspace_)};
  static_assert(sizeof(slots) / sizeof(slots[0]) == ScratchPlan::kBuffers, "a slot per buffer of the plan");
  for (size_t i = 0; i < std::size(sizes); ++i) {
    *slots[i] = p;
    p += AlignUp(sizes[i]);
  }
  // The decode attention's split counters start at zero (kernels/cuda/attention.h).
  IXC_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(decode_workspace_, 0, decode_workspace_floats_ * 4, gpu_->stream));
  scratch_rows_ = rows;
  scratch_logit_rows_ = logit_rows;
  return absl::OkStatus();
}

int CudaLanguageModel::LoraTerms(const Linear& linear, const Masks& masks, LoraTerm (&terms)[3]) {
  int count = 0;
  if (masks.image != nullptr) terms[count++] = {&linear.plora, masks.image, false};
  if (masks.web != nullptr) terms[count++] = {&linear.web, masks.web, masks.web_all};
  if (masks.write != nullptr) terms[count++] = {&linear.write, masks.write, masks.write_all};
  return count;
}

absl::Status CudaLanguageModel::ApplyLinear(const Linear& linear, const void* x, int64_t rows, const Masks& masks,
                                            void* y, DType out_dtype, const kc::RmsNormInput* norm, bool accumulate,
                                            bool with_bias) {
  const DType dtype = options_.dtype;
  LoraTerm terms[3];
  const int count = LoraTerms(linear, masks, terms);
  const kc::LinearArgs base{x,         linear.weight, y,         rows,       linear.out,
                            linear.in, dtype,         out_dtype, accumulate, with_bias ? linear.bias : nullptr,
                            norm};
  // The first term's A product rides in the base weight's pass where that streams (decode rows).
  const bool first_alongside = count > 0 && terms[0].lora->rank > 0;
  if (first_alongside) {
    IXC_RETURN_IF_ERROR(
        gpu_->gemm->LinearWithLowRank(base, {terms[0].lora->a, low_rank_, terms[0].lora->rank}, gpu_->stream));
  } else {
    IXC_RETURN_IF_ERROR(gpu_->gemm->Linear(base, gpu_->stream));
  }
  // y += B (A x) on each term's rows.
  for (int i = 0; i < count; ++i) {
    const Lora& lora = *terms[i].lora;
    if (i > 0 || !first_alongside) {
      IXC_RETURN_IF_ERROR(
          gpu_->gemm->Linear({x, lora.a, low_rank_, rows, lora.rank, linear.in, dtype, dtype, false}, gpu_->stream));
    }
    if (!terms[i].all) {
      IXC_RETURN_IF_ERROR(kc::LaunchZeroRows(dtype, low_rank_, terms[i].mask, rows, lora.rank, gpu_->stream));
    }
    IXC_RETURN_IF_ERROR(
        gpu_->gemm->Linear({low_rank_, lora.b, y, rows, linear.out, lora.rank, dtype, out_dtype, true}, gpu_->stream));
  }
  return absl::OkStatus();
}

absl::StatusOr<KvCache> AttachCudaModel(LlmWeights& weights, const CudaModelOptions& options) {
  IXC_ASSIGN_OR_RETURN(std::shared_ptr<CudaLanguageModel> model, CudaLanguageModel::Upload(weights, options));
  KvCache cache = KvCache::BlocksOnly(weights.shard, options.block_size, model->num_kv_blocks());
  IXC_LOG(INFO) << "language model on CUDA device " << options.device << " in " << DTypeName(options.dtype) << ": "
                << model->weight_bytes() / (1 << 20) << " MiB of weights, KV pool " << model->kv_bytes() / (1 << 20)
                << " MiB = " << model->num_kv_blocks() << " blocks of " << options.block_size << " tokens, "
                << model->ReserveBytes() / (1 << 20) << " MiB left free"
                << (options.ring_rows > 0 ? absl::StrCat(" (a ring prefill of ", options.ring_rows, " rows fits)") : "")
                << (options.decode_graphs ? ", decode steps as CUDA graphs" : "");
  weights.device = std::move(model);
  return cache;
}

}  // namespace ixc::model
