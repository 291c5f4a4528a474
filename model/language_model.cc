#include "model/language_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/ops.h"
#include "model/sp_attention.h"

namespace ixc::model {
namespace {

void AddBias(const std::vector<float>& bias, float* y, int64_t rows) {
  const int64_t out = static_cast<int64_t>(bias.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < out; ++c) y[r * out + c] += bias[c];
  }
}

// y (rows, out) = x (rows, in) . W^T, + PLoRA on image rows, + the task LoRAs of `mode` on every row; the bias is
// the caller's (a row-parallel linear adds it once, after the all-reduce).
void ApplyLinear(const LinearWeights& linear, const float* x, int64_t rows, const uint8_t* image_mask,
                 bool any_image_row, LoraMode mode, float* y) {
  kernels::Linear(x, linear.weight, y, rows, /*accumulate=*/false);
  if (any_image_row) kernels::LowRankAdd(x, linear.plora.a, linear.plora.b, image_mask, y, rows);
  switch (mode) {
    case LoraMode::kBase:
      break;
    case LoraMode::kWeb:
      kernels::LowRankAdd(x, linear.web.a, linear.web.b, nullptr, y, rows);
      break;
    case LoraMode::kWrite:
      kernels::LowRankAdd(x, linear.sft.a, linear.sft.b, nullptr, y, rows);
      kernels::LowRankAdd(x, linear.dpo.a, linear.dpo.b, nullptr, y, rows);
      break;
  }
}

// Column-parallel: this rank's output features, complete.
void ColumnParallelLinear(const LinearWeights& linear, const float* x, int64_t rows, const uint8_t* image_mask,
                          bool any_image_row, LoraMode mode, float* y) {
  ApplyLinear(linear, x, rows, image_mask, any_image_row, mode, y);
  if (!linear.bias.empty()) AddBias(linear.bias, y, rows);
}

// Row-parallel: Y = sum over the TP group of X_t W_t^T (and of the LoRA terms B A_t x_t), then the bias, once.
absl::Status RowParallelLinear(const LinearWeights& linear, const float* x, int64_t rows, const uint8_t* image_mask,
                               bool any_image_row, LoraMode mode, float* y, parallel::DeviceComm* comm) {
  ApplyLinear(linear, x, rows, image_mask, any_image_row, mode, y);
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

kernels::RopeParams RopeFor(const LlmConfig& c, int64_t seq_len) {
  kernels::RopeParams rope;
  rope.head_dim = c.head_dim;
  switch (c.rope_scaling) {
    case RopeScaling::kNone:
      rope.base = static_cast<float>(c.rope_theta);
      break;
    case RopeScaling::kLinear:
      rope.base = static_cast<float>(c.rope_theta);
      rope.position_scale = static_cast<float>(1.0 / c.rope_scaling_factor);
      break;
    case RopeScaling::kDynamic:
      rope.base = static_cast<float>(kernels::DynamicNtkBase(c.rope_theta, c.rope_scaling_factor,
                                                             c.max_position_embeddings, seq_len, c.head_dim));
      break;
  }
  return rope;
}

absl::Status CheckInput(const LlmWeights& weights, const ForwardInput& input) {
  const LlmConfig& c = weights.config;
  if (input.ids.empty() == input.embeddings.empty()) {
    return absl::InvalidArgumentError("a forward call takes either token ids or input embeddings");
  }
  if (!input.embeddings.empty() && input.embeddings.size() % c.hidden_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("input embeddings hold ", input.embeddings.size(),
                                                   " values, not a multiple of hidden_size ", c.hidden_size));
  }
  const int64_t tokens = input.tokens(c.hidden_size);
  if (!input.image_mask.empty() && static_cast<int64_t>(input.image_mask.size()) != tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("image mask has ", input.image_mask.size(), " entries for ", tokens, " tokens"));
  }
  if (!input.image_mask.empty() && !weights.has_plora &&
      std::any_of(input.image_mask.begin(), input.image_mask.end(), [](uint8_t m) { return m != 0; })) {
    return absl::InvalidArgumentError("image rows need PLoRA weights, which this checkpoint does not have");
  }
  if (input.lora == LoraMode::kWeb && !weights.has_web_lora) {
    return absl::InvalidArgumentError("LoRA mode 'web' needs the lora_web tensors, which this checkpoint lacks");
  }
  if (input.lora == LoraMode::kWrite && !weights.has_write_lora) {
    return absl::InvalidArgumentError(
        "LoRA mode 'write' needs the lora_sft and lora_dpo tensors, which this checkpoint lacks");
  }
  return absl::OkStatus();
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

absl::Status LanguageModelForward(const LlmWeights& weights, const ForwardInput& input, SequenceKv& seq,
                                  KvCache& cache, std::vector<float>* logits, parallel::DeviceComm* comm) {
  IXC_RETURN_IF_ERROR(CheckInput(weights, input));
  const bool tensor_parallel = weights.tp.size > 1, sequence_parallel = input.sp_attention != SpAttention::kLocal;
  if ((tensor_parallel || sequence_parallel) && comm == nullptr) {
    return absl::FailedPreconditionError("tensor or sequence parallelism needs the rank's DeviceComm");
  }
  if (tensor_parallel && comm->GroupSize(parallel::Group::kTensor) != weights.tp.size) {
    return absl::FailedPreconditionError("the weights' TP size differs from the TP group's");
  }
  if (input.sp_attention == SpAttention::kRing && seq.length != 0) {
    return absl::FailedPreconditionError("ring attention prefills an empty sequence; later chunks use kGatherMerge");
  }
  parallel::DeviceComm* tp_comm = tensor_parallel ? comm : nullptr;
  const LlmConfig& c = weights.shard;  // this rank's heads, KV heads, intermediate size and vocabulary
  const int64_t tokens = input.tokens(c.hidden_size);
  if (tokens == 0 && input.sp_attention != SpAttention::kRing) {
    return absl::InvalidArgumentError("a forward call needs at least one token");
  }
  const int64_t hidden = c.hidden_size, ffn = c.intermediate_size, d = c.head_dim, kv_row = c.num_kv_heads * d;

  std::vector<int32_t> positions(tokens);  // (tokens) positions in the sequence
  if (input.positions.empty()) {
    const int64_t next = seq.positions.empty() ? 0 : seq.positions.back() + 1;
    for (int64_t t = 0; t < tokens; ++t) positions[t] = static_cast<int32_t>(next + t);
  } else {
    std::copy(input.positions.begin(), input.positions.end(), positions.begin());
  }
  const int64_t context_length = input.context_length > 0 ? input.context_length
                                                          : (tokens > 0 ? positions.back() + 1 : 0);
  // The tokens whose K/V this rank keeps, and their slots after the cached ones.
  std::vector<int64_t> stored;
  for (int64_t t = 0; t < tokens; ++t) {
    if (input.store_kv.empty() || input.store_kv[t]) stored.push_back(t);
  }
  const int64_t past = seq.length;
  IXC_RETURN_IF_ERROR(cache.Reserve(seq, past + static_cast<int64_t>(stored.size())));
  for (int64_t t : stored) seq.positions.push_back(positions[t]);
  seq.length = past + static_cast<int64_t>(stored.size());

  const uint8_t* image_mask = input.image_mask.empty() ? nullptr : input.image_mask.data();
  const bool any_image_row = image_mask != nullptr && std::any_of(image_mask, image_mask + tokens,
                                                                 [](uint8_t m) { return m != 0; });
  const kernels::RopeParams rope = RopeFor(weights.config, context_length);
  const kernels::AttentionShape attention_shape{static_cast<int>(tokens), c.num_heads,
                                                1.f / std::sqrt(static_cast<float>(d))};

  std::vector<float> x(tokens * hidden);  // (tokens, hidden) the residual stream
  if (input.ids.empty()) {
    std::copy(input.embeddings.begin(), input.embeddings.end(), x.begin());
  } else {
    IXC_RETURN_IF_ERROR(kernels::EmbeddingGather(weights.tok_embeddings, input.ids.data(), tokens, x.data()));
  }
  std::vector<float> normed(tokens * hidden);                  // (tokens, hidden)
  std::vector<float> qkv(tokens * c.qkv_size());               // (tokens, qkv_size)
  std::vector<float> q(tokens * c.num_heads * d);              // (tokens, heads, head_dim)
  std::vector<float> k(tokens * kv_row), v(tokens * kv_row);   // (tokens, kv_heads, head_dim)
  std::vector<float> attention(tokens * c.num_heads * d);      // (tokens, heads, head_dim)
  std::vector<float> projected(tokens * hidden);               // (tokens, hidden)
  std::vector<float> gate(tokens * ffn), up(tokens * ffn);     // (tokens, intermediate)

  for (int layer = 0; layer < c.num_layers; ++layer) {
    const LayerWeights& w = weights.layers[layer];
    // Attention block: x += wo(Attn(RoPE(q), RoPE(k), v)).
    kernels::RmsNorm(x.data(), w.attn_norm.data(), normed.data(), tokens, hidden, c.rms_norm_eps);
    ColumnParallelLinear(w.attn_qkv, normed.data(), tokens, image_mask, any_image_row, input.lora, qkv.data());
    UnpackQkv(c, qkv.data(), tokens, q.data(), k.data(), v.data());
    kernels::ApplyRope(q.data(), positions.data(), tokens, c.num_heads, rope);
    kernels::ApplyRope(k.data(), positions.data(), tokens, c.num_kv_heads, rope);
    for (size_t i = 0; i < stored.size(); ++i) {
      std::copy_n(k.data() + stored[i] * kv_row, kv_row, cache.KeySlot(layer, seq, past + i));
      std::copy_n(v.data() + stored[i] * kv_row, kv_row, cache.ValueSlot(layer, seq, past + i));
    }
    switch (input.sp_attention) {
      case SpAttention::kLocal:
        kernels::PagedAttention(q.data(), positions.data(), cache.View(layer, seq), attention_shape,
                                attention.data(), /*lse=*/nullptr);
        break;
      case SpAttention::kRing:
        IXC_RETURN_IF_ERROR(RingAttention(q.data(), k.data(), v.data(), positions, c.num_kv_heads,
                                          static_cast<int>(d), attention_shape, *comm, attention.data()));
        break;
      case SpAttention::kGatherMerge:
        IXC_RETURN_IF_ERROR(GatherMergeAttention(q.data(), positions, cache.View(layer, seq), attention_shape, *comm,
                                                 attention.data()));
        break;
    }
    IXC_RETURN_IF_ERROR(RowParallelLinear(w.attn_out, attention.data(), tokens, image_mask, any_image_row, input.lora,
                                          projected.data(), tp_comm));
    for (int64_t i = 0; i < tokens * hidden; ++i) x[i] += projected[i];

    // Feed-forward block: x += w2(silu(w1 n) * w3 n).
    kernels::RmsNorm(x.data(), w.ffn_norm.data(), normed.data(), tokens, hidden, c.rms_norm_eps);
    ColumnParallelLinear(w.ffn_gate, normed.data(), tokens, image_mask, any_image_row, input.lora, gate.data());
    ColumnParallelLinear(w.ffn_up, normed.data(), tokens, image_mask, any_image_row, input.lora, up.data());
    kernels::SwiGlu(gate.data(), up.data(), gate.data(), tokens * ffn);
    IXC_RETURN_IF_ERROR(RowParallelLinear(w.ffn_down, gate.data(), tokens, image_mask, any_image_row, input.lora,
                                          projected.data(), tp_comm));
    for (int64_t i = 0; i < tokens * hidden; ++i) x[i] += projected[i];
  }

  // Logits are whole on every rank, or, with local_vocab, this TP rank's slice of the vocabulary.
  const bool sliced = tp_comm != nullptr && input.local_vocab;
  const int64_t vocab = sliced ? weights.shard.vocab_size : weights.config.vocab_size;
  parallel::DeviceComm* head_comm = sliced ? nullptr : tp_comm;
  if (input.sp_attention != SpAttention::kRing) {
    const int64_t first_row = input.all_logits ? 0 : tokens - 1, rows = tokens - first_row;
    kernels::RmsNorm(x.data() + first_row * hidden, weights.final_norm.data(), normed.data(), rows, hidden,
                     c.rms_norm_eps);
    logits->resize(rows * vocab);
    return LmHead(weights, normed.data(), rows, head_comm, logits->data());
  }
  // A prompt shard: this rank fills the rows of its positions (all of them, or only the prompt's last), the others
  // stay 0, and one sum over the SP group gives every rank the whole block.
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < tokens; ++t) {
    if (input.all_logits || positions[t] == context_length - 1) rows.push_back(t);
  }
  std::vector<float> picked(rows.size() * hidden), own(rows.size() * vocab);
  for (size_t i = 0; i < rows.size(); ++i) std::copy_n(x.data() + rows[i] * hidden, hidden, picked.data() + i * hidden);
  kernels::RmsNorm(picked.data(), weights.final_norm.data(), picked.data(), rows.size(), hidden, c.rms_norm_eps);
  IXC_RETURN_IF_ERROR(LmHead(weights, picked.data(), rows.size(), head_comm, own.data()));
  const int64_t out_rows = input.all_logits ? context_length : 1;
  logits->assign(out_rows * vocab, 0.f);
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t row = input.all_logits ? positions[rows[i]] : 0;
    std::copy_n(own.data() + i * vocab, vocab, logits->data() + row * vocab);
  }
  return comm->AllReduceSum(logits->data(), logits->size(), parallel::Group::kSequence);
}

}  // namespace ixc::model
