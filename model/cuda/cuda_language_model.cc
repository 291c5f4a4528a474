#include "model/cuda/cuda_language_model.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
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

// Segments of at most this many tokens attend through the decode kernel (batched across sequences); longer ones
// through flash attention.
constexpr int64_t kDecodeMaxTokens = 4;
// Decode rows per launch: bounds the split-KV workspace.
constexpr int64_t kDecodeRowsPerLaunch = 64;

int64_t AlignUp(int64_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace

struct CudaLanguageModel::Masks {
  const uint8_t* image = nullptr;  // device (rows); null: no image row
  const uint8_t* web = nullptr;    // device (rows); null: no web row
  bool web_all = false;
  const uint8_t* write = nullptr;
  bool write_all = false;
};

CudaLanguageModel::CudaLanguageModel(const LlmConfig& shard, const CudaModelOptions& options)
    : shard_(shard), options_(options) {}

CudaLanguageModel::~CudaLanguageModel() {
  if (gpu_ != nullptr) cudaStreamSynchronize(gpu_->stream);
  if (scratch_ != nullptr) cudaFree(scratch_);
  if (metadata_ != nullptr) cudaFree(metadata_);
}

absl::Status CudaLanguageModel::CreateRuntime() {
  if (options_.dtype == DType::kF32) {
    return absl::InvalidArgumentError("the cuda backend runs bf16 or f16 weights (--dtype bf16|f16), not f32");
  }
  IXC_ASSIGN_OR_RETURN(gpu_, GpuRuntime::Create(options_.device));
  return absl::OkStatus();
}

absl::Status CudaLanguageModel::AllocateKvPool() {
  const LlmConfig& c = shard_;
  const int64_t pool_bytes_per_block =
      int64_t{options_.block_size} * c.num_kv_heads * c.head_dim * DTypeSize(options_.dtype);
  const int64_t per_block = 2 * c.num_layers * pool_bytes_per_block;
  size_t free_bytes = 0, total_bytes = 0;
  IXC_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  const int64_t fit = std::min<int64_t>((static_cast<int64_t>(free_bytes) - options_.kv_reserve_bytes) / per_block,
                                        INT32_MAX / options_.block_size);
  const int64_t blocks = options_.kv_blocks > 0 ? options_.kv_blocks : fit;
  if (blocks < 1 || blocks > fit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "no room for a KV cache of ", blocks, " blocks on the GPU (--kv-blocks): ", std::max<int64_t>(fit, 0),
        " fit in the ", free_bytes >> 20, " MiB free after the weights less the ", options_.kv_reserve_bytes >> 20,
        " MiB kept in reserve (--kv-reserve-mib), at ", per_block >> 10, " KiB per block"));
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
    IXC_RETURN_IF_ERROR(lora(in.sft, out.sft));
    return lora(in.dpo, out.dpo);
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
                                                                             uint64_t seed) {
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
    return absl::OkStatus();
  };
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

absl::Status CudaLanguageModel::EnsureScratch(int64_t rows, int64_t logit_rows) {
  if (rows <= scratch_rows_ && logit_rows <= scratch_logit_rows_) return absl::OkStatus();
  rows = std::max(rows, scratch_rows_);
  logit_rows = std::max(logit_rows, scratch_logit_rows_);
  const LlmConfig& c = shard_;
  const int64_t e = DTypeSize(options_.dtype), hidden = c.hidden_size, attention_width = c.num_heads * c.head_dim;
  const int64_t tp_vocab = static_cast<int64_t>(c.vocab_size);  // this rank's slice
  decode_workspace_floats_ = kc::DecodeWorkspaceFloats(std::min(rows, kDecodeRowsPerLaunch), c.num_heads, c.head_dim);
  // Each buffer at a 256-byte boundary of one allocation.
  const int64_t sizes[] = {
      rows * hidden * 4,                                        // x_
      rows * hidden * 4,                                        // delta_
      rows * hidden * e,                                        // normed_
      rows * c.qkv_size() * e,                                  // qkv_
      rows * attention_width * e,                               // q_
      rows * attention_width * e,                               // attention_
      rows * c.intermediate_size * e,                           // gate_
      rows * c.intermediate_size * e,                           // up_
      rows * std::max<int64_t>(max_lora_rank_, 1) * e,          // low_rank_
      logit_rows * hidden * e,                                  // head_in_
      logit_rows * tp_vocab * 4,                                // logits_
      tp_size_ > 1 ? tp_size_ * logit_rows * tp_vocab * 4 : 0,  // gathered_: the TP group's logits
      rows * c.num_heads * 4,                                   // lse_
      decode_workspace_floats_ * 4,                             // decode_workspace_
  };
  int64_t total = 0;
  for (int64_t size : sizes) total += AlignUp(size);
  if (scratch_ != nullptr) {
    IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(gpu_->stream));
    cudaFree(scratch_);
    scratch_ = nullptr;
  }
  const cudaError_t error = cudaMalloc(&scratch_, total);
  if (error != cudaSuccess) {
    return absl::ResourceExhaustedError(
        absl::StrCat("scratch for ", rows, " rows (", total >> 20,
                     " MiB) does not fit beside the KV pool: ", cudaGetErrorString(error), "; raise --kv-reserve-mib"));
  }
  uint8_t* p = static_cast<uint8_t*>(scratch_);
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
  for (size_t i = 0; i < std::size(sizes); ++i) {
    *slots[i] = p;
    p += AlignUp(sizes[i]);
  }
  scratch_rows_ = rows;
  scratch_logit_rows_ = logit_rows;
  return absl::OkStatus();
}

