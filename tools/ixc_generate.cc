// ixc-generate: runs IXC-2.5 on one prompt in this process and prints the generated ids and text.
//
//   ixc-generate --model DIR --prompt "Hello" [--chat [--use-meta]] [--max-new-tokens N] [--temperature T]
//                [--top-p P] [--top-k K] [--repetition-penalty R] [--seed S] [--lora-mode base|web|write]
//                [--num-beams B]
//   ixc-generate --model DIR --chat --prompt "Compare <ImageHere> and <ImageHere>" --image a.jpg --image b.png
//   ixc-generate --model DIR --chat --prompt "Describe this video" --video clip.mp4
//   ixc-generate --model DIR --prompt-ids 1,2,3 --dump-logits logits.npy
//
// Greedy unless --temperature > 0. --image repeats; the images, then the video, fill the <ImageHere> placeholders in
// order (one image or video without a placeholder goes first, as the reference does). --dump-logits writes the f32
// logits of every prompt position, (tokens, vocab). Flags take dashes or underscores.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "coordinator/chat_template.h"
#include "coordinator/compose_task.h"
#include "core/command_line.h"
#include "core/flags.h"
#include "coordinator/media/vision_input.h"
#include "coordinator/tokenizer.h"
#include "core/npy.h"
#include "core/status_macros.h"
#include "kernels/cpu/blas_kernels.h"
#include "model/beam_search.h"
#include "model/generation.h"
#include "model/multimodal_input.h"
#include "model/placement.h"

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
ABSL_FLAG(int32_t, num_beams, 1, "beam search with this many beams (transformers 4.33's rules; no sampling)");
ABSL_FLAG(std::string, task, "",
          "a composition task (coordinator/compose_task.h): write_webpage, screen_2_webpage (one --image), "
          "resume_2_webpage (--prompt: the resume's markdown) or write_article; its settings unless flags say "
          "otherwise");
ABSL_FLAG(std::string, lora_mode, "base", "task LoRA: base, web or write");
ABSL_FLAG(bool, ignore_eos, false, "do not stop at </s> or [UNUSED_TOKEN_145]");
ABSL_FLAG(int64_t, max_context, 98304, "prompt plus generated tokens, at most");
ABSL_FLAG(std::string, dump_logits, "", "write the prompt positions' logits, (tokens, vocab) f32, to this .npy");
ABSL_FLAG(std::string, video, "", "a video file (mp4, webm, mkv, avi, ...): one frame per second, at most 32");
ABSL_FLAG(int32_t, hd_num, 0, "tiles per image at most (0: the reference's rule, 24 for one image, 6 for several)");
ABSL_FLAG(std::string, label_font, ixc::coordinator::kDefaultLabelFont, "TrueType font of the video frame labels");
ABSL_FLAG(int64_t, max_image_pixels, 89'478'485, "larger images are refused before decoding");
ABSL_FLAG(std::string, device, "cpu", "where the language model and the vision tower run: cpu | cuda");
ABSL_FLAG(std::string, dtype, "bf16", "cuda: weights, activations and KV cache in bf16 | f16");
ABSL_FLAG(int64_t, kv_reserve_mib, 4096,
          "cuda: device memory kept free after the KV pool; half of it bounds a forward call's activations "
          "(longer prompts are prefilled in chunks)");
ABSL_FLAG(bool, cuda_graphs, true, "cuda: replay each decode step as a CUDA graph (captured once per batch shape)");

