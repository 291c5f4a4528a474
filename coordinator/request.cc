#include "coordinator/request.h"

#include "absl/strings/str_cat.h"
#include "coordinator/chat_template.h"
#include "core/status_macros.h"
#include "protocol/messages.h"

namespace ixc::coordinator {
namespace {

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("field '", field, "': ", why));
}

}  // namespace

absl::StatusOr<Request> ParseRequest(const std::string& line, uint64_t number, const Tokenizer* tokenizer,
                                     const RequestDefaults& defaults) {
  const nlohmann::json json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return absl::InvalidArgumentError("not a JSON object");
  Request request;
  request.number = number;
  request.id = json.contains("id") ? (json["id"].is_string() ? json["id"].get<std::string>() : json["id"].dump())
                                   : std::to_string(number);
  try {
    request.max_new_tokens = json.value("max_new_tokens", 32);
    request.sampling.temperature = json.value("temperature", 0.f);
    request.sampling.top_p = json.value("top_p", 1.f);
    request.sampling.top_k = json.value("top_k", 0);
    request.sampling.repetition_penalty = json.value("repetition_penalty", 1.f);
    request.seed = json.value("seed", uint64_t{0});
    request.arrive_after_s = json.value("arrive_after_ms", 0.0) / 1000.0;
    request.dump_logits = json.value("dump_logits", std::string());
    IXC_ASSIGN_OR_RETURN(request.lora, model::LoraModeFromName(json.value("lora_mode", std::string("base"))));
  } catch (const nlohmann::json::exception& error) {
    return absl::InvalidArgumentError(absl::StrCat("a field has the wrong type: ", error.what()));
  }
  if (request.max_new_tokens < 1) return Bad("max_new_tokens", "must be >= 1");
  if (request.sampling.temperature < 0) return Bad("temperature", "must be >= 0");
  if (request.sampling.top_p <= 0 || request.sampling.top_p > 1) return Bad("top_p", "must be in (0, 1]");
  if (request.sampling.top_k < 0) return Bad("top_k", "must be >= 0");
  if (request.sampling.repetition_penalty <= 0) return Bad("repetition_penalty", "must be > 0");
  if (!json.value("ignore_eos", false)) {
    request.stop_ids.push_back(defaults.eos_id);
    if (defaults.vocab_size > kEndOfTurnId) request.stop_ids.push_back(kEndOfTurnId);
  }

  std::vector<std::string> media;
  if (json.contains("images")) {
    if (!json["images"].is_array()) return Bad("images", "must be a list of paths");
    for (const auto& path : json["images"]) {
      if (!path.is_string()) return Bad("images", "must be a list of paths");
      media.push_back(path.get<std::string>());
    }
  }
  const std::string video = json.value("video", std::string());
  const int media_count = static_cast<int>(media.size()) + (video.empty() ? 0 : 1);
  if (media_count >= protocol::kMaxImagesPerRequest) return Bad("images", "too many images");

  if (json.contains("prompt_ids")) {
    if (media_count > 0) return Bad("prompt_ids", "images and video need a text prompt");
    try {
      request.prompt = json["prompt_ids"].get<std::vector<int32_t>>();
    } catch (const nlohmann::json::exception&) {
      return Bad("prompt_ids", "must be a list of integers");
    }
  } else {
    if (!json.contains("prompt") || !json["prompt"].is_string()) return Bad("prompt", "missing (or prompt_ids)");
    if (tokenizer == nullptr) return Bad("prompt", "the model directory has no tokenizer.model; use prompt_ids");
    std::string text = json["prompt"].get<std::string>();
    if (json.value("chat", false)) {
      ChatRequest chat;
      chat.query = text;
      chat.use_meta = json.value("use_meta", false);
      text = BuildChatPrompt(chat);
    }
    IXC_ASSIGN_OR_RETURN(std::vector<PromptSegment> segments, TokenizeInterleaved(*tokenizer, text, media_count));
    const int hd_num = HdNumFor(media_count);
    const int tile = defaults.vision.image_size;
    for (const PromptSegment& segment : segments) {
      if (segment.image < 0) {
        request.prompt.insert(request.prompt.end(), segment.ids.begin(), segment.ids.end());
        continue;
      }
      ImageInPrompt image;
      if (segment.image < static_cast<int>(media.size())) {
        IXC_ASSIGN_OR_RETURN(image.prepared, PrepareImage(media[segment.image], hd_num, tile, {}));
      } else {
        IXC_ASSIGN_OR_RETURN(auto font, LabelFont::Load(defaults.label_font, 40));
        IXC_ASSIGN_OR_RETURN(image.prepared, PrepareVideo(video, tile, *font, {}));
      }
      image.tag = static_cast<int>(number * protocol::kMaxImagesPerRequest + segment.image);
      image.first_row = static_cast<int>(request.prompt.size());
      image.rows = VisionTokenCount(image.prepared.geometry.rows, image.prepared.geometry.cols,
                                    defaults.vision.merged_side());
      request.prompt.insert(request.prompt.end(), image.rows, 0);
      request.images.push_back(std::move(image));
    }
  }
  if (request.prompt.empty()) return Bad("prompt", "is empty");
  for (int32_t id : request.prompt) {
    if (id < 0 || id >= defaults.vocab_size) {
      return Bad("prompt_ids", absl::StrCat("token id ", id, " is outside the vocabulary [0, ", defaults.vocab_size, ")"));
    }
  }
  if (static_cast<int64_t>(request.prompt.size()) >= defaults.max_context) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", request.prompt.size(),
                                                   " positions; the context holds ", defaults.max_context));
  }
  return request;
}

nlohmann::json ResultJson(const Request& request, const Tokenizer* tokenizer) {
  nlohmann::json out = {{"id", request.id},
                        {"prompt_tokens", request.prompt.size()},
                        {"ids", request.generated},
                        {"finish_reason", request.finish_reason},
                        {"preemptions", request.preemptions}};
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
