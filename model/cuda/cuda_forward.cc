// CudaLanguageModel's forward call, with LanguageModelForwardBatch's semantics: plan the rows and upload their
// metadata, gather the input rows, launch the layers and the head (or replay a decode step's CUDA graph), then hand
// each sequence its logits or, where it asked, its next token (cuda_token_choice.cc).
#include <algorithm>
#include <bit>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/norm.h"
#include "model/batch_metadata.h"
#include "model/cuda/cuda_language_model.h"

namespace ixc::model {
namespace {

namespace kc = ::ixc::kernels::cuda;

// Decode graphs kept at once: one per batch shape, context bucket and RoPE base in use.
constexpr size_t kMaxGraphs = 64;

// Rows `rows` (ascending) of `from` to rows 0.. of `to`, row_bytes each: one copy per run of consecutive rows.
absl::Status CopyRows(const std::vector<int64_t>& rows, const void* from, void* to, int64_t row_bytes,
                      cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(rows.size());
  for (int64_t i = 0; i < n;) {
    int64_t run = 1;
    while (i + run < n && rows[i + run] == rows[i] + run) ++run;
    IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(static_cast<uint8_t*>(to) + i * row_bytes,
                                             static_cast<const uint8_t*>(from) + rows[i] * row_bytes, run * row_bytes,
                                             cudaMemcpyDeviceToDevice, stream));
    i += run;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CudaLanguageModel::ForwardBatch(const LlmWeights& weights, std::vector<BatchEntry>& batch, KvCache& cache,
                                             parallel::DeviceComm* comm) {
  if (batch.empty()) return absl::OkStatus();
  // LanguageModelForwardBatch has checked the comm against TP and SP and that a ring prefill runs alone. One
  // attention mode per call here: the worker batches SP decodes with each other.
  const SpAttention sp_mode = batch[0].input.sp_attention;
  for (const BatchEntry& entry : batch) {
    if (entry.input.sp_attention != sp_mode) {
      return absl::InvalidArgumentError(
          "the cuda backend batches sequences of one attention mode (local, ring or gather-merge) at a time");
    }
  }
  if (weights.tp.size != tp_size_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the GPU copy holds a TP slice of ", tp_size_, ", the call's weights one of ", weights.tp.size));
  }
  if (cache.block_size() != options_.block_size || cache.num_blocks() > num_blocks_) {
    return absl::FailedPreconditionError(absl::StrCat("the KV cache bookkeeping (", cache.num_blocks(), " blocks of ",
                                                      cache.block_size(), ") does not match the GPU pool (",
                                                      num_blocks_, " of ", options_.block_size, ")"));
  }

  std::vector<Segment> segments;
  IXC_ASSIGN_OR_RETURN(const int64_t rows, PrepareSegments(weights, batch, cache, segments));
  std::optional<RingPlan> ring;
  if (sp_mode == SpAttention::kRing) {
    IXC_ASSIGN_OR_RETURN(ring, PlanRing(segments[0], *comm));
  }
  // A decode step of token ids on one GPU replays a graph where options_.decode_graphs asks for it.
  const bool graph = options_.decode_graphs && tp_size_ == 1 && sp_mode == SpAttention::kLocal &&
                     std::all_of(segments.begin(), segments.end(), [](const Segment& segment) {
                       return segment.tokens == 1 && !segment.input->ids.empty();
                     });
  IXC_ASSIGN_OR_RETURN(const CallPlan plan, PlanCall(segments, rows, graph));
  const bool choose = ChoosesOnDevice(segments, plan, sp_mode);
  if (choose) IXC_RETURN_IF_ERROR(UploadChoices(segments));

  // Input rows into the residual stream (outside any graph: the ids are checked on the host at each call).
  const int64_t hidden = shard_.hidden_size;
  for (const Segment& segment : segments) {
    const ForwardInput& input = *segment.input;
    float* x_rows = x_ + segment.first_row * hidden;
    if (input.ids.empty()) {
      // From the host, or from this GPU (image rows that came over NCCL): unified addressing tells which.
      IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(x_rows, input.embeddings.data(), input.embeddings.size() * 4,
                                               cudaMemcpyDefault, gpu_->stream));
    } else {
      IXC_RETURN_IF_ERROR(kc::LaunchEmbeddingGather(embeddings_, options_.dtype, embedding_rows_, hidden,
                                                    plan.at(plan.layout.ids_at) + segment.first_row, input.ids.data(),
                                                    segment.tokens, x_rows, gpu_->stream));
    }
  }
  if (graph) {
    IXC_RETURN_IF_ERROR(LaunchLayersAsGraph(segments, plan));
  } else {
    IXC_RETURN_IF_ERROR(LaunchLayers(segments, plan, sp_mode, ring, comm));
  }
  if (choose) return ChooseTokens(segments, comm);
  return DistributeLogits(weights, segments, plan, sp_mode, comm);
}

absl::StatusOr<CudaLanguageModel::CallPlan> CudaLanguageModel::PlanCall(const std::vector<Segment>& segments,
                                                                        int64_t rows, bool bucket_decode) {
  CallPlan plan;
  plan.layout = LayOutBatch(segments, rows,
                            {.block_size = options_.block_size,
                             .decode_max_tokens = kDecodeMaxTokens,
                             .decode_rows_per_launch = kDecodeRowsPerLaunch,
                             .bucket_decode = bucket_decode});
  const BatchMetadata& layout = plan.layout;
  IXC_RETURN_IF_ERROR(EnsureScratch(rows, static_cast<int64_t>(layout.logit_rows.size())));
  const int64_t bytes = static_cast<int64_t>(layout.ints.size()) * 4;
  if (bytes > metadata_.bytes()) {  // twice the room: a decode batch's tables grow a block at a time
    IXC_RETURN_IF_ERROR(metadata_.Reserve(2 * bytes, gpu_->stream, "forward metadata"));
    DropGraphs();  // they read the old buffer (Reserve waited for them)
  }
  // From pageable memory: the copy is staged before cudaMemcpyAsync returns.
  IXC_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(metadata_.data(), layout.ints.data(), bytes, cudaMemcpyHostToDevice, gpu_->stream));
  plan.device = metadata_.as<int32_t>();

