// File: coordinator/compose_task.h
//
// IXC-2.5's composition applications (spec sections 5.3 and 7) as presets: the reference's write_webpage,
// screen_2_webpage, resume_2_webpage and write_artical, each a prompt, a LoRA mode, generation settings and
// post-processing. The API takes them as the request field `ixc_task`, ixc-generate as `--task`; both run the
// generations these settings describe and return the page or article, never writing a file (the reference writes
// `<task>.html` into its working directory).
//
//   write_webpage     the instruction as the user turn; web LoRA; 2 beams, repetition penalty 3.0, 4800 tokens
//   screen_2_webpage  a screenshot (the query is ignored, as the reference ignores it); the same settings
//   resume_2_webpage  the resume's markdown, then a second pass asking for the page's JavaScript, spliced in
//   write_article     the instruction (images optional); write LoRA; sampling T 1.0, top-p 0.8, top-k 40, repetition
//                     penalty 1.005, prompt and article 8192 tokens at most, ending at [UNUSED_TOKEN_145]
//
// The webpage functions ask transformers for do_sample=True with 2 beams, a beam sampling whose draws come from
// torch's generator: no server reproduces them. Ours run HF's deterministic beam search with those beams and that
// penalty (model/beam_search.h), the README's setting for chat outputs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "model/weights.h"

namespace ixc::coordinator {

enum class ComposeTask { kWriteWebpage, kScreenToWebpage, kResumeToWebpage, kWriteArticle };

// "write_webpage", "screen_2_webpage", "resume_2_webpage", "write_article"; InvalidArgument naming them otherwise.
absl::StatusOr<ComposeTask> ComposeTaskFromName(absl::string_view name);
absl::string_view ComposeTaskName(ComposeTask task);

struct TaskSettings {
  model::LoraMode lora = model::LoraMode::kBase;
  int num_beams = 1;
  kernels::SamplingParams sampling;  // greedy where num_beams > 1
  int max_new_tokens = 0;            // 0: what max_total_tokens leaves
  int64_t max_total_tokens = 0;      // prompt and generated tokens, at most (0: the context)
  bool needs_image = false;
};
TaskSettings SettingsOf(ComposeTask task);

// The settings a task runs with: the task's, except where the request gives its own (`given(name)` for lora_mode,
// num_beams, temperature, top_p, top_k, repetition_penalty and max_new_tokens; the values in `own`). A request's
// max_new_tokens also lifts the task's bound on prompt and generated tokens together.
TaskSettings MergeSettings(const TaskSettings& task, const TaskSettings& own,
                           const std::function<bool(absl::string_view)>& given);

// The user turn the reference builds from `input` (the instruction, or the resume's markdown; ignored for
// screen_2_webpage). It goes into the chat template without a meta instruction.
std::string TaskQuery(ComposeTask task, absl::string_view input);
// resume_2_webpage's second pass: the user turn asking for the page's JavaScript.
std::string ScriptQuery(absl::string_view html);
// A user turn in the chat template, without meta instruction or history: the prompt text a task generates from
// (its image, screen_2_webpage's screenshot, goes first: chat_template.h).
std::string TaskPrompt(absl::string_view query);

// The turn markers [UNUSED_TOKEN_145] and [UNUSED_TOKEN_146] removed: what the reference makes of each reply.
std::string StripTurnMarkers(std::string text);
// The reference's post-processing of a task's result: the turn markers removed and, for the webpages,
// https://source.unsplash.com/random/WxH/?query URLs rewritten to https://picsum.photos/W/H.
std::string PostProcess(ComposeTask task, std::string text);

// resume_2_webpage's page: where `html` has a </script>, the code of every <script>...</script> of `script_reply`
// goes before each of them; else, where it has a </html>, the whole reply goes before it; else the page is unchanged.
// (The reference inserts Python's printed list of the scripts; we insert their code, one after another.)
std::string SpliceScript(std::string html, absl::string_view script_reply);

}  // namespace ixc::coordinator
