#include "coordinator/compose_task.h"

#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "coordinator/chat_template.h"

namespace ixc::coordinator {

absl::StatusOr<ComposeTask> ComposeTaskFromName(absl::string_view name) {
  for (ComposeTask task : {ComposeTask::kWriteWebpage, ComposeTask::kScreenToWebpage, ComposeTask::kResumeToWebpage,
                           ComposeTask::kWriteArticle}) {
    if (ComposeTaskName(task) == name) return task;
  }
  return absl::InvalidArgumentError(absl::StrCat("'", name,
                                                 "' is not a task: write_webpage, screen_2_webpage, resume_2_webpage "
                                                 "or write_article"));
}

absl::string_view ComposeTaskName(ComposeTask task) {
  switch (task) {
    case ComposeTask::kWriteWebpage: return "write_webpage";
    case ComposeTask::kScreenToWebpage: return "screen_2_webpage";
    case ComposeTask::kResumeToWebpage: return "resume_2_webpage";
    case ComposeTask::kWriteArticle: return "write_article";
  }
  return "";
}

TaskSettings SettingsOf(ComposeTask task) {
  TaskSettings settings;
  if (task == ComposeTask::kWriteArticle) {
    settings.lora = model::LoraMode::kWrite;
    settings.sampling = {/*temperature=*/1.f, /*top_k=*/40, /*top_p=*/0.8f, /*repetition_penalty=*/1.005f};
    settings.max_total_tokens = 8192;
    return settings;
  }
  settings.lora = model::LoraMode::kWeb;
  settings.num_beams = 2;
  settings.sampling = {/*temperature=*/0.f, /*top_k=*/0, /*top_p=*/1.f, /*repetition_penalty=*/3.f};
  settings.max_new_tokens = 4800;
  settings.needs_image = task == ComposeTask::kScreenToWebpage;
  return settings;
}

TaskSettings MergeSettings(const TaskSettings& task, const TaskSettings& own,
                           const std::function<bool(absl::string_view)>& given) {
  TaskSettings merged = task;
  if (given("lora_mode")) merged.lora = own.lora;
  if (given("num_beams")) merged.num_beams = own.num_beams;
  if (given("temperature")) merged.sampling.temperature = own.sampling.temperature;
  if (given("top_p")) merged.sampling.top_p = own.sampling.top_p;
  if (given("top_k")) merged.sampling.top_k = own.sampling.top_k;
  if (given("repetition_penalty")) merged.sampling.repetition_penalty = own.sampling.repetition_penalty;
  if (given("max_new_tokens")) {
    merged.max_new_tokens = own.max_new_tokens;
    merged.max_total_tokens = 0;
  }
  return merged;
}

std::string TaskQuery(ComposeTask task, absl::string_view input) {
  switch (task) {
    case ComposeTask::kScreenToWebpage: return " Generate the HTML code of this web image with Tailwind CSS.";
    case ComposeTask::kResumeToWebpage:
      return absl::StrCat(" Generate a personal page using the content in the resume:", input);
    default: return std::string(input);
  }
}

std::string ScriptQuery(absl::string_view html) {
  return absl::StrCat(" Generate JavaScript events for the html code:", html);
}

std::string TaskPrompt(absl::string_view query) {
  ChatRequest chat;
  chat.query = std::string(query);
  return BuildChatPrompt(chat);
}

std::string StripTurnMarkers(std::string text) {
  return absl::StrReplaceAll(text, {{"[UNUSED_TOKEN_145]", ""}, {"[UNUSED_TOKEN_146]", ""}});
}

std::string PostProcess(ComposeTask task, std::string text) {
  text = StripTurnMarkers(std::move(text));
  if (task == ComposeTask::kWriteArticle) return text;
  static const std::regex kUnsplash(R"(https://source\.unsplash\.com/random/(\d+)x(\d+)/\?[^'"]+)");
  return std::regex_replace(text, kUnsplash, "https://picsum.photos/$1/$2");
}

std::string SpliceScript(std::string html, absl::string_view script_reply) {
  const std::string kClose = "</script>", kHtmlEnd = "</html>";
  std::string insert;
  if (html.find(kClose) != std::string::npos) {
    static const std::regex kScript(R"(<script>([\s\S]*?)</script>)");
    const std::string reply(script_reply);
    for (auto it = std::sregex_iterator(reply.begin(), reply.end(), kScript); it != std::sregex_iterator(); ++it) {
      insert += (*it)[1].str();
    }
    return absl::StrReplaceAll(html, {{kClose, absl::StrCat("\n", insert, "\n", kClose)}});
  }
  const size_t end = html.find(kHtmlEnd);
  if (end == std::string::npos) return html;
  return html.insert(end, absl::StrCat("\n", script_reply, "\n"));
}

}  // namespace ixc::coordinator
