#include "model/language_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/ops.h"
#include "model/chunked_forward.h"
#include "model/forward_segment.h"
#include "model/generation.h"
#include "model/sp_attention.h"

namespace ixc::model {
namespace {

void AddBias(const std::vector<float>& bias, float* y, int64_t rows) {
  const int64_t out = static_cast<int64_t>(bias.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < out; ++c) y[r * out + c] += bias[c];
  }
}

// The RowMasks of a call (model/forward_segment.h) as LowRankAdd wants them: null where no row has the term.
struct RowAdapters {
  const uint8_t* image = nullptr;
  const uint8_t* web = nullptr;
  const uint8_t* write = nullptr;
};

RowAdapters AdaptersOf(const RowMasks& masks) {
  return {masks.any_image ? masks.image.data() : nullptr, masks.any_web ? masks.web.data() : nullptr,
          masks.any_write ? masks.write.data() : nullptr};
}

// A row mask for LowRankAdd: null when every row is set (LowRankAdd then takes all rows in one GEMM).
const uint8_t* MaskOrAll(const uint8_t* mask, int64_t rows) {
  return mask != nullptr && std::all_of(mask, mask + rows, [](uint8_t m) { return m != 0; }) ? nullptr : mask;
}

// y (rows, out) = x (rows, in) . W^T, + the low-rank terms of `adapters`; the bias is the caller's (a row-parallel
// linear adds it once, after the all-reduce).
void ApplyLinear(const LinearWeights& linear, const float* x, int64_t rows, const RowAdapters& adapters, float* y) {
  kernels::Linear(x, linear.weight, y, rows, /*accumulate=*/false);
  if (adapters.image != nullptr) kernels::LowRankAdd(x, linear.plora.a, linear.plora.b, adapters.image, y, rows);
  if (adapters.web != nullptr) {
    kernels::LowRankAdd(x, linear.web.a, linear.web.b, MaskOrAll(adapters.web, rows), y, rows);
  }
  if (adapters.write != nullptr) {
    kernels::LowRankAdd(x, linear.sft.a, linear.sft.b, MaskOrAll(adapters.write, rows), y, rows);
    kernels::LowRankAdd(x, linear.dpo.a, linear.dpo.b, MaskOrAll(adapters.write, rows), y, rows);
  }
}

// Column-parallel: this rank's output features, complete.
void ColumnParallelLinear(const LinearWeights& linear, const float* x, int64_t rows, const RowAdapters& adapters,
                          float* y) {
  ApplyLinear(linear, x, rows, adapters, y);
  if (!linear.bias.empty()) AddBias(linear.bias, y, rows);
}

// Row-parallel: Y = sum over the TP group of X_t W_t^T (and of the LoRA terms B A_t x_t), then the bias, once.
absl::Status RowParallelLinear(const LinearWeights& linear, const float* x, int64_t rows, const RowAdapters& adapters,
                               float* y, parallel::DeviceComm* comm) {
  ApplyLinear(linear, x, rows, adapters, y);
  if (comm != nullptr) {
    IXC_RETURN_IF_ERROR(comm->AllReduceSum(y, rows * linear.weight.dim(0), parallel::Group::kTensor));
  }
  if (!linear.bias.empty()) AddBias(linear.bias, y, rows);
  return absl::OkStatus();
}

// Splits the fused qkv rows (spec 1.3: per KV group, `group` query heads then one K head then one V head) into
// q (rows, heads, d), k (rows, kv_heads, d) and v (rows, kv_heads, d); `c` holds this rank's head counts.
void UnpackQkv(const LlmConfig& c, const float* qkv, int64_t rows, float* q, float* k, float* v) {
  const int d = c.head_dim, group = c.q_heads_per_kv_head();
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = qkv + r * c.qkv_size();
    for (int g = 0; g < c.num_kv_heads; ++g) {
      const float* block = src + static_cast<int64_t>(g) * (group + 2) * d;
      std::copy_n(block, group * d, q + (r * c.num_heads + g * group) * d);
      std::copy_n(block + group * d, d, k + (r * c.num_kv_heads + g) * d);
      std::copy_n(block + (group + 1) * d, d, v + (r * c.num_kv_heads + g) * d);
    }
  }
}

