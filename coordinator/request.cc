#include "coordinator/request.h"

#include <chrono>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "coordinator/chat_template.h"
#include "core/status_macros.h"
#include "model/beam_search.h"
#include "protocol/messages.h"

namespace ixc::coordinator {
namespace {

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("field '", field, "': ", why));
}

// The integer field `field` in [min, max], or `fallback` where it is absent. Only a JSON integer counts: 2.5 or 1e30
// is refused rather than truncated or converted out of range.
absl::StatusOr<int64_t> IntegerField(const nlohmann::json& json, const std::string& field, int64_t fallback,
                                     int64_t min, int64_t max) {
  if (!json.contains(field)) return fallback;
  const nlohmann::json& value = json[field];
  if (!value.is_number_integer()) return Bad(field, "must be an integer");
  if (!IntegerIn(value, min, max)) return Bad(field, absl::StrCat("must be in [", min, ", ", max, "]"));
  return value.get<int64_t>();
}

// The number field `field` (integer or not), or `fallback` where it is absent: finite and at most `limit` in
// magnitude (1e400 parses as infinity; the sampling parameters are floats).
absl::StatusOr<double> NumberField(const nlohmann::json& json, const std::string& field, double fallback,
                                   double limit = std::numeric_limits<float>::max()) {
  if (!json.contains(field)) return fallback;
  const nlohmann::json& value = json[field];
  if (!value.is_number()) return Bad(field, "must be a number");
  const double number = value.get<double>();
  if (!(std::abs(number) <= limit)) return Bad(field, "must be a finite number");
  return number;
}

}  // namespace

bool IntegerIn(const nlohmann::json& value, int64_t min, int64_t max) {
  return value.is_number_unsigned() ? value.get<uint64_t>() <= static_cast<uint64_t>(max) && value.get<int64_t>() >= min
                                    : value.get<int64_t>() >= min && value.get<int64_t>() <= max;
}

std::vector<int32_t> StopIds(const RequestDefaults& defaults, bool ignore_eos) {
  if (ignore_eos) return {};
  std::vector<int32_t> ids = {defaults.eos_id};
  if (defaults.vocab_size > kEndOfTurnId) ids.push_back(kEndOfTurnId);
  return ids;
}