  // The device masks of `row_masks`, stored from `at` on.
  auto device_masks = [&](const RowMasks& row_masks, int64_t at) {
    const uint8_t* masks = reinterpret_cast<const uint8_t*>(plan.at(at));
    const int64_t n = static_cast<int64_t>(row_masks.image.size());
    auto all_set = [](const std::vector<uint8_t>& mask) {
      return std::all_of(mask.begin(), mask.end(), [](uint8_t m) { return m != 0; });
    };
    return Masks{row_masks.any_image ? masks : nullptr, row_masks.any_web ? masks + n : nullptr, all_set(row_masks.web),
                 row_masks.any_write ? masks + 2 * n : nullptr, all_set(row_masks.write)};
  };
  plan.masks = device_masks(layout.masks, layout.masks_at);
  plan.logit_masks = device_masks(layout.logit_masks, layout.logit_masks_at);
  return plan;
}

absl::Status CudaLanguageModel::LaunchLayers(const std::vector<Segment>& segments, const CallPlan& plan,
                                             SpAttention sp_mode, const std::optional<RingPlan>& ring,
                                             parallel::DeviceComm* comm) {
  const LlmConfig& c = shard_;
  const int64_t hidden = c.hidden_size, d = c.head_dim, e = DTypeSize(options_.dtype);
  const int64_t rows = segments.empty() ? 0 : segments.back().first_row + segments.back().tokens;
  const int group = c.q_heads_per_kv_head();
  const DType dtype = options_.dtype;
  cudaStream_t stream = gpu_->stream;
  const Masks& masks = plan.masks;
  const int32_t* positions = plan.at(plan.layout.positions_at);  // (rows) each
  const int32_t* slots = plan.at(plan.layout.slots_at);
  const int32_t* last_key = plan.at(plan.layout.last_key_at);
  auto all_reduce = [&](float* data, int64_t count) -> absl::Status {  // with TP
    if (comm->OrdersOnStreams()) return comm->AllReduceSumOnStream(data, count, parallel::Group::kTensor, stream);
    IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // the comm runs on its own stream
    return comm->AllReduceSum(data, count, parallel::Group::kTensor);
  };
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  float* lse = sp_mode == SpAttention::kLocal ? nullptr : lse_;  // the SP merges need each row's log-sum-exp
  // With TP, the previous sublayer's reduced output and bias, added in the next fused norm (on one GPU the GEMMs add
  // onto the residual stream themselves).
  const float* pending_delta = nullptr;
  const float* pending_bias = nullptr;
  // Decode of 1-2 rows on one GPU with IXC_FEWER_DECODE_KERNELS=1 (kernels/cuda/gemm.h, RmsNormInput and
  // QkvRopeArgs): each RMSNorm is done by the weight pass that reads it, and (without a bias, with at most one LoRA)
  // the qkv pass, or its LoRA's B product pass, applies RoPE and stores K and V: up to three kernels fewer per layer
  // on the step's chain of dependent kernels.
  const bool norms_in_pass = kc::FewerDecodeKernelsRequested() && tp_size_ == 1 && sp_mode == SpAttention::kLocal &&
                             kc::Gemm::NormsInPass(rows, hidden);
  // A prefill's last layer needs K and V of every row, but the attention and the feed-forward only on the rows whose
  // logits are wanted (a prompt's last): past its K/V store it goes on with those rows alone, compacted to rows
  // 0..n-1 (their residual to delta_, their attention output to q_, both free by then), attending through the decode
  // kernel (plan.layout.logit_runs). Not where an SP group shares the attention, nor in the fused decode step
  // (whose rows all give logits).
  const std::vector<int64_t>& logit_rows = plan.layout.logit_rows;
  const int64_t logit_count = static_cast<int64_t>(logit_rows.size());
  const bool compact_last_layer =
      sp_mode == SpAttention::kLocal && !norms_in_pass && logit_count > 0 && logit_count < rows;
  float* residual = x_;   // (rows, hidden) f32, the residual stream; after compaction, delta_
  float* delta = delta_;  // with TP a sublayer's output, added in the next norm; the compaction's target; then x_
  kernels::RopeParams row_rope[2];  // each row's, for the fused qkv pass (at most two rows)
  if (norms_in_pass) {
    for (const Segment& segment : segments) {
      for (int64_t t = 0; t < segment.tokens; ++t) row_rope[segment.first_row + t] = segment.rope;
    }
  }
  for (int l = 0; l < c.num_layers; ++l) {
    const Layer& w = layers_[l];
    const bool compacting = compact_last_layer && l == c.num_layers - 1;
    const kc::DeviceKvPools pools{k_pools_[l],         v_pools_[l],    dtype,
                                  options_.block_size, c.num_kv_heads, static_cast<int>(d)};
    const kc::RmsNormInput attn_norm{residual, w.attn_norm, c.rms_norm_eps, normed_},
        ffn_norm{residual, w.ffn_norm, c.rms_norm_eps, normed_};
    LoraTerm qkv_terms[3];
    const int qkv_loras = LoraTerms(w.qkv, masks, qkv_terms);
    const int64_t qkv_rank = qkv_loras == 1 ? qkv_terms[0].lora->rank : 0;
    if (norms_in_pass && qkv_loras == 0 && w.qkv.bias == nullptr) {  // the norm, qkv, RoPE and KV store in one pass
      const kc::QkvRopeArgs qkv{nullptr, w.qkv.weight, rows,      hidden,
                                group,   positions,    slots,     {row_rope[0], row_rope[1]},
                                q_,      pools,        &attn_norm};
      IXC_RETURN_IF_ERROR(gpu_->gemm->QkvRopeLinear(qkv, stream));
    } else if (norms_in_pass && qkv_rank > 0 && w.qkv.bias == nullptr && kc::Gemm::StreamsWeights(rows, qkv_rank)) {
      // One LoRA: the norm, the base product and the LoRA's A product in one pass, then its B product with RoPE and
      // the KV store in another.
      IXC_RETURN_IF_ERROR(gpu_->gemm->LinearWithLowRank(
          {normed_, w.qkv.weight, qkv_, rows, w.qkv.out, hidden, dtype, dtype, false, nullptr, &attn_norm},
          {qkv_terms[0].lora->a, low_rank_, qkv_rank}, stream));
      kc::QkvRopeArgs b_product{low_rank_, qkv_terms[0].lora->b,       rows, qkv_rank, group, positions,
                                slots,     {row_rope[0], row_rope[1]}, q_,   pools};
      b_product.base = qkv_;
      b_product.mask = qkv_terms[0].all ? nullptr : qkv_terms[0].mask;
      IXC_RETURN_IF_ERROR(gpu_->gemm->QkvRopeLinear(b_product, stream));
    } else {
      if (norms_in_pass) {
        IXC_RETURN_IF_ERROR(ApplyLinear(w.qkv, normed_, rows, masks, qkv_, dtype, &attn_norm));
      } else {
        IXC_RETURN_IF_ERROR(kc::LaunchAddRmsNorm(residual, pending_delta, pending_bias, w.attn_norm, dtype, normed_,
                                                 rows, hidden, c.rms_norm_eps, stream));
        IXC_RETURN_IF_ERROR(ApplyLinear(w.qkv, normed_, rows, masks, qkv_, dtype));
      }
      if (w.qkv.bias != nullptr) {
        IXC_RETURN_IF_ERROR(kc::LaunchAddBias(dtype, qkv_, w.qkv.bias, rows, w.qkv.out, stream));
      }
      for (const Segment& segment : segments) {
        const int64_t r = segment.first_row;
        IXC_RETURN_IF_ERROR(kc::LaunchRopeAndStoreKv(
            static_cast<uint8_t*>(qkv_) + r * c.qkv_size() * e, positions + r, slots + r, segment.tokens, group,
            segment.rope, static_cast<uint8_t*>(q_) + r * c.num_heads * d * e, pools, stream));
      }
    }
    // Decode runs of rows of `queries` attended into the same rows of `out` (rows of heads x d).
    auto decode_attention = [&](const std::vector<DecodeRunLayout>& runs, const void* queries,
                                void* out) -> absl::Status {
      for (const DecodeRunLayout& run : runs) {
        const int64_t offset = run.first_row * c.num_heads * d * e;
        const kc::DecodeRows decode{plan.device, plan.at(run.table_offsets_at), plan.at(run.visible_at), run.rows,
                                    run.max_visible};
        IXC_RETURN_IF_ERROR(kc::LaunchPagedDecodeAttention(
            static_cast<const uint8_t*>(queries) + offset, c.num_heads, pools, decode, scale,
            static_cast<uint8_t*>(out) + offset, lse == nullptr ? nullptr : lse + run.first_row * c.num_heads,
            decode_workspace_, decode_workspace_floats_, gpu_->num_sms, stream));
      }
      return absl::OkStatus();
    };
    if (ring.has_value()) {
      IXC_RETURN_IF_ERROR(RingAttention(segments[0], *ring, positions, l, *comm));
    } else if (compacting) {
      // The logit rows' queries, compacted into qkv_ (free past the RoPE pass), attend through the decode kernel;
      // their outputs land compacted in q_.
      IXC_RETURN_IF_ERROR(CopyRows(logit_rows, q_, qkv_, c.num_heads * d * e, stream));
      IXC_RETURN_IF_ERROR(decode_attention(plan.layout.logit_runs, qkv_, q_));
    } else {
      for (size_t i = 0; i < segments.size(); ++i) {
        const Segment& segment = segments[i];
        if (segment.tokens <= kDecodeMaxTokens) continue;
        const int64_t offset = segment.first_row * c.num_heads * d * e;
        IXC_RETURN_IF_ERROR(
            kc::LaunchFlashAttention(static_cast<uint8_t*>(q_) + offset, last_key + segment.first_row, segment.tokens,
                                     c.num_heads, pools, plan.at(plan.layout.tables_at[i]), segment.seq->length,
                                     segment.positions.back(), scale, static_cast<uint8_t*>(attention_) + offset,
                                     lse == nullptr ? nullptr : lse + segment.first_row * c.num_heads, stream));
      }
      IXC_RETURN_IF_ERROR(decode_attention(plan.layout.decode_runs, q_, attention_));
      if (sp_mode == SpAttention::kGatherMerge) IXC_RETURN_IF_ERROR(GatherMerge(rows, *comm));
    }
    const void* attended = attention_;
    int64_t layer_rows = rows;
    const Masks* layer_masks = &masks;
    if (compacting) {  // the residual of the logit rows, compacted; the rest of the layer on them alone
      IXC_RETURN_IF_ERROR(CopyRows(logit_rows, residual, delta, hidden * 4, stream));
      std::swap(residual, delta);
      attended = q_;
      layer_rows = logit_count;
      layer_masks = &plan.logit_masks;
    }
    if (tp_size_ == 1) {
      // The attention output and the feed-forward add onto the residual stream in their GEMMs (biases included), so
      // the norms after them only read it; with the fused decode step the feed-forward's weight pass does its norm.
      IXC_RETURN_IF_ERROR(ApplyLinear(w.attn_out, attended, layer_rows, *layer_masks, residual, DType::kF32, nullptr,
                                      /*accumulate=*/true, /*with_bias=*/true));
      if (!norms_in_pass) {
        IXC_RETURN_IF_ERROR(kc::LaunchAddRmsNorm(residual, nullptr, nullptr, w.ffn_norm, dtype, normed_, layer_rows,
                                                 hidden, c.rms_norm_eps, stream));
      }
      IXC_RETURN_IF_ERROR(FeedForwardFirstHalf(w, layer_rows, *layer_masks, norms_in_pass ? &ffn_norm : nullptr));
      IXC_RETURN_IF_ERROR(ApplyLinear(w.down, gate_, layer_rows, *layer_masks, residual, DType::kF32, nullptr,
                                      /*accumulate=*/true, /*with_bias=*/true));
      continue;
    }
    // With TP each rank's output is a partial sum: reduced first, then added in the next norm.
    IXC_RETURN_IF_ERROR(ApplyLinear(w.attn_out, attended, layer_rows, *layer_masks, delta, DType::kF32));
    IXC_RETURN_IF_ERROR(all_reduce(delta, layer_rows * hidden));
    IXC_RETURN_IF_ERROR(kc::LaunchAddRmsNorm(residual, delta, w.attn_out.bias, w.ffn_norm, dtype, normed_, layer_rows,
                                             hidden, c.rms_norm_eps, stream));
    IXC_RETURN_IF_ERROR(FeedForwardFirstHalf(w, layer_rows, *layer_masks));  // gate_ = silu(gate) * up
    IXC_RETURN_IF_ERROR(ApplyLinear(w.down, gate_, layer_rows, *layer_masks, delta, DType::kF32));
    IXC_RETURN_IF_ERROR(all_reduce(delta, layer_rows * hidden));
    pending_delta = delta;
    pending_bias = w.down.bias;
  }
  const int64_t final_rows = compact_last_layer ? logit_count : rows;
  IXC_RETURN_IF_ERROR(kc::LaunchAddRmsNorm(residual, pending_delta, pending_bias, final_norm_, dtype, normed_,
                                           final_rows, hidden, c.rms_norm_eps, stream));

  // The head, on the rows whose logits are wanted: rows 0..n-1 of normed_ where the last layer was compacted or they
  // are all the rows (decode), else gathered into head_in_.
  // A ring prefill's rank that holds neither the last position nor all_logits has no logit row.
  if (logit_count == 0) return absl::OkStatus();
  const void* head_input = normed_;
  if (!compact_last_layer && logit_rows.back() != logit_count - 1) {
    IXC_RETURN_IF_ERROR(CopyRows(logit_rows, normed_, head_in_, hidden * e, stream));
    head_input = head_in_;
  }
  return gpu_->gemm->Linear(
      {head_input, output_, logits_, logit_count, c.vocab_size, hidden, dtype, DType::kF32, false}, stream);
}

absl::Status CudaLanguageModel::FeedForwardFirstHalf(const Layer& w, int64_t rows, const Masks& masks,
                                                     const kc::RmsNormInput* norm) {
  const DType dtype = options_.dtype;
  cudaStream_t stream = gpu_->stream;
  const bool plain = masks.image == nullptr && masks.web == nullptr && masks.write == nullptr &&
                     w.gate.bias == nullptr && w.up.bias == nullptr;
  if (plain && kc::Gemm::StreamsWeights(rows, w.gate.in)) {  // decode: one pass over both weights
    return gpu_->gemm->SwiGluLinear(
        {normed_, w.gate.weight, w.up.weight, gate_, rows, w.gate.out, w.gate.in, dtype, norm}, stream);
  }
  LoraTerm gate_terms[3], up_terms[3];
  const bool one_lora = LoraTerms(w.gate, masks, gate_terms) == 1 && LoraTerms(w.up, masks, up_terms) == 1;
  const int64_t rank = one_lora ? gate_terms[0].lora->rank : 0;
  if (kc::FewerDecodeKernelsRequested() && rank > 0 && up_terms[0].lora->rank == rank && w.gate.bias == nullptr &&
      w.up.bias == nullptr && kc::Gemm::StreamsWeights(rows, w.gate.in) && kc::Gemm::StreamsWeights(rows, rank)) {
    // A LoRA mode's decode rows: gate's and up's base and A products in a pass each, then both B products with
    // SwiGLU in one, three kernels where ApplyLinear twice and LaunchSwiGlu take five.
    void* a_up = static_cast<uint8_t*>(low_rank_) + rows * rank * DTypeSize(dtype);
    IXC_RETURN_IF_ERROR(gpu_->gemm->LinearWithLowRank(
        {normed_, w.gate.weight, gate_, rows, w.gate.out, w.gate.in, dtype, dtype, false, nullptr, norm},
        {gate_terms[0].lora->a, low_rank_, rank}, stream));
    IXC_RETURN_IF_ERROR(gpu_->gemm->LinearWithLowRank(
        {normed_, w.up.weight, up_, rows, w.up.out, w.up.in, dtype, dtype}, {up_terms[0].lora->a, a_up, rank}, stream));
    return gpu_->gemm->LowRankSwiGlu(
        {gate_, up_, low_rank_, a_up, gate_terms[0].lora->b, up_terms[0].lora->b,
         gate_terms[0].all ? nullptr : gate_terms[0].mask, gate_, rows, w.gate.out, rank, dtype},
        stream);
  }
  // With `norm`, the gate's pass makes normed_, which the up pass after it reads.
  IXC_RETURN_IF_ERROR(ApplyLinear(w.gate, normed_, rows, masks, gate_, dtype, norm));
  IXC_RETURN_IF_ERROR(ApplyLinear(w.up, normed_, rows, masks, up_, dtype));
  if (w.gate.bias != nullptr) {
    IXC_RETURN_IF_ERROR(kc::LaunchAddBias(dtype, gate_, w.gate.bias, rows, w.gate.out, stream));
  }
  if (w.up.bias != nullptr) IXC_RETURN_IF_ERROR(kc::LaunchAddBias(dtype, up_, w.up.bias, rows, w.up.out, stream));
  return kc::LaunchSwiGlu(dtype, gate_, up_, gate_, rows * w.gate.out, stream);
}

absl::Status CudaLanguageModel::LaunchLayersAsGraph(const std::vector<Segment>& segments, const CallPlan& plan) {
  GraphKey key;
  key.rows = static_cast<int64_t>(segments.size());
  for (const DecodeRunLayout& run : plan.layout.decode_runs) key.decode_buckets.push_back(run.max_visible);
  for (const Segment& segment : segments) {
    key.rope.push_back(std::bit_cast<uint32_t>(segment.rope.base));
    key.rope.push_back(std::bit_cast<uint32_t>(segment.rope.position_scale));
  }
  key.masks = (plan.masks.image != nullptr) | (plan.masks.web != nullptr) << 1 | plan.masks.web_all << 2 |
              (plan.masks.write != nullptr) << 3 | plan.masks.write_all << 4;
  key.metadata = reinterpret_cast<uintptr_t>(metadata_.data());
  key.scratch = reinterpret_cast<uintptr_t>(scratch_.data());
  cudaStream_t stream = gpu_->stream;
  auto found = graphs_.find(key);
  if (found == graphs_.end()) {
    if (graphs_.size() >= kMaxGraphs) DropGraphs();
    absl::StatusOr<cudaGraphExec_t> exec = CaptureLayers(segments, plan);
    // GEMM plans first seen inside the capture could not be timed there (kernels/cuda/gemm.h, tuning): they are
    // timed now, while the captured calls' inputs still exist, and where one chose another algorithm the graph is
    // captured again with it.
    const absl::StatusOr<bool> retuned = gpu_->gemm->TuneDeferred(stream);
    if (exec.ok() && (!retuned.ok() || *retuned)) {
      cudaGraphExecDestroy(*exec);
      exec = retuned.ok() ? CaptureLayers(segments, plan) : retuned.status();
    }
    IXC_RETURN_IF_ERROR(exec.status());
    found = graphs_.emplace(std::move(key), *exec).first;
  }
  IXC_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(found->second, stream));
  return absl::OkStatus();
}