// The logits of rows (rows, hidden, already normalized) through the vocab-parallel head: whole rows on every TP rank.
absl::Status LmHead(const LlmWeights& weights, const float* normed, int64_t rows, parallel::DeviceComm* comm,
                    float* logits) {
  const int64_t local_vocab = weights.shard.vocab_size, size = weights.tp.size;
  if (comm == nullptr || size == 1) {  // one rank, or the caller wants this rank's slice
    kernels::Linear(normed, weights.output, logits, rows, /*accumulate=*/false);
    return absl::OkStatus();
  }
  // This rank's slice of every row, gathered as (T, rows, vocab / T), then laid out by row.
  std::vector<float> local(rows * local_vocab), gathered(size * rows * local_vocab);
  kernels::Linear(normed, weights.output, local.data(), rows, /*accumulate=*/false);
  IXC_RETURN_IF_ERROR(comm->AllGather(local.data(), local.size(), gathered.data(), parallel::Group::kTensor));
  for (int64_t t = 0; t < size; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(gathered.data() + (t * rows + r) * local_vocab, local_vocab,
                  logits + r * local_vocab * size + t * local_vocab);
    }
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// Whether every segment's logits can come from one call of the head: none is a ring prefill's shard (summed over
// the SP group per segment) and all want the same vocabulary layout (whole, or with TP this rank's slice).
bool SharesOneHead(const std::vector<Segment>& segments) {
  for (const Segment& segment : segments) {
    if (segment.input->sp_attention == SpAttention::kRing ||
        segment.input->local_vocab != segments.front().input->local_vocab) {
      return false;
    }
  }
  return true;
}

// The logits of `picked`'s rows (final hidden states, (rows, hidden)), normalized in place and through the head: whole
// rows on every rank, or, with `sliced` (local_vocab under TP), this TP rank's slice of the vocabulary.
absl::StatusOr<std::vector<float>> HeadLogits(const LlmWeights& weights, std::vector<float>& picked, bool sliced,
                                              parallel::DeviceComm* tp_comm) {
  const int64_t hidden = weights.shard.hidden_size, rows = static_cast<int64_t>(picked.size()) / hidden;
  const int64_t vocab = sliced ? weights.shard.vocab_size : weights.config.vocab_size;
  std::vector<float> logits(rows * vocab);
  kernels::RmsNorm(picked.data(), weights.final_norm.data(), picked.data(), rows, hidden, weights.shard.rms_norm_eps);
  IXC_RETURN_IF_ERROR(LmHead(weights, picked.data(), rows, sliced ? nullptr : tp_comm, logits.data()));
  return logits;
}

// Every segment's logits by one call of the head over all their rows (rows first_logit_row[i].. of x, wanted[i]
// many each): a batch of decodes reads the head's weights once instead of once per sequence.
absl::Status BatchLogits(const LlmWeights& weights, const std::vector<Segment>& segments,
                         const std::vector<std::vector<int64_t>>& wanted, const std::vector<int64_t>& first_logit_row,
                         const float* x, parallel::DeviceComm* tp_comm) {
  const int64_t hidden = weights.shard.hidden_size;
  const bool sliced = tp_comm != nullptr && segments.front().input->local_vocab;
  const int64_t vocab = sliced ? weights.shard.vocab_size : weights.config.vocab_size;
  std::vector<float> picked;  // (rows, hidden) every segment's logit rows, in segment order
  for (size_t i = 0; i < segments.size(); ++i) {
    picked.insert(picked.end(), x + first_logit_row[i] * hidden,
                  x + (first_logit_row[i] + static_cast<int64_t>(wanted[i].size())) * hidden);
  }
  IXC_ASSIGN_OR_RETURN(const std::vector<float> all, HeadLogits(weights, picked, sliced, tp_comm));
  int64_t at = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    const int64_t count = static_cast<int64_t>(wanted[i].size());
    segments[i].logits->assign(all.begin() + at * vocab, all.begin() + (at + count) * vocab);
    at += count;
  }
  return absl::OkStatus();
}

