// File: coordinator/api/logprobs_json.h
//
// Generated tokens' log-probabilities (core/token_logprobs.h) in the OpenAI API's two shapes. Chat:
//   {"content": [{"token": " red", "logprob": -0.3, "bytes": [32, 114, 101, 100],
//                 "top_logprobs": [{"token": " red", "logprob": -0.3, "bytes": [...]}, ...]}, ...]}
// Completions (the legacy shape):
//   {"tokens": [" red"], "token_logprobs": [-0.3], "top_logprobs": [{" red": -0.3, ...}], "text_offset": [0]}
// `token` is the token's bytes as UTF-8, a byte that is part of a character shown as U+FFFD; `bytes` are the exact
// bytes, so a client can join them. Log-probabilities below -9999 (or -inf) are given as -9999, as vLLM does.
#pragma once

#include <cstdint>
#include <span>

#include "coordinator/tokenizer.h"
#include "core/token_logprobs.h"
#include "nlohmann/json.hpp"

namespace ixc::coordinator {

// The entries of chat's `content` list for ids[i] with logprobs[i] (equal lengths).
nlohmann::json ChatLogprobs(const Tokenizer& tokenizer, std::span<const int32_t> ids,
                            std::span<const TokenLogprobs> logprobs);

// The completions shape; text_offset counts bytes of the choice's text from `first_offset`.
nlohmann::json CompletionLogprobs(const Tokenizer& tokenizer, std::span<const int32_t> ids,
                                  std::span<const TokenLogprobs> logprobs, int64_t first_offset);

// The bytes of `text` with each byte that does not belong to a whole UTF-8 character replaced by U+FFFD.
std::string ValidUtf8(const std::string& text);

}  // namespace ixc::coordinator