namespace ixc {
namespace {

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

// Decodes and prepares the images and the video, in placeholder order.
absl::StatusOr<std::vector<coordinator::PreparedVision>> PrepareMedia(const std::vector<std::string>& images,
                                                                     const std::string& video, int tile) {
  const int count = static_cast<int>(images.size()) + (video.empty() ? 0 : 1);
  const int hd_num = absl::GetFlag(FLAGS_hd_num) > 0 ? absl::GetFlag(FLAGS_hd_num) : coordinator::HdNumFor(count);
  coordinator::ImageLimits limits;
  limits.max_pixels = absl::GetFlag(FLAGS_max_image_pixels);
  std::vector<coordinator::PreparedVision> prepared;
  for (const std::string& path : images) {
    IXC_ASSIGN_OR_RETURN(coordinator::PreparedVision image, coordinator::PrepareImage(path, hd_num, tile, limits));
    prepared.push_back(std::move(image));
  }
  if (!video.empty()) {
    IXC_ASSIGN_OR_RETURN(auto font, coordinator::LabelFont::Load(absl::GetFlag(FLAGS_label_font), 40));
    IXC_ASSIGN_OR_RETURN(coordinator::PreparedVision clip, coordinator::PrepareVideo(video, tile, *font, {}));
    prepared.push_back(std::move(clip));
  }
  return prepared;
}

absl::Status Run(const CommandLine& line) {
  const std::vector<std::string>& images = line.Repeated("image");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  const bool has_text = !absl::GetFlag(FLAGS_prompt).empty(), has_ids = !absl::GetFlag(FLAGS_prompt_ids).empty();
  const bool query_ignored = absl::GetFlag(FLAGS_task) == "screen_2_webpage";  // the reference ignores it
  if (has_text && has_ids) return absl::InvalidArgumentError("give one of --prompt and --prompt-ids, not both");
  if (!has_text && !has_ids && !query_ignored) {
    return absl::InvalidArgumentError("give one of --prompt and --prompt-ids");
  }
  if (absl::GetFlag(FLAGS_max_new_tokens) < 0) return absl::InvalidArgumentError("--max-new-tokens must be >= 0");
  if (absl::GetFlag(FLAGS_temperature) < 0) return absl::InvalidArgumentError("--temperature must be >= 0");
  if (absl::GetFlag(FLAGS_top_p) <= 0 || absl::GetFlag(FLAGS_top_p) > 1) {
    return absl::InvalidArgumentError("--top-p must be in (0, 1]");
  }
  if (absl::GetFlag(FLAGS_top_k) < 0) return absl::InvalidArgumentError("--top-k must be >= 0");
  if (absl::GetFlag(FLAGS_repetition_penalty) <= 0) {
    return absl::InvalidArgumentError("--repetition-penalty must be > 0");
  }
  if (absl::GetFlag(FLAGS_num_beams) < 1 || absl::GetFlag(FLAGS_num_beams) > model::kMaxBeams) {
    return absl::InvalidArgumentError(absl::StrCat("--num-beams must be in [1, ", model::kMaxBeams, "]"));
  }
  if (absl::GetFlag(FLAGS_num_beams) > 1 && absl::GetFlag(FLAGS_temperature) > 0) {
    return absl::InvalidArgumentError("--num-beams: beam search does not sample; leave --temperature at 0");
  }
  IXC_ASSIGN_OR_RETURN(model::LoraMode lora, model::LoraModeFromName(absl::GetFlag(FLAGS_lora_mode)));
  IXC_ASSIGN_OR_RETURN(model::LlmWeights weights, model::LoadLlmWeights(model_dir));
  model::Placement placement;
  placement.device = absl::GetFlag(FLAGS_device);
  placement.dtype = absl::GetFlag(FLAGS_dtype);
  placement.kv_reserve_mib = absl::GetFlag(FLAGS_kv_reserve_mib);
  placement.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);

  std::unique_ptr<coordinator::Tokenizer> tokenizer;
  const std::string tokenizer_path = (std::filesystem::path(model_dir) / "tokenizer.model").string();
  if (std::filesystem::exists(tokenizer_path)) {
    std::string error;
    tokenizer = coordinator::Tokenizer::Load(tokenizer_path, &error);
    if (!tokenizer) return absl::InvalidArgumentError(error);
  } else if (has_text || !absl::GetFlag(FLAGS_task).empty()) {
    return absl::NotFoundError(absl::StrCat(tokenizer_path, ": --prompt and --task need a tokenizer"));
  }

