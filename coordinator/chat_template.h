// File: coordinator/chat_template.h
//
// The IXC-2.5 chat template (spec 5.2) and the reference's prompt assembly `interleav_wrap_chat`:
//
//   [use_meta]   [UNUSED_TOKEN_146]system\n{meta}[UNUSED_TOKEN_145]\n
//   [history]    [UNUSED_TOKEN_146]user\n{q}[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\n{a}[UNUSED_TOKEN_145]\n
//                [UNUSED_TOKEN_146]user\n{query}[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\n
//
// The prompt is then split on `<ImageHere>`; each text piece is tokenized on its own (BOS on the first only) and
// image i takes the place of the i-th placeholder. One image and no placeholder: the placeholder is prepended.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer.h"

namespace ixc::coordinator {

inline constexpr char kImagePlaceholder[] = "<ImageHere>";
inline constexpr int32_t kStartOfTurnId = 92543;  // [UNUSED_TOKEN_146]
inline constexpr int32_t kEndOfTurnId = 92542;    // [UNUSED_TOKEN_145]

// The model's default meta instruction, verbatim from the reference.
extern const char kDefaultMetaInstruction[];

struct ChatTurn {
  std::string user;
  std::string assistant;
};

struct ChatRequest {
  std::vector<ChatTurn> history;
  std::string query;
  bool use_meta = false;  // the reference's chat() default; its README examples pass true
  std::string meta_instruction = kDefaultMetaInstruction;
};

std::string BuildChatPrompt(const ChatRequest& request);

// One stretch of the model's input: text token ids, or the image with index `image` (ids empty).
struct PromptSegment {
  std::vector<int32_t> ids;
  int image = -1;
};

// Splits `prompt` on placeholders and tokenizes the text pieces as the reference does. More placeholders than
// images, or more images than placeholders (beyond the one-image rule), is an error naming both counts.
absl::StatusOr<std::vector<PromptSegment>> TokenizeInterleaved(const Tokenizer& tokenizer, std::string prompt,
                                                               int num_images);

}  // namespace ixc::coordinator