absl::StatusOr<Request> ParseRequest(const std::string& line, uint64_t number, const Tokenizer* tokenizer,
                                     const RequestDefaults& defaults) {
  const nlohmann::json json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError("not valid JSON (or a number out of a double's range)");
  if (!json.is_object()) return absl::InvalidArgumentError("not a JSON object");
  Request request;
  request.number = number;
  request.id = json.contains("id") ? (json["id"].is_string() ? json["id"].get<std::string>() : json["id"].dump())
                                   : std::to_string(number);
  constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
  IXC_ASSIGN_OR_RETURN(request.max_new_tokens, IntegerField(json, "max_new_tokens", 32, 1, kIntMax));
  IXC_ASSIGN_OR_RETURN(request.sampling.top_k, IntegerField(json, "top_k", 0, 0, kIntMax));
  IXC_ASSIGN_OR_RETURN(request.num_beams, IntegerField(json, "num_beams", 1, 1, model::kMaxBeams));
  IXC_ASSIGN_OR_RETURN(request.sampling.temperature, NumberField(json, "temperature", 0));
  IXC_ASSIGN_OR_RETURN(request.sampling.top_p, NumberField(json, "top_p", 1));
  IXC_ASSIGN_OR_RETURN(request.sampling.repetition_penalty, NumberField(json, "repetition_penalty", 1));
  IXC_ASSIGN_OR_RETURN(const double arrive_after_ms,
                       NumberField(json, "arrive_after_ms", 0, std::numeric_limits<double>::max()));
  request.arrive_after_s = arrive_after_ms / 1000.0;
  if (json.contains("seed")) {  // any 64-bit unsigned integer
    if (!json["seed"].is_number_unsigned()) return Bad("seed", "must be a non-negative integer");
    request.seed = json["seed"].get<uint64_t>();
  }
  if (request.sampling.temperature < 0) return Bad("temperature", "must be >= 0");
  if (request.sampling.top_p <= 0 || request.sampling.top_p > 1) return Bad("top_p", "must be in (0, 1]");
  if (request.sampling.repetition_penalty <= 0) return Bad("repetition_penalty", "must be > 0");
  if (request.arrive_after_s < 0) return Bad("arrive_after_ms", "must be >= 0");
  if (request.num_beams > 1 && request.sampling.temperature > 0) {
    return Bad("num_beams", "beam search does not sample: leave temperature at 0");
  }
  for (const char* flag : {"chat", "use_meta", "ignore_eos"}) {
    if (json.contains(flag) && !json[flag].is_boolean()) return Bad(flag, "must be true or false");
  }
  for (const char* text : {"dump_logits", "lora_mode", "video"}) {
    if (json.contains(text) && !json[text].is_string()) return Bad(text, "must be a string");
  }
  request.dump_logits = json.value("dump_logits", std::string());
  IXC_ASSIGN_OR_RETURN(request.lora, model::LoraModeFromName(json.value("lora_mode", std::string("base"))));
  request.stop_ids = StopIds(defaults, json.value("ignore_eos", false));

  PromptSpec spec;
  if (json.contains("images")) {
    if (!json["images"].is_array()) return Bad("images", "must be a list of paths");
    for (const auto& path : json["images"]) {
      if (!path.is_string()) return Bad("images", "must be a list of paths");
      spec.media.push_back({false, path.get<std::string>(), {}, path.get<std::string>()});
    }
  }
  if (json.contains("video")) spec.media.push_back({true, json["video"], {}, json["video"]});

  if (json.contains("prompt_ids")) {
    if (!spec.media.empty()) return Bad("prompt_ids", "images and video need a text prompt");
    const nlohmann::json& ids = json["prompt_ids"];
    if (!ids.is_array()) return Bad("prompt_ids", "must be a list of integers");
    spec.ids.emplace();
    for (const nlohmann::json& id : ids) {
      if (!id.is_number_integer()) return Bad("prompt_ids", "must be a list of integers");
      if (!IntegerIn(id, 0, int64_t{defaults.vocab_size} - 1)) {
        return Bad("prompt_ids",
                   absl::StrCat("token id ", id.dump(), " is outside the vocabulary [0, ", defaults.vocab_size, ")"));
      }
      spec.ids->push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
  } else {
    if (!json.contains("prompt") || !json["prompt"].is_string()) return Bad("prompt", "missing (or prompt_ids)");
    spec.text = json["prompt"].get<std::string>();
    if (json.value("chat", false)) {
      ChatRequest chat;
      chat.query = spec.text;
      chat.use_meta = json.value("use_meta", false);
      spec.text = BuildChatPrompt(chat);
    }
  }
  IXC_RETURN_IF_ERROR(PreparePrompt(spec, tokenizer, defaults, &request));
  return request;
}

absl::Status PreparePrompt(const PromptSpec& spec, const Tokenizer* tokenizer, const RequestDefaults& defaults,
                           Request* request) {
  const int media_count = static_cast<int>(spec.media.size());
  if (media_count >= protocol::kMaxImagesPerRequest) {
    return Bad("images", absl::StrCat(media_count, " images and videos; at most ",
                                      protocol::kMaxImagesPerRequest - 1, " fit a request"));
  }
  if (spec.ids) {
    if (media_count > 0) return Bad("prompt_ids", "images and video need a text prompt");
    request->prompt = *spec.ids;
  } else {
    if (tokenizer == nullptr) return Bad("prompt", "the model directory has no tokenizer.model; use prompt_ids");
    IXC_ASSIGN_OR_RETURN(std::vector<PromptSegment> segments, TokenizeInterleaved(*tokenizer, spec.text, media_count));
    const int hd_num = spec.hd_num > 0 ? spec.hd_num : HdNumFor(media_count);
    const int tile = defaults.vision.image_size;
    for (const PromptSegment& segment : segments) {
      if (segment.image < 0) {
        request->prompt.insert(request->prompt.end(), segment.ids.begin(), segment.ids.end());
        continue;
      }
      const MediaInput& media = spec.media[segment.image];
      ImageInPrompt image;
      const auto preparing = std::chrono::steady_clock::now();
      if (!media.video) {
        IXC_ASSIGN_OR_RETURN(image.prepared,
                             media.bytes.empty()
                                 ? PrepareImage(media.path, hd_num, tile, defaults.image_limits)
                                 : PrepareImageBytes(media.bytes, media.name, hd_num, tile, defaults.image_limits));
      } else {
        IXC_ASSIGN_OR_RETURN(auto font, LabelFont::Load(defaults.label_font, 40));
        IXC_ASSIGN_OR_RETURN(image.prepared, media.bytes.empty()
                                                 ? PrepareVideo(media.path, tile, *font, defaults.video_limits)
                                                 : PrepareVideoBytes(media.bytes, media.name, tile, *font,
                                                                     defaults.video_limits));
      }
      image.prepare_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - preparing).count();
      image.first_row = static_cast<int>(request->prompt.size());
      image.rows = VisionTokenCount(image.prepared.geometry.rows, image.prepared.geometry.cols,
                                    defaults.vision.merged_side());
      request->prompt.insert(request->prompt.end(), image.rows, 0);
      request->images.push_back(std::move(image));
    }
  }
  if (request->prompt.empty()) return Bad("prompt", "is empty");
  for (int32_t id : request->prompt) {
    if (id < 0 || id >= defaults.vocab_size) {
      return Bad("prompt_ids", absl::StrCat("token id ", id, " is outside the vocabulary [0, ", defaults.vocab_size, ")"));
    }
  }
  if (static_cast<int64_t>(request->prompt.size()) >= defaults.max_context) {
    const PromptPositions positions = CountPositions(*request);
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", positions.total, " positions (", positions.total - positions.media, " of text, ",
        positions.media, " of images and video); the context holds ", defaults.max_context,
        ", the prompt and at least one generated token"));
  }
  return absl::OkStatus();
}

PromptPositions CountPositions(const Request& request) {
  PromptPositions positions{static_cast<int64_t>(request.prompt.size()), 0};
  for (const ImageInPrompt& image : request.images) positions.media += image.rows;
  return positions;
}

nlohmann::json ResultJson(const Request& request, const Tokenizer* tokenizer) {
  nlohmann::json out = {{"id", request.id},
                        {"prompt_tokens", request.prompt.size()},
                        {"ids", request.generated},
                        {"finish_reason", request.finish_reason},
                        {"preemptions", request.preemptions},
                        {"cached_tokens", request.cached_tokens}};
  if (tokenizer != nullptr) out["text"] = tokenizer->Decode(request.generated);
  if (!request.error.empty()) out["error"] = request.error;
  if (request.error.empty()) {
    const double decode_s = request.finished_s - request.first_token_s;
    out["timings"] = {
        {"ttft_s", request.first_token_s - request.arrived_s},
        {"image_queue_s", request.images.empty() ? 0.0 : request.images_dispatched_s - request.arrived_s},
        {"e2e_s", request.finished_s - request.arrived_s},
        {"decode_tokens_per_s", decode_s > 0 ? (static_cast<double>(request.generated.size()) - 1) / decode_s : 0.0}};
  }
  return out;
}

}  // namespace ixc::coordinator