absl::Status CudaLanguageModel::ApplyLinear(const Linear& linear, const void* x, int64_t rows, const Masks& masks,
                                            void* y, DType out_dtype) {
  const DType dtype = options_.dtype;
  IXC_RETURN_IF_ERROR(
      gpu_->gemm->Linear({x, linear.weight, y, rows, linear.out, linear.in, dtype, out_dtype, false}, gpu_->stream));
  // y += B (A x) on the rows of `mask` (all rows when `all`).
  auto low_rank = [&](const Lora& lora, const uint8_t* mask, bool all) -> absl::Status {
    IXC_RETURN_IF_ERROR(
        gpu_->gemm->Linear({x, lora.a, low_rank_, rows, lora.rank, linear.in, dtype, dtype, false}, gpu_->stream));
    if (!all) IXC_RETURN_IF_ERROR(kc::LaunchZeroRows(dtype, low_rank_, mask, rows, lora.rank, gpu_->stream));
    return gpu_->gemm->Linear({low_rank_, lora.b, y, rows, linear.out, lora.rank, dtype, out_dtype, true},
                              gpu_->stream);
  };
  if (masks.image != nullptr) IXC_RETURN_IF_ERROR(low_rank(linear.plora, masks.image, false));
  if (masks.web != nullptr) IXC_RETURN_IF_ERROR(low_rank(linear.web, masks.web, masks.web_all));
  if (masks.write != nullptr) {
    IXC_RETURN_IF_ERROR(low_rank(linear.sft, masks.write, masks.write_all));
    IXC_RETURN_IF_ERROR(low_rank(linear.dpo, masks.write, masks.write_all));
  }
  return absl::OkStatus();
}

