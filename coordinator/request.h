// File: coordinator/request.h
//
// A request as the coordinator holds it, from its arrival (an HTTP request, coordinator/api/; or an offline JSONL
// line) to its result. The prompt is built by PreparePrompt from a PromptSpec (template applied, media in
// placeholder order) off the engine's thread. One offline JSON line in:
//   {"id": "a", "prompt": "Describe <ImageHere>", "chat": true, "use_meta": false, "images": ["cars1.jpg"],
//    "video": "clip.mp4", "prompt_ids": [1, 2, 3], "max_new_tokens": 32, "temperature": 0, "top_p": 1,
//    "top_k": 0, "repetition_penalty": 1, "seed": 0, "num_beams": 1, "lora_mode": "base", "ignore_eos": false,
//    "arrive_after_ms": 0, "dump_logits": "a.npy"}
// (prompt or prompt_ids; the rest optional) and one out:
//   {"id": "a", "prompt_tokens": 120, "ids": [...], "text": "...", "finish_reason": "stop|length|error",
//    "error": "...", "preemptions": 0, "cached_tokens": 0, "timings": {"ttft_s", "image_queue_s", "e2e_s",
//    "decode_tokens_per_s"}}
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/media/vision_input.h"
#include "coordinator/request_stream.h"
#include "coordinator/tokenizer.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"

namespace ixc::coordinator {

struct ImageInPrompt {
  PreparedVision prepared;  // its key names it in the caches
  int tag = -1;             // its entry in the image cache (image_cache.h), from dispatch until the request ends
  int vision_rank = -1;     // the owner, which assembled the image and hands it to the LLM ranks
  int first_row = 0;        // prompt positions [first_row, first_row + rows)
  int rows = 0;
  bool encoded = false;
  double prepare_s = 0;     // decoding and the HD transform (PreparePrompt)
};

struct BeamGroup;  // coordinator/beam_group.h

// kImageQueue: arrived, its images waiting for room in the vision ranks' image cache (engine.h).
enum class RequestState { kNotArrived, kImageQueue, kEncoding, kWaiting, kRunning, kDone };

struct Request {
  std::string id;
  uint64_t number = 0;             // 1-based, in input order; the protocol's request id
  std::vector<int32_t> prompt;     // token ids, 0 at image rows
  std::vector<ImageInPrompt> images;
  model::LoraMode lora = model::LoraMode::kBase;
  kernels::SamplingParams sampling;
  uint64_t seed = 0;
  int top_logprobs = -1;           // >= 0: each token's log-probability and this many likeliest (OpenAI logprobs)
  int max_new_tokens = 32;
  int num_beams = 1;               // > 1: beam search (model/beam_search.h); the best beam comes at the end
  std::vector<int32_t> stop_ids;
  double arrive_after_s = 0;
  std::string dump_logits;

  RequestState state = RequestState::kNotArrived;
  std::shared_ptr<RequestStream> stream = std::make_shared<RequestStream>();  // tokens and the end, to the client
  std::string cancel_reason;       // cancelled while its images were encoding: it ends with this once they are
  std::vector<int32_t> generated;
  std::string finish_reason;
  std::string error;
  int preemptions = 0;
  // The prefix cache (block_manager.h): its first admission's cached prompt positions (usage's cached_tokens); the
  // latest prefill's length (prompt and, after a preemption, generated) and cached positions; the keys of its whole
  // blocks, for that prefill (prefix_keys.h).
  int64_t cached_tokens = 0;
  int64_t prefill_length = 0, prefill_cached = 0;
  // Chunked prefill: the latest prefill's positions whose K/V are computed (cached ones included), and where this
  // step's chunk ends.
  int64_t computed = 0, chunk_end = 0;
  std::vector<ContentKey> block_keys;
  double arrived_s = 0, images_dispatched_s = 0, first_token_s = 0, finished_s = 0;
  double scheduled_s = 0, last_token_s = 0;  // first admitted to a prefill; the latest token (engine times)
  double preparation_s = 0;  // before the engine: what the API spent preparing it (counts in TTFT and e2e)
  // Beam search (coordinator/beam_group.h): the owner's beams while they run; a beam's owner.
  std::shared_ptr<BeamGroup> beam_group;
  Request* beam_owner = nullptr;
};

struct RequestDefaults {
  int64_t max_context = 98304;
  model::VisionConfig vision;
  std::string label_font;
  int eos_id = 2;
  int vocab_size = 0;
  ImageLimits image_limits;
  VideoLimits video_limits;
};

// An image or video of a prompt: a file, or its encoded bytes (an API's data: URL).
struct MediaInput {
  bool video = false;
  std::string path;            // read when `bytes` is empty
  std::vector<uint8_t> bytes;
  std::string name;            // names it in errors: the path, or "image 2 (data URL)"
};

// What a prompt is made of before tokenizing and the HD transform.
struct PromptSpec {
  std::string text;                         // the chat template applied; media go where <ImageHere> stands
  std::optional<std::vector<int32_t>> ids;  // or token ids (then no media)
  std::vector<MediaInput> media;            // in placeholder order
  int hd_num = 0;                           // 0: the reference's rule (HdNumFor: 24 for one image, 6 for several)
};

// Whether the JSON integer `value` lies in [min, max], compared before any narrowing: a non-negative integer is
// unsigned in nlohmann::json and may be past int64_t (4294967297 must not pass for 1 as an int32).
bool IntegerIn(const nlohmann::json& value, int64_t min, int64_t max);

// The ids generation stops at: EOS and the end of turn [UNUSED_TOKEN_145] (where the vocabulary has it), none with
// ignore_eos.
std::vector<int32_t> StopIds(const RequestDefaults& defaults, bool ignore_eos);

// Fills request->prompt and request->images from `spec`: each text piece tokenized as the reference does, images
// through the HD transform, a video through its composite; request->number must be set (it makes the vision tags).
// Checks ids against the vocabulary and the prompt against the context. Errors name the field or the medium.
absl::Status PreparePrompt(const PromptSpec& spec, const Tokenizer* tokenizer, const RequestDefaults& defaults,
                           Request* request);

// The positions a prepared prompt takes: all of them, and those of its images and videos.
struct PromptPositions {
  int64_t total = 0;
  int64_t media = 0;
};
PromptPositions CountPositions(const Request& request);

// Builds a request from one JSON line: template, tokenization, images and video through the HD transform. Errors
// name the field.
absl::StatusOr<Request> ParseRequest(const std::string& line, uint64_t number, const Tokenizer* tokenizer,
                                     const RequestDefaults& defaults);

// The result line.
nlohmann::json ResultJson(const Request& request, const Tokenizer* tokenizer);

}  // namespace ixc::coordinator
