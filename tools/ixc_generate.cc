// ixc-generate: runs the IXC-2.5 language model on one prompt in this process and prints the generated ids and text.
//
//   ixc-generate --model DIR --prompt "Hello" [--chat [--use-meta]] [--max-new-tokens N] [--temperature T]
//                [--top-p P] [--top-k K] [--repetition-penalty R] [--seed S] [--lora-mode base|web|write]
//   ixc-generate --model DIR --prompt-ids 1,2,3 --dump-logits logits.npy
//
// Greedy unless --temperature > 0. --dump-logits writes the f32 logits of every prompt position, (tokens, vocab),
// so they can be held against another implementation. Flags take dashes or underscores.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "coordinator/chat_template.h"
#include "coordinator/tokenizer.h"
#include "core/npy.h"
#include "core/status_macros.h"
#include "model/generation.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory (config.json, safetensors, tokenizer.model)");
ABSL_FLAG(std::string, prompt, "", "prompt text (needs tokenizer.model in the model directory)");
ABSL_FLAG(std::string, prompt_ids, "", "prompt as comma-separated token ids, instead of --prompt");
ABSL_FLAG(bool, chat, false, "wrap --prompt in the IXC-2.5 chat template");
ABSL_FLAG(bool, use_meta, false, "with --chat: add the default meta instruction as the system turn");
ABSL_FLAG(int32_t, max_new_tokens, 32, "tokens to generate at most");
ABSL_FLAG(double, temperature, 0.0, "0 is greedy");
ABSL_FLAG(double, top_p, 1.0, "nucleus sampling mass (1: off)");
ABSL_FLAG(int32_t, top_k, 0, "keep the k most likely tokens (0: off)");
ABSL_FLAG(double, repetition_penalty, 1.0, "Hugging Face's rule, over generated tokens (1: off)");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed");
ABSL_FLAG(std::string, lora_mode, "base", "task LoRA: base, web or write");
ABSL_FLAG(bool, ignore_eos, false, "do not stop at </s> or [UNUSED_TOKEN_145]");
ABSL_FLAG(int64_t, max_context, 98304, "prompt plus generated tokens, at most");
ABSL_FLAG(std::string, dump_logits, "", "write the prompt positions' logits, (tokens, vocab) f32, to this .npy");