absl::Status CudaLanguageModel::ForwardBatch(const LlmWeights& weights, std::vector<BatchEntry>& batch, KvCache& cache,
                                             parallel::DeviceComm* comm) {
  // One attention mode per call: the worker batches SP decodes with each other, and a ring prefill runs alone.
  const SpAttention sp_mode = batch.empty() ? SpAttention::kLocal : batch[0].input.sp_attention;
  for (const BatchEntry& entry : batch) {
    if (entry.input.sp_attention != sp_mode) {
      return absl::InvalidArgumentError(
          "the cuda backend batches sequences of one attention mode (local, ring or gather-merge) at a time");
    }
  }
  if (sp_mode == SpAttention::kRing && batch.size() != 1) {
    return absl::InvalidArgumentError("a ring prefill runs alone, not in a batch");
  }
  if (sp_mode != SpAttention::kLocal && comm == nullptr) {
    return absl::FailedPreconditionError("sequence parallelism on the cuda backend needs the NCCL DeviceComm");
  }
  if (weights.tp.size != tp_size_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the GPU copy holds a TP slice of ", tp_size_, ", the call's weights one of ", weights.tp.size));
  }
  const bool tensor_parallel = tp_size_ > 1;
  if (tensor_parallel && (comm == nullptr || comm->GroupSize(parallel::Group::kTensor) != weights.tp.size)) {
    return absl::FailedPreconditionError("tensor parallelism on the cuda backend needs the NCCL DeviceComm");
  }
  if (cache.block_size() != options_.block_size || cache.num_blocks() > num_blocks_) {
    return absl::FailedPreconditionError(absl::StrCat("the KV cache bookkeeping (", cache.num_blocks(), " blocks of ",
                                                      cache.block_size(), ") does not match the GPU pool (",
                                                      num_blocks_, " of ", options_.block_size, ")"));
  }
  const LlmConfig& c = shard_;
  const int64_t hidden = c.hidden_size, d = c.head_dim, e = DTypeSize(options_.dtype);
  const int group = c.q_heads_per_kv_head();
  const DType dtype = options_.dtype;

  // Plan: segments, rows, which rows give logits.
  std::vector<Segment> segments;
  IXC_ASSIGN_OR_RETURN(const int64_t rows, PrepareSegments(weights, batch, cache, segments));
  std::optional<RingPlan> ring;
  if (sp_mode == SpAttention::kRing) {
    IXC_ASSIGN_OR_RETURN(ring, PlanRing(segments[0], *comm));
  }
  // Which rows give logits: all, or the last; in a ring prefill, the one at the prompt's last position, on the
  // rank that holds it (the SP sum below gives it to every rank).
  std::vector<int64_t> logit_rows;                            // batch rows whose logits are wanted, in order
  std::vector<std::vector<int64_t>> wanted(segments.size());  // per segment, its tokens among them
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& segment = segments[i];
    for (int64_t t = 0; t < segment.tokens; ++t) {
      const bool last =
          sp_mode == SpAttention::kRing ? segment.positions[t] == segment.context_length - 1 : t == segment.tokens - 1;
      if (segment.input->all_logits || last) {
        wanted[i].push_back(t);
        logit_rows.push_back(segment.first_row + t);
      }
    }
  }
  IXC_RETURN_IF_ERROR(EnsureScratch(rows, static_cast<int64_t>(logit_rows.size())));

  // Per-call metadata, one upload of int32s: positions, cache slots, ids and last visible keys per row, the block
  // tables, the decode rows' table offsets and visible keys; then the row masks as bytes. A row's last visible key
  // is its position where the sequence's keys are all here, an earlier index where this rank holds a shard of them.
  std::vector<int32_t> positions(rows), slots(rows, -1), ids(rows, -1), last_key(rows), tables;
  std::vector<int64_t> table_offset(segments.size());  // where each segment's block table starts in the upload
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& segment = segments[i];
    const SequenceKv& seq = *segment.seq;
    std::copy(segment.positions.begin(), segment.positions.end(), positions.begin() + segment.first_row);
    if (!segment.input->ids.empty()) {
      std::copy(segment.input->ids.begin(), segment.input->ids.end(), ids.begin() + segment.first_row);
    }
    for (int64_t t = 0; t < segment.tokens; ++t) {
      last_key[segment.first_row + t] =
          static_cast<int32_t>(std::upper_bound(seq.positions.begin(), seq.positions.end(), segment.positions[t]) -
                               seq.positions.begin() - 1);
    }
    for (size_t s = 0; s < segment.stored.size(); ++s) {
      const int64_t slot_index = segment.past + static_cast<int64_t>(s);
      slots[segment.first_row + segment.stored[s]] =
          seq.block_table[slot_index / options_.block_size] * options_.block_size + slot_index % options_.block_size;
    }
    table_offset[i] = 4 * rows + static_cast<int64_t>(tables.size());
    tables.insert(tables.end(), seq.block_table.begin(), seq.block_table.end());
  }
  // Decode rows: runs of consecutive short segments, each row seeing the keys up to its position.
  struct DecodeRun {
    int64_t first_row = 0, rows = 0, max_visible = 0;
    std::vector<int32_t> table_offsets, visible;  // (rows)
    int64_t offsets = 0;                          // where table_offsets starts in the upload; visible follows
  };
  std::vector<DecodeRun> decode_runs;
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& segment = segments[i];
    if (segment.tokens > kDecodeMaxTokens) continue;
    if (decode_runs.empty() || decode_runs.back().first_row + decode_runs.back().rows != segment.first_row ||
        decode_runs.back().rows + segment.tokens > kDecodeRowsPerLaunch) {
      decode_runs.emplace_back().first_row = segment.first_row;
    }
    DecodeRun& run = decode_runs.back();
    run.rows += segment.tokens;
    for (int64_t t = 0; t < segment.tokens; ++t) {
      run.table_offsets.push_back(static_cast<int32_t>(table_offset[i]));
      run.visible.push_back(last_key[segment.first_row + t] + 1);
      run.max_visible = std::max<int64_t>(run.max_visible, run.visible.back());
    }
  }
  std::vector<int32_t> ints;
  for (const std::vector<int32_t>* part : {&positions, &slots, &ids, &last_key, &tables}) {
    ints.insert(ints.end(), part->begin(), part->end());
  }
  for (DecodeRun& run : decode_runs) {
    run.offsets = static_cast<int64_t>(ints.size());
    ints.insert(ints.end(), run.table_offsets.begin(), run.table_offsets.end());
    ints.insert(ints.end(), run.visible.begin(), run.visible.end());
  }
  const RowMasks row_masks = RowMasksOf(segments, rows);
  const int64_t mask_offset = static_cast<int64_t>(ints.size()) * 4;
  const int64_t metadata_bytes = mask_offset + 3 * rows;
  if (metadata_bytes > metadata_ints_ * 4) {
    IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(gpu_->stream));
    if (metadata_ != nullptr) cudaFree(metadata_);
    metadata_ints_ = (metadata_bytes + 3) / 4 * 2;
    IXC_CUDA_RETURN_IF_ERROR(cudaMalloc(&metadata_, metadata_ints_ * 4));
  }
  std::vector<uint8_t> host_metadata(metadata_bytes);
  std::memcpy(host_metadata.data(), ints.data(), mask_offset);
  std::copy(row_masks.image.begin(), row_masks.image.end(), host_metadata.begin() + mask_offset);
  std::copy(row_masks.web.begin(), row_masks.web.end(), host_metadata.begin() + mask_offset + rows);
  std::copy(row_masks.write.begin(), row_masks.write.end(), host_metadata.begin() + mask_offset + 2 * rows);
  IXC_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(metadata_, host_metadata.data(), metadata_bytes, cudaMemcpyHostToDevice, gpu_->stream));
  const int32_t* d_positions = metadata_;
  const int32_t* d_slots = metadata_ + rows;
  const int32_t* d_ids = metadata_ + 2 * rows;
  const int32_t* d_last_key = metadata_ + 3 * rows;
  const uint8_t* d_masks = reinterpret_cast<const uint8_t*>(metadata_) + mask_offset;
  auto all_set = [](const std::vector<uint8_t>& mask) {
    return std::all_of(mask.begin(), mask.end(), [](uint8_t m) { return m != 0; });
  };
  const Masks masks{row_masks.any_image ? d_masks : nullptr, row_masks.any_web ? d_masks + rows : nullptr,
                    all_set(row_masks.web), row_masks.any_write ? d_masks + 2 * rows : nullptr,
                    all_set(row_masks.write)};

  // Input rows into the residual stream.
  for (const Segment& segment : segments) {
    const ForwardInput& input = *segment.input;
    float* x_rows = x_ + segment.first_row * hidden;
    if (input.ids.empty()) {
      IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(x_rows, input.embeddings.data(), input.embeddings.size() * 4,
                                               cudaMemcpyHostToDevice, gpu_->stream));
    } else {
      IXC_RETURN_IF_ERROR(kc::LaunchEmbeddingGather(embeddings_, dtype, embedding_rows_, hidden,
                                                    d_ids + segment.first_row, input.ids.data(), segment.tokens, x_rows,
                                                    gpu_->stream));
    }
  }

  auto all_reduce = [&](float* data, int64_t count) -> absl::Status {
    if (!tensor_parallel) return absl::OkStatus();
    IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(gpu_->stream));  // the comm runs on its own stream
    return comm->AllReduceSum(data, count, parallel::Group::kTensor);
  };
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  const float* pending_delta = nullptr;  // the previous sublayer's output, added in the next fused norm
  const float* pending_bias = nullptr;
  for (int l = 0; l < c.num_layers; ++l) {
    const Layer& w = layers_[l];
    const kc::DeviceKvPools pools{k_pools_[l],         v_pools_[l],    dtype,
                                  options_.block_size, c.num_kv_heads, static_cast<int>(d)};
    IXC_RETURN_IF_ERROR(kc::LaunchAddRmsNorm(x_, pending_delta, pending_bias, w.attn_norm, dtype, normed_, rows, hidden,
                                             c.rms_norm_eps, gpu_->stream));
    IXC_RETURN_IF_ERROR(ApplyLinear(w.qkv, normed_, rows, masks, qkv_, dtype));
    if (w.qkv.bias != nullptr)
      IXC_RETURN_IF_ERROR(kc::LaunchAddBias(dtype, qkv_, w.qkv.bias, rows, w.qkv.out, gpu_->stream));
    for (const Segment& segment : segments) {
      const int64_t r = segment.first_row;
      IXC_RETURN_IF_ERROR(kc::LaunchRopeAndStoreKv(
          static_cast<uint8_t*>(qkv_) + r * c.qkv_size() * e, d_positions + r, d_slots + r, segment.tokens, group,
          segment.rope, static_cast<uint8_t*>(q_) + r * c.num_heads * d * e, pools, gpu_->stream));
    }
    // The SP merges need each row's log-sum-exp.
    float* lse = sp_mode == SpAttention::kLocal ? nullptr : lse_;
    if (ring.has_value()) {
      IXC_RETURN_IF_ERROR(RingAttention(segments[0], *ring, d_positions, *comm));
    } else {
      for (size_t i = 0; i < segments.size(); ++i) {
        const Segment& segment = segments[i];
        if (segment.tokens <= kDecodeMaxTokens) continue;
        const int64_t offset = segment.first_row * c.num_heads * d * e;
        IXC_RETURN_IF_ERROR(
            kc::LaunchFlashAttention(static_cast<uint8_t*>(q_) + offset, d_last_key + segment.first_row, segment.tokens,
                                     c.num_heads, pools, metadata_ + table_offset[i], segment.seq->length,
                                     segment.positions.back(), scale, static_cast<uint8_t*>(attention_) + offset,
                                     lse == nullptr ? nullptr : lse + segment.first_row * c.num_heads, gpu_->stream));
      }
      for (const DecodeRun& run : decode_runs) {
        const int64_t offset = run.first_row * c.num_heads * d * e;
        const kc::DecodeRows decode{metadata_, metadata_ + run.offsets, metadata_ + run.offsets + run.rows, run.rows,
                                    run.max_visible};
        IXC_RETURN_IF_ERROR(kc::LaunchPagedDecodeAttention(
            static_cast<uint8_t*>(q_) + offset, c.num_heads, pools, decode, scale,
            static_cast<uint8_t*>(attention_) + offset, lse == nullptr ? nullptr : lse + run.first_row * c.num_heads,
            decode_workspace_, decode_workspace_floats_, gpu_->num_sms, gpu_->stream));
      }
      if (sp_mode == SpAttention::kGatherMerge) IXC_RETURN_IF_ERROR(GatherMerge(rows, *comm));
    }
    IXC_RETURN_IF_ERROR(ApplyLinear(w.attn_out, attention_, rows, masks, delta_, DType::kF32));
    IXC_RETURN_IF_ERROR(all_reduce(delta_, rows * hidden));
    IXC_RETURN_IF_ERROR(kc::LaunchAddRmsNorm(x_, delta_, w.attn_out.bias, w.ffn_norm, dtype, normed_, rows, hidden,
                                             c.rms_norm_eps, gpu_->stream));
    IXC_RETURN_IF_ERROR(ApplyLinear(w.gate, normed_, rows, masks, gate_, dtype));
    IXC_RETURN_IF_ERROR(ApplyLinear(w.up, normed_, rows, masks, up_, dtype));
    if (w.gate.bias != nullptr)
      IXC_RETURN_IF_ERROR(kc::LaunchAddBias(dtype, gate_, w.gate.bias, rows, w.gate.out, gpu_->stream));
    if (w.up.bias != nullptr)
      IXC_RETURN_IF_ERROR(kc::LaunchAddBias(dtype, up_, w.up.bias, rows, w.up.out, gpu_->stream));
    IXC_RETURN_IF_ERROR(kc::LaunchSwiGlu(dtype, gate_, up_, gate_, rows * c.intermediate_size, gpu_->stream));
    IXC_RETURN_IF_ERROR(ApplyLinear(w.down, gate_, rows, masks, delta_, DType::kF32));
    IXC_RETURN_IF_ERROR(all_reduce(delta_, rows * hidden));
    pending_delta = delta_;
    pending_bias = w.down.bias;
  }
  IXC_RETURN_IF_ERROR(kc::LaunchAddRmsNorm(x_, pending_delta, pending_bias, final_norm_, dtype, normed_, rows, hidden,
                                           c.rms_norm_eps, gpu_->stream));

  // The head, on the rows whose logits are wanted.
  const int64_t n = static_cast<int64_t>(logit_rows.size());
  for (int64_t i = 0; i < n;) {  // runs of consecutive rows, one copy each
    int64_t run = 1;
    while (i + run < n && logit_rows[i + run] == logit_rows[i] + run) ++run;
    IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(static_cast<uint8_t*>(head_in_) + i * hidden * e,
                                             static_cast<uint8_t*>(normed_) + logit_rows[i] * hidden * e,
                                             run * hidden * e, cudaMemcpyDeviceToDevice, gpu_->stream));
    i += run;
  }
  const int64_t local_vocab = c.vocab_size;
  if (n > 0) {  // none on the ranks of a ring prefill that hold neither the last position nor all_logits
    IXC_RETURN_IF_ERROR(gpu_->gemm->Linear(
        {head_in_, output_, logits_, n, local_vocab, hidden, dtype, DType::kF32, false}, gpu_->stream));
  }
  const int64_t tp = tp_size_;
  std::vector<float> host(tp * n * local_vocab);
  if (n == 0) {
    // Nothing to gather: every rank of this TP group holds the same rows.
  } else if (tensor_parallel) {
    IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(gpu_->stream));
    IXC_RETURN_IF_ERROR(comm->AllGather(logits_, n * local_vocab, gathered_, parallel::Group::kTensor));
    IXC_CUDA_RETURN_IF_ERROR(cudaMemcpy(host.data(), gathered_, host.size() * 4, cudaMemcpyDeviceToHost));
  } else {
    IXC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host.data(), logits_, host.size() * 4, cudaMemcpyDeviceToHost, gpu_->stream));
    IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(gpu_->stream));
  }
  // (TP, rows, local vocab) -> per segment (rows, vocab), or this rank's slice with local_vocab.
  int64_t row = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    std::vector<float>& out = *segments[i].logits;
    const bool sliced = tensor_parallel && segments[i].input->local_vocab;
    const int64_t first_rank = sliced ? weights.tp.rank : 0, ranks = sliced ? 1 : tp;
    const int64_t width = local_vocab * ranks;
    out.resize(wanted[i].size() * width);
    for (size_t r = 0; r < wanted[i].size(); ++r, ++row) {
      for (int64_t t = 0; t < ranks; ++t) {
        std::copy_n(host.data() + ((first_rank + t) * n + row) * local_vocab, local_vocab,
                    out.data() + (r * ranks + t) * local_vocab);
      }
    }
    if (sp_mode == SpAttention::kRing) {
      // A prompt shard: this rank's rows at their positions (all of them, or the prompt's last), the others' rows
      // 0; one sum over the SP group gives every rank the whole block, as on the CPU.
      const Segment& segment = segments[i];
      std::vector<float> block((segment.input->all_logits ? segment.context_length : 1) * width, 0.f);
      for (size_t r = 0; r < wanted[i].size(); ++r) {
        const int64_t at = segment.input->all_logits ? segment.positions[wanted[i][r]] : 0;
        std::copy_n(out.data() + r * width, width, block.data() + at * width);
      }
      IXC_RETURN_IF_ERROR(SumOverSequenceGroup(block, *comm));
      out = std::move(block);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<KvCache> AttachCudaModel(LlmWeights& weights, const CudaModelOptions& options) {
  IXC_ASSIGN_OR_RETURN(std::shared_ptr<CudaLanguageModel> model, CudaLanguageModel::Upload(weights, options));
  KvCache cache = KvCache::BlocksOnly(weights.shard, options.block_size, model->num_kv_blocks());
  weights.device = std::move(model);
  return cache;
}

}  // namespace ixc::model
