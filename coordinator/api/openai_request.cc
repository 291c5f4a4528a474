#include "coordinator/api/openai_request.h"

#include <cmath>
#include <limits>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "coordinator/chat_template.h"
#include "core/status_macros.h"
#include "model/beam_search.h"

namespace ixc::coordinator {
namespace {

constexpr char kParamPayload[] = "ixc/param";

absl::Status Bad(const std::string& param, const std::string& why) {
  absl::Status status = absl::InvalidArgumentError(absl::StrCat("field '", param, "': ", why));
  status.SetPayload(kParamPayload, absl::Cord(param));
  return status;
}

// Re-labels an error from below (a medium, the tokenizer) with the field it came from.
absl::Status WithParam(const absl::Status& status, const std::string& param) {
  if (status.ok() || !ParamOf(status).empty()) return status;
  absl::Status labelled = absl::InvalidArgumentError(absl::StrCat("field '", param, "': ", status.message()));
  labelled.SetPayload(kParamPayload, absl::Cord(param));
  return labelled;
}

absl::StatusOr<double> Number(const nlohmann::json& body, const std::string& field, double fallback, double min,
                              double max) {
  if (!body.contains(field) || body[field].is_null()) return fallback;
  if (!body[field].is_number()) return Bad(field, "must be a number");
  const double value = body[field].get<double>();
  if (!(value >= min && value <= max)) return Bad(field, absl::StrCat("must be in [", min, ", ", max, "]"));
  return value;
}

absl::StatusOr<std::optional<int64_t>> Integer(const nlohmann::json& body, const std::string& field, int64_t min,
                                               int64_t max) {
  if (!body.contains(field) || body[field].is_null()) return std::optional<int64_t>();
  const nlohmann::json& value = body[field];
  if (!value.is_number_integer()) return Bad(field, "must be an integer");
  if (!IntegerIn(value, min, max)) return Bad(field, absl::StrCat("must be in [", min, ", ", max, "]"));
  return std::optional<int64_t>(value.get<int64_t>());
}

absl::StatusOr<bool> Flag(const nlohmann::json& body, const std::string& field) {
  if (!body.contains(field) || body[field].is_null()) return false;
  if (!body[field].is_boolean()) return Bad(field, "must be true or false");
  return body[field].get<bool>();
}

// The fields both endpoints share: sampling, lengths, stop strings, streaming, the vLLM-style extras.
absl::Status ParseCommon(const nlohmann::json& body, const ApiLimits& limits, ApiRequest* request) {
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) return Bad("model", "must be a string");
    request->model = body["model"];
  }
  constexpr double kFloatMax = std::numeric_limits<float>::max();
  IXC_ASSIGN_OR_RETURN(request->sampling.temperature, Number(body, "temperature", 1.0, 0.0, kFloatMax));
  IXC_ASSIGN_OR_RETURN(request->sampling.top_p, Number(body, "top_p", 1.0, 0.0, 1.0));
  if (request->sampling.top_p <= 0) return Bad("top_p", "must be in (0, 1]");
  IXC_ASSIGN_OR_RETURN(request->sampling.repetition_penalty, Number(body, "repetition_penalty", 1.0, 0.0, kFloatMax));
  if (request->sampling.repetition_penalty <= 0) return Bad("repetition_penalty", "must be > 0");
  IXC_ASSIGN_OR_RETURN(const std::optional<int64_t> top_k,
                       Integer(body, "top_k", -1, std::numeric_limits<int32_t>::max()));
  request->sampling.top_k = top_k && *top_k > 0 ? static_cast<int>(*top_k) : 0;  // -1 and 0: off, as vLLM
  constexpr int64_t kTokensMax = std::numeric_limits<int32_t>::max();
  for (const char* field : {"max_tokens", "max_completion_tokens"}) {
    IXC_ASSIGN_OR_RETURN(const std::optional<int64_t> tokens, Integer(body, field, 1, kTokensMax));
    if (tokens) request->max_tokens = tokens;
  }
  IXC_ASSIGN_OR_RETURN(const std::optional<int64_t> n, Integer(body, "n", 1, limits.max_n));
  request->n = static_cast<int>(n.value_or(1));
  if (body.contains("seed") && !body["seed"].is_null()) {  // any 64-bit integer, negative ones too
    if (!body["seed"].is_number_integer()) return Bad("seed", "must be an integer");
    request->seed = body["seed"].get<uint64_t>();
  }
  IXC_ASSIGN_OR_RETURN(request->stream, Flag(body, "stream"));
  IXC_ASSIGN_OR_RETURN(request->ignore_eos, Flag(body, "ignore_eos"));
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const nlohmann::json& options = body["stream_options"];
    if (!options.is_object()) return Bad("stream_options", "must be an object");
    if (!request->stream) return Bad("stream_options", "is only allowed with stream: true");
    IXC_ASSIGN_OR_RETURN(request->include_usage, Flag(options, "include_usage"));
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const nlohmann::json& stop = body["stop"];
    if (stop.is_string()) {
      request->stop.push_back(stop);
    } else if (stop.is_array() && stop.size() <= 16) {
      for (const nlohmann::json& item : stop) {
        if (!item.is_string()) return Bad("stop", "must be a string or a list of strings");
        request->stop.push_back(item);
      }
    } else {
      return Bad("stop", "must be a string or a list of at most 16 strings");
    }
    for (const std::string& stop_string : request->stop) {
      if (stop_string.empty()) return Bad("stop", "stop strings must not be empty");
    }
  }
  if (body.contains("lora_mode") && !body["lora_mode"].is_null()) {
    if (!body["lora_mode"].is_string()) return Bad("lora_mode", "must be base, web or write");
    auto lora = model::LoraModeFromName(body["lora_mode"].get<std::string>());
    if (!lora.ok()) return Bad("lora_mode", "must be base, web or write");
    request->lora = *lora;
  }
  IXC_ASSIGN_OR_RETURN(const std::optional<int64_t> beams, Integer(body, "num_beams", 1, model::kMaxBeams));
  request->num_beams = static_cast<int>(beams.value_or(1));
  // Parameters we do not implement: refused when they would change the output, never silently ignored.
  for (const char* field : {"presence_penalty", "frequency_penalty"}) {
    IXC_ASSIGN_OR_RETURN(const double value, Number(body, field, 0.0, -2.0, 2.0));
    if (value != 0) return Bad(field, "is not supported (use repetition_penalty)");
  }
  if (body.contains("logit_bias") && !body["logit_bias"].is_null() && !body["logit_bias"].empty()) {
    return Bad("logit_bias", "is not supported");
  }
  for (const char* field : {"tools", "functions"}) {
    if (body.contains(field) && !body[field].is_null() && !body[field].empty()) {
      return Bad(field, "tool calling is not supported by this model's server");
    }
  }
  if (body.contains("response_format") && !body["response_format"].is_null() &&
      !(body["response_format"].is_object() && body["response_format"].value("type", "") == "text")) {
    return Bad("response_format", "only {\"type\": \"text\"} is supported");
  }
  return absl::OkStatus();
}

