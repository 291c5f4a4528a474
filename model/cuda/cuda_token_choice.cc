// CudaLanguageModel's token choice (TokenChoice, model/language_model.h): the next token of every sequence of a
// decode call picked on the device with SampleNext's rules, so that one id per sequence crosses to the host instead
// of its vocabulary's logits (370 KB per sequence at IXC-2.5's 92544 tokens). The host's plan of it
// (model/token_choice_plan.h) goes up before the layers are launched; after the head come the TP gather, the
// repetition penalty and temperature, argmax on every row and the top-k / top-p draw on the rows that sample.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/sampling.h"
#include "model/cuda/cuda_language_model.h"
#include "model/token_choice_plan.h"

namespace ixc::model {
namespace {

namespace kc = ::ixc::kernels::cuda;

}  // namespace

bool CudaLanguageModel::ChoosesOnDevice(const std::vector<Segment>& segments, const CallPlan& plan,
                                        SpAttention sp_mode) {
  if (segments.empty() || sp_mode == SpAttention::kRing) return false;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (segments[i].choice == nullptr || plan.layout.wanted[i].size() != 1) return false;
    // Log-probabilities and beam candidates are taken on the host.
    if (segments[i].choice->top_logprobs >= 0 || segments[i].choice->beam_candidates > 0) return false;
  }
  return true;
}

absl::Status CudaLanguageModel::UploadChoices(const std::vector<Segment>& segments) {
  const int64_t n = static_cast<int64_t>(segments.size()), vocab = int64_t{shard_.vocab_size} * tp_size_;
  std::vector<const TokenChoice*> choices;
  for (const Segment& segment : segments) choices.push_back(segment.choice);
  IXC_ASSIGN_OR_RETURN(const TokenChoicePlan rows, PlanTokenChoices(choices, vocab));
  std::vector<kc::SampledRow> sampled;
  for (const TokenChoicePlan::Draw& draw : rows.draws) {
    sampled.push_back({draw.row, draw.top_k, draw.top_p, draw.uniform});
    IXC_RETURN_IF_ERROR(kc::CheckSampledRow(sampled.back()));
  }

  ChoicePlan& plan = choice_plan_;
  plan = ChoicePlan{};
  plan.adjust = rows.adjusts;
  plan.sampled = static_cast<int64_t>(sampled.size());
  int64_t at = 0;
  auto take = [&](int64_t bytes) {
    const int64_t start = at;
    at += AlignUp(bytes);
    return start;
  };
  plan.rows_at = take(tp_size_ > 1 ? n * vocab * 4 : 0);
  plan.ids_at = take(n * 4);
  const int64_t upload_at = at;
  plan.offsets_at = take((n + 1 + static_cast<int64_t>(rows.penalized.size())) * 4);  // offsets, then the ids
  plan.penalties_at = take(n * 4);
  plan.temperatures_at = take(n * 4);
  plan.sampled_at = take(plan.sampled * static_cast<int64_t>(sizeof(kc::SampledRow)));
  IXC_RETURN_IF_ERROR(choice_.Reserve(at, gpu_->stream, "token choice buffers"));
  std::vector<uint8_t> upload(at - upload_at);
  auto place = [&](int64_t offset, const void* data, size_t bytes) {
    if (bytes > 0) std::memcpy(upload.data() + (offset - upload_at), data, bytes);
  };
  place(plan.offsets_at, rows.offsets.data(), rows.offsets.size() * 4);
  place(plan.offsets_at + (n + 1) * 4, rows.penalized.data(), rows.penalized.size() * 4);
  place(plan.penalties_at, rows.penalties.data(), rows.penalties.size() * 4);
  place(plan.temperatures_at, rows.temperatures.data(), rows.temperatures.size() * 4);
  place(plan.sampled_at, sampled.data(), sampled.size() * sizeof(kc::SampledRow));
  // From pageable memory: staged before cudaMemcpyAsync returns.
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(choice_.as<uint8_t>() + upload_at, upload.data(), upload.size(),
                                           cudaMemcpyHostToDevice, gpu_->stream));
  return absl::OkStatus();
}

absl::Status CudaLanguageModel::ChooseTokens(const std::vector<Segment>& segments, parallel::DeviceComm* comm) {
  const int64_t n = static_cast<int64_t>(segments.size()), local = shard_.vocab_size, vocab = local * tp_size_;
  const ChoicePlan& plan = choice_plan_;
  uint8_t* base = choice_.as<uint8_t>();
  cudaStream_t stream = gpu_->stream;
  float* rows = logits_;  // (n, vocab)
  if (tp_size_ > 1) {
    IXC_RETURN_IF_ERROR(GatherLogits(n, *comm));
    rows = reinterpret_cast<float*>(base + plan.rows_at);
    for (int64_t r = 0; r < n; ++r) {  // (TP, n, local) -> row r's slices side by side
      IXC_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(rows + r * vocab, local * 4, gathered_ + r * local, n * local * 4,
                                                 local * 4, tp_size_, cudaMemcpyDeviceToDevice, stream));
    }
  }
  int32_t* ids = reinterpret_cast<int32_t*>(base + plan.ids_at);
  if (plan.adjust) {
    IXC_RETURN_IF_ERROR(
        kc::LaunchPenaltyAndTemperature(rows, n, vocab, reinterpret_cast<const int32_t*>(base + plan.offsets_at),
                                        reinterpret_cast<const int32_t*>(base + plan.offsets_at) + n + 1,
                                        reinterpret_cast<const float*>(base + plan.penalties_at),
                                        reinterpret_cast<const float*>(base + plan.temperatures_at), stream));
  }
  IXC_RETURN_IF_ERROR(kc::LaunchArgmax(rows, n, vocab, ids, stream));  // the sampled rows' ids are replaced next
  IXC_RETURN_IF_ERROR(kc::LaunchTopKTopPSampleRows(
      rows, vocab, reinterpret_cast<const kc::SampledRow*>(base + plan.sampled_at), plan.sampled, ids, stream));
  std::vector<int32_t> host(n);
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host.data(), ids, n * 4, cudaMemcpyDeviceToHost, stream));
  IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  for (int64_t r = 0; r < n; ++r) segments[r].choice->token = host[r];
  return absl::OkStatus();
}

}  // namespace ixc::model