// The logits of one segment's tokens `rows` (LogitTokens) from their final hidden states, rows x_rows.. of x.
absl::Status SegmentLogits(const LlmWeights& weights, const Segment& segment, const std::vector<int64_t>& rows,
                           const float* x, int64_t x_rows, parallel::DeviceComm* tp_comm, parallel::DeviceComm* comm) {
  const ForwardInput& input = *segment.input;
  const int64_t hidden = weights.shard.hidden_size;
  // Whole logits on every rank, or, with local_vocab, this TP rank's slice of the vocabulary.
  const bool sliced = tp_comm != nullptr && input.local_vocab;
  const int64_t vocab = sliced ? weights.shard.vocab_size : weights.config.vocab_size;
  std::vector<float> picked(x + x_rows * hidden, x + (x_rows + static_cast<int64_t>(rows.size())) * hidden);
  IXC_ASSIGN_OR_RETURN(std::vector<float> own, HeadLogits(weights, picked, sliced, tp_comm));
  if (input.sp_attention != SpAttention::kRing) {
    *segment.logits = std::move(own);
    return absl::OkStatus();
  }
  // A prompt shard: this rank fills the rows of its positions (all of them, or only the prompt's last), the others
  // stay 0, and one sum over the SP group gives every rank the whole block.
  const int64_t out_rows = input.all_logits ? segment.context_length : 1;
  segment.logits->assign(out_rows * vocab, 0.f);
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t row = input.all_logits ? segment.positions[rows[i]] : 0;
    std::copy_n(own.data() + i * vocab, vocab, segment.logits->data() + row * vocab);
  }
  return comm->AllReduceSum(segment.logits->data(), segment.logits->size(), parallel::Group::kSequence);
}

