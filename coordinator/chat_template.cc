#include "coordinator/chat_template.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ixc::coordinator {
namespace {

constexpr char kStartOfTurn[] = "[UNUSED_TOKEN_146]";
constexpr char kEndOfTurn[] = "[UNUSED_TOKEN_145]";

std::string Turn(const std::string& role, const std::string& text) {
  return absl::StrCat(kStartOfTurn, role, "\n", text, kEndOfTurn, "\n");
}

}  // namespace

const char kDefaultMetaInstruction[] =
    "You are an AI assistant whose name is InternLM-XComposer (浦语·灵笔).\n"
    "- InternLM-XComposer (浦语·灵笔) is a multi-modality conversational language model that is developed by Shanghai AI Laboratory (上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n"
    "- InternLM-XComposer (浦语·灵笔) can understand and communicate fluently in the language chosen by the user such as English and 中文.\n"
    "- InternLM-XComposer (浦语·灵笔) is capable of comprehending and articulating responses effectively based on the provided image.";

std::string BuildChatPrompt(const ChatRequest& request) {
  std::string prompt;
  if (request.use_meta) prompt += Turn("system", request.meta_instruction);
  for (const ChatTurn& turn : request.history) {
    prompt += Turn("user", turn.user);
    prompt += Turn("assistant", turn.assistant);
  }
  prompt += Turn("user", request.query);
  absl::StrAppend(&prompt, kStartOfTurn, "assistant\n");
  return prompt;
}

absl::StatusOr<std::vector<PromptSegment>> TokenizeInterleaved(const Tokenizer& tokenizer, std::string prompt,
                                                               int num_images) {
  if (num_images == 1 && prompt.find(kImagePlaceholder) == std::string::npos) prompt = kImagePlaceholder + prompt;
  const std::vector<std::string> parts = absl::StrSplit(prompt, kImagePlaceholder);
  const int placeholders = static_cast<int>(parts.size()) - 1;
  if (placeholders != num_images) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", placeholders, " ", kImagePlaceholder,
                                                   " placeholders for ", num_images, " images"));
  }
  std::vector<PromptSegment> segments;
  for (int i = 0; i < static_cast<int>(parts.size()); ++i) {
    if (i == 0 || !parts[i].empty()) segments.push_back({tokenizer.Encode(parts[i], /*add_bos=*/i == 0), -1});
    if (i < num_images) segments.push_back({{}, i});
  }
  return segments;
}

}  // namespace ixc::coordinator
