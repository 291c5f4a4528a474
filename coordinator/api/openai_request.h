// File: coordinator/api/openai_request.h
//
// The OpenAI request bodies (`/v1/chat/completions`, `/v1/completions`) checked and turned into PromptSpecs and
// sampling settings. Chat messages map onto IXC-2.5's template with history (spec 5.2): `system` (or `developer`)
// messages become the meta instruction, user and assistant turns the history, and the last user turn the query.
// Images and videos (`image_url`, `video_url` parts: data: URLs, or local files under the allowed roots) may appear
// in any user turn; they take the places of the `<ImageHere>` placeholders the text writes, in order. Where the text
// writes none: one image or video goes first, as the reference's chat(query, [image]) puts it; several are written
// "Image1 <ImageHere>; Image2 <ImageHere>; " where their parts stand, as the reference's README writes them.
//
// Two extra fields of ours: `num_beams` (beam search as transformers 4.33 runs it, model/beam_search.h: temperature
// absent or 0, n 1, no logprobs; the best beam is returned, streamed as one chunk at the end) and, on chat completions,
// `ixc_task` (write_webpage, screen_2_webpage, resume_2_webpage, write_article: the last user turn is the instruction,
// the resume or, for a screenshot, ignored; the task's settings apply unless the request gives its own).
//
// Every error is InvalidArgument, names the field, and carries it as the status payload `param` (ParamOf).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/api/media_source.h"
#include "coordinator/compose_task.h"
#include "coordinator/request.h"
#include "kernels/ops.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"

namespace ixc::coordinator {

struct ApiLimits {
  int max_n = 8;          // --max-n: choices per request
  int max_media = 16;     // --max-images-per-request: images and videos in one request
  int max_logprobs = 20;  // --max-logprobs: top_logprobs (chat) or logprobs (completions), at most
  MediaPolicy media;
};

struct ApiRequest {
  bool chat = true;
  std::string model;                  // empty: the served model
  std::vector<PromptSpec> prompts;    // chat: one; completions: one per prompt
  kernels::SamplingParams sampling{1.0f, 0, 1.0f, 1.0f};  // OpenAI's defaults: temperature 1, top_p 1
  std::optional<uint64_t> seed;
  std::optional<int64_t> max_tokens;  // absent: what the context leaves
  int n = 1;
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
  bool ignore_eos = false;
  int top_logprobs = -1;              // >= 0: logprobs asked for, with this many likeliest tokens each
  std::vector<std::string> stop;
  model::LoraMode lora = model::LoraMode::kBase;
  int num_beams = 1;                  // > 1: beam search; the best beam comes at the end (no sampling, n = 1)
  std::optional<ComposeTask> task;    // ixc_task: a composition application (coordinator/compose_task.h)
  int64_t max_total_tokens = 0;       // the task's bound on prompt and generated tokens (0: none)
};

absl::StatusOr<ApiRequest> ParseChatRequest(const nlohmann::json& body, const ApiLimits& limits);
absl::StatusOr<ApiRequest> ParseCompletionRequest(const nlohmann::json& body, const ApiLimits& limits);

// The field an InvalidArgument status from the parsers names ("" when none).
std::string ParamOf(const absl::Status& status);

}  // namespace ixc::coordinator