namespace ixc {
namespace {

// absl flags are spelled with underscores; the documented spelling has dashes. Accept both.
std::vector<char*> UnderscoreFlagNames(int argc, char** argv, std::vector<std::string>& storage) {
  storage.assign(argv, argv + argc);
  for (size_t i = 1; i < storage.size(); ++i) {
    std::string& arg = storage[i];
    if (arg.rfind("--", 0) != 0) continue;
    const size_t end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + 2, arg.begin() + end, '-', '_');
  }
  std::vector<char*> pointers;
  for (std::string& arg : storage) pointers.push_back(arg.data());
  return pointers;
}

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("--prompt-ids: '", std::string(piece), "' is not an integer"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError("--prompt-ids: no ids given");
  return ids;
}

absl::Status Run() {
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  const bool has_text = !absl::GetFlag(FLAGS_prompt).empty(), has_ids = !absl::GetFlag(FLAGS_prompt_ids).empty();
  if (has_text == has_ids) return absl::InvalidArgumentError("give exactly one of --prompt and --prompt-ids");
  if (absl::GetFlag(FLAGS_max_new_tokens) < 0) return absl::InvalidArgumentError("--max-new-tokens must be >= 0");
  if (absl::GetFlag(FLAGS_temperature) < 0) return absl::InvalidArgumentError("--temperature must be >= 0");
  if (absl::GetFlag(FLAGS_top_p) <= 0 || absl::GetFlag(FLAGS_top_p) > 1) {
    return absl::InvalidArgumentError("--top-p must be in (0, 1]");
  }
  if (absl::GetFlag(FLAGS_top_k) < 0) return absl::InvalidArgumentError("--top-k must be >= 0");
  if (absl::GetFlag(FLAGS_repetition_penalty) <= 0) {
    return absl::InvalidArgumentError("--repetition-penalty must be > 0");
  }
  IXC_ASSIGN_OR_RETURN(model::LoraMode lora, model::LoraModeFromName(absl::GetFlag(FLAGS_lora_mode)));
  IXC_ASSIGN_OR_RETURN(model::LlmWeights weights, model::LoadLlmWeights(model_dir));

  std::unique_ptr<coordinator::Tokenizer> tokenizer;
  const std::string tokenizer_path = (std::filesystem::path(model_dir) / "tokenizer.model").string();
  if (std::filesystem::exists(tokenizer_path)) {
    std::string error;
    tokenizer = coordinator::Tokenizer::Load(tokenizer_path, &error);
    if (!tokenizer) return absl::InvalidArgumentError(error);
  } else if (has_text) {
    return absl::NotFoundError(absl::StrCat(tokenizer_path, ": --prompt needs a tokenizer; use --prompt-ids"));
  }

  std::vector<int32_t> prompt;
  if (has_ids) {
    IXC_ASSIGN_OR_RETURN(prompt, ParseIds(absl::GetFlag(FLAGS_prompt_ids)));
  } else {
    std::string text = absl::GetFlag(FLAGS_prompt);
    if (absl::GetFlag(FLAGS_chat)) {
      coordinator::ChatRequest request;
      request.query = text;
      request.use_meta = absl::GetFlag(FLAGS_use_meta);
      text = coordinator::BuildChatPrompt(request);
    }
    IXC_ASSIGN_OR_RETURN(auto segments, coordinator::TokenizeInterleaved(*tokenizer, text, /*num_images=*/0));
    prompt = segments.front().ids;
  }

  model::GenerationOptions options;
  options.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  options.sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  options.sampling.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  options.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  options.sampling.repetition_penalty = static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty));
  options.seed = absl::GetFlag(FLAGS_seed);
  options.max_context = absl::GetFlag(FLAGS_max_context);
  options.keep_prompt_logits = !absl::GetFlag(FLAGS_dump_logits).empty();
  if (!absl::GetFlag(FLAGS_ignore_eos)) {
    options.stop_ids.push_back(weights.config.eos_token_id);
    if (weights.config.vocab_size > coordinator::kEndOfTurnId) options.stop_ids.push_back(coordinator::kEndOfTurnId);
  }

  const int64_t context = std::min<int64_t>(options.max_context, prompt.size() + options.max_new_tokens);
  constexpr int kBlockSize = 16;
  model::KvCache cache(weights.config, kBlockSize, static_cast<int>((context + kBlockSize) / kBlockSize));
  model::ForwardInput input;
  input.ids = prompt;
  input.lora = lora;
  IXC_ASSIGN_OR_RETURN(model::GenerationResult result, model::Generate(weights, input, options, cache));

  if (options.keep_prompt_logits) {
    IXC_RETURN_IF_ERROR(WriteNpyF32(absl::GetFlag(FLAGS_dump_logits),
                                    {result.prompt_tokens, weights.config.vocab_size}, result.prompt_logits.data()));
  }
  std::cout << "prompt ids: " << absl::StrJoin(prompt, ",") << "\n";
  std::cout << "generated ids: " << absl::StrJoin(result.ids, ",") << "\n";
  if (tokenizer) std::cout << "text: " << tokenizer->Decode(result.ids) << "\n";
  std::cout << "finish reason: " << result.finish_reason << "\n";
  std::fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tok/s); decode: %zu tokens in %.3f s (%.1f tok/s)\n",
               static_cast<long long>(result.prompt_tokens), result.prefill_seconds,
               result.prompt_tokens / std::max(result.prefill_seconds, 1e-9), result.ids.size(),
               result.decode_seconds, result.ids.size() / std::max(result.decode_seconds, 1e-9));
  return absl::OkStatus();
}

}  // namespace
}  // namespace ixc

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("ixc-generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [options]");
  std::vector<std::string> storage;
  std::vector<char*> args = ixc::UnderscoreFlagNames(argc, argv, storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  const absl::Status status = ixc::Run();
  if (!status.ok()) {
    std::cerr << "ixc-generate: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