// Beam search does not sample: its request leaves temperature out (or at 0), asks for one choice and no logprobs.
absl::Status CheckBeams(const nlohmann::json& body, ApiRequest* request) {
  if (request->num_beams <= 1) return absl::OkStatus();
  if (body.contains("temperature") && !body["temperature"].is_null() && request->sampling.temperature > 0) {
    return Bad("num_beams", "beam search does not sample: leave temperature out or at 0");
  }
  if (request->n > 1) return Bad("n", "beam search returns one choice: its best beam");
  if (request->top_logprobs >= 0) return Bad("logprobs", "are not returned with beam search");
  request->sampling = {0.f, 0, 1.f, request->sampling.repetition_penalty};
  return absl::OkStatus();
}

bool Given(const nlohmann::json& body, const char* field) { return body.contains(field) && !body[field].is_null(); }

// A composition task's settings where the request gives none of its own (compose_task.h).
void ApplyTask(const nlohmann::json& body, const TaskSettings& settings, ApiRequest* request) {
  TaskSettings own;
  own.lora = request->lora;
  own.num_beams = request->num_beams;
  own.sampling = request->sampling;
  own.max_new_tokens = static_cast<int>(request->max_tokens.value_or(0));  // at most int32's maximum
  const TaskSettings merged = MergeSettings(settings, own, [&body](absl::string_view field) {
    if (field == "max_new_tokens") return Given(body, "max_tokens") || Given(body, "max_completion_tokens");
    return Given(body, std::string(field).c_str());
  });
  request->lora = merged.lora;
  request->num_beams = merged.num_beams;
  request->sampling = merged.sampling;
  if (merged.max_new_tokens > 0) request->max_tokens = merged.max_new_tokens;
  request->max_total_tokens = merged.max_total_tokens;
}