// The forward on the CPU, after LanguageModelForwardBatch's checks.
absl::Status CpuForwardBatch(const LlmWeights& weights, std::vector<BatchEntry>& batch, KvCache& cache,
                             parallel::DeviceComm* comm) {
  parallel::DeviceComm* tp_comm = weights.tp.size > 1 ? comm : nullptr;
  const LlmConfig& c = weights.shard;  // this rank's heads, KV heads, intermediate size and vocabulary
  const int64_t hidden = c.hidden_size, ffn = c.intermediate_size, d = c.head_dim, kv_row = c.num_kv_heads * d;

  std::vector<Segment> segments;
  IXC_ASSIGN_OR_RETURN(const int64_t tokens, PrepareSegments(weights, batch, cache, segments));  // the batch's rows
  // Per-row adapters and the input rows, in batch order.
  const RowMasks masks = RowMasksOf(segments, tokens);
  std::vector<float> x(tokens * hidden);  // (tokens, hidden) the residual stream
  for (const Segment& segment : segments) {
    const ForwardInput& input = *segment.input;
    float* rows = x.data() + segment.first_row * hidden;
    if (input.ids.empty()) {
      std::copy(input.embeddings.begin(), input.embeddings.end(), rows);
    } else {
      IXC_RETURN_IF_ERROR(kernels::EmbeddingGather(weights.tok_embeddings, input.ids.data(), segment.tokens, rows));
    }
  }
  const RowAdapters adapters = AdaptersOf(masks);
  const float scale = 1.f / std::sqrt(static_cast<float>(d));

  std::vector<float> normed(tokens * hidden);                  // (tokens, hidden)
  std::vector<float> qkv(tokens * c.qkv_size());               // (tokens, qkv_size)
  std::vector<float> q(tokens * c.num_heads * d);              // (tokens, heads, head_dim)
  std::vector<float> k(tokens * kv_row), v(tokens * kv_row);   // (tokens, kv_heads, head_dim)
  std::vector<float> attention(tokens * c.num_heads * d);      // (tokens, heads, head_dim)
  std::vector<float> projected(tokens * hidden);               // (tokens, hidden)
  std::vector<float> gate(tokens * ffn), up(tokens * ffn);     // (tokens, intermediate)

  // The last layer needs K and V of every row, but the attention and the feed-forward only on the rows whose logits
  // are wanted (a prompt's last): where every segment attends locally and some rows give none, it goes on past its
  // K/V store with those rows alone, moved to the front (as on the GPU, model/cuda/cuda_forward.cc).
  std::vector<std::vector<int64_t>> wanted;  // per segment, its tokens whose logits are wanted
  std::vector<int64_t> logit_rows;           // the batch's rows of them, ascending
  bool all_local = true;
  for (const Segment& segment : segments) {
    wanted.push_back(LogitTokens(segment));
    for (int64_t t : wanted.back()) logit_rows.push_back(segment.first_row + t);
    all_local &= segment.input->sp_attention == SpAttention::kLocal;
  }
  const int64_t logit_count = static_cast<int64_t>(logit_rows.size());
  const bool compact_last_layer = all_local && logit_count > 0 && logit_count < tokens;
  const RowMasks logit_masks = compact_last_layer ? RowMasksOfRows(masks, logit_rows) : RowMasks{};

  for (int layer = 0; layer < c.num_layers; ++layer) {
    const LayerWeights& w = weights.layers[layer];
    const bool compacting = compact_last_layer && layer == c.num_layers - 1;
    // Attention block: x += wo(Attn(RoPE(q), RoPE(k), v)); attention per sequence, everything else batched.
    kernels::RmsNorm(x.data(), w.attn_norm.data(), normed.data(), tokens, hidden, c.rms_norm_eps);
    ColumnParallelLinear(w.attn_qkv, normed.data(), tokens, adapters, qkv.data());
    UnpackQkv(c, qkv.data(), tokens, q.data(), k.data(), v.data());
    for (size_t i = 0; i < segments.size(); ++i) {
      const Segment& segment = segments[i];
      float* sq = q.data() + segment.first_row * c.num_heads * d;
      float* sk = k.data() + segment.first_row * kv_row;
      const float* sv = v.data() + segment.first_row * kv_row;
      float* out = attention.data() + segment.first_row * c.num_heads * d;
      kernels::ApplyRope(sq, segment.positions.data(), segment.tokens, c.num_heads, segment.rope);
      kernels::ApplyRope(sk, segment.positions.data(), segment.tokens, c.num_kv_heads, segment.rope);
      for (size_t s = 0; s < segment.stored.size(); ++s) {
        std::copy_n(sk + segment.stored[s] * kv_row, kv_row, cache.KeySlot(layer, *segment.seq, segment.past + s));
        std::copy_n(sv + segment.stored[s] * kv_row, kv_row, cache.ValueSlot(layer, *segment.seq, segment.past + s));
      }
      const kernels::AttentionShape shape{static_cast<int>(segment.tokens), c.num_heads, scale};
      switch (segment.input->sp_attention) {
        case SpAttention::kLocal:
          if (compacting) {  // from the logit rows alone
            for (int64_t t : wanted[i]) {
              kernels::PagedAttention(sq + t * c.num_heads * d, segment.positions.data() + t,
                                      cache.View(layer, *segment.seq), {1, c.num_heads, scale},
                                      out + t * c.num_heads * d, /*lse=*/nullptr);
            }
          } else {
            kernels::PagedAttention(sq, segment.positions.data(), cache.View(layer, *segment.seq), shape, out,
                                    /*lse=*/nullptr);
          }
          break;
        case SpAttention::kRing:
          IXC_RETURN_IF_ERROR(
              RingAttention(sq, segment.positions, cache.View(layer, *segment.seq), shape, *comm, out));
          break;
        case SpAttention::kGatherMerge:
          IXC_RETURN_IF_ERROR(
              GatherMergeAttention(sq, segment.positions, cache.View(layer, *segment.seq), shape, *comm, out));
          break;
      }
    }
    int64_t rows = tokens;
    RowAdapters layer_adapters = adapters;
    if (compacting) {  // the logit rows' residual and attention output to the front; the rest of the layer on them
      const int64_t width = c.num_heads * d;
      for (int64_t j = 0; j < logit_count; ++j) {
        if (logit_rows[j] == j) continue;
        std::copy_n(x.data() + logit_rows[j] * hidden, hidden, x.data() + j * hidden);
        std::copy_n(attention.data() + logit_rows[j] * width, width, attention.data() + j * width);
      }
      rows = logit_count;
      layer_adapters = AdaptersOf(logit_masks);
    }
    IXC_RETURN_IF_ERROR(
        RowParallelLinear(w.attn_out, attention.data(), rows, layer_adapters, projected.data(), tp_comm));
    for (int64_t i = 0; i < rows * hidden; ++i) x[i] += projected[i];

    // Feed-forward block: x += w2(silu(w1 n) * w3 n).
    kernels::RmsNorm(x.data(), w.ffn_norm.data(), normed.data(), rows, hidden, c.rms_norm_eps);
    ColumnParallelLinear(w.ffn_gate, normed.data(), rows, layer_adapters, gate.data());
    ColumnParallelLinear(w.ffn_up, normed.data(), rows, layer_adapters, up.data());
    kernels::SwiGlu(gate.data(), up.data(), gate.data(), rows * ffn);
    IXC_RETURN_IF_ERROR(RowParallelLinear(w.ffn_down, gate.data(), rows, layer_adapters, projected.data(), tp_comm));
    for (int64_t i = 0; i < rows * hidden; ++i) x[i] += projected[i];
  }
  // Each segment's logit rows: contiguous in x (all its rows or one), at the front after compaction.
  std::vector<int64_t> first_logit_row(segments.size());
  int64_t compacted = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    first_logit_row[i] =
        compact_last_layer ? compacted : segments[i].first_row + (wanted[i].empty() ? 0 : wanted[i][0]);
    compacted += static_cast<int64_t>(wanted[i].size());
  }
  if (SharesOneHead(segments)) {
    return BatchLogits(weights, segments, wanted, first_logit_row, x.data(), tp_comm);
  }
  for (size_t i = 0; i < segments.size(); ++i) {
    IXC_RETURN_IF_ERROR(
        SegmentLogits(weights, segments[i], wanted[i], x.data(), first_logit_row[i], tp_comm, comm));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LanguageModelForwardBatch(const LlmWeights& weights, std::vector<BatchEntry>& batch, KvCache& cache,
                                       parallel::DeviceComm* comm, int64_t max_rows_per_call) {
  const bool tensor_parallel = weights.tp.size > 1;
  bool sequence_parallel = false, ring = false;
  for (const BatchEntry& entry : batch) {
    sequence_parallel |= entry.input.sp_attention != SpAttention::kLocal;
    ring |= entry.input.sp_attention == SpAttention::kRing;
  }
  if ((tensor_parallel || sequence_parallel) && comm == nullptr) {
    return absl::FailedPreconditionError("tensor or sequence parallelism needs the rank's DeviceComm");
  }
  if (tensor_parallel && comm->GroupSize(parallel::Group::kTensor) != weights.tp.size) {
    return absl::FailedPreconditionError("the weights' TP size differs from the TP group's");
  }
  if (ring && batch.size() != 1) return absl::InvalidArgumentError("a ring prefill runs alone, not in a batch");
  const bool on_device = weights.device != nullptr;
  for (BatchEntry& entry : batch) {
    if (entry.choice == nullptr) continue;
    if (entry.input.all_logits || entry.input.sp_attention == SpAttention::kRing || entry.logits == nullptr) {
      return absl::InvalidArgumentError(
          "a token choice takes one row's logits: not with all_logits or a ring prefill, and with a logits buffer");
    }
    entry.choice->token = -1;
    // Where the host chooses: on the CPU this TP rank's slice (SampleNext exchanges 2 floats per rank for greedy);
    // from a device whole rows, so that SampleNext needs no comm (the device's moves device buffers).
    entry.input.local_vocab = !on_device;
  }
  // The checks above hold for every backend.
  const BackendCall backend = [&](std::vector<BatchEntry>& part) {
    return on_device ? weights.device->ForwardBatch(weights, part, cache, comm)
                     : CpuForwardBatch(weights, part, cache, comm);
  };
  const CallLimits limits = max_rows_per_call > 0 ? CallLimits{max_rows_per_call, max_rows_per_call}
                            : on_device           ? weights.device->Limits()
                                                  : CallLimits{};
  // One backend call where the batch fits the limits (always on the CPU), else several.
  IXC_RETURN_IF_ERROR(ForwardInChunks(weights, batch, limits, backend));
  for (BatchEntry& entry : batch) {
    TokenChoice* choice = entry.choice;
    if (choice == nullptr || choice->token >= 0) continue;  // none asked, or the backend chose
    IXC_RETURN_IF_ERROR(ChooseNext(weights, *entry.logits, *choice, on_device ? nullptr : comm));
  }
  return absl::OkStatus();
}

absl::Status LanguageModelForward(const LlmWeights& weights, const ForwardInput& input, SequenceKv& seq,
                                  KvCache& cache, std::vector<float>* logits, parallel::DeviceComm* comm) {
  std::vector<BatchEntry> batch = {{input, &seq, logits}};
  return LanguageModelForwardBatch(weights, batch, cache, comm);
}

}  // namespace ixc::model