absl::StatusOr<cudaGraphExec_t> CudaLanguageModel::CaptureLayers(const std::vector<Segment>& segments,
                                                                 const CallPlan& plan) {
  cudaStream_t stream = gpu_->stream;
  IXC_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status launched = LaunchLayers(segments, plan, SpAttention::kLocal, std::nullopt, nullptr);
  cudaGraph_t graph = nullptr;
  const cudaError_t captured = cudaStreamEndCapture(stream, &graph);  // ends the capture whatever happened
  cudaGraphExec_t exec = nullptr;
  cudaError_t instantiated = cudaSuccess;
  if (launched.ok() && captured == cudaSuccess) instantiated = cudaGraphInstantiate(&exec, graph, 0);
  if (graph != nullptr) cudaGraphDestroy(graph);
  IXC_RETURN_IF_ERROR(launched);
  IXC_CUDA_RETURN_IF_ERROR(captured);
  IXC_CUDA_RETURN_IF_ERROR(instantiated);
  return exec;
}

void CudaLanguageModel::DropGraphs() {
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
}

absl::Status CudaLanguageModel::GatherLogits(int64_t rows, parallel::DeviceComm& comm) {
  IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(gpu_->stream));  // the comm runs on a stream of its own
  return comm.AllGather(logits_, rows * shard_.vocab_size, gathered_, parallel::Group::kTensor);
}