// The text of a message whose content must be text: a string, or a list of text parts.
absl::StatusOr<std::string> TextContent(const nlohmann::json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return Bad(param, "must be a string or a list of text parts");
  std::string text;
  for (const nlohmann::json& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
      return Bad(param, "only text parts are allowed here");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

// A user message's content: its text, its media in order, and where each medium stands in the text.
struct UserContent {
  std::string text;
  std::vector<std::pair<size_t, MediaInput>> media;  // (byte offset in text, medium)
};

absl::StatusOr<UserContent> ReadUserContent(const nlohmann::json& content, const std::string& param,
                                            const ApiLimits& limits, int* media_seen) {
  UserContent user;
  if (content.is_string()) {
    user.text = content;
    return user;
  }
  if (!content.is_array() || content.empty()) return Bad(param, "must be a string or a non-empty list of parts");
  for (size_t i = 0; i < content.size(); ++i) {
    const nlohmann::json& part = content[i];
    const std::string part_param = absl::StrCat(param, "[", i, "]");
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return Bad(part_param, "must be an object with a type");
    }
    const std::string type = part["type"];
    if (type == "text") {
      if (!part.contains("text") || !part["text"].is_string()) return Bad(part_param + ".text", "must be a string");
      user.text += part["text"].get<std::string>();
      continue;
    }
    if (type != "image_url" && type != "video_url") {
      return Bad(part_param + ".type", absl::StrCat("'", type, "' is not a part type here (text, image_url, video_url)"));
    }
    const nlohmann::json& url = part.contains(type) ? part[type] : nlohmann::json();
    std::string link;
    if (url.is_string()) {
      link = url;
    } else if (url.is_object() && url.contains("url") && url["url"].is_string()) {
      link = url["url"];
    } else {
      return Bad(part_param + "." + type, "must hold a url");
    }
    if (++*media_seen > limits.max_media) {
      return Bad(part_param, absl::StrCat("more than ", limits.max_media,
                                          " images and videos in one request (--max-images-per-request)"));
    }
    const bool video = type == "video_url";
    auto media = ReadMedia(link, video, absl::StrCat(video ? "video " : "image ", *media_seen), limits.media);
    if (!media.ok()) return WithParam(media.status(), part_param + "." + type);
    user.media.emplace_back(user.text.size(), std::move(*media));
  }
  return user;
}

}  // namespace

std::string ParamOf(const absl::Status& status) {
  const auto param = status.GetPayload(kParamPayload);
  return param ? std::string(*param) : "";
}