  const std::string video = absl::GetFlag(FLAGS_video);
  const int media_count = static_cast<int>(images.size()) + (video.empty() ? 0 : 1);
  if (media_count > 0 && has_ids) return absl::InvalidArgumentError("--image and --video need a text --prompt");
  std::unique_ptr<model::VisionWeights> vision;
  std::vector<coordinator::PreparedVision> media;
  if (media_count > 0) {
    IXC_ASSIGN_OR_RETURN(model::VisionWeights loaded, model::LoadVisionWeights(model_dir, weights.config.hidden_size));
    vision = std::make_unique<model::VisionWeights>(std::move(loaded));
    IXC_RETURN_IF_ERROR(model::PlaceVision(*vision, placement));  // before the LLM's KV pool takes the memory
    IXC_ASSIGN_OR_RETURN(media, PrepareMedia(images, video, vision->config.image_size));
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
  int beams = absl::GetFlag(FLAGS_num_beams);
  int64_t max_total = 0;  // a task's bound on prompt and generated tokens together
  std::optional<coordinator::ComposeTask> task;
  if (!absl::GetFlag(FLAGS_task).empty()) {
    IXC_ASSIGN_OR_RETURN(task, coordinator::ComposeTaskFromName(absl::GetFlag(FLAGS_task)));
    if (has_ids) return absl::InvalidArgumentError("--task takes a text --prompt (its instruction or resume)");
    const coordinator::TaskSettings settings = coordinator::SettingsOf(*task);
    if (settings.needs_image && (images.size() != 1 || !video.empty())) {
      return absl::InvalidArgumentError(absl::StrCat("--task ", absl::GetFlag(FLAGS_task), " takes one --image"));
    }
    // The task's settings, where no flag names another value.
    coordinator::TaskSettings own;
    own.lora = lora;
    own.num_beams = beams;
    own.sampling = options.sampling;
    own.max_new_tokens = options.max_new_tokens;
    const coordinator::TaskSettings merged = coordinator::MergeSettings(
        settings, own, [&line](absl::string_view flag) { return line.Given(std::string(flag)); });
    lora = merged.lora;
    beams = merged.num_beams;
    options.sampling = merged.sampling;
    if (merged.max_new_tokens > 0) options.max_new_tokens = merged.max_new_tokens;
    max_total = merged.max_total_tokens;
  }

  // One generation from `text` (a prompt with the media's placeholders), or from the --prompt-ids.
  struct Generated {
    std::vector<int32_t> prompt;  // the text ids, for display
    int64_t positions = 0;        // the prompt's, images included
    model::GenerationResult result;
  };
  auto generate = [&](const std::string& text) -> absl::StatusOr<Generated> {
    Generated out;
    std::vector<model::PromptPiece> pieces;
    if (has_ids) {
      IXC_ASSIGN_OR_RETURN(out.prompt, ParseIds(absl::GetFlag(FLAGS_prompt_ids)));
    } else {
      IXC_ASSIGN_OR_RETURN(auto segments, coordinator::TokenizeInterleaved(*tokenizer, text, media_count));
      for (const coordinator::PromptSegment& segment : segments) {
        if (segment.image < 0) {
          out.prompt.insert(out.prompt.end(), segment.ids.begin(), segment.ids.end());
          pieces.push_back({segment.ids});
        } else {
          const coordinator::PreparedVision& item = media[segment.image];
          pieces.push_back({{}, item.crops.pixels.data(), item.geometry.rows, item.geometry.cols});
        }
      }
    }
    model::ForwardInput input;
    model::MultimodalInput multimodal;
    if (media_count > 0) {
      IXC_ASSIGN_OR_RETURN(multimodal, model::AssembleInput(weights, vision.get(), pieces));
      input.embeddings = multimodal.embeddings;
      input.image_mask = multimodal.image_mask;
    } else {
      input.ids = out.prompt;
    }
    input.lora = lora;
    out.positions = input.tokens(weights.config.hidden_size);
    model::GenerationOptions run = options;
    if (max_total > 0) run.max_new_tokens = static_cast<int>(std::max<int64_t>(1, max_total - out.positions));
    const int64_t context = std::min<int64_t>(run.max_context, out.positions + run.max_new_tokens);
    if (beams > 1 && run.keep_prompt_logits) {
      return absl::InvalidArgumentError("--dump-logits is not taken with --num-beams");
    }
    // Beams share the prompt's blocks: each holds blocks of its own beyond them (and one for a fork's copy).
    const int64_t beam_room = beams > 1 ? int64_t{beams} * (run.max_new_tokens + 2 * 16) : 0;
    IXC_ASSIGN_OR_RETURN(model::KvCache cache, model::PlaceModel(weights, placement, context + beam_room));
    if (beams > 1) {
      model::BeamGenerationOptions beam_options;
      beam_options.num_beams = beams;
      beam_options.max_new_tokens = run.max_new_tokens;
      beam_options.repetition_penalty = run.sampling.repetition_penalty;
      beam_options.eos_ids = run.stop_ids;
      beam_options.max_context = run.max_context;
      IXC_ASSIGN_OR_RETURN(out.result, model::GenerateBeams(weights, input, beam_options, cache));
    } else {
      IXC_ASSIGN_OR_RETURN(out.result, model::Generate(weights, input, run, cache));
    }
    return out;
  };
  // A reply's text: its ids without the stop token, as the reference decodes them (special tokens skipped).
  auto reply = [&](const model::GenerationResult& result) {
    std::vector<int32_t> ids = result.ids;
    if (result.finish_reason == "stop" && !ids.empty()) ids.pop_back();
    return tokenizer ? tokenizer->Decode(ids) : std::string();
  };

  std::string text = absl::GetFlag(FLAGS_prompt);
  if (task) {
    text = coordinator::TaskPrompt(coordinator::TaskQuery(*task, text));
  } else if (absl::GetFlag(FLAGS_chat)) {
    coordinator::ChatRequest request;
    request.query = text;
    request.use_meta = absl::GetFlag(FLAGS_use_meta);
    text = coordinator::BuildChatPrompt(request);
  }
  IXC_ASSIGN_OR_RETURN(Generated first, generate(text));
  const model::GenerationResult& result = first.result;
  if (options.keep_prompt_logits) {
    IXC_RETURN_IF_ERROR(WriteNpyF32(absl::GetFlag(FLAGS_dump_logits),
                                    {result.prompt_tokens, weights.config.vocab_size}, result.prompt_logits.data()));
  }
  std::cout << "prompt ids: " << absl::StrJoin(first.prompt, ",") << "\n";
  if (media_count > 0) {
    std::cout << "prompt positions: " << first.positions << " ("
              << first.positions - static_cast<int64_t>(first.prompt.size()) << " vision)\n";
  }
  std::cout << "generated ids: " << absl::StrJoin(result.ids, ",") << "\n";
  if (tokenizer && !task) std::cout << "text: " << tokenizer->Decode(result.ids) << "\n";
  std::cout << "finish reason: " << result.finish_reason << "\n";
  std::fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tok/s); decode: %zu tokens in %.3f s (%.1f tok/s)\n",
               static_cast<long long>(result.prompt_tokens), result.prefill_seconds,
               result.prompt_tokens / std::max(result.prefill_seconds, 1e-9), result.ids.size(),
               result.decode_seconds, result.ids.size() / std::max(result.decode_seconds, 1e-9));
  if (!task) return absl::OkStatus();
  std::string page = coordinator::StripTurnMarkers(reply(result));
  if (*task == coordinator::ComposeTask::kResumeToWebpage) {  // the second pass: the page's JavaScript
    IXC_ASSIGN_OR_RETURN(Generated script, generate(coordinator::TaskPrompt(coordinator::ScriptQuery(page))));
    std::cout << "script pass ids: " << absl::StrJoin(script.result.ids, ",") << "\n";
    page = coordinator::SpliceScript(page, coordinator::StripTurnMarkers(reply(script.result)));
  }
  std::cout << "text: " << coordinator::PostProcess(*task, page) << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace ixc

int main(int argc, char** argv) {
  ixc::kernels::RestartForBetterBlasKernels(argv);
  ixc::CommandLine line(argc, argv, /*repeated=*/{"image"});
  ixc::ParseFlags(line,
                  "ixc-generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--image PATH]... [--video PATH] "
                  "[options]\n  --image PATH  an image (JPEG, PNG, WebP, GIF, BMP); repeat for several");
  const absl::Status status = ixc::Run(line);
  if (!status.ok()) {
    std::cerr << "ixc-generate: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