absl::Status CudaLanguageModel::DistributeLogits(const LlmWeights& weights, const std::vector<Segment>& segments,
                                                 const CallPlan& plan, SpAttention sp_mode,
                                                 parallel::DeviceComm* comm) {
  const int64_t n = static_cast<int64_t>(plan.layout.logit_rows.size()), local_vocab = shard_.vocab_size, tp = tp_size_;
  std::vector<float> host(tp * n * local_vocab);
  if (n == 0) {
    // Nothing to gather: every rank of this TP group holds the same rows.
  } else if (tp > 1) {
    IXC_RETURN_IF_ERROR(GatherLogits(n, *comm));
    IXC_CUDA_RETURN_IF_ERROR(cudaMemcpy(host.data(), gathered_, host.size() * 4, cudaMemcpyDeviceToHost));
  } else {
    IXC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host.data(), logits_, host.size() * 4, cudaMemcpyDeviceToHost, gpu_->stream));
    IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(gpu_->stream));
  }
  // (TP, rows, local vocab) -> per segment (rows, vocab), or this rank's slice with local_vocab.
  int64_t row = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& segment = segments[i];
    std::vector<float>& out = *segment.logits;
    const bool sliced = tp > 1 && segment.input->local_vocab;
    const int64_t first_rank = sliced ? weights.tp.rank : 0, ranks = sliced ? 1 : tp;
    const int64_t width = local_vocab * ranks;
    const std::vector<int64_t>& wanted = plan.layout.wanted[i];
    out.resize(wanted.size() * width);
    for (size_t r = 0; r < wanted.size(); ++r, ++row) {
      for (int64_t t = 0; t < ranks; ++t) {
        std::copy_n(host.data() + ((first_rank + t) * n + row) * local_vocab, local_vocab,
                    out.data() + (r * ranks + t) * local_vocab);
      }
    }
    if (sp_mode == SpAttention::kRing) {
      // A prompt shard: this rank's rows at their positions (all of them, or the prompt's last), the others' rows
      // 0; one sum over the SP group gives every rank the whole block, as on the CPU.
      std::vector<float> block((segment.input->all_logits ? segment.context_length : 1) * width, 0.f);
      for (size_t r = 0; r < wanted.size(); ++r) {
        const int64_t at = segment.input->all_logits ? segment.positions[wanted[r]] : 0;
        std::copy_n(out.data() + r * width, width, block.data() + at * width);
      }
      IXC_RETURN_IF_ERROR(SumOverSequenceGroup(block, *comm));
      out = std::move(block);
    }
  }
  return absl::OkStatus();
}

}  // namespace ixc::model