absl::StatusOr<ApiRequest> ParseChatRequest(const nlohmann::json& body, const ApiLimits& limits) {
  if (!body.is_object()) return Bad("body", "must be a JSON object");
  ApiRequest request;
  IXC_RETURN_IF_ERROR(ParseCommon(body, limits, &request));
  IXC_ASSIGN_OR_RETURN(const bool logprobs, Flag(body, "logprobs"));
  IXC_ASSIGN_OR_RETURN(const std::optional<int64_t> top, Integer(body, "top_logprobs", 0, limits.max_logprobs));
  if (top && !logprobs) return Bad("top_logprobs", "needs \"logprobs\": true");
  request.top_logprobs = logprobs ? static_cast<int>(top.value_or(0)) : -1;
  if (!body.contains("messages")) return Bad("messages", "is required");
  const nlohmann::json& messages = body["messages"];
  if (!messages.is_array() || messages.empty()) return Bad("messages", "must be a non-empty list");

  ChatRequest chat;
  std::string meta;
  bool has_meta = false;
  std::vector<UserContent> users;    // one per user turn (consecutive user messages joined)
  std::vector<std::string> answers;  // one per assistant turn
  int media_seen = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const nlohmann::json& message = messages[i];
    const std::string param = absl::StrCat("messages[", i, "]");
    if (!message.is_object()) return Bad(param, "must be an object with a role and content");
    if (!message.contains("role") || !message["role"].is_string()) return Bad(param + ".role", "is required");
    const std::string role = message["role"];
    if (!message.contains("content") || message["content"].is_null()) return Bad(param + ".content", "is required");
    const nlohmann::json& content = message["content"];
    if (role == "system" || role == "developer") {
      IXC_ASSIGN_OR_RETURN(const std::string text, TextContent(content, param + ".content"));
      meta += (has_meta ? "\n" : "") + text;
      has_meta = true;
    } else if (role == "user") {
      IXC_ASSIGN_OR_RETURN(UserContent user, ReadUserContent(content, param + ".content", limits, &media_seen));
      if (users.size() > answers.size()) {  // a second user message in a row: one turn
        UserContent& last = users.back();
        const size_t offset = last.text.size() + 1;
        last.text += "\n" + user.text;
        for (auto& [at, media] : user.media) last.media.emplace_back(offset + at, std::move(media));
      } else {
        users.push_back(std::move(user));
      }
    } else if (role == "assistant") {
      if (users.size() != answers.size() + 1) return Bad(param + ".role", "an assistant turn must follow a user turn");
      IXC_ASSIGN_OR_RETURN(std::string text, TextContent(content, param + ".content"));
      answers.push_back(std::move(text));
    } else {
      return Bad(param + ".role", absl::StrCat("'", role, "' is not a role here (system, user, assistant)"));
    }
  }
  if (users.empty() || users.size() == answers.size()) return Bad("messages", "the last turn must be the user's");

  // Where the media go: the user's own placeholders; else one medium first; else "ImageK <ImageHere>; " in place.
  bool placeholders = false;
  for (const UserContent& user : users) placeholders = placeholders || user.text.find(kImagePlaceholder) != std::string::npos;
  PromptSpec spec;
  int number = 0;
  for (UserContent& user : users) {
    if (placeholders || media_seen == 1) {
      for (auto& [at, media] : user.media) spec.media.push_back(std::move(media));
      continue;
    }
    std::string text;
    size_t from = 0;
    for (auto& [at, media] : user.media) {
      text += user.text.substr(from, at - from) + absl::StrCat("Image", ++number, " ", kImagePlaceholder, "; ");
      from = at;
      spec.media.push_back(std::move(media));
    }
    user.text = text + user.text.substr(from);
  }
  for (size_t t = 0; t + 1 < users.size(); ++t) chat.history.push_back({users[t].text, answers[t]});
  chat.query = users.back().text;
  chat.use_meta = has_meta;
  if (has_meta) chat.meta_instruction = meta;
  spec.text = BuildChatPrompt(chat);
  if (Given(body, "ixc_task")) {
    if (!body["ixc_task"].is_string()) return Bad("ixc_task", "must be a task's name");
    absl::StatusOr<ComposeTask> task = ComposeTaskFromName(body["ixc_task"].get<std::string>());
    if (!task.ok()) return Bad("ixc_task", std::string(task.status().message()));
    if (has_meta || !answers.empty()) {
      return Bad("ixc_task", "a task takes one user turn: no system message, no history");
    }
    const TaskSettings settings = SettingsOf(*task);
    if (settings.needs_image && media_seen != 1) {
      return Bad("ixc_task", absl::StrCat(ComposeTaskName(*task), " takes one image: the screenshot"));
    }
    if (request.n > 1) return Bad("n", "a task returns one page or article");
    if (request.top_logprobs >= 0) return Bad("logprobs", "are not returned with a task");
    request.task = *task;
    ApplyTask(body, settings, &request);
    spec.text = TaskPrompt(TaskQuery(*task, users.back().text));
  }
  IXC_RETURN_IF_ERROR(CheckBeams(body, &request));
  IXC_ASSIGN_OR_RETURN(const std::optional<int64_t> hd_num, Integer(body, "hd_num", 1, 100));
  spec.hd_num = static_cast<int>(hd_num.value_or(0));
  request.prompts.push_back(std::move(spec));
  return request;
}

absl::StatusOr<ApiRequest> ParseCompletionRequest(const nlohmann::json& body, const ApiLimits& limits) {
  if (!body.is_object()) return Bad("body", "must be a JSON object");
  ApiRequest request;
  request.chat = false;
  IXC_RETURN_IF_ERROR(ParseCommon(body, limits, &request));
  IXC_ASSIGN_OR_RETURN(const std::optional<int64_t> logprobs, Integer(body, "logprobs", 0, limits.max_logprobs));
  request.top_logprobs = logprobs ? static_cast<int>(*logprobs) : -1;
  if (Given(body, "ixc_task")) return Bad("ixc_task", "is a chat completions field (/v1/chat/completions)");
  IXC_RETURN_IF_ERROR(CheckBeams(body, &request));
  IXC_ASSIGN_OR_RETURN(const bool echo, Flag(body, "echo"));
  if (echo) return Bad("echo", "is not supported");
  if (body.contains("suffix") && !body["suffix"].is_null()) return Bad("suffix", "is not supported");
  if (!body.contains("prompt")) return Bad("prompt", "is required");
  const nlohmann::json& prompt = body["prompt"];
  auto ids_of = [](const nlohmann::json& list) -> std::optional<std::vector<int32_t>> {
    std::vector<int32_t> ids;
    for (const nlohmann::json& id : list) {
      if (!id.is_number_integer() || !IntegerIn(id, 0, std::numeric_limits<int32_t>::max())) return std::nullopt;
      ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    return ids;
  };
  // A string, a list of token ids, or a list of either (a batch: choices follow the prompts' order).
  std::vector<nlohmann::json> prompts;
  if (prompt.is_string() || (prompt.is_array() && !prompt.empty() && prompt[0].is_number())) {
    prompts.push_back(prompt);
  } else if (prompt.is_array() && !prompt.empty()) {
    prompts.assign(prompt.begin(), prompt.end());
  } else {
    return Bad("prompt", "must be a string, a list of token ids, or a non-empty list of those");
  }
  if (prompts.size() * request.n > static_cast<size_t>(limits.max_n) * 4) {
    return Bad("prompt", absl::StrCat("at most ", limits.max_n * 4, " prompts times n in one request"));
  }
  for (const nlohmann::json& one : prompts) {
    PromptSpec spec;
    if (one.is_string()) {
      spec.text = one;
      if (spec.text.empty()) return Bad("prompt", "is empty");
    } else if (one.is_array()) {
      spec.ids = ids_of(one);
      if (!spec.ids) return Bad("prompt", "token ids must be integers in [0, 2^31)");
      if (spec.ids->empty()) return Bad("prompt", "is empty");
    } else {
      return Bad("prompt", "must be a string, a list of token ids, or a non-empty list of those");
    }
    request.prompts.push_back(std::move(spec));
  }
  return request;
}

}  // namespace ixc::coordinator
